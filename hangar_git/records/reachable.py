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

import re
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pygit2

from ..errors import FormatVersionError, HangarError
from . import layout, validate
from .changelog import CHANGES_NAME
from .leaves import CommitRecords, Leaf, LeafPath, Problem, Records, RecordWalker
from .snapshot import SampleRecords

if TYPE_CHECKING:
    import numpy as np

#: bytes of a digest
DIGEST = 20
#: one sample record of a leaf tree (mode, key, digest), the key captured
_RECORD_RE = re.compile(rb"160000 (" + validate.KEY_RE.pattern + rb")\x00.{20}", re.S)


@dataclass(frozen=True)
class Referenced:
    """The payloads some commits reference, each once, in record order (see
    :func:`referenced`), as arrays.

    Attributes
    ----------
    joined : bytes
        The digests, 20 bytes each, joined.
    owner : numpy.ndarray
        Per digest, the number in :attr:`arraysets` of the first arrayset naming it.
    arraysets : list of str
        The arraysets, in the order first met.
    """

    joined: bytes
    owner: np.ndarray
    arraysets: list[str]

    def __len__(self) -> int:
        return len(self.joined) // DIGEST

    def digest_list(self) -> list[bytes]:
        """The digests, in order."""
        import numpy as np

        return np.frombuffer(self.joined, f"V{DIGEST}").tolist()  # type: ignore[no-any-return]

    def to_dict(self) -> dict[bytes, str]:
        """``{digest: arrayset}``, in order (what :func:`referenced_digests` gives)."""
        names = self.arraysets
        return dict(zip(self.digest_list(), [names[i] for i in self.owner.tolist()], strict=True))

    @classmethod
    def from_parts(cls, parts: list[bytes], owners: list[int], arraysets: list[str]) -> Referenced:
        """The digests of ``parts`` (joined digests, those of part ``i`` named
        by arrayset ``owners[i]``), each kept where it first comes."""
        import numpy as np

        joined = b"".join(parts)
        owner = np.repeat(np.array(owners, np.int32), [len(p) // DIGEST for p in parts]).astype(
            np.int32
        )
        keep = first_occurrences(joined)
        if len(keep) < len(owner):
            joined = np.frombuffer(joined, f"V{DIGEST}")[keep].tobytes()
            owner = owner[keep]
        return cls(joined, owner, arraysets)


def first_occurrences(joined: bytes) -> np.ndarray:
    """Positions, ascending, of the first occurrence of each distinct digest of ``joined``.

    Sorted by their first 8 bytes (stably); only the digests sharing those
    with another are compared whole.

    Parameters
    ----------
    joined : bytes
        Digests, 20 bytes each, joined.

    Returns
    -------
    numpy.ndarray
        int64 positions.
    """
    import numpy as np

    from ..store.index import key_order

    n = len(joined) // DIGEST
    key = np.frombuffer(joined, np.dtype([("key", ">u8"), ("tail", "V12")]), n)["key"]
    order, sk = key_order(key.astype(np.uint64))
    eq = sk[1:] == sk[:-1]
    if not eq.any():
        return np.arange(n, dtype=np.int64)
    shared = np.zeros(n, bool)
    shared[1:] |= eq
    shared[:-1] |= eq
    rows = order[shared]  # by key prefix, then position: a digest's first place first
    _, first = np.unique(np.frombuffer(joined, f"S{DIGEST}", n)[rows], return_index=True)
    keep = np.ones(n, bool)
    keep[rows] = False
    keep[rows[first]] = True
    return np.flatnonzero(keep)


def tree_digests(raws: Sequence[bytes], paths: Sequence[LeafPath], trusted: bool) -> bytes | None:
    """The digests of the leaf trees ``raws`` (at ``paths`` of one samples
    tree), joined in order, when every leaf is plainly well formed; else None
    (then reading leaf by leaf names the problem).

    Well formed: nothing but sample records (mode ``160000``, a canonical
    key as name, a 20-byte id), none across two leaves; unless ``trusted``,
    also the keys of each leaf in strictly increasing order and each in the
    leaf its hash puts it (the checks of :func:`.validate.leaf_digests`). One
    pass over all the leaves at once, not one per leaf.

    Parameters
    ----------
    raws : sequence of bytes
        The leaves' raw tree bytes.
    paths : sequence of tuple of str
        Their paths in the fan-out (hex digits per level).
    trusted : bool
        The tree is part of one checked whole on this machine.

    Returns
    -------
    bytes or None
    """
    import numpy as np

    from .leaf_records import key_crc32, parse_records

    if not raws or not all(raws):
        return None
    data = b"".join(raws)
    recs = parse_records(data)  # in array passes; None: the regular expression reads them
    keys: np.ndarray | None
    if recs is not None:
        n, ends, lens = len(recs.ends), recs.ends, recs.lens
        names: list[bytes] = []
        keys = recs.keys.view(f"S{recs.keys.shape[1]}").reshape(-1)
    else:
        names = _RECORD_RE.findall(data)
        n = len(names)
        if not n:
            return None
        # untrusted, the keys are compared as one fixed-width array: their lengths from it
        keys = None if trusted else np.array(names)  # a key holds no NUL: pads order as bytes
        lens = np.fromiter(map(len, names), np.int64, n) if keys is None else np.char.str_len(keys)
        ends = np.cumsum(lens.astype(np.int64) + 28)
        if int(ends[-1]) != len(data):  # bytes besides records
            return None
    leaf_ends = np.cumsum(np.fromiter(map(len, raws), np.int64, len(raws)))
    last = np.searchsorted(ends, leaf_ends)  # the last record of each leaf
    if int(last[-1]) >= n or (ends[last] != leaf_ends).any():  # a record across leaves
        return None
    # every 20-byte window of the data (a strided view, no copy); those ending each record
    windows = np.ndarray((len(data) - DIGEST + 1, DIGEST), np.uint8, data, strides=(1, 1))
    digests = windows[ends - DIGEST]
    if trusted:
        return digests.tobytes()
    starts = np.zeros(n, bool)
    starts[np.concatenate(([0], last[:-1] + 1))] = True
    assert keys is not None
    if not ((keys[:-1] < keys[1:]) | starts[1:]).all():  # out of order within a leaf
        return None
    if paths[0]:
        counts = np.diff(np.concatenate(([-1], last)))
        want = np.repeat(np.array([int("".join(p), 16) for p in paths], np.uint64), counts)
        bits = np.repeat(np.array([4 * len("".join(p)) for p in paths], np.uint64), counts)
        if recs is not None:
            h = key_crc32(recs.keys, lens)
        else:
            h = np.fromiter(map(zlib.crc32, names), np.uint64, n)
        if ((h >> (np.uint64(32) - bits)) != want).any():  # a key out of its leaf
            return None
    return digests.tobytes()


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
    for rec, name, _, leaves, _ in _new_trees(walker, commits, arrayset_names, skip, strict):
        for path, lid in leaves:
            yield rec, name, path, lid


def _new_trees(
    walker: RecordWalker,
    commits: Iterable[str],
    arrayset_names: Collection[str] | None,
    skip: Iterable[bytes],
    strict: bool,
) -> Iterator[tuple[CommitRecords, str, bytes, list[tuple[LeafPath, bytes]], bool]]:
    """``(commit records, arrayset, samples tree id, its new leaves, whole)``
    of each ``samples`` tree met for the first time with a leaf not met
    before; ``whole`` when none of its leaves was met before (nor skipped)."""
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
            new = [(path, lid) for path, lid in tree.leaves if lid not in leaves_seen]
            leaves_seen.update(lid for _, lid in new)
            if new:
                yield rec, aset.name, sid, new, len(new) == len(tree.leaves)


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
    arrayset naming it. :func:`referenced` gives the same as arrays.

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
    return referenced(git, commits, arrayset_names, skip=skip, strict=strict).to_dict()


def referenced(
    git: pygit2.Repository,
    commits: Iterable[str],
    arrayset_names: Collection[str] | None = None,
    *,
    skip: Iterable[bytes] = (),
    strict: bool = False,
) -> Referenced:
    """:func:`referenced_digests` as arrays: no Python object per digest.

    A ``samples`` tree met whole is taken from this machine's key table of
    it when there is a sound one (:meth:`.SampleRecords.has_cached_table`:
    written from checked records, as reads use it), unless ``strict``; the
    others are read leaf by leaf, all the leaves of a tree checked at once
    (:func:`.tree_digests`), with the checks of :func:`.validate.leaf_digests`
    (or of :func:`.layout.parse_link_digests` in a trusted tree).

    Parameters and errors are those of :func:`referenced_digests`.

    Returns
    -------
    Referenced
    """
    walker = RecordWalker(git, keep_leaves=False, use_trust=not strict)
    parts: list[bytes] = []
    owners: list[int] = []
    names: dict[str, int] = {}
    for rec, name, sid, leaves, whole in _new_trees(walker, commits, arrayset_names, skip, strict):
        joined = None
        if whole and not strict:
            joined = _cached_digests(git, sid, rec.trusted)
        if joined is None:
            joined = _leaves_digests(walker, rec, name, leaves)
        parts.append(joined)
        owners.append(names.setdefault(name, len(names)))
    return Referenced.from_parts(parts, owners, list(names))


def _cached_digests(git: pygit2.Repository, sid: bytes, trusted: bool) -> bytes | None:
    """The digests of samples tree ``sid`` from this machine's sound key
    table of it, in tree order; None when there is none (or the tree's
    levels do not read: its leaves are read then, and name the problem)."""
    try:
        samples = SampleRecords(git, sid, trusted=trusted)
        if samples.fanout and samples.has_cached_table():
            return samples.key_table().digests
    except HangarError:
        pass
    return None


def _leaves_digests(
    walker: RecordWalker, rec: CommitRecords, name: str, leaves: list[tuple[LeafPath, bytes]]
) -> bytes:
    """The digests of ``leaves`` (of arrayset ``name``), joined in tree order;
    raises for the first problem of one."""
    raws = [validate.read_tree(walker.git, lid, "samples tree") for _, lid in leaves]
    paths = [path for path, _ in leaves]
    joined = tree_digests(raws, paths, rec.trusted)
    if joined is not None:
        return joined
    # some leaf is not plainly well formed: leaf by leaf, which names the problem
    return b"".join(b"".join(_leaf_digests(walker, rec, name, path, lid)) for path, lid in leaves)


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
    "Referenced",
    "commits_between",
    "history",
    "leaf_ids",
    "new_leaves",
    "referenced",
    "referenced_digests",
    "tree_digests",
]
