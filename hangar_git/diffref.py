"""Diff results in the reference's shape (what ``co.diff`` returns).

``co.diff.branch()`` and ``co.diff.commit()`` return ``(changes, conflicts)``
as Hangar 0.2 does::

    changes = {
        'metadata':  {'master': D, 'dev': D},
        'arraysets': {'master': D, 'dev': D},
        'samples':   {'master': {aset: D, ...}, 'dev': {aset: D, ...}},
    }
    D = {'additions': {...}, 'removals': {...}, 'mutations': {...}, 'unchanged': {...}}

``'master'`` holds the changes from the merge base to this side, ``'dev'``
from the merge base to the other side. Each ``D`` maps record keys to
values: arrayset names to their :class:`~hangar_git.schema.ArraysetSchema`,
:class:`MetadataRecordKey` to the metadata value, and
:class:`RawDataRecordKey` to the sample's payload digest (hex). Additions
and mutations hold a side's value, removals and unchanged records the merge
base's. ``co.diff.staged()`` returns the same with the ``'master'`` side
only (the base commit to the staging area).

Conflicts are ``{'aset': CR, 'meta': CR, 'sample': {aset: CR, ...},
'conflict_found': bool}`` with ``CR`` a
:class:`~hangar_git.diff.ConflictRecords` of arrayset names,
:class:`MetadataRecordKey` and :class:`RawDataRecordKey`, and an entry in
``'sample'`` for every arrayset on any side.

``unchanged`` is a :class:`LazyRecords`: computed (a walk of the merge
base's records) only when first read, so a diff costs what the change
costs. The changes dict keeps the plainer view of :mod:`hangar_git.diff` in
its ``records`` attribute (a :class:`~hangar_git.diff.BranchDiff`, or the
:class:`~hangar_git.diff.DiffRecords` of the staging area).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .diff import (
    BranchDiff,
    Changes,
    ConflictRecords,
    DiffRecords,
    SideLogs,
    diff_commits_logged,
    logged_triples,
)
from .naming import Key, decode_key, encode_key
from .records.snapshot import TreeRecords, commit_tree
from .records.view import CommitView
from .records.walk import AsetState

if TYPE_CHECKING:
    import pygit2

    from .records.walk import Triple


class MetadataRecordKey(NamedTuple):
    """Key of a metadata record in diffs and conflicts."""

    meta_name: Key


class RawDataRecordKey(NamedTuple):
    """Key of a sample record in diffs and conflicts: arrayset and sample name."""

    aset_name: str
    data_name: Key


class LazyRecords(Mapping[Any, Any]):
    """A read-only mapping computed on first access (the ``unchanged`` records).

    Reading it (``len``, ``in``, iteration, ``[]``, ``==``, ``repr``) computes
    it once; until then it costs nothing. :attr:`computed` tells whether it
    was.

    Parameters
    ----------
    compute : callable
        Called with no argument, once, on first read; returns the records
        as a dict.
    records : dict, optional
        The records, already computed (then ``compute`` is never called).
    """

    def __init__(
        self, compute: Callable[[], dict[Any, Any]], *, records: dict[Any, Any] | None = None
    ) -> None:
        self._compute: Callable[[], dict[Any, Any]] | None = compute if records is None else None
        self._data: dict[Any, Any] | None = records

    @property
    def computed(self) -> bool:
        """True once the records were computed."""
        return self._data is not None

    def _records(self) -> dict[Any, Any]:
        data = self._data
        if data is None:
            assert self._compute is not None
            data = self._data = self._compute()
            self._compute = None
        return data

    def __getitem__(self, key: Any) -> Any:
        """The value recorded under ``key`` (KeyError when absent)."""
        return self._records()[key]

    def __iter__(self) -> Iterator[Any]:
        """The record keys."""
        return iter(self._records())

    def __len__(self) -> int:
        """The number of records."""
        return len(self._records())

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is among the records."""
        return key in self._records()

    def __repr__(self) -> str:
        return f"LazyRecords({self._records()!r})"

    def copy(self) -> dict[Any, Any]:
        """The records as a plain (writable) dict, as ``dict.copy`` gives one.

        Returns
        -------
        dict
            A new dict of the records.
        """
        return dict(self._records())

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (and deep-copied) as the records themselves, computed now:
        a diff result can be saved or sent to another process, as Hangar
        0.2's plain dicts could."""
        return (LazyRecords.from_records, (self._records(),))

    @classmethod
    def from_records(cls, data: dict[Any, Any]) -> LazyRecords:
        """Records already computed (what unpickling makes).

        Parameters
        ----------
        data : dict
            The records.

        Returns
        -------
        LazyRecords
            Holding ``data``; :attr:`computed` is True.
        """
        return cls(dict, records=data)


