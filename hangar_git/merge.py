"""Three-way diff and merge of record trees, at the cost of the change.

Diff and merge are functions of tree ids. They walk the records of the merge
base, the master side and the dev side together and skip every subtree whose
id is equal on the sides compared, so a change of ten samples among millions
reads a few dozen small trees. libgit2 is used only for ``merge_base``.

For each arrayset, sample key and metadata key the walk yields a *triple*
``(base, master, dev)`` of record ids (``None`` where absent). A side changed
a key when its value differs from the base. A conflict is a key changed on
both sides to different values, in the reference's four kinds:

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
they conflict only when their schemas differ (schemas are compatible when
they are equal). A merge applies dev's changes to master's tree and writes
only the trees on the paths of those changes.

Sample records sit below ``samples/`` in fan-out trees. When the sides of an
arrayset have different fan-outs (one crossed a size threshold), the walk of
that arrayset falls back to comparing full key maps: correct, slower, rare.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pygit2

from .diff import BranchDiff, Changes, ConflictRecords, DiffRecords, _changes, _order
from .errors import MergeConflictError
from .gitutil import (
    HEADS,
    REMOTES,
    branch_head,
    read_raw,
    ref_commit,
    resolve_commit,
    write_blob,
    write_tree,
)
from .naming import check_branch_name, check_remote_name, decode_key
from .records import changelog, trust
from .records.build import build_samples
from .records.changelog import CHANGES_NAME
from .records.layout import (
    FORMAT_BLOB,
    MODE_BLOB,
    MODE_TREE,
    Entry,
    parse_links,
    parse_tree,
    serialize_links,
    serialize_tree,
)
from .records.snapshot import SampleRecords, TreeRecords, commit_tree
from .records.validate import ensure_trusted

if TYPE_CHECKING:
    from .records.staging import Journal
    from .repository import Repository

Oid = bytes | None
Triple = tuple[Oid, Oid, Oid]
Path = tuple[str, ...]

STRATEGIES = (None, "ours", "theirs")
_KINDS = ("t1", "t21", "t22", "t3")
_LINK_MARK = b"160000 "
_TREE_MARK = b"40000 "


# --------------------------------------------------------------------------
# classification of one key
# --------------------------------------------------------------------------
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
        return _changes(*self.lists)


def _records(conf: Mapping[str, list]) -> ConflictRecords:
    t = [tuple(sorted(conf.get(k, ()), key=_order)) for k in _KINDS]
    return ConflictRecords(t[0], t[1], t[2], t[3], any(t))


# --------------------------------------------------------------------------
# reading trees fast
# --------------------------------------------------------------------------
@functools.cache
def _fan_rows(width: int) -> re.Pattern[bytes]:
    """Subtree entries whose names all have ``width`` bytes (a fan-out level)."""
    return re.compile(rb"(?:40000 [0-9a-f]{%d}\x00.{20})*" % width, re.S)


#: fan-out trees up to this size are compared row by row in Python (cheaper
#: than loading them as arrays): a 16-way level is 16 rows of ~28 bytes
_SMALL_FAN = 1024


def _small_fan_children(ra: bytes, rm: bytes, rd: bytes) -> list[tuple[str, Triple]] | None:
    """Rows of three same-size fan-out trees that differ, None unless the
    three are well-formed fan-out trees of the same entry names."""
    nul = ra.find(b"\x00")
    width = nul - len(_TREE_MARK)
    size = nul + 21
    if width < 1 or len(ra) % size or not ra.startswith(_TREE_MARK):
        return None
    rows = _fan_rows(width)
    if not (rows.fullmatch(ra) and rows.fullmatch(rm) and rows.fullmatch(rd)):
        return None
    out: list[tuple[str, Triple]] = []
    for off in range(0, len(ra), size):
        end = off + size
        a, m, d = ra[off:end], rm[off:end], rd[off:end]
        if a == m == d:
            continue
        if a[:nul] != m[:nul] or a[:nul] != d[:nul]:
            return None  # the entry names differ: the general path aligns them
        out.append((a[len(_TREE_MARK) : nul].decode(), (a[nul + 1 :], m[nul + 1 :], d[nul + 1 :])))
    return out


class _FanNode:
    """A fan-out tree whose entries all have the same size, viewed as rows."""

    __slots__ = ("ids", "key", "names", "raw", "size", "sorted_names", "width")

    def __init__(self, raw: bytes, names: np.ndarray, ids: np.ndarray, width: int) -> None:
        self.raw = raw
        self.names = names
        self.ids = ids
        self.width = width
        self.size = len(_TREE_MARK) + width + 21
        self.sorted_names: np.ndarray | None = None
        self.key = names.tobytes()  # equal for nodes with the same entry names

    @classmethod
    def load(cls, raw: bytes) -> _FanNode | None:
        """The rows of ``raw``, or None unless every entry is a same-width subtree."""
        if not raw.startswith(_TREE_MARK):
            return None
        nul = raw.find(b"\x00")
        width = nul - len(_TREE_MARK)
        if width < 1:
            return None
        size = nul + 21
        if len(raw) % size or not _fan_rows(width).fullmatch(raw):
            return None
        rows = np.frombuffer(raw, np.uint8).reshape(-1, size)
        return cls(raw, rows[:, len(_TREE_MARK) : nul], rows[:, nul + 1 :], width)

    def name(self, i: int) -> str:
        return self.names[i].tobytes().decode("ascii")

    def oid(self, i: int) -> bytes:
        return self.ids[i].tobytes()

    def index(self, name: str) -> int:
        """Row of entry ``name``, -1 when absent."""
        if self.sorted_names is None:
            self.sorted_names = np.ascontiguousarray(self.names).view(f"S{self.width}").ravel()
        b = name.encode()
        if len(b) != self.width:
            return -1
        i = int(np.searchsorted(self.sorted_names, b))
        if i < len(self.sorted_names) and self.sorted_names[i] == b:
            return i
        return -1


def _leaf_pieces(raw: bytes) -> frozenset[bytes]:
    """The entries of a leaf of sample records as ``name NUL digest`` pieces.

    Splitting on the gitlink mode is exact unless a digest holds that byte
    run; such a digest leaves a piece without a NUL 21 bytes before its end
    (names hold no NUL), which is checked for every piece at once, falling
    back to the regular parse.
    """
    parts = raw.split(_LINK_MARK)
    if not parts[0] and len(parts) > 1:
        del parts[0]
        lens = np.fromiter(map(len, parts), np.int64, len(parts))
        if lens.min() > 22:
            ends = np.cumsum(lens + len(_LINK_MARK))
            if not np.frombuffer(raw, np.uint8)[ends - 21].any():
                return frozenset(parts)
    return frozenset(k.encode() + b"\x00" + d for k, d in parse_links(raw).items())


def _pieces_map(pieces: frozenset[bytes] | set[bytes]) -> dict[str, bytes]:
    return {p[:-21].decode(): p[-20:] for p in pieces}


def _changed_span(ra: bytes, rb: bytes) -> tuple[int, int, int] | None:
    """Entries around the bytes where two leaves differ: ``(start, end_a, end_b)``.

    Leaves are sorted, so a few changed samples leave a long common prefix
    and suffix; ``ra[start:end_a]`` and ``rb[start:end_b]`` hold every entry
    that differs. None when the span cannot be cut on entry boundaries (the
    caller then compares whole leaves).
    """
    n = min(len(ra), len(rb))
    a = np.frombuffer(ra, np.uint8)
    b = np.frombuffer(rb, np.uint8)
    ne = np.flatnonzero(a[:n] != b[:n])
    p = int(ne[0]) if ne.size else n
    m = n - p  # the common suffix may not reach into the common prefix
    s = 0
    if m:
        ne = np.flatnonzero(a[len(ra) - m :][::-1] != b[len(rb) - m :][::-1])
        s = int(ne[0]) if ne.size else m
    start = ra.rfind(_LINK_MARK, 0, p + len(_LINK_MARK))
    if start < 0 or (start and (start < 30 or ra[start - 21])):  # entries end in NUL + digest
        return None
    end_a = ra.find(_LINK_MARK, len(ra) - s)
    if end_a < 0:
        end_a = len(ra)
    return start, end_a, end_a - len(ra) + len(rb)


def _leaf_delta(ra: bytes, rb: bytes) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """``(entries only in ra, entries only in rb)`` of two leaves of sample records.

    Only the span where the leaves differ is parsed (a strict parse, which
    also proves the span was cut on entry boundaries on both sides).
    """
    if ra == rb:
        return {}, {}
    if ra and rb:
        span = _changed_span(ra, rb)
        if span is not None:
            start, end_a, end_b = span
            try:
                la = parse_links(ra[start:end_a])
                lb = parse_links(rb[start:end_b])
            except ValueError:
                pass
            else:
                return (
                    {k: v for k, v in la.items() if lb.get(k) != v},
                    {k: v for k, v in lb.items() if la.get(k) != v},
                )
    pa, pb = _leaf_pieces(ra), _leaf_pieces(rb)
    return _pieces_map(pa - pb), _pieces_map(pb - pa)


class _FanoutMismatch(Exception):
    """The sides of an arrayset lay their samples out with different fan-outs."""


class _Trees:
    """Cached reads of the trees one diff or merge touches."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self._raw: dict[bytes, bytes] = {}
        self._trees: dict[bytes, dict[str, Entry]] = {}
        self._fans: dict[bytes, _FanNode | None] = {}
        self._pieces: dict[bytes, frozenset[bytes]] = {}

    def raw(self, oid: bytes) -> bytes:
        r = self._raw.get(oid)
        if r is None:
            r = self._raw[oid] = read_raw(self.repo, oid)
        return r

    def tree(self, oid: bytes | None) -> dict[str, Entry]:
        if oid is None:
            return {}
        t = self._trees.get(oid)
        if t is None:
            t = self._trees[oid] = parse_tree(self.raw(oid))
        return t

    def fan(self, oid: bytes) -> _FanNode | None:
        if oid not in self._fans:
            self._fans[oid] = _FanNode.load(self.raw(oid))
        return self._fans[oid]

    def pieces(self, oid: bytes | None) -> frozenset[bytes]:
        if oid is None:
            return frozenset()
        p = self._pieces.get(oid)
        if p is None:
            p = self._pieces[oid] = _leaf_pieces(self.raw(oid))
        return p

    def links(self, oid: bytes | None) -> dict[str, bytes]:
        return _pieces_map(self.pieces(oid))

    def kind(self, oids: Triple) -> int:
        """0 when the present trees are leaves, else their common fan-out width.

        Raises
        ------
        _FanoutMismatch
            When the present trees are not all of one kind (their arrayset
            has different fan-outs on different sides).
        """
        kinds = set()
        for o in oids:
            if o is not None:
                raw = self.raw(o)
                if raw.startswith(_LINK_MARK):
                    kinds.add(0)
                elif raw.startswith(_TREE_MARK):
                    kinds.add(raw.find(b"\x00") - len(_TREE_MARK))
                else:
                    raise ValueError("malformed sample record tree")
        if len(kinds) != 1:
            raise _FanoutMismatch
        return kinds.pop()

    def children(self, oids: Triple) -> Iterator[tuple[str, Triple]]:
        """Entries of three fan-out trees whose ids are not all equal."""
        if None not in oids:
            raws = [self.raw(o) for o in oids]  # type: ignore[arg-type]
            if len(raws[0]) == len(raws[1]) == len(raws[2]) <= _SMALL_FAN:
                got = _small_fan_children(*raws)
                if got is not None:
                    yield from got
                    return
        fans = [self.fan(o) if o is not None else None for o in oids]
        fa, fm, fd = fans
        if fa is not None and fm is not None and fd is not None and fa.key == fm.key == fd.key:
            ia, im, idv = fa.ids, fm.ids, fd.ids
            mask = (ia != im).any(axis=1) if oids[0] != oids[1] else None
            if oids[0] != oids[2]:
                md = (ia != idv).any(axis=1)
                mask = md if mask is None else (mask | md)
            if mask is None:
                return
            for i in np.flatnonzero(mask).tolist():
                yield fa.name(i), (fa.oid(i), fm.oid(i), fd.oid(i))
            return
        trees = [self.tree(o) for o in oids]
        names: set[str] = set()
        for t in trees:
            names.update(t)
        for name in sorted(names):
            ids: list[bytes | None] = []
            for t in trees:
                e = t.get(name)
                if e is not None and e[0] != MODE_TREE:
                    raise ValueError("malformed sample record tree")
                ids.append(e[1] if e is not None else None)
            if not ids[0] == ids[1] == ids[2]:
                yield name, (ids[0], ids[1], ids[2])

    def child(self, oid: bytes | None, name: str) -> bytes | None:
        if oid is None:
            return None
        fan = self.fan(oid)
        if fan is not None:
            i = fan.index(name)
            return fan.oid(i) if i >= 0 else None
        e = self.tree(oid).get(name)
        return e[1] if e is not None else None

    def splice(self, oid: bytes | None, updates: Mapping[str, bytes | None]) -> bytes | None:
        """Write fan-out tree ``oid`` with entries replaced (None removes)."""
        if not updates:
            return oid
        fan = self.fan(oid) if oid is not None else None
        if fan is not None and all(v is not None for v in updates.values()):
            rows = [fan.index(n) for n in updates]
            if all(r >= 0 for r in rows):
                buf = bytearray(fan.raw)
                off = fan.size - 20
                for r, new in zip(rows, updates.values(), strict=True):
                    pos = r * fan.size + off
                    buf[pos : pos + 20] = new  # type: ignore[assignment]
                return write_tree(self.repo, bytes(buf))
        entries = dict(self.tree(oid))
        for name, new in updates.items():
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = (MODE_TREE, new)
        return write_tree(self.repo, serialize_tree(entries)) if entries else None


