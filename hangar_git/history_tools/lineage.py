"""An arrayset's names through history: the renames a purge must follow.

``change_arrayset(rename=...)`` commits an arrayset under a new name with its
samples tree unchanged, so the commits before the rename hold its samples
under the old name. :func:`arrayset_names` finds, for each commit of a
history, every name under which the samples of the arrayset called ``name``
somewhere are kept: the same name from a parent to a child, and a rename
(exactly one arrayset gone and one new between a parent and its child, their
samples trees equal) in either direction, so a branch that still uses the
old name is followed too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..gitutil import read_raw
from ..records.layout import parse_tree

if TYPE_CHECKING:
    import pygit2

#: a commit's arraysets: name -> the oid of its samples tree (None: no samples)
Arraysets = dict[str, bytes | None]


class _Names:
    """The arraysets of root trees, each arraysets tree parsed once."""

    def __init__(self, git: pygit2.Repository) -> None:
        self.git = git
        self.by_tree: dict[bytes, Arraysets] = {}

    def of(self, root_oid: bytes) -> Arraysets:
        root = parse_tree(read_raw(self.git, root_oid))
        entry = root.get("arraysets")
        if entry is None:
            return {}
        oid = entry[1]
        if oid not in self.by_tree:
            out: Arraysets = {}
            for name, (_, aset_oid) in parse_tree(read_raw(self.git, oid)).items():
                samples = parse_tree(read_raw(self.git, aset_oid)).get("samples")
                out[name] = samples[1] if samples is not None else None
            self.by_tree[oid] = out
        return self.by_tree[oid]


def _renamed(parent: Arraysets, child: Arraysets) -> tuple[str, str] | None:
    """``(old, new)`` when the child has one arrayset renamed from the parent's."""
    gone = parent.keys() - child.keys()
    new = child.keys() - parent.keys()
    if len(gone) != 1 or len(new) != 1:
        return None
    old, name = next(iter(gone)), next(iter(new))
    return (old, name) if parent[old] == child[name] else None


def arrayset_names(
    git: pygit2.Repository, commits: Sequence[pygit2.Commit], name: str
) -> dict[str, frozenset[str]]:
    """Commit hash -> the names of arrayset ``name``'s lineage in that commit.

    Parameters
    ----------
    git : pygit2.Repository
        The repository.
    commits : sequence of pygit2.Commit
        A history closed under parents (every parent of each is in it).
    name : str
        The arrayset, under the name it has anywhere in ``commits``.

    Returns
    -------
    dict of str to frozenset of str
        Only the commits holding the lineage under some name.
    """
    names = _Names(git)
    asets = {str(c.id): names.of(c.tree_id.raw) for c in commits}
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(node: tuple[str, str]) -> tuple[str, str]:
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while node != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def union(a: tuple[str, str], b: tuple[str, str]) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    for c in commits:
        sha = str(c.id)
        for p in c.parent_ids:
            psha = str(p)
            for n in asets[sha].keys() & asets[psha].keys():
                union((sha, n), (psha, n))
            pair = _renamed(asets[psha], asets[sha])
            if pair is not None:
                union((psha, pair[0]), (sha, pair[1]))
    roots = {find((sha, name)) for sha, a in asets.items() if name in a}
    out: dict[str, set[str]] = {}
    for sha, a in asets.items():
        for n in a:
            if find((sha, n)) in roots:
                out.setdefault(sha, set()).add(n)
    return {sha: frozenset(ns) for sha, ns in out.items()}


__all__ = ["arrayset_names"]
