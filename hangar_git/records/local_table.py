"""Append-only tables of local verdicts, kept in the common git dir.

What this machine has worked out about immutable git objects (the sample
count of a samples tree, a tree checked or built here) holds for good, so it
is kept in a small file under ``<common git dir>/hangar/``: lines of
``<key> <value> <crc32 of the two>``. A line is written with one ``O_APPEND``
write, led by a newline that ends a line a killed writer left torn, so
writers of several processes never interleave; a torn or damaged line fails
its check and is ignored. Readers parse only what was appended since they
last looked. Local state, never part of history, never needed for
correctness: a verdict that is not here is worked out again.
"""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import pygit2

from ..gitutil import common_dir
from ..store.durable import FILE_MODE


def _line(key: bytes, value: bytes) -> bytes:
    body = key + b" " + value
    return b"\n" + body + b" " + f"{zlib.crc32(body):08x}".encode() + b"\n"


def _parse(data: bytes, into: dict[bytes, bytes]) -> None:
    for line in data.split(b"\n"):
        parts = line.split(b" ")
        if len(parts) != 3:
            continue
        try:
            if int(parts[2], 16) != zlib.crc32(parts[0] + b" " + parts[1]):
                continue
        except ValueError:
            continue
        into[parts[0]] = parts[1]


class LocalTable:
    """One table file (``name`` under ``<common git dir>/hangar/``) of every
    repository, as ``{key: value}`` byte strings (keys and values hold no
    space or newline)."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: path -> (bytes parsed so far, table)
        self._loaded: dict[str, tuple[int, dict[bytes, bytes]]] = {}
        #: git dir -> path of the table (finding the common dir costs a stat)
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()

    def path(self, repo: pygit2.Repository) -> Path:
        """The table file of ``repo``."""
        p = self._paths.get(repo.path)
        if p is None:
            p = self._paths[repo.path] = common_dir(repo) / "hangar" / self.name
        return p

    def get(self, repo: pygit2.Repository, key: bytes) -> bytes | None:
        """The value kept under ``key``, or None."""
        path = self.path(repo)
        with self._lock:
            done, table = self._loaded.get(str(path), (0, {}))
            hit = table.get(key)
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
            self._loaded[str(path)] = (done + end, table)
            return table.get(key)

    def put(self, repo: pygit2.Repository, key: bytes, value: bytes) -> None:
        """Keep ``value`` under ``key`` (best effort: a read-only or full disk
        means it is worked out again next time)."""
        path = self.path(repo)
        if not path.parent.is_dir():
            return
        with self._lock:
            done, table = self._loaded.get(str(path), (0, {}))
            if table.get(key) == value:
                return
            try:  # FILE_MODE: the umask decides, as for the store's files
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
                try:
                    os.write(fd, _line(key, value))
                finally:
                    os.close(fd)
            except OSError:
                return
            table[key] = value
            self._loaded[str(path)] = (done, table)

    def forget(self) -> None:
        """Drop what was read (the next ``get`` reads the files afresh)."""
        with self._lock:
            self._loaded.clear()


__all__ = ["LocalTable"]