def _leaf_triples(trees: _Trees, oids: Triple) -> dict[str, Triple]:
    """Keys of three leaves whose digest differs from the base on either side."""
    ra = trees.raw(oids[0]) if oids[0] is not None else b""
    out: dict[str, Triple] = {}
    am: dict[str, bytes] = {}
    ma: dict[str, bytes] = {}
    ad: dict[str, bytes] = {}
    da: dict[str, bytes] = {}
    if oids[1] != oids[0]:
        am, ma = _leaf_delta(ra, trees.raw(oids[1]) if oids[1] is not None else b"")
    if oids[2] != oids[0]:
        ad, da = _leaf_delta(ra, trees.raw(oids[2]) if oids[2] is not None else b"")
    for k in am.keys() | ma.keys() | ad.keys() | da.keys():
        va = am.get(k, ad.get(k))
        vm = ma.get(k) if (k in am or k in ma) else va
        vd = da.get(k) if (k in ad or k in da) else va
        out[k] = (va, vm, vd)
    return out


# --------------------------------------------------------------------------
# samples of one arrayset
# --------------------------------------------------------------------------
def _full_triples(trees: _Trees, oids: Triple) -> dict[str, Triple]:
    """Triples from the full key maps (the fallback for differing fan-outs)."""
    maps = [dict(SampleRecords(trees.repo, o).items()) if o is not None else {} for o in oids]
    out: dict[str, Triple] = {}
    for k in maps[0].keys() | maps[1].keys() | maps[2].keys():
        t = (maps[0].get(k), maps[1].get(k), maps[2].get(k))
        if t[1] != t[0] or t[2] != t[0]:
            out[k] = t
    return out