class DiffChanges(dict[str, Any]):
    """The changes of a diff in the reference's shape (a dict; see the module).

    Parameters
    ----------
    shape : dict
        The changes: ``{'metadata': ..., 'arraysets': ..., 'samples': ...}``,
        each keyed by side.
    records : BranchDiff or DiffRecords
        The same diff as plain key tuples (kept as :attr:`records`).

    Attributes
    ----------
    records : BranchDiff or DiffRecords
        The same diff as plain key tuples: a
        :class:`~hangar_git.diff.BranchDiff` for ``diff.branch()`` and
        ``diff.commit()`` (``master``, ``dev``, ``incoming``, ``base`` are
        also attributes of this dict), the
        :class:`~hangar_git.diff.DiffRecords` for ``diff.staged()``.
    """

    records: Any

    def __init__(self, shape: dict[str, Any], records: BranchDiff | DiffRecords) -> None:
        super().__init__(shape)
        self.records = records

    def _branch(self) -> BranchDiff:
        if not isinstance(self.records, BranchDiff):
            raise AttributeError("a staged diff has one side only: see .records")
        return self.records

    @property
    def master(self) -> DiffRecords:
        """This side's changes since the merge base (``records.master``)."""
        return self._branch().master

    @property
    def dev(self) -> DiffRecords:
        """The other side's changes since the merge base (``records.dev``)."""
        return self._branch().dev

    @property
    def incoming(self) -> DiffRecords:
        """What a merge would bring here (``records.incoming``)."""
        return self._branch().incoming

    @property
    def base(self) -> str | None:
        """The merge base commit (``records.base``)."""
        return self._branch().base

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DiffChanges) and self.records != other.records:
            return False
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


class StagedDiff(tuple[DiffChanges, dict[str, Any]]):
    """``(changes, conflicts)`` of ``diff.staged()``; ``aset``, ``meta``,
    ``samples`` and ``empty`` are those of its :class:`~hangar_git.diff.DiffRecords`
    (:attr:`records`), the plainer view."""

    def __new__(cls, changes: DiffChanges, conflicts: dict[str, Any]) -> StagedDiff:
        return super().__new__(cls, (changes, conflicts))

    def __getnewargs__(self) -> tuple[Any, ...]:  # type: ignore[override]
        """``(changes, conflicts)``: what copy and pickle pass to :meth:`__new__`."""
        return (self[0], self[1])

    @property
    def records(self) -> DiffRecords:
        """The staged changes as plain key tuples."""
        return self[0].records  # type: ignore[no-any-return]

    @property
    def aset(self) -> Changes:
        """Arraysets added, removed and mutated (schema changed) by the staged changes."""
        return self.records.aset

    @property
    def meta(self) -> Changes:
        """Metadata keys added, removed and mutated by the staged changes."""
        return self.records.meta

    @property
    def samples(self) -> dict[str, Changes]:
        """Per arrayset, the sample keys added, removed and mutated."""
        return self.records.samples

    @property
    def empty(self) -> bool:
        """True when the staged changes add up to no change."""
        return self.records.empty


# ---- building --------------------------------------------------------------------
def _side_d(
    base: CommitView, side: CommitView, ch: Changes, value: Callable[[CommitView, Any], Any]
) -> dict[str, Any]:
    """``D`` of one namespace: values of the changed keys (``ch``) looked up."""
    return {
        "additions": {k: value(side, k) for k in ch.additions},
        "removals": {k: value(base, k) for k in ch.removals},
        "mutations": {k: value(side, k) for k in ch.mutations},
    }


def _meta_value(view: CommitView, k: MetadataRecordKey) -> str | None:
    return view.meta_get(encode_key(k.meta_name, "metadata"))


def _sample_value(view: CommitView, k: RawDataRecordKey) -> str | None:
    d = view.get(k.aset_name, encode_key(k.data_name))
    return d.hex() if d is not None else None


def _meta_d(base: CommitView, side: CommitView, ch: Changes) -> dict[str, Any]:
    keyed = Changes(*(tuple(map(MetadataRecordKey, keys)) for keys in ch[:3]))
    d = _side_d(base, side, keyed, _meta_value)
    changed = {*ch.removals, *ch.mutations}

    def unchanged() -> dict[Any, Any]:
        return {
            MetadataRecordKey(k): base.meta_get(enc)
            for enc in base.meta_keys()
            if (k := decode_key(enc)) not in changed
        }

    d["unchanged"] = LazyRecords(unchanged)
    return d


