"""A push to a folder writes each pack's body ahead, on the sending thread,
while the pack is still being built, and names it once sealed; a write cut
midway leaves no file behind, no pack is taken for present, and the next
push sends everything again (hangar_git/remotes/sendpacks.py,
hangar_git/remotes/backends/local.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hangar_git.remotes import sendpacks
from hangar_git.remotes.backends import local
from hangar_git.remotes.data_remote import DataRemote
from hangar_git.remotes.transfer import download_payloads, upload_payloads
from hangar_git.store.digest import digest_bytes

KIND = "|u1|64"


def _stored(repo, n: int) -> tuple[np.ndarray, list[bytes]]:
    rows = np.random.default_rng(3).integers(0, 256, (n, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    writer = repo.payload_store.writer()
    writer.add_stacked(KIND, digests, rows)
    writer.close()
    return rows, digests


def _files(url: Path) -> list[str]:
    return sorted(p.name for p in (url / "packs").iterdir())


def _fetch_back(repo, url: str, digests: list[bytes], rows: np.ndarray) -> None:
    """Fetch ``digests`` from the data remote at ``url`` into ``repo`` and
    check each payload's bytes against ``rows``."""
    got = download_payloads(repo, DataRemote(url), digests)
    assert got.payloads == len(digests) and not got.refused
    reader = repo.payload_store.reader()
    try:
        for d, r in zip(digests, rows, strict=True):
            assert reader.get(d).tobytes() == r.tobytes()
    finally:
        reader.close()


def test_a_folder_pack_is_written_ahead_then_named(repo, other_repo, tmp_path, monkeypatch):
    rows, digests = _stored(repo, 20_000)  # 1.3 MB: several local blocks
    writes: list[tuple[int, bool]] = []
    real = local._FileStream.write

    def spy(self, parts):
        writes.append((len(parts), self.done))
        real(self, parts)

    monkeypatch.setattr(local._FileStream, "write", spy)
    monkeypatch.setattr(sendpacks, "WRITE_AHEAD", 1 << 16)  # pieces of 64 KiB and more
    url = tmp_path / "data"
    report = upload_payloads(repo, DataRemote(str(url)), digests)
    assert report.packs == 1 and report.payloads == len(digests)
    assert len(writes) >= 3 and sum(n for n, _ in writes[:-1]) > 0  # ahead, then the rest
    names = _files(url)
    assert len(names) == 2 and not [n for n in names if n.endswith(".tmp")]
    _fetch_back(other_repo, str(url), digests, rows)


@pytest.mark.parametrize("cut_at", [1, 3])  # the first piece, or one after pieces landed
def test_a_pack_cut_while_written_ahead_leaves_nothing(repo, tmp_path, monkeypatch, cut_at):
    _, digests = _stored(repo, 20_000)
    real = local._FileStream.write
    calls = []

    def cut(self, parts):
        calls.append(1)
        if len(calls) == cut_at:
            raise OSError("disk full")
        real(self, parts)

    url = tmp_path / "data"
    monkeypatch.setattr(sendpacks, "WRITE_AHEAD", 1 << 16)
    with monkeypatch.context() as m:
        m.setattr(local._FileStream, "write", cut)
        with pytest.raises(OSError, match="disk full"):
            upload_payloads(repo, DataRemote(str(url)), digests)
    assert not (url / "packs").exists() or _files(url) == []  # no temporary left
    remote = DataRemote(str(url))
    assert remote.refresh() == {} and remote.damaged == []
    report = upload_payloads(repo, remote, digests)  # all of it again
    assert report.payloads == len(digests) and report.skipped == 0
    assert len(_files(url)) == 2


def test_pieces_are_written_whole_through_short_writes(tmp_path, monkeypatch):
    parts = [b"abc", memoryview(b"defgh"), b"", b"ij" * 100]
    real = os.writev

    def short(fd, bufs):  # the system takes 4 bytes at most per call
        return real(fd, [b"".join(bytes(b) for b in bufs)[:4]])

    path = tmp_path / "f"
    with monkeypatch.context() as m:
        m.setattr(os, "writev", short)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            assert local.write_parts(fd, parts) == 208
        finally:
            os.close(fd)
    assert path.read_bytes() == b"abcdefgh" + b"ij" * 100


def test_an_object_store_gets_two_packs_uploading_at_once(repo, other_repo, monkeypatch):
    """To an object store the next sealed pack starts uploading while the one
    before is still under way (OBJECT_STORE_UPLOADS at once); every pack
    lands, is checked, and a fetch reads them all back."""
    import threading

    from hangar_git.remotes import data_transport as dt

    rows, digests = _stored(repo, 20_000)  # 1.3 MB: three packs of 512 KiB
    monkeypatch.setattr(dt, "OBJECT_STORE_PACK_TARGET", 1 << 19)
    both = threading.Barrier(2, timeout=20)  # the first two uploads meet here
    seen: list[str] = []
    real = DataRemote.upload

    def upload(self, pack):
        seen.append(pack.pack_id)
        if len(seen) <= 2:
            both.wait()  # one upload at a time never gets past this
        real(self, pack)

    monkeypatch.setattr(DataRemote, "upload", upload)
    url = "memory://h4-two-uploads"
    report = upload_payloads(repo, DataRemote(url), digests)
    assert report.packs == len(seen) == 3 and report.payloads == len(digests)
    _fetch_back(other_repo, url, digests, rows)
