"""The payloads a set of commits needs: each leaf of their records read once.

gc (what is live), push (what the data remote lacks) and fetch (what to
bring) ask the same question of many commits. :func:`new_leaves` walks their
records with one :class:`~.leaves.RecordWalker`, skipping every ``samples``
tree and leaf met before or known already, so the cost over a history grows
with what changed, not with its length; :func:`referenced_digests` turns the
leaves into payload digests, and :func:`leaf_ids` lists the leaves of
commits (what a remote has) without reading them. Unlike the walker, these
refuse damaged records: an answer read from them could be incomplete.
:func:`commits_between` and :func:`history` choose the commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

import pygit2

from ..errors import FormatVersionError, HangarError
from . import layout, validate
from .changelog import CHANGES_NAME
from .leaves import CommitRecords, Leaf, LeafPath, Problem, Records, RecordWalker


@dataclass(frozen=True)
class NewLeaf:
    """A leaf met for the first time by :func:`new_leaves`.

    Attributes
    ----------
    commit : str
        The first commit (in the order walked) holding it.
    arrayset : str
        The arrayset it belongs to there.
    oid : bytes
        Its raw tree id.
    records : dict of str to bytes
        Its ``{encoded key: digest}``.
    """

    commit: str
    arrayset: str
    oid: bytes
    records: Records


def new_leaves(
    walker: RecordWalker,
    commits: Iterable[str],
    arrayset_names: Collection[str] | None = None,
    *,
    skip: Iterable[bytes] = (),
    strict: bool = False,
) -> Iterator[NewLeaf]:
    """Every leaf of sample records of ``commits`` not met before, once.

    A ``samples`` tree met twice is walked once, a leaf met twice (or
    listed in ``skip``) is read once at most: the cost over a history
    grows with what changed, not with its length. Leaves come in the
    order of ``commits``, then arrayset names, then tree order.

    Parameters
    ----------
    walker : RecordWalker
        Reads the records (and keeps what it read, for another walk).
    commits : iterable of str
        Commit hashes.
    arrayset_names : collection of str, optional
        Only the leaves of these arraysets.
    skip : iterable of bytes, optional
        Ids of leaves (or of whole ``samples`` trees) not wanted, e.g.
        those of commits a remote has.
    strict : bool, optional
        Also refuse damage in records that name no payload wanted here:
        metadata, change logs, and the trees and schemas of the
        arraysets left out by ``arrayset_names`` (their leaves are not
        read).

    Yields
    ------
    NewLeaf

    Raises
    ------
    CorruptRecordError
        At the first problem of a record walked (see :meth:`.RecordWalker.check`).
    FormatVersionError
        If a commit is in a record format newer than this version reads.
    """
    for rec, name, path, lid in _new_leaf_ids(walker, commits, arrayset_names, skip, strict):
        yield NewLeaf(rec.commit, name, lid, _read_leaf(walker, rec, name, path, lid).records)


def _new_leaf_ids(
    walker: RecordWalker,
    commits: Iterable[str],
    arrayset_names: Collection[str] | None,
    skip: Iterable[bytes],
    strict: bool,
) -> Iterator[tuple[CommitRecords, str, LeafPath, bytes]]:
    """``(commit records, arrayset, leaf path, leaf id)`` of each leaf
    :func:`new_leaves` yields, the leaf not read."""
    trees_seen = set(skip)
    leaves_seen = set(trees_seen)
    for sha in commits:
        rec = walker.commit(sha)
        if rec.error is not None:
            raise _refusal(sha, rec.problems[0], rec.error)
        problems = list(rec.problems)
        if strict:
            if rec.changes:
                problems.extend((CHANGES_NAME, why) for why in walker.changes(sha))
            if rec.metadata is not None:
                problems.extend(walker.metadata(rec.metadata))
        walked = [a for a in rec.arraysets if arrayset_names is None or a.name in arrayset_names]
        problems.extend(p for a in (rec.arraysets if strict else walked) for p in a.problems)
        if problems:
            raise _refusal(sha, problems[0])
        for aset in walked:
            sid = aset.samples
            if sid is None or sid in trees_seen:
                continue
            trees_seen.add(sid)
            tree = walker.samples(sid)
            if tree.problems:
                at, why = tree.problems[0]
                where = f"arraysets/{aset.name}/samples/{at}".rstrip("/")
                raise _refusal(sha, (where, why))
            for path, lid in tree.leaves:
                if lid not in leaves_seen:
                    leaves_seen.add(lid)
                    yield rec, aset.name, path, lid


def _read_leaf(
    walker: RecordWalker, rec: CommitRecords, name: str, path: LeafPath, lid: bytes
) -> Leaf:
    """The records of leaf ``lid``; raises for its first problem."""
    leaf = walker.leaf(lid, path, trusted=rec.trusted)
    if leaf.problems:
        where = f"arraysets/{name}/samples/{'/'.join(path)}".rstrip("/")
        raise _refusal(rec.commit, (where, leaf.problems[0]))
    return leaf


def _leaf_digests(
    walker: RecordWalker, rec: CommitRecords, name: str, path: LeafPath, lid: bytes
) -> list[bytes]:
    """The digests of leaf ``lid``, in tree order, with the checks of
    :meth:`.RecordWalker.leaf` but no ``{key: digest}`` built (a third of
    the cost in a trusted tree); raises for its first problem."""
    try:
        raw = validate.read_tree(walker.git, lid, "samples tree")
        if rec.trusted:  # names checked when the tree was (see parsed_leaf)
            return layout.parse_link_digests(raw)
        return validate.leaf_digests(raw, tuple(len(p) for p in path), path)
    except Exception:  # the walker names the problem, or finds none
        return list(_read_leaf(walker, rec, name, path, lid).records.values())


def _refusal(sha: str, problem: Problem, error: HangarError | None = None) -> HangarError:
    """The error raised for a damaged record of commit ``sha``."""
    path, why = problem
    text = f"commit {sha} at {path or '/'}: {why.removeprefix('corrupt records: ')}"
    if isinstance(error, FormatVersionError):
        return FormatVersionError(f"records of {text}")
    return validate.corrupt(text)


def referenced_digests(
    git: pygit2.Repository,
    commits: Iterable[str],
    arrayset_names: Collection[str] | None = None,
    *,
    skip: Iterable[bytes] = (),
    strict: bool = False,
) -> dict[bytes, str]:
    """``{digest: arrayset}`` of every payload the sample records of ``commits`` name.

    Each leaf is read once however many commits share it (see
    :func:`new_leaves`); digests come in record order (commits,
    then arraysets by name, then keys in tree order), each with the first
    arrayset naming it.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the records.
    commits : iterable of str
        Commit hashes.
    arrayset_names : collection of str, optional
        Only the payloads of these arraysets.
    skip : iterable of bytes, optional
        Ids of leaves (or ``samples`` trees) whose payloads are not wanted:
        see :func:`leaf_ids`.
    strict : bool, optional
        Check every record walked, believing no earlier verdict of this
        machine, and refuse damage in records that name no payload wanted
        too (see :func:`new_leaves`): for gc, where an
        incomplete view could drop live data.

    Returns
    -------
    dict of bytes to str

    Raises
    ------
    CorruptRecordError
        If a record walked is damaged (the answer could be incomplete).
    FormatVersionError
        If a commit is in a record format newer than this version reads.
    """
    walker = RecordWalker(git, keep_leaves=False, use_trust=not strict)
    out: dict[bytes, str] = {}
    for rec, name, path, lid in _new_leaf_ids(walker, commits, arrayset_names, skip, strict):
        digests = _leaf_digests(walker, rec, name, path, lid)
        if out:  # each digest with the first arrayset naming it
            digests = [d for d in digests if d not in out]
        out.update(dict.fromkeys(digests, name))
    return out


def leaf_ids(git: pygit2.Repository, commits: Iterable[str]) -> set[bytes]:
    """Ids of every leaf of sample records of ``commits``, none of them read.

    For ``skip`` of :func:`referenced_digests`. Damaged records are passed
    over: the ids found are a lower bound, and skipping fewer leaves only
    costs time.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the records.
    commits : iterable of str
        Commit hashes.

    Returns
    -------
    set of bytes
    """
    walker = RecordWalker(git, keep_leaves=False)
    out: set[bytes] = set()
    for sha in commits:
        for aset in walker.commit(sha).arraysets:
            if aset.readable and aset.samples is not None:
                out.update(lid for _, lid in walker.samples(aset.samples).leaves)
    return out


def commits_between(
    git: pygit2.Repository, head: str | Sequence[str], hide: Iterable[str]
) -> list[str]:
    """Commits reachable from ``head`` (one commit or several) but not from any of ``hide``.

    Parameters
    ----------
    git : pygit2.Repository
        The repository.
    head : str or sequence of str
        The newest commit, or several (each commit is listed once).
    hide : iterable of str
        Commits whose history is left out (unknown ones are passed over).

    Returns
    -------
    list of str
        Newest first (topological order).
    """
    tips = [head] if isinstance(head, str) else list(head)
    walker = git.walk(pygit2.Oid(hex=tips[0]), pygit2.enums.SortMode.TOPOLOGICAL)
    for tip in tips[1:]:
        walker.push(pygit2.Oid(hex=tip))
    for h in hide:
        try:
            if git.get(h) is not None:
                walker.hide(pygit2.Oid(hex=h))
        except (ValueError, pygit2.GitError):
            continue
    return [str(c.id) for c in walker]


def history(git: pygit2.Repository, head: str) -> list[str]:
    """``head`` and every ancestor.

    Parameters
    ----------
    git : pygit2.Repository
        The repository.
    head : str
        The newest commit.

    Returns
    -------
    list of str
        Newest first.
    """
    return commits_between(git, head, ())


__all__ = [
    "NewLeaf",
    "commits_between",
    "history",
    "leaf_ids",
    "new_leaves",
    "referenced_digests",
]