def _aset_d(base: CommitView, side: CommitView, ch: Changes) -> dict[str, Any]:
    """``D`` of the arrayset schemas: a mutation is a changed schema (the
    samples are the ``'samples'`` part's). Only the schemas the diff found
    changed (``ch.mutations``: another schema record) are read and compared;
    an arrayset whose samples alone changed costs no schema read."""
    b, s = set(base.aset_names()), set(side.aset_names())
    mutated = {n for n in ch.mutations if n in b and n in s and base.schema(n) != side.schema(n)}
    return {
        "additions": {n: side.schema(n) for n in sorted(s - b)},
        "removals": {n: base.schema(n) for n in sorted(b - s)},
        "mutations": {n: side.schema(n) for n in sorted(mutated)},
        "unchanged": LazyRecords(lambda: {n: base.schema(n) for n in sorted(b & s - mutated)}),
    }


def _known_value(
    triples: Mapping[str, Triple], i: int, base: CommitView
) -> Callable[[CommitView, RawDataRecordKey], str | None]:
    """:func:`_sample_value` from the digests the diff had (``triples``; ``i``:
    1 for the master side, 2 for dev), a look-up in the view for any other key."""

    def value(view: CommitView, k: RawDataRecordKey) -> str | None:
        n = k.data_name
        # encode_key, inline for the int keys most records hold (a key it
        # refuses is in no record: looked up and refused by _sample_value)
        enc = f"i:{n}" if type(n) is int else "s:" + n if type(n) is str else None
        t = triples.get(enc) if enc is not None else None
        if t is None:
            return _sample_value(view, k)
        d = t[0] if view is base else t[i]
        return d.hex() if d is not None else None

    return value


def _samples_d(
    base: CommitView,
    side: CommitView,
    name: str,
    ch: Changes | None,
    value: Callable[[CommitView, RawDataRecordKey], str | None] = _sample_value,
) -> dict[str, Any]:
    ch = ch if ch is not None else Changes((), (), ())
    keyed = Changes(*(tuple(RawDataRecordKey(name, k) for k in keys) for keys in ch[:3]))
    d = _side_d(base, side, keyed, value)
    changed = {*ch.removals, *ch.mutations}

    # decided now: ``side`` may be a live staging area that changes before
    # ``unchanged`` is read; the records stay those of the diff's moment
    on_both = base.has_aset(name) and side.has_aset(name)

    def unchanged() -> dict[Any, Any]:
        if not on_both:
            return {}
        out = {}
        for enc, digest in base.iter_items(name):
            k = decode_key(enc)
            if k not in changed:
                out[RawDataRecordKey(name, k)] = digest.hex()
        return out

    d["unchanged"] = LazyRecords(unchanged)
    return d


def _side(
    base: CommitView,
    side: CommitView,
    recs: DiffRecords,
    known: Mapping[str, Mapping[str, Triple]] | None = None,
    i: int = 1,
) -> tuple[Any, Any, Any]:
    """``(metadata D, arraysets D, {aset: samples D})`` of one side (``i``: 1
    master, 2 dev; ``known``: the digests the diff had, by arrayset)."""
    names = sorted({*base.aset_names(), *side.aset_names()})
    samples = {}
    for n in names:
        triples = known.get(n) if known is not None else None
        value = _known_value(triples, i, base) if triples is not None else _sample_value
        samples[n] = _samples_d(base, side, n, recs.samples.get(n), value)
    return _meta_d(base, side, recs.meta), _aset_d(base, side, recs.aset), samples