def sample_triples(trees: _Trees, oids: Triple) -> dict[str, Triple]:
    """Every key of three samples trees changed from the base on either side.

    The trees are walked together, skipping subtrees equal on all sides; the
    kind of each visited node (leaf, or fan-out level of some width) must
    agree across sides, else the full key maps are compared.
    """
    out: dict[str, Triple] = {}

    def walk(t: Triple) -> None:
        if t[1] == t[0] and t[2] == t[0]:
            return
        if trees.kind(t) == 0:
            out.update(_leaf_triples(trees, t))
            return
        for _, child in trees.children(t):
            walk(child)

    try:
        walk(oids)
    except _FanoutMismatch:
        return _full_triples(trees, oids)
    return out


@dataclass
class _SamplesMerge:
    """Dev's changes to apply to master's samples tree, and the conflicts.

    With a common layout, ``replace`` holds subtrees (by path below
    ``samples/``) taken whole from dev and ``leaves`` the key changes of the
    leaves both sides changed; with differing fan-outs (``flat``), the key
    changes are applied through :func:`~hangar_git.records.build.build_samples`.
    """

    oids: Triple
    flat: bool = False
    replace: dict[Path, bytes | None] = field(default_factory=dict)
    leaves: dict[Path, dict[str, bytes | None]] = field(default_factory=lambda: defaultdict(dict))
    conflicts: list[tuple[str, str, Triple, Path]] = field(default_factory=list)

    def resolve(self, strategy: str | None) -> None:
        """Apply ``strategy`` to the conflicts: 'theirs' takes dev's value."""
        if strategy == "theirs":
            for _, enc, t, path in self.conflicts:
                self.leaves[path][enc] = t[2]

    def write(self, trees: _Trees) -> bytes | None:
        """Write the merged samples tree (None when it holds no sample)."""
        m = self.oids[1]
        if () in self.replace:
            return self.replace[()]
        leaves = {p: ch for p, ch in self.leaves.items() if ch}
        if not self.replace and not leaves:
            return m
        if self.flat:
            return build_samples(trees.repo, SampleRecords(trees.repo, m), leaves[()])
        return _apply(trees, m, (), self.replace, leaves)


