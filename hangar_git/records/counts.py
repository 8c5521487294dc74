"""Sample counts of samples trees, remembered on this machine.

``len(aset)`` of an arrayset of millions of samples would otherwise read
every fan-out leaf. The count of a samples tree is a function of its id
(git objects never change), so once known it is kept: written by the commit
that built the tree (its base's count plus the change), or after the first
full count. This is local state, never part of history, and never needed
for correctness: a count that is not here is computed again.

The file is ``<common git dir>/hangar/counts``, a :class:`.LocalTable` of
``<tree id hex> <count>`` lines.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from .local_table import LocalTable

#: {tree id hex: count}
TABLE = LocalTable("counts")


def counts_path(repo: pygit2.Repository) -> Path:
    """Where the counts of ``repo`` are kept."""
    return TABLE.path(repo)


def known_count(repo: pygit2.Repository, oid: bytes) -> int | None:
    """The remembered sample count of samples tree ``oid``, or None."""
    raw = TABLE.get(repo, oid.hex().encode())
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def remember_count(repo: pygit2.Repository, oid: bytes, count: int) -> None:
    """Keep ``count`` as the sample count of samples tree ``oid`` (best effort)."""
    TABLE.put(repo, oid.hex().encode(), str(count).encode())


__all__ = ["TABLE", "counts_path", "known_count", "remember_count"]
