"""Record trees (and change logs) this machine has checked, remembered.

A commit's root tree is a function of its id, so once :mod:`.validate` has
checked a whole tree, or this process has built it from trusted parts, the
verdict holds for good. It is kept in ``<common git dir>/hangar/trusted``:
append-only lines ``<kind> <tree id hex> <crc32>``, kind ``r`` for a root
tree whose records were checked, ``l`` for one whose change log was
verified against its parent's tree, and ``p`` for one built on this machine
from samples whose payloads were checked against their schemas as they were
added (reads of its payloads skip that check). Local state, never part of history: a
verdict that is not here (a torn line, a deleted file) is found again, at
the cost of a check.
"""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import pygit2

from ..gitutil import common_dir

ROOT = "r"
LOG = "l"
PAYLOADS = "p"

#: path -> (bytes parsed so far, {(kind, tree id)})
_loaded: dict[str, tuple[int, set[tuple[str, bytes]]]] = {}
_lock = threading.Lock()


#: git dir -> path of its verdicts (finding the common dir costs a stat)
_paths: dict[str, Path] = {}


def trust_path(repo: pygit2.Repository) -> Path:
    """Where the verdicts of ``repo`` are kept."""
    p = _paths.get(repo.path)
    if p is None:
        p = _paths[repo.path] = common_dir(repo) / "hangar" / "trusted"
    return p


def _line(kind: str, oid: bytes) -> bytes:
    body = f"{kind} {oid.hex()}"
    return f"\n{body} {zlib.crc32(body.encode()):08x}\n".encode()


def _parse(data: bytes, into: set[tuple[str, bytes]]) -> None:
    for line in data.split(b"\n"):
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] not in (b"r", b"l", b"p") or len(parts[1]) != 40:
            continue
        try:
            if int(parts[2], 16) != zlib.crc32(parts[0] + b" " + parts[1]):
                continue
            into.add((parts[0].decode(), bytes.fromhex(parts[1].decode())))
        except ValueError:
            continue


def _table(path: Path) -> set[tuple[str, bytes]]:
    key = str(path)
    done, table = _loaded.get(key, (0, set()))
    try:
        size = path.stat().st_size
    except OSError:
        return table
    if size == done:
        return table
    if size < done:  # replaced (a new repository at the same place)
        done, table = 0, set()
    with open(path, "rb") as fh:
        fh.seek(done)
        data = fh.read(size - done)
    end = data.rfind(b"\n") + 1
    _parse(data[:end], table)
    _loaded[key] = (done + end, table)
    return table


def is_trusted(repo: pygit2.Repository, tree: bytes, kind: str = ROOT) -> bool:
    """True when root tree ``tree`` was checked (``kind`` ``'r'``) or its log
    verified (``'l'``) on this machine."""
    path = trust_path(repo)
    with _lock:
        hit = _loaded.get(str(path))
        if hit is not None and (kind, tree) in hit[1]:
            return True
        return (kind, tree) in _table(path)


def remember(repo: pygit2.Repository, tree: bytes, kind: str = ROOT) -> None:
    """Keep the verdict that ``tree`` is sound (best effort)."""
    path = trust_path(repo)
    if not path.parent.is_dir():
        return
    with _lock:
        done, table = _loaded.get(str(path), (0, set()))
        if (kind, tree) in table:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, _line(kind, tree))
            finally:
                os.close(fd)
        except OSError:
            return
        table.add((kind, tree))
        _loaded[str(path)] = (done, table)


__all__ = ["LOG", "PAYLOADS", "ROOT", "is_trusted", "remember", "trust_path"]