def _plan_samples(trees: _Trees, oids: Triple) -> _SamplesMerge:
    """Plan the merge of dev's samples tree into master's (reads only)."""
    plan = _SamplesMerge(oids)

    def take_leaf(path: Path, triples: Mapping[str, Triple]) -> None:
        for enc, kt in triples.items():
            kind = conflict_kind(*kt)
            if kind is not None:
                plan.conflicts.append((kind, enc, kt, path))
            elif kt[2] != kt[0] and kt[2] != kt[1]:
                plan.leaves[path][enc] = kt[2]

    def walk(t: Triple, path: Path) -> None:
        if t[2] == t[0] or t[2] == t[1]:
            return
        if t[1] == t[0]:
            plan.replace[path] = t[2]
            return
        if trees.kind(t) == 0:
            take_leaf(path, _leaf_triples(trees, t))
            return
        for name, child in trees.children(t):
            walk(child, (*path, name))

    try:
        walk(oids, ())
    except _FanoutMismatch:
        plan = _SamplesMerge(oids, flat=True)
        take_leaf((), _full_triples(trees, oids))
    return plan


def _apply(
    trees: _Trees,
    oid: bytes | None,
    prefix: Path,
    replace: Mapping[Path, bytes | None],
    leaves: Mapping[Path, Mapping[str, bytes | None]],
) -> bytes | None:
    """Master's (sub)tree ``oid`` at ``prefix`` with dev's changes applied."""
    changes = leaves.get(prefix)
    if changes is not None:
        links = trees.links(oid)
        for enc, dg in changes.items():
            if dg is None:
                links.pop(enc, None)
            else:
                links[enc] = dg
        return write_tree(trees.repo, serialize_links(links)) if links else None
    level = len(prefix)
    names = {p[level] for p in (*replace, *leaves) if len(p) > level and p[:level] == prefix}
    updates: dict[str, bytes | None] = {}
    for name in sorted(names):
        child = (*prefix, name)
        if child in replace:
            updates[name] = replace[child]
        else:
            updates[name] = _apply(trees, trees.child(oid, name), child, replace, leaves)
    return trees.splice(oid, updates)


# --------------------------------------------------------------------------
# whole record trees
# --------------------------------------------------------------------------
@dataclass
class _AsetState:
    entry: Oid  # the arrayset's tree
    schema: Oid
    samples: Oid


