"""Sample counts of samples trees, remembered on this machine.

``len(aset)`` of an arrayset of millions of samples would otherwise read
every fan-out leaf. The count of a samples tree is a function of its id
(git objects never change), so once known it is kept: written by the commit
that built the tree (its base's count plus the change), or after the first
full count. This is local state, never part of history, and never needed
for correctness: a count that is not here is computed again.

A count says nothing about whether the tree's records are sound. The count
of a tree that is not part of a trusted commit tree (see :mod:`.trust`) is
only taken from a *checked* line: one written by a count that passed every
leaf through the record checks of :mod:`.validate` (the checks ``keys()``
makes), which is then a verdict on that samples tree as well.

The file is ``<common git dir>/hangar/counts``, a :class:`.LocalTable` of
``<tree id hex> <count>`` lines, and ``v<tree id hex> <count>`` for checked
counts.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from .local_table import LocalTable

#: {tree id hex: count}, and {b"v" + tree id hex: count} for checked counts
TABLE = LocalTable("counts")
#: key prefix of a count made while checking the tree's records
CHECKED = b"v"


def counts_path(repo: pygit2.Repository) -> Path:
    """Where the counts of ``repo`` are kept."""
    return TABLE.path(repo)


def _int(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None


def known_count(repo: pygit2.Repository, oid: bytes, checked: bool = False) -> int | None:
    """The remembered sample count of samples tree ``oid``, or None.

    With ``checked``, only a count made while checking the tree's records
    (a samples tree whose records are not trusted otherwise); without it,
    any count of the tree.
    """
    key = oid.hex().encode()
    if not checked:
        n = _int(TABLE.get(repo, key))
        if n is not None:
            return n
    return _int(TABLE.get(repo, CHECKED + key))


def remember_count(repo: pygit2.Repository, oid: bytes, count: int, checked: bool = False) -> None:
    """Keep ``count`` as the sample count of samples tree ``oid`` (best effort);
    ``checked`` when every record of the tree passed the record checks as it
    was counted."""
    key = oid.hex().encode()
    TABLE.put(repo, CHECKED + key if checked else key, str(count).encode())


__all__ = ["CHECKED", "TABLE", "counts_path", "known_count", "remember_count"]