def reference_conflicts(conflicts: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The conflicts of :func:`hangar_git.diff.diff3` in the reference's shape.

    Parameters
    ----------
    conflicts : Mapping
        ``{'aset', 'meta', 'sample', 'conflict_found'}`` as ``diff3`` returns
        them, with plain keys.
    names : iterable of str
        Every arrayset on any side: each gets an entry in ``'sample'``, empty
        when it has no conflict.

    Returns
    -------
    dict
        The same conflicts with metadata keys as :class:`MetadataRecordKey`
        and sample keys as :class:`RawDataRecordKey`.
    """
    plain = conflicts["sample"]
    none = ConflictRecords((), (), (), (), False)
    samples = {}
    for name in sorted(set(names) | set(plain)):
        samples[name] = _keyed(plain.get(name, none), functools.partial(RawDataRecordKey, name))
    return {
        "aset": conflicts["aset"],
        "meta": _keyed(conflicts["meta"], MetadataRecordKey),
        "sample": samples,
        "conflict_found": conflicts["conflict_found"],
    }


def _keyed(rec: ConflictRecords, key: Callable[[Any], Any]) -> ConflictRecords:
    """``rec`` with each plain key turned into a record key."""
    return ConflictRecords(
        tuple(map(key, rec.t1)),
        tuple(map(key, rec.t21)),
        tuple(map(key, rec.t22)),
        tuple(map(key, rec.t3)),
        rec.conflict,
    )


def branch_result(
    views: tuple[CommitView, CommitView, CommitView],
    diff: BranchDiff,
    conflicts: Mapping[str, Any],
    known: Mapping[str, Mapping[str, Triple]] | None = None,
) -> tuple[DiffChanges, dict[str, Any]]:
    """``(changes, conflicts)`` of ``diff.branch()`` / ``diff.commit()``.

    Parameters
    ----------
    views : tuple
        Views of the merge base, this side (master) and the other side (dev).
    diff, conflicts : BranchDiff, dict
        The diff as :func:`hangar_git.diff.diff_commits` returns it.
    known : Mapping, optional
        The sample digests the diff already had, by arrayset (from
        :func:`hangar_git.diff.logged_triples`): the values
        of those arraysets' changes are taken from there, not read from the
        views' record trees.

    Returns
    -------
    tuple of (DiffChanges, dict)
        The changes of both sides (``'master'`` and ``'dev'``) with the
        values of the changed records looked up, and the conflicts as
        :func:`reference_conflicts` shapes them.
    """
    base, master, dev = views
    m_meta, m_aset, m_samples = _side(base, master, diff.master, known, 1)
    d_meta, d_aset, d_samples = _side(base, dev, diff.dev, known, 2)
    shape = {
        "metadata": {"master": m_meta, "dev": d_meta},
        "arraysets": {"master": m_aset, "dev": d_aset},
        "samples": {"master": m_samples, "dev": d_samples},
    }
    names = {*base.aset_names(), *master.aset_names(), *dev.aset_names()}
    return DiffChanges(shape, diff), reference_conflicts(conflicts, names)


def _known(
    views: tuple[CommitView, CommitView, CommitView], logs: SideLogs | None
) -> dict[str, dict[str, Triple]]:
    """The sample digests a diff took from the change logs, by arrayset (read
    from the views' trees, which the result reads anyway)."""
    if logs is None:
        return {}
    out = {}
    for name in sorted({n for v in views for n in v.aset_names()}):
        entries = tuple(v.base.aset_oid(name) for v in views)
        if entries[0] == entries[1] == entries[2]:
            continue  # unchanged: no values to find
        states = tuple(
            AsetState(e, None, v.base.samples_oid(name) if e is not None else None)
            for e, v in zip(entries, views, strict=True)
        )
        triples = logged_triples(logs, name, states)  # type: ignore[arg-type]
        if triples is not None:
            out[name] = triples
    return out


def commit_diff(
    git: pygit2.Repository, head: str | None, dev: str, master_tree: bytes | None = None
) -> tuple[DiffChanges, dict[str, Any]]:
    """``(changes, conflicts)`` of commit ``head`` (master) against commit
    ``dev``, in the reference's shape, read from the record trees alone (no
    checkout, no payload store).

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding both commits.
    head : str or None
        The master side's commit (None before the first commit).
    dev : str
        The dev side's commit (a full hash).
    master_tree : bytes, optional
        Root tree standing for the master side instead of ``head``'s (a
        write checkout's staged changes).

    Returns
    -------
    tuple
        As :func:`branch_result`; the values of changes the change logs
        gave come from them, the others are read from the trees.
    """
    diff, conflicts, logs = diff_commits_logged(git, head, dev, master_tree)
    trees = (
        commit_tree(git, diff.base),
        master_tree if master_tree is not None else commit_tree(git, head),
        commit_tree(git, dev),
    )
    base, master, other = (CommitView(TreeRecords(git, t)) for t in trees)
    views = (base, master, other)
    return branch_result(views, diff, conflicts, _known(views, logs))


def staged_result(base: CommitView, staged: CommitView, diff: DiffRecords) -> StagedDiff:
    """``(changes, conflicts)`` of ``diff.staged()``.

    Parameters
    ----------
    base : CommitView
        The staging area's base commit.
    staged : CommitView
        The staging area (base commit plus staged changes).
    diff : DiffRecords
        The staged changes as :func:`hangar_git.diff.staged_diff` finds them.

    Returns
    -------
    StagedDiff
        The ``'master'`` side only (base commit to staging area) and empty
        conflicts, with an entry in ``'sample'`` for every arrayset.
    """
    meta, aset, samples = _side(base, staged, diff)
    shape = {
        "metadata": {"master": meta},
        "arraysets": {"master": aset},
        "samples": {"master": samples},
    }
    none = ConflictRecords((), (), (), (), False)
    names = {*base.aset_names(), *staged.aset_names()}
    conflicts = {
        "aset": none,
        "meta": none,
        "sample": dict.fromkeys(sorted(names), none),
        "conflict_found": False,
    }
    return StagedDiff(DiffChanges(shape, diff), conflicts)


__all__ = [
    "DiffChanges",
    "LazyRecords",
    "MetadataRecordKey",
    "RawDataRecordKey",
    "StagedDiff",
    "branch_result",
    "commit_diff",
    "reference_conflicts",
    "staged_result",
]
