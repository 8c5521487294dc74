"""Diffs of records: what changed between commits or in the staging area.

Results are plain named tuples: for arrayset schemas, for metadata keys, and
per arrayset for sample keys, the keys added, removed and mutated
(:class:`Changes`, :class:`DiffRecords`); a diff against a branch or commit
adds each side's changes from the merge base, what a merge would bring, and
the conflicts (:class:`BranchDiff`, :class:`ConflictRecords`).

Diffs are functions of (git object database, tree or commit ids): they walk
the merge base and both sides together (:mod:`hangar_git.records.walk`),
or compose the sides' change logs, and cost in proportion to the change.
A side changed a key when its value differs from the base. A conflict is a
key changed on both sides to different values, in the reference's four
kinds:

``t1``
    added in both with different values;
``t21``
    removed in master, mutated in dev;
``t22``
    removed in dev, mutated in master;
``t3``
    mutated in both to different values.

Arrayset schemas follow the same rules, a side's arrayset counting as changed
when its schema or its samples changed; where both sides keep the arrayset,
they conflict only when their schemas differ, unless one side alone changed
the schema to one that holds every sample the base's holds (a raised maximum
shape, fixed made variable-shape): the merge keeps that schema and the other
side's samples, which fit it (:func:`merged_schema`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pygit2

from .naming import Key, decode_key
from .records import changelog
from .records.snapshot import commit_tree
from .records.validate import ensure_trusted
from .records.walk import AsetState, Oid, Roots, Trees, Triple, sample_triples

if TYPE_CHECKING:
    from .records.view import StagedView


class Changes(NamedTuple):
    """Keys added, removed and mutated (values changed) between two states."""

    additions: tuple
    removals: tuple
    mutations: tuple

    @property
    def empty(self) -> bool:
        """True when no key was added, removed or mutated."""
        return not (self.additions or self.removals or self.mutations)


class DiffRecords(NamedTuple):
    """A whole diff: arrayset schemas, metadata, and samples per arrayset."""

    aset: Changes
    meta: Changes
    samples: dict[str, Changes]

    @property
    def empty(self) -> bool:
        """True when no arrayset, metadata key or sample changed."""
        return self.aset.empty and self.meta.empty and all(c.empty for c in self.samples.values())


class ConflictRecords(NamedTuple):
    """Conflicting keys of one namespace, grouped by how the sides disagree.

    Attributes
    ----------
    t1 : tuple
        Keys the merge base lacks that both sides created, each with its own value.
    t21 : tuple
        Keys this side (master) deleted while the other side (dev) changed them.
    t22 : tuple
        Keys dev deleted while master changed them.
    t3 : tuple
        Keys both sides changed, to values that differ.
    conflict : bool
        Whether any of the four groups is non-empty.

    A key is an arrayset name, a metadata key or a sample key (str or int).
    """

    t1: tuple
    t21: tuple
    t22: tuple
    t3: tuple
    conflict: bool


class BranchDiff(NamedTuple):
    """The changes part of ``co.diff.branch()`` / ``co.diff.commit()``.

    Attributes
    ----------
    master : DiffRecords
        Changes on this checkout's side (its commit, plus staged changes on a
        write checkout) since the merge base.
    dev : DiffRecords
        Changes on the other side since the merge base.
    incoming : DiffRecords
        What merging the other side would change here: its changes that this
        side does not already hold, leaving out conflicting records (and the
        samples of arraysets in conflict).
    base : str or None
        The merge base commit (None when the histories share no commit).
    """

    master: DiffRecords
    dev: DiffRecords
    incoming: DiffRecords
    base: str | None


def changes_of(add: list, rem: list, mut: list) -> Changes:
    return Changes(sorted_keys(add), sorted_keys(rem), sorted_keys(mut))


def key_order(k: Key) -> tuple[int, str]:
    return (0, f"{k:020d}") if isinstance(k, int) else (1, str(k))


#: int keys below this sort by value as by :func:`key_order` (20 digits padded)
_PLAIN_INT_BOUND = 10**20


def sorted_keys(keys: list) -> tuple:
    """``keys`` sorted by :func:`key_order` (ints first, then strs), without
    calling it per key where ints sort by value and strs by themselves."""
    ints = [k for k in keys if isinstance(k, int)]
    if len(ints) == len(keys):
        others: list = []
    else:
        others = [k for k in keys if not isinstance(k, int)]
        if not all(type(k) is str for k in others):
            return tuple(sorted(keys, key=key_order))
        others.sort()
    if ints and max(ints) >= _PLAIN_INT_BOUND:
        ints.sort(key=key_order)
    else:
        ints.sort()
    return tuple(ints + others) if others else tuple(ints)


def staged_diff(view: StagedView) -> DiffRecords:
    """Changes of the staging area relative to its base commit."""
    base = view.base
    journal = view.journal
    a_add, a_rem, a_mut = [], [], []
    samples: dict[str, Changes] = {}
    for name, st in journal.asets.items():
        in_base = name in base.aset_entries
        base_s = base.samples(name) if in_base else None
        s_add, s_rem, s_mut = [], [], []
        if st.removed and not st.created:
            if in_base:
                a_rem.append(name)
                s_rem = [decode_key(e) for e in base_s.keys()]  # type: ignore[union-attr]  # noqa: SIM118
        elif st.created:
            new = {e: d for e, d in st.samples.items() if d is not None}
            if not in_base:
                a_add.append(name)
                s_add = [decode_key(e) for e in new]
            else:
                if base.schema_text(name) != st.schema:
                    a_mut.append(name)
                old = dict(base_s.items())  # type: ignore[union-attr]
                s_add = [decode_key(e) for e in new if e not in old]
                s_rem = [decode_key(e) for e in old if e not in new]
                s_mut = [decode_key(e) for e in new if e in old and old[e] != new[e]]
        elif in_base:
            for enc, d in st.samples.items():
                d0 = base_s.get(enc)  # type: ignore[union-attr]
                if d is None and d0 is not None:
                    s_rem.append(decode_key(enc))
                elif d is not None and d0 is None:
                    s_add.append(decode_key(enc))
                elif d is not None and d != d0:
                    s_mut.append(decode_key(enc))
        ch = changes_of(s_add, s_rem, s_mut)
        if not ch.empty:
            samples[name] = ch
    m_add, m_rem, m_mut = [], [], []
    for enc, v in journal.meta.items():
        v0 = base.meta_value(enc)
        if v is None and v0 is not None:
            m_rem.append(decode_key(enc))
        elif v is not None and v0 is None:
            m_add.append(decode_key(enc))
        elif v is not None and v != v0:
            m_mut.append(decode_key(enc))
    return DiffRecords(changes_of(a_add, a_rem, a_mut), changes_of(m_add, m_rem, m_mut), samples)


KINDS = ("t1", "t21", "t22", "t3")


def conflict_kind(base: object, master: object, dev: object) -> str | None:
    """Kind of conflict of one record, or None when the two sides agree.

    Parameters
    ----------
    base, master, dev : object
        The record's value at the merge base and on each side; ``None``
        where the record does not exist.

    Returns
    -------
    str or None
        ``'t1'``, ``'t21'``, ``'t22'``, ``'t3'``, or None when at most one
        side changed the record or both changed it to the same value.
    """
    if base in (master, dev) or master == dev:
        return None
    if base is None:
        return "t1"
    if master is None:
        return "t21"
    if dev is None:
        return "t22"
    return "t3"


def _change_kind(old: object, new: object) -> int:
    """0 unchanged, 1 added, 2 removed, 3 mutated."""
    if old == new:
        return 0
    if old is None:
        return 1
    if new is None:
        return 2
    return 3


class _ChangeLists:
    """Accumulates additions, removals and mutations of one namespace."""

    __slots__ = ("lists",)

    def __init__(self) -> None:
        self.lists: tuple[list, list, list] = ([], [], [])

    def add(self, key: object, old: object, new: object) -> None:
        kind = _change_kind(old, new)
        if kind:
            self.lists[kind - 1].append(key)

    def result(self) -> Changes:
        return changes_of(*self.lists)


def conflict_records(conf: Mapping[str, list]) -> ConflictRecords:
    t = [tuple(sorted(conf.get(k, ()), key=key_order)) for k in KINDS]
    return ConflictRecords(t[0], t[1], t[2], t[3], any(t))


def aset_conflict(trees: Trees, a: AsetState, m: AsetState, d: AsetState) -> str | None:
    """Conflict of an arrayset as a whole: existence and schema.

    Where both sides changed an arrayset both keep, they conflict (t3) when
    their schemas differ, unless :func:`merged_schema` finds one to keep.
    """
    if m.entry == a.entry or d.entry == a.entry or m.entry == d.entry:
        return None
    if a.entry is None:
        return "t1" if m.schema != d.schema else None
    if m.entry is None:
        return "t21"
    if d.entry is None:
        return "t22"
    return "t3" if merged_schema(trees, a, m, d) is None else None


def merged_schema(trees: Trees, a: AsetState, m: AsetState, d: AsetState) -> Oid:
    """Schema blob a merge keeps for an arrayset both sides hold and changed.

    The common one when both sides have the same schema. When only one side
    changed the schema (the other kept the base's, and may have added or
    changed samples under it), that side's new schema when it holds every
    sample the base's schema holds (same dtype, rank and naming; a maximum
    shape no smaller: see :func:`schema_holds`): the other side's samples
    fit it. Otherwise None: a conflict (a narrowed schema, a new dtype, or
    two different schema changes).
    """
    if m.schema == d.schema:
        return m.schema
    if a.schema is None or m.schema is None or d.schema is None:
        return None
    if d.schema == a.schema:
        changed = m.schema
    elif m.schema == a.schema:
        changed = d.schema
    else:
        return None
    return changed if schema_holds(trees, changed, a.schema) else None


def schema_holds(trees: Trees, wide: bytes, narrow: bytes) -> bool:
    """True when every sample schema blob ``narrow`` accepts, ``wide`` accepts."""
    from .schema import ArraysetSchema

    w, n = (ArraysetSchema.from_json(trees.raw(o).decode()) for o in (wide, narrow))
    if (w.dtype, w.named_samples, len(w.shape)) != (n.dtype, n.named_samples, len(n.shape)):
        return False
    if not w.variable_shape:
        return not n.variable_shape and w.shape == n.shape
    return all(nd <= wd for nd, wd in zip(n.shape, w.shape, strict=True))


def changed_differently(sts: tuple[AsetState, AsetState, AsetState]) -> bool:
    a, m, d = sts
    return m.entry != a.entry and d.entry != a.entry and m.entry != d.entry


def diff3(
    repo: pygit2.Repository,
    base: bytes | None,
    master: bytes | None,
    dev: bytes | None,
    base_commit: str | None = None,
    *,
    logs: tuple[tuple[changelog.Net, set[str]], tuple[changelog.Net, set[str]]] | None = None,
) -> tuple[BranchDiff, dict[str, Any]]:
    """Changes of both sides against the base, what a merge brings, and conflicts.

    Parameters
    ----------
    repo : pygit2.Repository
        The git repository holding the trees.
    base, master, dev : bytes or None
        Raw ids of the root trees of the merge base, the master side and the
        dev side (None for no commit).
    base_commit : str, optional
        Hash of the merge base, reported in the result.
    logs : tuple, optional
        Each side's net sample changes since the base, composed from change
        logs (:func:`hangar_git.records.changelog.logged_changes`): used
        instead of walking the samples trees of the arraysets they cover.

    Returns
    -------
    tuple
        ``(BranchDiff, conflicts)``; see :class:`hangar_git.diff.BranchDiff`
        and :func:`diff_commits`.
    """
    ensure_trusted(repo, (base, master, dev))
    trees = Trees(repo)
    roots = Roots(trees, (base, master, dev))
    side_aset = (_ChangeLists(), _ChangeLists())
    inc_aset = _ChangeLists()
    side_samples: tuple[dict, dict] = ({}, {})
    inc_samples: dict = {}
    aset_conf: dict[str, list] = defaultdict(list)
    sample_conf: dict[str, ConflictRecords] = {}
    for name, (a, m, d) in roots.asets.items():
        for i, s in enumerate((m, d)):
            if s.entry != a.entry:
                side_aset[i].add(name, a.schema, s.schema)
        kind = aset_conflict(trees, a, m, d)
        if kind is not None:
            aset_conf[kind].append(name)
        elif m.entry == a.entry and d.entry != a.entry:
            inc_aset.add(name, m.schema, d.schema)
        elif changed_differently((a, m, d)) and a.entry is not None and m.entry is not None:
            inc_aset.add(name, m.schema, merged_schema(trees, a, m, d))  # dev's new schema
        triples = _logged_triples(logs, name, (a, m, d)) if logs is not None else None
        if triples is None:
            triples = sample_triples(trees, (a.samples, m.samples, d.samples))
        on_master, on_dev, inc, conf = _triple_changes(triples, incoming=kind is None)
        for i, ch in enumerate((on_master, on_dev)):
            if not ch.empty:
                side_samples[i][name] = ch
        if not inc.empty:
            inc_samples[name] = inc
        if changed_differently((a, m, d)):
            sample_conf[name] = conflict_records(conf)
    meta_master, meta_dev, meta_inc, meta_conf = _triple_changes(roots.meta, incoming=True)
    diffs = [
        DiffRecords(side_aset[i].result(), meta, side_samples[i])
        for i, meta in enumerate((meta_master, meta_dev))
    ]
    incoming = DiffRecords(inc_aset.result(), meta_inc, inc_samples)
    conflicts = conflicts_dict(aset_conf, meta_conf, sample_conf)
    return BranchDiff(diffs[0], diffs[1], incoming, base_commit), conflicts


def _triple_changes(
    triples: Mapping[str, Triple], *, incoming: bool
) -> tuple[Changes, Changes, Changes, dict[str, list]]:
    """Changes of the encoded keys of ``triples`` (base, master, dev).

    Returns master's and dev's changes from the base, what merging dev brings
    to master (none unless ``incoming``; conflicting keys never), and the
    conflicting keys by kind. Keys are decoded.
    """
    # the lists of master's, dev's and the incoming additions, removals and
    # mutations, filled as _ChangeLists.add and conflict_kind would (inline:
    # this loop runs once per changed key)
    m_ch: tuple[list, list, list] = ([], [], [])
    d_ch: tuple[list, list, list] = ([], [], [])
    i_ch: tuple[list, list, list] = ([], [], [])
    conf: dict[str, list] = defaultdict(list)
    for enc, (b, m, d) in triples.items():
        try:  # decode_key, inline for the int keys most records hold
            key = int(enc[2:]) if enc.startswith("i:") else decode_key(enc)
        except ValueError:
            key = decode_key(enc)  # raises its CorruptRecordError
        if m != b:
            m_ch[0 if b is None else 1 if m is None else 2].append(key)
        if d == b:
            continue
        d_ch[0 if b is None else 1 if d is None else 2].append(key)
        if m != b and m != d:
            kind = "t1" if b is None else "t21" if m is None else "t22" if d is None else "t3"
            conf[kind].append(key)
        elif incoming and m != d:
            i_ch[0 if m is None else 1 if d is None else 2].append(key)
    return changes_of(*m_ch), changes_of(*d_ch), changes_of(*i_ch), conf


def conflicts_dict(
    aset_conf: Mapping[str, list],
    meta_conf: Mapping[str, list],
    sample_conf: dict[str, ConflictRecords],
) -> dict[str, Any]:
    aset = conflict_records(aset_conf)
    meta = conflict_records(meta_conf)
    found = aset.conflict or meta.conflict or any(c.conflict for c in sample_conf.values())
    return {"aset": aset, "meta": meta, "sample": sample_conf, "conflict_found": found}


def merge_base(git: pygit2.Repository, one: str | None, two: str) -> str | None:
    if one is None:
        return None
    base = git.merge_base(pygit2.Oid(hex=one), pygit2.Oid(hex=two))
    return str(base) if base is not None else None


#: each side's net sample changes since the merge base, and the arraysets its
#: change logs do not cover (:func:`hangar_git.records.changelog.logged_changes`)
SideLogs = tuple[tuple[changelog.Net, set[str]], tuple[changelog.Net, set[str]]]


def diff_commits(
    git: pygit2.Repository, head: str | None, dev: str, master_tree: bytes | None = None
) -> tuple[BranchDiff, dict[str, Any]]:
    """Diff of commit ``head`` (master) against commit ``dev``, three-way from
    their merge base.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding both commits.
    head : str or None
        The master side's commit (None before the first commit).
    dev : str
        The dev side's commit (a full hash).
    master_tree : bytes, optional
        Root tree to use for the master side instead of ``head``'s (a write
        checkout passes the tree of its staged changes); the merge base is
        still found from ``head``.

    Returns
    -------
    tuple
        ``(changes, conflicts)``: a :class:`BranchDiff` (``master`` and
        ``dev``: each side's changes from the merge base; ``incoming``: what
        merging dev would change on master, conflicting records left out;
        ``base``: the merge base commit) and the conflicts dict ``{'aset':
        ConflictRecords, 'meta': ConflictRecords, 'sample': {arrayset:
        ConflictRecords}, 'conflict_found': bool}``; ``'sample'`` holds every
        arrayset both sides changed differently.
    """
    diff, conflicts, _logs = diff_commits_logged(git, head, dev, master_tree)
    return diff, conflicts


def diff_commits_logged(
    git: pygit2.Repository, head: str | None, dev: str, master_tree: bytes | None = None
) -> tuple[BranchDiff, dict[str, Any], SideLogs | None]:
    """:func:`diff_commits`, and the change logs it composed the diff from.

    Parameters
    ----------
    git, head, dev, master_tree
        As for :func:`diff_commits`.

    Returns
    -------
    tuple
        ``(changes, conflicts, logs)``: those of :func:`diff_commits`, and the
        two sides' composed change logs (None when the samples trees were
        walked); :func:`logged_triples` tells which arraysets' changes, with
        their digests, came from them.
    """
    base = merge_base(git, head, dev)
    m = master_tree if master_tree is not None else commit_tree(git, head)
    logs = None
    if changelog.USE_LOGS and master_tree is None and head is not None and base is not None:
        lm = changelog.logged_changes(git, base, head)
        ld = changelog.logged_changes(git, base, dev) if lm is not None else None
        logs = (lm, ld) if lm is not None and ld is not None else None
    diff, conflicts = diff3(git, commit_tree(git, base), m, commit_tree(git, dev), base, logs=logs)
    return diff, conflicts, logs


def logged_triples(
    logs: SideLogs, name: str, states: tuple[AsetState, AsetState, AsetState]
) -> dict[str, Triple] | None:
    """The changes :func:`diff3` takes from the change logs for arrayset ``name``.

    Parameters
    ----------
    logs : SideLogs
        As :func:`diff_commits_logged` returns them.
    name : str
        The arrayset.
    states : tuple of AsetState
        The arrayset in the merge base, master and dev (only ``entry`` and
        ``samples`` are read).

    Returns
    -------
    dict or None
        ``{encoded key: (base, master, dev) digest}`` of every key a side
        changed (a digest None where the key is absent); None when the logs
        do not cover the arrayset and the diff walked its samples trees.
    """
    return _logged_triples(logs, name, states)


def _logged_triples(
    logs: tuple[tuple[changelog.Net, set[str]], tuple[changelog.Net, set[str]]],
    name: str,
    states: tuple[AsetState, AsetState, AsetState],
) -> dict[str, Triple] | None:
    """What :func:`sample_triples` would find for arrayset ``name``, from the
    two sides' change logs; None when they do not cover it or disagree with
    the trees (then the trees are walked)."""
    (net_m, skip_m), (net_d, skip_d) = logs
    a, m, d = states
    if name in skip_m or name in skip_d or None in (a.entry, m.entry, d.entry):
        return None
    cm, cd = net_m.get(name, {}), net_d.get(name, {})
    # a side whose samples tree is the base's changed nothing, and the converse
    if (m.samples == a.samples) != (not cm) or (d.samples == a.samples) != (not cd):
        return None
    if not cm:  # one side changed: each key's base value is its old one
        return {k: (o, o, n) for k, (o, n) in cd.items()}
    if not cd:
        return {k: (o, n, o) for k, (o, n) in cm.items()}
    out: dict[str, Triple] = {}
    for k in cm.keys() | cd.keys():
        om, od = cm.get(k), cd.get(k)
        if om is not None and od is not None and om[0] != od[0]:
            return None  # the two sides disagree on the base value
        va = om[0] if om is not None else od[0]  # type: ignore[index]
        out[k] = (va, om[1] if om is not None else va, od[1] if od is not None else va)
    return out
