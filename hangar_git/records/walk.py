"""Walking the record trees of three commits together, skipping equal subtrees.

Diff, merge and change logs compare a merge base with two sides. The walk
here reads the three trees of each level together and descends only where
the ids differ, so a change of ten samples among millions reads a few dozen
small trees. For each key it yields a *triple* ``(base, master, dev)`` of
record ids (``None`` where absent).

Sample records sit below ``samples/`` in fan-out trees. When the sides of an
arrayset have different fan-outs (one crossed a size threshold), the walk of
that arrayset falls back to comparing full key maps: correct, slower, rare.
:class:`Roots` gives the arraysets and metadata entries of three root trees.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pygit2

from ..gitutil import read_raw, write_tree
from .layout import MODE_TREE, Entry, parse_links, parse_tree, serialize_tree
from .snapshot import SampleRecords

if TYPE_CHECKING:
    import numpy as np

Oid = bytes | None


Triple = tuple[Oid, Oid, Oid]


Path = tuple[str, ...]


_LINK_MARK = b"160000 "


_TREE_MARK = b"40000 "


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
        import numpy as np

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
        import numpy as np

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
    import numpy as np

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
    import numpy as np

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


class FanoutMismatch(Exception):
    """The sides of an arrayset lay their samples out with different fan-outs."""


class Trees:
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
        FanoutMismatch
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
            raise FanoutMismatch
        return kinds.pop()

    def children(self, oids: Triple) -> Iterator[tuple[str, Triple]]:
        """Entries of three fan-out trees whose ids are not all equal."""
        import numpy as np

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


def leaf_triples(trees: Trees, oids: Triple) -> dict[str, Triple]:
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


def full_triples(trees: Trees, oids: Triple) -> dict[str, Triple]:
    """Triples from the full key maps (the fallback for differing fan-outs)."""
    maps = [dict(SampleRecords(trees.repo, o).items()) if o is not None else {} for o in oids]
    out: dict[str, Triple] = {}
    for k in maps[0].keys() | maps[1].keys() | maps[2].keys():
        t = (maps[0].get(k), maps[1].get(k), maps[2].get(k))
        if t[1] != t[0] or t[2] != t[0]:
            out[k] = t
    return out


def sample_triples(trees: Trees, oids: Triple) -> dict[str, Triple]:
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
            out.update(leaf_triples(trees, t))
            return
        for _, child in trees.children(t):
            walk(child)

    try:
        walk(oids)
    except FanoutMismatch:
        return full_triples(trees, oids)
    return out


@dataclass
class AsetState:
    entry: Oid  # the arrayset's tree
    schema: Oid
    samples: Oid


class Roots:
    """The arraysets and metadata entries of the three root trees."""

    def __init__(self, trees: Trees, roots: Triple) -> None:
        self.trees = trees
        self.roots = [trees.tree(r) for r in roots]
        aset_oids = tuple(self._sub(r, "arraysets") for r in self.roots)
        meta_oids = tuple(self._sub(r, "metadata") for r in self.roots)
        self.asets: dict[str, tuple[AsetState, AsetState, AsetState]] = {}
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

    def _aset(self, oid: bytes | None) -> AsetState:
        if oid is None:
            return AsetState(None, None, None)
        t = self.trees.tree(oid)
        schema = t.get("schema")
        samples = t.get("samples")
        return AsetState(oid, schema[1] if schema else None, samples[1] if samples else None)
