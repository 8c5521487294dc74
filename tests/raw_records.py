"""Raw git objects for the hostile-records tests: trees of exactly the given
entries (in any order, with any names), blobs, and their parsed contents."""

from __future__ import annotations

import pygit2
from pygit2.enums import ObjectType

from hangar_git.gitutil import HEADS, read_raw
from hangar_git.records.layout import MODE_TREE, parse_tree

Raw = list[tuple[bytes, bytes, bytes]]  # (mode, name, oid) in the order given


def raw_tree(git: pygit2.Repository, entries: Raw) -> bytes:
    """A tree object of exactly these entries, in this order."""
    data = b"".join(m + b" " + n + b"\x00" + o for m, n, o in entries)
    return git.odb.write(ObjectType.TREE, data).raw


def blob(git: pygit2.Repository, data: bytes) -> bytes:
    return git.odb.write(ObjectType.BLOB, data).raw


def sorted_raw(d: dict[bytes, tuple[bytes, bytes]]) -> Raw:
    """Entries in git's tree order (a subtree sorts as if its name ended in '/')."""

    def key(item: tuple[bytes, tuple[bytes, bytes]]) -> bytes:
        n, (m, _) = item
        return n + b"/" if m == MODE_TREE else n

    return [(m, n, o) for n, (m, o) in sorted(d.items(), key=key)]


def entries(git: pygit2.Repository, oid: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    return {k.encode(): v for k, v in parse_tree(read_raw(git, oid)).items()}


def head(git: pygit2.Repository, branch: str = "master") -> str:
    return str(git.references[HEADS + branch].target)
