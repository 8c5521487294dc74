"""Records pushed in-process to a git repository on this machine.

A git remote addressed as a path or ``file://`` URL is written directly,
with no ``git push`` process (which costs 0.1-0.2 s to start its chain of
processes before any object moves): the objects the remote lacks are found
by walking the new commits and their trees, stopping at every object the
remote has already (git's own rule: an object it has comes with all it
reaches), then written there as one pack, synced, in git's formats
(:func:`hangar_git.records.objpack.write_pack`). Only then do the remote's
refs move, each one compare-and-swap against the value it was read with,
as ``git push`` does it:

- a branch moves only forward: the remote's commit must be an ancestor of
  the new one (else refused, ``non-fast-forward``, or ``fetch first`` when
  that commit is not here at all);
- a tag that is there already is never moved (``already exists``);
- a ref the remote moved meanwhile is refused, not overwritten.

No hook runs on either side, as with ``git push --no-verify`` into a bare
repository. A refused ref changes nothing there but leaves the pack of its
objects (``git gc`` drops them), as an interrupted ``git push`` may. Each
push that sends objects adds one pack; past
:data:`~hangar_git.records.objpack.PACK_LIMIT` packs the small ones are
rolled together, as after a commit here
(:func:`~hangar_git.records.objpack.roll_up_packs`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pygit2
from pygit2.enums import RepositoryOpenFlag

from ..gitutil import TYPE_COMMIT, TYPE_TREE, common_dir, odb_read
from ..records.objpack import roll_up_packs, write_pack

TAGS = "refs/hangar/tags/"

#: one step through a raw tree: a run of gitlinks (never followed), then one
#: other entry (its mode, name and id captured), or nothing at the tree's end
_ENTRY = re.compile(rb"(?:160000 [^\0]*\0.{20})*+(?:(\d+) ([^\0]*)\0(.{20}))?", re.S)


def tree_children(data: bytes) -> list[tuple[bool, bytes, bytes]]:
    """``(is a tree, name, raw id)`` of the entries of raw tree ``data`` that
    are objects of this repository (gitlinks, which name payloads, are left out).

    Parameters
    ----------
    data : bytes
        A tree object's data.

    Returns
    -------
    list of (bool, bytes, bytes)

    Raises
    ------
    ValueError
        If ``data`` is not a well-formed tree.
    """
    out: list[tuple[bool, bytes, bytes]] = []
    pos, end, match = 0, len(data), _ENTRY.match
    while pos < end:
        m = match(data, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"malformed tree entry at byte {pos}")
        if m.group(1) is not None:
            out.append((m.group(1) == b"40000", m.group(2), m.group(3)))
        pos = m.end()
    return out


def _new_commits(
    git: pygit2.Repository, theirs: pygit2.Repository, tips: Sequence[pygit2.Oid]
) -> list[pygit2.Commit]:
    """The commits reachable from ``tips`` that ``theirs`` lacks, parents first.

    The order matters to :func:`missing_objects`: a commit's objects are sent
    except those its parents hold at the same paths, so the parents' must
    have been gathered already (a tree gathered earlier is skipped whole: it
    must be complete). Children first, a tree a later commit shares with an
    earlier one (a sample removed, then set back) would be gathered against
    the wrong parent and objects under it never sent.
    """
    has = theirs.odb.exists
    out: list[pygit2.Commit] = []
    seen: set[pygit2.Oid] = set()
    stack = list(tips)
    while stack:
        c = stack.pop()
        if c in seen or has(c):
            continue
        seen.add(c)
        obj = git[c]
        if not isinstance(obj, pygit2.Commit):
            raise ValueError(f"{c} is not a commit")
        out.append(obj)
        stack.extend(obj.parent_ids)
    return _parents_first(out)


def _parents_first(commits: list[pygit2.Commit]) -> list[pygit2.Commit]:
    """``commits`` ordered so that each comes after its parents among them."""
    by_id = {c.id: c for c in commits}
    order: list[pygit2.Commit] = []
    done: set[pygit2.Oid] = set()
    for c in commits:
        stack = [(c.id, False)]
        while stack:
            cid, parents_placed = stack.pop()
            if parents_placed:
                order.append(by_id[cid])
                continue
            if cid in done:
                continue
            done.add(cid)
            stack.append((cid, True))
            stack.extend((p, False) for p in by_id[cid].parent_ids if p in by_id and p not in done)
    return order


class _Sending:
    """The objects of a push, gathered once each."""

    def __init__(self, git: pygit2.Repository) -> None:
        self.git = git
        self.objects: list[tuple[int, bytes]] = []
        self.ids: list[bytes] = []
        self.sent: set[bytes] = set()
        #: the ids each tree sent names (its trees and blobs), as read once here
        self.named: dict[bytes, list[bytes]] = {}

    def add(self, oid: bytes, want: int | None = None) -> bytes:
        kind, data = odb_read(self.git, oid)
        if want is not None and kind != want:
            raise ValueError(f"{oid.hex()} is not a {'commit' if want == TYPE_COMMIT else 'tree'}")
        self.sent.add(oid)
        self.objects.append((kind, data))
        self.ids.append(oid)
        return data

    def tree(self, root: bytes, parents: list[bytes]) -> None:
        """Add tree ``root`` and what it reaches, except what the trees
        ``parents`` hold at the same paths (those travel with, or are at the
        remote with, their own commits)."""
        stack = [(root, parents)]
        while stack:
            tid, olds = stack.pop()
            if tid in self.sent or tid in olds:
                continue
            data = self.add(tid, TYPE_TREE)
            before: dict[bytes, list[tuple[bool, bytes]]] = {}
            for old in olds:
                for is_tree, name, cid in tree_children(odb_read(self.git, old)[1]):
                    before.setdefault(name, []).append((is_tree, cid))
            children = tree_children(data)
            self.named[tid] = [cid for _, _, cid in children]
            for is_tree, name, cid in children:
                prev = before.get(name, ())
                if cid in self.sent or any(cid == p for _, p in prev):
                    continue
                if is_tree:
                    stack.append((cid, [p for t, p in prev if t]))
                else:
                    self.add(cid)


def missing_objects(
    git: pygit2.Repository,
    theirs: pygit2.Repository,
    tips: Sequence[pygit2.Oid],
    named: dict[bytes, list[bytes]] | None = None,
) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """The objects reachable from ``tips`` here that ``theirs`` lacks.

    The commits ``theirs`` lacks are found by asking it (each commit it has
    comes with all it reaches); the trees and blobs of each such commit are
    those that differ from its parents' at the same paths (the parents'
    are at the remote, or sent with them), so a push reads only the trees
    its commits changed and asks the remote about nothing else.

    Parameters
    ----------
    git : pygit2.Repository
        This repository.
    theirs : pygit2.Repository
        The receiving one.
    tips : sequence of pygit2.Oid
        Commits to send.
    named : dict, optional
        Filled with what each tree sent names (its trees' and blobs' ids),
        for :func:`check_connected`.

    Returns
    -------
    tuple of (list of (int, bytes), list of bytes)
        ``(type, data)`` of each object and its raw id, in the same order.

    Raises
    ------
    KeyError, pygit2.GitError
        If an object to send is missing here.
    ValueError
        If a commit or tree to send is malformed.
    """
    out = _Sending(git)
    if named is not None:
        out.named = named
    for commit in _new_commits(git, theirs, tips):
        out.add(commit.id.raw, TYPE_COMMIT)
        parents = [git[p] for p in commit.parent_ids]
        out.tree(commit.tree_id.raw, [p.tree_id.raw for p in parents])  # type: ignore[attr-defined]
    return out.objects, out.ids


def open_local(path: str) -> pygit2.Repository:
    """The git repository at ``path`` (no search in its parents).

    Raises
    ------
    pygit2.GitError
        If ``path`` is not a git repository.
    """
    return pygit2.Repository(path, RepositoryOpenFlag.NO_SEARCH)


def _refusal(git: pygit2.Repository, dst: str, old: pygit2.Oid, new: pygit2.Oid) -> str | None:
    """Why moving ``dst`` from ``old`` to ``new`` is refused (None: it is not)."""
    if dst.startswith(TAGS):
        return "already exists"
    if git.get(old) is None:
        return "fetch first"
    if not git.descendant_of(new, old):
        return "non-fast-forward"
    return None


def check_connected(
    theirs: pygit2.Repository,
    objects: Sequence[tuple[int, bytes]],
    ids: Sequence[bytes] = (),
    named_by: Mapping[bytes, list[bytes]] | None = None,
) -> None:
    """Check that what the ``objects`` just sent name is in ``theirs``, as git's
    receive-pack does before it moves a ref: each commit's tree and parents,
    each tree's trees and blobs (gitlinks name payloads, not git objects).

    ``ids``: the objects' ids; those are in ``theirs`` (in the pack just
    written there) and not asked for again. ``named_by``: what some of
    these trees name, by id, as read already (not parsed again).

    Raises
    ------
    ValueError
        If an object is missing there (the refs are then left as they are).
    """
    has = theirs.odb.exists
    sent = set(ids)
    known = {} if named_by is None else named_by
    for k, (kind, data) in enumerate(objects):
        if kind == TYPE_COMMIT:
            head = data.split(b"\n\n", 1)[0].split(b"\n")
            named = [bytes.fromhex(h[5:].decode()) for h in head if h.startswith(b"tree ")]
            named += [bytes.fromhex(h[7:].decode()) for h in head if h.startswith(b"parent ")]
        elif kind == TYPE_TREE:
            got = known.get(ids[k]) if k < len(ids) else None
            named = [cid for _, _, cid in tree_children(data)] if got is None else got
        else:
            continue
        for oid in named:
            if oid not in sent and not has(pygit2.Oid(raw=oid)):
                raise ValueError(
                    f"push refused: the remote would lack object {oid.hex()} "
                    "(nothing was moved there)"
                )


def push_refs(git: pygit2.Repository, path: str, specs: Sequence[str]) -> dict[str, str]:
    """Push ``src:dst`` refspecs of ``git`` to the git repository at ``path``.

    Parameters
    ----------
    git : pygit2.Repository
        This repository.
    path : str
        The receiving repository's directory (bare, or a work tree's).
    specs : sequence of str
        ``"src:dst"`` (full ref names, no ``+``: never forced).

    Returns
    -------
    dict of str to str
        ``{remote ref: why}`` of the refs refused; the others moved.

    Raises
    ------
    pygit2.GitError, OSError
        If ``path`` is not a repository or cannot be written.
    KeyError, ValueError
        If a local ref or object to send is missing or malformed.
    """
    theirs = open_local(path)
    rejected: dict[str, str] = {}
    moves: list[tuple[str, pygit2.Reference | None, pygit2.Oid]] = []
    for spec in specs:
        src, _, dst = spec.partition(":")
        new = git.references[src].resolve().target
        assert isinstance(new, pygit2.Oid)
        ref = theirs.references.get(dst)
        if ref is not None:
            old = ref.target
            if old == new:
                continue
            why = _refusal(git, dst, old, new) if isinstance(old, pygit2.Oid) else "symbolic"
            if why is not None:
                rejected[dst] = why
                continue
        moves.append((dst, ref, new))
    if not moves:
        return rejected
    named: dict[bytes, list[bytes]] = {}
    objects, ids = missing_objects(git, theirs, [new for _, _, new in moves], named)
    if objects:
        write_pack(common_dir(theirs) / "objects" / "pack", objects, ids)
    check_connected(theirs, objects, ids, named)
    for dst, ref, new in moves:
        try:
            if ref is None:
                theirs.create_reference_direct(dst, new, False, message="push")
            else:  # compare-and-swap against the value read above
                ref.set_target(new, "push")
        except (ValueError, pygit2.GitError) as exc:  # created or moved meanwhile
            rejected[dst] = f"the remote moved meanwhile ({exc})"
    if objects:
        roll_up_packs(theirs)  # a pack a push: small ones rolled together past a limit
    return rejected


__all__ = ["check_connected", "missing_objects", "open_local", "push_refs", "tree_children"]