class _Roots:
    """The arraysets and metadata entries of the three root trees."""

    def __init__(self, trees: _Trees, roots: Triple) -> None:
        self.trees = trees
        self.roots = [trees.tree(r) for r in roots]
        aset_oids = tuple(self._sub(r, "arraysets") for r in self.roots)
        meta_oids = tuple(self._sub(r, "metadata") for r in self.roots)
        self.asets: dict[str, tuple[_AsetState, _AsetState, _AsetState]] = {}
        if not aset_oids[0] == aset_oids[1] == aset_oids[2]:
            maps = [trees.tree(o) for o in aset_oids]
            names: set[str] = set()
            for mp in maps:
                names.update(mp)
            for name in sorted(names):
                es = [mp[name][1] if name in mp else None for mp in maps]
                if es[0] == es[1] == es[2]:
                    continue
                self.asets[name] = tuple(self._aset(e) for e in es)  # type: ignore[assignment]
        self.meta: dict[str, Triple] = {}
        if not meta_oids[0] == meta_oids[1] == meta_oids[2]:
            maps = [trees.tree(o) for o in meta_oids]
            keys: set[str] = set()
            for mp in maps:
                keys.update(mp)
            for k in keys:
                t = tuple(mp[k][1] if k in mp else None for mp in maps)
                if not t[0] == t[1] == t[2]:
                    self.meta[k] = t  # type: ignore[assignment]
        self.aset_oids = aset_oids
        self.meta_oids = meta_oids

    @staticmethod
    def _sub(root: Mapping[str, Entry], name: str) -> bytes | None:
        e = root.get(name)
        return e[1] if e is not None else None

    def _aset(self, oid: bytes | None) -> _AsetState:
        if oid is None:
            return _AsetState(None, None, None)
        t = self.trees.tree(oid)
        schema = t.get("schema")
        samples = t.get("samples")
        return _AsetState(oid, schema[1] if schema else None, samples[1] if samples else None)


def _aset_conflict(a: _AsetState, m: _AsetState, d: _AsetState) -> str | None:
    """Conflict of an arrayset as a whole: existence and schema."""
    if m.entry == a.entry or d.entry == a.entry or m.entry == d.entry:
        return None
    if a.entry is None:
        return "t1" if m.schema != d.schema else None
    if m.entry is None:
        return "t21"
    if d.entry is None:
        return "t22"
    return "t3" if m.schema != d.schema else None


