"""The folder data remote (``remotes/backends/local.py``): every object it
names is on the disk first, so records pushed after the packs never name a
pack a power cut could take back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hangar_git.remotes.backends import local
from hangar_git.remotes.backends.local import LocalStore


@pytest.fixture
def synced(monkeypatch):
    """Record, in order, the syncs (of a file: its path; of a folder: 'dir:'
    path) and the renames into place ('mv:' path) the folder store makes."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("dir:" if os.path.isdir(path) else "") + path)
        real_fsync(fd)

    def replace(src, dst) -> None:
        real_replace(src, dst)
        events.append(f"mv:{dst}")

    monkeypatch.setattr(local.os, "fsync", fsync)
    monkeypatch.setattr(local.os, "replace", replace)
    monkeypatch.setattr("hangar_git.store.durable.os.fsync", fsync)
    monkeypatch.setattr("hangar_git.store.durable.FSYNC", True)
    return events


def _synced_before_named(events: list[str], tmp_written: list[str], final: str) -> None:
    i = events.index(f"mv:{final}")
    assert any(e in tmp_written for e in events[:i]), events  # the file, before its rename
    assert f"dir:{os.path.dirname(final)}" in events[i + 1 :], events  # the rename, after


def test_every_way_of_writing_syncs_the_file_then_its_rename(tmp_path: Path, synced):
    store = LocalStore(str(tmp_path / "remote"))
    root = os.path.realpath(tmp_path / "remote")

    def tmps() -> list[str]:
        return [e for e in synced if e.endswith(".tmp")]

    store.put("packs/a.pack", b"x" * 100)
    _synced_before_named(synced, tmps(), f"{root}/packs/a.pack")
    synced.clear()
    store.put_parts("packs/b.pack", [b"y" * 10, memoryview(b"z" * 10)])
    _synced_before_named(synced, tmps(), f"{root}/packs/b.pack")
    synced.clear()
    src = tmp_path / "src.bin"
    src.write_bytes(b"q" * 1000)
    store.put_file("packs/c.pack", src)
    _synced_before_named(synced, tmps(), f"{root}/packs/c.pack")
    synced.clear()
    stream = store.open_stream("packs")
    stream.write([b"w" * 50])
    assert stream.finish("packs/d.pack") == 50
    _synced_before_named(synced, tmps(), f"{root}/packs/d.pack")
    assert (Path(root) / "packs/d.pack").read_bytes() == b"w" * 50


def test_a_stream_starts_the_disk_on_each_piece_before_its_sync(tmp_path: Path, monkeypatch):
    """Each piece written ahead is handed to the disk at once (a head start,
    ``sync_file_range``), so the sync before the rename waits for the last
    piece only; the sync itself still comes."""
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(local, "start_writeback", lambda fd, off, n: started.append((off, n)))
    store = LocalStore(str(tmp_path / "remote"))
    stream = store.open_stream("packs")
    stream.write([b"a" * 30, memoryview(b"b" * 20)])
    stream.write([b"c" * 7])
    assert started == [(0, 50), (50, 7)]
    assert stream.finish("packs/e.pack") == 57
    assert (tmp_path / "remote/packs/e.pack").read_bytes() == b"a" * 30 + b"b" * 20 + b"c" * 7
