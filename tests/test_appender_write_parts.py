"""The pack appender's batched writes (:func:`hangar_git.store.appender.write_parts`):
parts written many per ``writev`` call, whatever a call leaves unwritten
written after it, a call that writes nothing a full disk."""

from __future__ import annotations

import errno
import os

import pytest

from hangar_git.store import appender


def _parts(n: int) -> list[bytes | memoryview]:
    out: list[bytes | memoryview] = []
    for i in range(n):
        out.append(bytes([i % 251]) * (i % 7))  # some empty
        out.append(memoryview(bytes(range(i % 200, i % 200 + 50))))
    return out


@pytest.mark.parametrize("short", [0, 1, 9, 5000])
def test_write_parts_writes_every_part_in_order_through_short_writes(tmp_path, monkeypatch, short):
    """``short``: a ``writev`` writes at most that many bytes (0: all of them);
    ``_IOV_MAX`` small so the parts take several calls."""
    parts = _parts(300)
    real = os.writev
    calls = []

    def writev(fd, bufs):
        calls.append(len(bufs))
        assert len(bufs) <= 64
        if not short:
            return real(fd, bufs)
        data = b"".join(bytes(b) for b in bufs)[:short]
        return os.write(fd, data)

    monkeypatch.setattr(appender, "_IOV_MAX", 64)
    monkeypatch.setattr(os, "writev", writev)
    path = tmp_path / "pack"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        appender.write_parts(fd, parts)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(bytes(p) for p in parts)
    assert len(calls) >= 600 // 64


def test_write_parts_raises_a_full_disk_when_a_call_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "writev", lambda fd, bufs: 0)
    fd = os.open(tmp_path / "pack", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with pytest.raises(OSError) as info:
            appender.write_parts(fd, [b"abc", b"def"])
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC


def test_write_parts_makes_no_call_for_empty_parts(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "writev", lambda fd, bufs: calls.append(bufs) or 0)
    fd = os.open(tmp_path / "pack", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        appender.write_parts(fd, [b"", memoryview(b"")])
    finally:
        os.close(fd)
    assert not calls
