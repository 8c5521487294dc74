"""Sample counts of samples trees, remembered on this machine.

``len(aset)`` of an arrayset of millions of samples would otherwise read
every fan-out leaf. The count of a samples tree is a function of its id
(git objects never change), so once known it is kept: written by the commit
that built the tree (its base's count plus the change), or after the first
full count. This is local state, never part of history, and never needed
for correctness: a count that is not here is computed again.

The file is ``<common git dir>/hangar/counts``, append-only lines of
``<tree id hex> <count> <crc32 of the two>``. A line is written with one
``O_APPEND`` write, so writers of several processes do not interleave; a
torn or damaged line fails its check and is ignored.
"""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import pygit2

from ..gitutil import common_dir

#: path -> (bytes parsed so far, {tree id: count})
_loaded: dict[str, tuple[int, dict[bytes, int]]] = {}
_lock = threading.Lock()


def counts_path(repo: pygit2.Repository) -> Path:
    """Where the counts of ``repo`` are kept."""
    return common_dir(repo) / "hangar" / "counts"


def _line(oid: bytes, count: int) -> str:
    body = f"{oid.hex()} {count}"
    return f"{body} {zlib.crc32(body.encode()):08x}\n"


def _parse(data: bytes, into: dict[bytes, int]) -> None:
    for line in data.split(b"\n"):
        parts = line.split(b" ")
        if len(parts) != 3:
            continue
        body = parts[0] + b" " + parts[1]
        try:
            if int(parts[2], 16) != zlib.crc32(body) or len(parts[0]) != 40:
                continue
            into[bytes.fromhex(parts[0].decode())] = int(parts[1])
        except ValueError:
            continue


def known_count(repo: pygit2.Repository, oid: bytes) -> int | None:
    """The remembered sample count of samples tree ``oid``, or None."""
    path = counts_path(repo)
    key = str(path)
    with _lock:
        done, table = _loaded.get(key, (0, {}))
        hit = table.get(oid)
        if hit is not None:
            return hit
        try:
            size = path.stat().st_size
        except OSError:
            return None
        if size == done:
            return None
        if size < done:  # replaced (a new repository at the same place)
            done, table = 0, {}
        with open(path, "rb") as fh:
            fh.seek(done)
            data = fh.read(size - done)
        end = data.rfind(b"\n") + 1  # a line still being written waits
        _parse(data[:end], table)
        _loaded[key] = (done + end, table)
        return table.get(oid)


def remember_count(repo: pygit2.Repository, oid: bytes, count: int) -> None:
    """Keep ``count`` as the sample count of samples tree ``oid`` (best effort)."""
    path = counts_path(repo)
    if not path.parent.is_dir():
        return
    with _lock:
        done, table = _loaded.get(str(path), (0, {}))
        if table.get(oid) == count:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                # the leading newline ends a line a killed writer left torn
                os.write(fd, ("\n" + _line(oid, count)).encode())
            finally:
                os.close(fd)
        except OSError:
            return  # read-only or full: the count is computed again next time
        table[oid] = count
        _loaded[str(path)] = (done, table)


__all__ = ["counts_path", "known_count", "remember_count"]