def _changed_differently(sts: tuple[_AsetState, _AsetState, _AsetState]) -> bool:
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
        and :func:`diff_with_branch`.
    """
    ensure_trusted(repo, (base, master, dev))
    trees = _Trees(repo)
    roots = _Roots(trees, (base, master, dev))
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
        kind = _aset_conflict(a, m, d)
        if kind is not None:
            aset_conf[kind].append(name)
        elif m.entry == a.entry and d.entry != a.entry:
            inc_aset.add(name, m.schema, d.schema)
        triples = _logged_triples(logs, name, (a, m, d)) if logs is not None else None
        if triples is None:
            triples = sample_triples(trees, (a.samples, m.samples, d.samples))
        lists = (_ChangeLists(), _ChangeLists())
        inc = _ChangeLists()
        conf: dict[str, list] = defaultdict(list)
        for enc, t in triples.items():
            key = decode_key(enc)
            lists[0].add(key, t[0], t[1])
            lists[1].add(key, t[0], t[2])
            ck = conflict_kind(*t)
            if ck is not None:
                conf[ck].append(key)
            elif kind is None and t[2] != t[0]:
                inc.add(key, t[1], t[2])
        for i in (0, 1):
            ch = lists[i].result()
            if not ch.empty:
                side_samples[i][name] = ch
        ich = inc.result()
        if not ich.empty:
            inc_samples[name] = ich
        if _changed_differently((a, m, d)):
            sample_conf[name] = _records(conf)
    meta_lists = (_ChangeLists(), _ChangeLists())
    meta_inc = _ChangeLists()
    meta_conf: dict[str, list] = defaultdict(list)
    for enc, t in roots.meta.items():
        key = decode_key(enc)
        meta_lists[0].add(key, t[0], t[1])
        meta_lists[1].add(key, t[0], t[2])
        ck = conflict_kind(*t)
        if ck is not None:
            meta_conf[ck].append(key)
        elif t[2] != t[0]:
            meta_inc.add(key, t[1], t[2])
    diffs = [
        DiffRecords(side_aset[i].result(), meta_lists[i].result(), side_samples[i]) for i in (0, 1)
    ]
    incoming = DiffRecords(inc_aset.result(), meta_inc.result(), inc_samples)
    conflicts = _conflicts_dict(aset_conf, meta_conf, sample_conf)
    return BranchDiff(diffs[0], diffs[1], incoming, base_commit), conflicts


def _conflicts_dict(
    aset_conf: Mapping[str, list],
    meta_conf: Mapping[str, list],
    sample_conf: dict[str, ConflictRecords],
) -> dict[str, Any]:
    aset = _records(aset_conf)
    meta = _records(meta_conf)
    found = aset.conflict or meta.conflict or any(c.conflict for c in sample_conf.values())
    return {"aset": aset, "meta": meta, "sample": sample_conf, "conflict_found": found}


def merge_trees(
    repo: pygit2.Repository,
    base: bytes | None,
    master: bytes | None,
    dev: bytes | None,
    *,
    strategy: str | None = None,
) -> bytes:
    """Root tree of the three-way merge of ``dev`` into ``master``.

    Only trees on the paths of dev's changes are written, and only once no
    conflict stands in the way.

    Parameters
    ----------
    repo : pygit2.Repository
        The git repository holding the trees.
    base, master, dev : bytes or None
        Raw ids of the root trees of the merge base and the two sides.
    strategy : {None, 'ours', 'theirs'}
        How to resolve sample and metadata conflicts: keep master's value
        (``'ours'``) or take dev's (``'theirs'``). Arrayset conflicts
        (incompatible schemas, removal against change) are never resolved.

    Returns
    -------
    bytes
        Raw id of the merged root tree.

    Raises
    ------
    MergeConflictError
        (a ValueError) if conflicts remain; its ``conflicts`` attribute holds
        them as :func:`diff_with_branch` reports them. Nothing is written.
    """
    _check_strategy(strategy)
    ensure_trusted(repo, (base, master, dev))  # before a byte is written
    trees = _Trees(repo)
    roots = _Roots(trees, (base, master, dev))
    aset_conf: dict[str, list] = defaultdict(list)
    sample_conf: dict[str, ConflictRecords] = {}
    # arrayset name -> new tree id (None removes), or a samples plan to write
    take: dict[str, bytes | None] = {}
    plans: dict[str, _SamplesMerge] = {}
    for name, (a, m, d) in roots.asets.items():
        kind = _aset_conflict(a, m, d)
        if kind is not None:
            aset_conf[kind].append(name)
        if d.entry == a.entry or d.entry == m.entry:
            continue
        if m.entry == a.entry and kind is None:
            take[name] = d.entry
            continue
        plan = _plan_samples(trees, (a.samples, m.samples, d.samples))
        conf: dict[str, list] = defaultdict(list)
        for ck, enc, _, _ in plan.conflicts:
            conf[ck].append(decode_key(enc))
        sample_conf[name] = _records(conf)
        if kind is None:
            plans[name] = plan
    meta_conf: dict[str, list] = defaultdict(list)
    meta_changes: dict[str, bytes | None] = {}
    for enc, t in roots.meta.items():
        ck = conflict_kind(*t)
        if ck is not None:
            meta_conf[ck].append(decode_key(enc))
            if strategy == "theirs":
                meta_changes[enc] = t[2]
        elif t[2] != t[0] and t[2] != t[1]:
            meta_changes[enc] = t[2]
    conflicts = _conflicts_dict(aset_conf, meta_conf, sample_conf)
    if conflicts["aset"].conflict or (conflicts["conflict_found"] and strategy is None):
        raise MergeConflictError(_conflict_message(conflicts, strategy), conflicts)

    # ---- write: nothing above this line touched the object database ----
    aset_entries = dict(trees.tree(roots.aset_oids[1]))
    for name, oid in take.items():
        if oid is None:
            aset_entries.pop(name, None)
        else:
            aset_entries[name] = (MODE_TREE, oid)
    for name, plan in plans.items():
        plan.resolve(strategy)
        samples = plan.write(trees)
        _, m, d = roots.asets[name]
        tree = dict(trees.tree(m.entry if m.entry is not None else d.entry))
        if samples is None:
            tree.pop("samples", None)
        else:
            tree["samples"] = (MODE_TREE, samples)
        aset_entries[name] = (MODE_TREE, write_tree(repo, serialize_tree(tree)))
    meta_entries = dict(trees.tree(roots.meta_oids[1]))
    for enc, oid in meta_changes.items():
        if oid is None:
            meta_entries.pop(enc, None)
        else:
            meta_entries[enc] = (MODE_BLOB, oid)
    root = dict(roots.roots[1] or roots.roots[2])
    root.pop(CHANGES_NAME, None)  # master's log is not the merge commit's
    root["hangar.json"] = (MODE_BLOB, write_blob(repo, FORMAT_BLOB))
    for key, entries in (("arraysets", aset_entries), ("metadata", meta_entries)):
        if entries:
            root[key] = (MODE_TREE, write_tree(repo, serialize_tree(entries)))
        else:
            root.pop(key, None)
    out = write_tree(repo, serialize_tree(root))
    trust.remember(repo, out)  # made of checked trees
    if all(t is None or trust.is_trusted(repo, t, trust.PAYLOADS) for t in (base, master, dev)):
        trust.remember(repo, out, trust.PAYLOADS)  # and of samples added here
    return out


def _conflict_message(conflicts: Mapping[str, Any], strategy: str | None) -> str:
    parts: list[str] = []

    def show(label: str, rec: ConflictRecords) -> None:
        for kind in _KINDS:
            keys = getattr(rec, kind)
            if keys:
                shown = ", ".join(repr(k) for k in keys[:10])
                more = f" ... ({len(keys) - 10} more)" if len(keys) > 10 else ""
                parts.append(f"{label} {kind}: {shown}{more}")

    show("arraysets", conflicts["aset"])
    show("metadata", conflicts["meta"])
    for name, rec in conflicts["sample"].items():
        show(f"samples of {name!r}", rec)
    head = "merge aborted with conflicts; nothing was changed"
    if strategy is not None:
        head += (
            f" (strategy {strategy!r} resolves sample and metadata conflicts, "
            "never arrayset conflicts)"
        )
    legend = (
        "t1: added in both with different values; t21: removed in master, mutated in "
        "dev; t22: removed in dev, mutated in master; t3: mutated in both differently"
    )
    return head + "\n  " + "\n  ".join(parts) + "\n" + legend


def _check_strategy(strategy: object) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be None, 'ours' or 'theirs', not {strategy!r}")


# --------------------------------------------------------------------------
# branches and commits
# --------------------------------------------------------------------------
def branch_commit(git: pygit2.Repository, name: str) -> str:
    """Head commit of a hangar branch, or of a remote-tracking ``remote/branch``.

    Raises
    ------
    ValueError
        If the name is invalid or names no branch with commits.
    """
    if not isinstance(name, str):
        raise ValueError(f"branch name must be str, not {type(name).__name__}: {name!r}")
    if "/" in name:
        remote, _, rest = name.partition("/")
        check_remote_name(remote)
        check_branch_name(rest)
        sha = ref_commit(git, REMOTES + name)
        if sha is None:
            raise ValueError(f"no remote-tracking branch named {name!r}")
        return sha
    check_branch_name(name)
    head = branch_head(git, name)
    if head is None:
        raise ValueError(f"no branch named {name!r} with commits")
    return head


def _merge_base(git: pygit2.Repository, one: str | None, two: str) -> str | None:
    if one is None:
        return None
    base = git.merge_base(pygit2.Oid(hex=one), pygit2.Oid(hex=two))
    return str(base) if base is not None else None


def diff_with_commit(
    repo: Repository, head: str | None, commit: str, *, master_tree: bytes | None = None
) -> tuple[BranchDiff, dict[str, Any]]:
    """Diff of ``head`` (master) against ``commit`` (dev), three-way from their merge base.

    Parameters
    ----------
    repo : Repository
        The repository.
    head : str or None
        The checkout's commit (None before the first commit).
    commit : str
        Hash (or unique prefix) of the dev commit.
    master_tree : bytes, optional
        Root tree to use for the master side instead of ``head``'s (a write
        checkout passes the tree of its staged changes); the merge base is
        still found from ``head``.

    Returns
    -------
    tuple
        ``(changes, conflicts)``: a :class:`~hangar_git.diff.BranchDiff`
        (``master`` and ``dev``: each side's changes from the merge base;
        ``incoming``: what merging dev would change on master, conflicting
        records left out; ``base``: the merge base commit) and the conflicts
        dict ``{'aset': ConflictRecords, 'meta': ConflictRecords, 'sample':
        {arrayset: ConflictRecords}, 'conflict_found': bool}``; ``'sample'``
        holds every arrayset both sides changed differently.

    Raises
    ------
    ValueError
        If ``commit`` is not a commit of this repository.
    """
    git = repo._git_repo()
    dev = resolve_commit(git, commit)
    return _diff_commits(git, head, dev, master_tree)


def diff_with_branch(
    repo: Repository, head: str | None, branch: str, *, master_tree: bytes | None = None
) -> tuple[BranchDiff, dict[str, Any]]:
    """Diff of ``head`` (master) against the head of ``branch`` (dev).

    ``branch`` may be a remote-tracking branch (``origin/master``). See
    :func:`diff_with_commit` for the result.

    Raises
    ------
    ValueError
        If the branch does not exist or has no commits.
    """
    git = repo._git_repo()
    return _diff_commits(git, head, branch_commit(git, branch), master_tree)


def _diff_commits(
    git: pygit2.Repository, head: str | None, dev: str, master_tree: bytes | None
) -> tuple[BranchDiff, dict[str, Any]]:
    base = _merge_base(git, head, dev)
    m = master_tree if master_tree is not None else commit_tree(git, head)
    logs = None
    if changelog.USE_LOGS and master_tree is None and head is not None and base is not None:
        lm = changelog.logged_changes(git, base, head)
        ld = changelog.logged_changes(git, base, dev) if lm is not None else None
        logs = (lm, ld) if lm is not None and ld is not None else None
    return diff3(git, commit_tree(git, base), m, commit_tree(git, dev), base, logs=logs)


def _logged_triples(
    logs: tuple[tuple[changelog.Net, set[str]], tuple[changelog.Net, set[str]]],
    name: str,
    states: tuple[_AsetState, _AsetState, _AsetState],
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
    out: dict[str, Triple] = {}
    for k in cm.keys() | cd.keys():
        om, od = cm.get(k), cd.get(k)
        if om is not None and od is not None and om[0] != od[0]:
            return None  # the two sides disagree on the base value
        va = om[0] if om is not None else od[0]  # type: ignore[index]
        out[k] = (va, om[1] if om is not None else va, od[1] if od is not None else va)
    return out


def sample_records(repo: Repository, commit: str | None, arrayset: str, enc: str) -> bytes | None:
    """Digest of one sample in a commit (None where absent)."""
    git = repo._git_repo()
    recs = TreeRecords(git, commit_tree(git, commit))
    if arrayset not in recs.aset_entries:
        return None
    return recs.samples(arrayset).get(enc)


def merge_branches(
    repo: Repository,
    message: str,
    master_branch: str,
    dev_branch: str,
    *,
    strategy: str | None = None,
    journal: Journal | None = None,
) -> str:
    """Merge ``dev_branch`` into ``master_branch``; returns master's new head.

    A fast-forward when master's head is an ancestor of dev's (``message``
    unused); nothing when dev's head is already in master's history; else a
    three-way merge against the merge base git finds, committed with both
    heads as parents. Only records are read: payloads need not be on this
    machine. The commit object is written before the branch ref moves, and
    the staging area is reset onto the new head last, so a killed process
    leaves either the old or the new head, never a half merge.

    Parameters
    ----------
    repo : Repository
        The repository; the caller holds the writer lock.
    message : str
        Message of a three-way merge commit.
    master_branch : str
        Branch to merge into (the write checkout's branch).
    dev_branch : str
        Branch to merge from (local, or remote-tracking ``remote/branch``).
    strategy : {None, 'ours', 'theirs'}
        Resolution of sample and metadata conflicts (see :func:`merge_trees`).
    journal : Journal, optional
        The write checkout's staging area: it must hold no changes, and is
        reset onto the new head.

    Raises
    ------
    MergeConflictError
        (a ValueError) on conflicts; no ref moves and the staging area is
        untouched.
    ValueError
        Unknown branches, merging a branch into itself, a bad strategy or
        message, or staged changes.
    RuntimeError
        If the branch moved under the staging area.
    """
    git = repo._git_repo()
    if not isinstance(message, str):
        raise ValueError(f"merge message must be a str, not {type(message).__name__}")
    _check_strategy(strategy)
    check_branch_name(master_branch)
    if dev_branch == master_branch:
        raise ValueError(f"cannot merge branch {master_branch!r} into itself")
    dev_head = branch_commit(git, dev_branch)
    master_head = branch_head(git, master_branch)
    if journal is not None:
        if journal.branch != master_branch:
            raise ValueError(f"the write checkout is on {journal.branch!r}, not {master_branch!r}")
        if journal.base != master_head:
            raise RuntimeError(
                f"branch {master_branch!r} moved to {master_head} while the staging area is "
                f"based on {journal.base}; reopen the write checkout"
            )
        if journal.has_entries:
            from .diff import staged_diff
            from .records.view import StagedView

            view = StagedView(TreeRecords(git, commit_tree(git, master_head)), journal)
            if not staged_diff(view).empty:
                raise ValueError(
                    "the staging area has uncommitted changes: commit or reset them first"
                )
    if master_head == dev_head:
        return dev_head
    base = _merge_base(git, master_head, dev_head)
    if base == dev_head:
        assert master_head is not None
        return master_head  # already merged
    if master_head is None or base == master_head:
        # dev's records become master's: checked first, against master's
        ensure_trusted(git, (commit_tree(git, master_head), commit_tree(git, dev_head)))
        _move_branch(git, master_branch, master_head, dev_head, journal)
        return dev_head
    master_tree = commit_tree(git, master_head)
    tree = merge_trees(
        git, commit_tree(git, base), master_tree, commit_tree(git, dev_head), strategy=strategy
    )
    # the merge's change log: what it brought to master, found by a walk
    # that skips every subtree the merge left as master had it
    log = changelog.from_trees(git, master_head, master_tree, tree)
    if log is not None:
        tree = changelog.attach(git, tree, log)
    sha = repo._write_commit(tree, message, [master_head, dev_head])
    _move_branch(git, master_branch, master_head, sha, journal)
    return sha


def _move_branch(
    git: pygit2.Repository, branch: str, old: str | None, new: str, journal: Journal | None
) -> None:
    """Point ``branch`` at ``new`` (checking it still is at ``old``), then reset staging."""
    ref = HEADS + branch
    if branch_head(git, branch) != old:
        raise RuntimeError(f"branch {branch!r} moved during the merge; nothing was changed")
    git.references.create(ref, pygit2.Oid(hex=new), force=True)
    if journal is not None:
        journal.reset(branch, new)


__all__ = [
    "STRATEGIES",
    "branch_commit",
    "conflict_kind",
    "diff3",
    "diff_with_branch",
    "diff_with_commit",
    "merge_branches",
    "merge_trees",
    "sample_records",
]
