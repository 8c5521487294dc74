"""Record trees (and change logs) this machine has checked, remembered.

A commit's root tree is a function of its id, so once :mod:`.validate` has
checked a whole tree, or this process has built it from trusted parts, the
verdict holds for good. It is kept in ``<common git dir>/hangar/trusted``, a
:class:`.LocalTable` of ``<kind><tree id hex> 1`` lines, kind ``r`` for a root
tree whose records were checked, ``l`` for one whose change log was
verified against its parent's tree, and ``p`` for one built on this machine
from samples whose payloads were checked against their schemas as they were
added (reads of its payloads skip that check). Local state, never part of history: a
verdict that is not here (a torn line, a deleted file) is found again, at
the cost of a check.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from .local_table import LocalTable

ROOT = "r"
LOG = "l"
PAYLOADS = "p"

#: {kind + tree id hex: b"1"}
TABLE = LocalTable("trusted")


def trust_path(repo: pygit2.Repository) -> Path:
    """Where the verdicts of ``repo`` are kept."""
    return TABLE.path(repo)


def is_trusted(repo: pygit2.Repository, tree: bytes, kind: str = ROOT) -> bool:
    """True when root tree ``tree`` was checked (``kind`` ``'r'``), its log
    verified (``'l'``) or it was built here from checked payloads (``'p'``)."""
    return TABLE.get(repo, kind.encode() + tree.hex().encode()) == b"1"


def remember(repo: pygit2.Repository, tree: bytes, kind: str = ROOT) -> None:
    """Keep the verdict that ``tree`` is sound (best effort)."""
    TABLE.put(repo, kind.encode() + tree.hex().encode(), b"1")


__all__ = ["LOG", "PAYLOADS", "ROOT", "TABLE", "is_trusted", "remember", "trust_path"]
