"""Build a commit tree from a base tree plus staged changes.

Only the subtrees that hold a change are rebuilt: for an arrayset, the fan-out
leaves that hold changed keys and the trees above them. A commit of 10
changed samples on top of millions writes a handful of tree objects.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pygit2

from ..gitutil import read_raw, write_blob, write_tree
from ..store.digest_run import joined_digests
from . import entry_hints, key_cache, trust
from .changelog import CHANGES_NAME
from .counts import remember_count
from .keynames import KeyNames, names_crc32
from .layout import (
    FORMAT_BLOB,
    HEX_NAMES,
    MODE_BLOB,
    MODE_TREE,
    Entry,
    Fanout,
    choose_fanout,
    leaf_path,
    parse_tree,
    serialize_links,
    serialize_tree,
)
from .objpack import PACK_MIN_OBJECTS, tree_ids, write_trees
from .snapshot import SampleRecords, TreeRecords
from .staging import StagedAset


def build_samples(
    repo: pygit2.Repository,
    base: SampleRecords | None,
    changes: Mapping[str, bytes | None],
) -> bytes | None:
    """New ``samples/`` tree id from ``base`` and ``changes`` (None if empty)."""
    if base is None or base.oid is None:  # a new arrayset: write it whole, once
        return write_samples(repo, changes)
    if not changes:
        return base.oid
    cur: Fanout = base.fanout
    # estimate the new count: only to choose the fan-out, with hysteresis
    groups: dict[tuple[str, ...], dict[str, bytes | None]] = defaultdict(dict)
    for enc, d in changes.items():
        groups[leaf_path(enc, cur)][enc] = d
    new_leaves: dict[tuple[str, ...], dict[str, bytes]] = {}
    delta = 0
    for path, ch in groups.items():
        leaf = dict(base.leaf(path))
        before = len(leaf)
        for enc, d in ch.items():
            if d is None:
                leaf.pop(enc, None)
            else:
                leaf[enc] = d
        delta += len(leaf) - before
        new_leaves[path] = leaf
    known = base.known_count()
    count = max(0, (known if known is not None else base.estimate_count()) + delta)
    target = choose_fanout(count, cur)
    if target != cur:
        return _build_full(repo, base, changes, target)
    if not cur:
        leaf = new_leaves[()]
        return write_tree(repo, serialize_links(leaf)) if leaf else None
    oid = _update_fanned(repo, base.oid, (), len(cur), _write_leaves(repo, new_leaves))
    if oid is not None and known is not None:  # exact: the base's count plus the change
        remember_count(repo, oid, count)
    return oid


def _update_fanned(
    repo: pygit2.Repository,
    oid: bytes | None,
    prefix: tuple[str, ...],
    depth: int,
    leaf_oids: Mapping[tuple[str, ...], bytes | None],
) -> bytes | None:
    """Rewrite the fan-out tree at ``prefix`` with new leaf ids below it."""
    entries: dict[str, Entry] = parse_tree(read_raw(repo, oid)) if oid else {}
    level = len(prefix)
    children: dict[str, dict[tuple[str, ...], bytes | None]] = defaultdict(dict)
    for path, loid in leaf_oids.items():
        children[path[level]][path] = loid
    for name, sub in children.items():
        if level + 1 == depth:
            new = sub[(*prefix, name)]
        else:
            old = entries.get(name)
            new = _update_fanned(repo, old[1] if old else None, (*prefix, name), depth, sub)
        if new is None:
            entries.pop(name, None)
        else:
            entries[name] = (MODE_TREE, new)
    if not entries:
        return None
    return write_tree(repo, serialize_tree(entries))


def _build_full(
    repo: pygit2.Repository,
    base: SampleRecords,
    changes: Mapping[str, bytes | None],
    fanout: Fanout,
) -> bytes | None:
    """Write a whole ``samples/`` tree in layout ``fanout``."""
    allrec = dict(base.items())
    for enc, d in changes.items():
        if d is None:
            allrec.pop(enc, None)
        else:
            allrec[enc] = d
    return write_samples(repo, allrec, fanout)


def write_samples(
    repo: pygit2.Repository, records: Mapping[str, bytes | None], fanout: Fanout | None = None
) -> bytes | None:
    """Write ``{encoded key: digest}`` as a samples tree (None if empty).

    None values (removed samples) are left out. Every tree object of a
    fanned-out arrayset (leaves and the levels above them) is serialized in
    vectorised passes and written at once, as one pack when there are many.
    """
    encs = list(records)
    digests = list(records.values())
    if None in digests:
        keep = [i for i, d in enumerate(digests) if d is not None]
        encs = [encs[i] for i in keep]
        digests = [digests[i] for i in keep]
    if not encs:
        return None
    if fanout is None:
        fanout = choose_fanout(len(encs), None)
    if not fanout:
        return write_tree(repo, serialize_links(dict(zip(encs, digests, strict=True))))  # type: ignore[arg-type]
    leaves, tree = _fanned_leaves(encs, digests, fanout)  # type: ignore[arg-type]
    oid = _write_fanned(repo, leaves, fanout)
    remember_count(repo, oid, len(encs))
    _cache_table(repo, oid, tree)
    return oid


def write_sample_run(
    repo: pygit2.Repository,
    names: KeyNames,
    digests: Sequence[bytes],
    plans: dict[Fanout, _Plan] | None = None,
) -> bytes | None:
    """:func:`write_samples` of the distinct records ``names[i] -> digests[i]``
    (a bulk add), laid out from the names' array: the same tree. ``plans``
    (kept by the caller for one commit) holds the last layout of names made
    per fan-out, taken again for the same names (arraysets of one set of
    keys: images and their labels)."""
    n = len(names)
    fanout = choose_fanout(n, None)
    joined = joined_digests(digests)
    if not fanout or len(joined) != 20 * n:
        return write_samples(repo, dict(zip(names.tolist(), digests, strict=True)), fanout)
    lens = names.lengths()
    plan = None if plans is None else plans.get(fanout)
    if plan is None or not plan.fits(names.names, lens):
        plan = _plan(names.names, lens, names_crc32(names.rows(), lens), fanout)
        if plans is not None:
            plans[fanout] = plan
    leaves, tree = _lay_out_planned(plan, joined)
    oid = _write_fanned(repo, leaves, fanout)
    remember_count(repo, oid, n)
    _cache_table(repo, oid, tree, names.ints)
    entry_hints.note_layout(oid, joined, tree.order)
    return oid


class _TreeOrder(NamedTuple):
    """Records as :func:`_fanned_leaves` laid them out: ``order`` (indices of
    the records in tree order), their names (fixed-width bytes) and lengths
    (in the records' order), and their digests in tree order (``S20`` items)."""

    order: np.ndarray
    names: np.ndarray
    lens: np.ndarray
    tree_digests: np.ndarray


def _cache_table(
    repo: pygit2.Repository, oid: bytes, tree: _TreeOrder, ints: np.ndarray | None = None
) -> None:
    """Keep the key table of the samples tree ``oid`` just written (records
    laid out as ``tree``; ``ints``, when given, the int keys they encode, in
    the records' order) in :mod:`.key_cache`, as the first whole
    read of the tree would: the next process that reads it whole parses no
    leaf. Best effort: the cache is optional, a failure leaves it to that
    first read."""
    try:
        table = _key_table(tree, ints)
    except (ValueError, ArithmeticError):  # not records a tree holds: nothing kept
        return
    key_cache.store(repo, oid, table)


#: int keys of up to this many digits are parsed in vectorised passes
_INT_DIGITS = 18


def _key_table(tree: _TreeOrder, ints: np.ndarray | None = None) -> key_cache.KeyTable:
    """The key table of records laid out as ``tree``: the table a read
    of the tree parses from its leaves (:meth:`.KeyTable.from_names`). Int
    keys (``i:`` and decimal digits) are taken from ``ints`` or parsed from
    the name rows in vectorised passes; other names go through ``from_names``."""
    order = tree.order
    # indexed as one item a record (not as rows of bytes: many times faster)
    digests = tree.tree_digests.tobytes()
    if ints is not None:
        return key_cache.KeyTable(digests, ints[order], None)
    width = tree.names.dtype.itemsize
    rows = tree.names[order].view(np.uint8).reshape(len(order), width)
    if 2 < width <= 2 + _INT_DIGITS and (rows[:, :2] == np.frombuffer(b"i:", np.uint8)).all():
        lens = tree.lens[order] - 2
        digits = rows[:, 2:] - np.uint8(ord("0"))  # a byte that is no digit: above 9
        valid = np.arange(width - 2) < lens[:, None]
        if lens.min() > 0 and ((digits <= 9) | ~valid).all():
            # each key's digits read as a number of width - 2 digits (the
            # padding as zeros), then divided by 10 per padding digit
            powers = 10 ** np.arange(width - 3, -1, -1, dtype=np.int64)
            ints = np.where(valid, digits, 0).astype(np.int64) @ powers
            ints //= 10 ** (width - 2 - lens)
            return key_cache.KeyTable(digests, ints, None)
    names = b"\x00".join(tree.names[order].tolist())  # NUL padding stripped
    return key_cache.KeyTable.from_names(names, digests)


def _fanned_leaves(
    encs: list[str], digests: list[bytes], fanout: Fanout
) -> tuple[dict[tuple[str, ...], bytes], _TreeOrder]:
    """The raw leaf trees of records ``encs`` -> ``digests`` laid out in
    ``fanout``, and the records' layout (see :class:`_TreeOrder`).

    Keys are placed by :func:`leaf_path` (the leading bits of their CRC-32)
    and sorted by name within a leaf, as :func:`serialize_links` does, with
    numpy: one sort of all keys, then each ``160000 <name> NUL <digest>``
    entry cut from fixed-width rows without their padding.
    """
    kb = [e.encode() for e in encs]
    crc = np.fromiter(map(zlib.crc32, kb), np.uint32, len(kb))
    lens = np.fromiter(map(len, kb), np.int64, len(kb))
    return _lay_out(np.array(kb), lens, crc, b"".join(digests), fanout)


def _tree_order(names: np.ndarray, leaf: np.ndarray, bits: int) -> np.ndarray:
    """Indices of the records in tree order: by leaf, then by name."""
    if bits <= 16:  # by name, then (stable, a radix sort) by leaf: the same order, faster
        by_name = np.argsort(names, kind="stable")
        return by_name[np.argsort(leaf[by_name].astype(np.uint16), kind="stable")]  # type: ignore[no-any-return]
    return np.lexsort((names, leaf))


def _entry_rows(names: np.ndarray) -> np.ndarray:
    """Fixed-width rows of the tree entries ``160000 <name> NUL <digest>`` of
    records named ``names`` (fixed-width bytes, NUL-padded), all but their
    digests filled a field at a time (one item a record: no strided row
    copies); :func:`_entries` fills the digests in and drops the padding."""
    width = names.dtype.itemsize
    rows = np.empty(
        len(names),
        np.dtype(
            {
                "names": ["mode", "name", "nul", "digest"],
                "formats": ["V7", f"S{width}", "V1", "V20"],
                "offsets": [0, 7, 7 + width, 8 + width],
                "itemsize": width + 28,
            }
        ),
    )
    rows["mode"] = np.frombuffer(b"160000 ", "V7")[0]
    rows["name"] = names
    rows["nul"] = np.frombuffer(b"\x00", "V1")[0]
    return rows


def _entries(rows: np.ndarray, digests: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The tree entries of the records of ``rows`` (:func:`_entry_rows`, their
    digests written in here: ``digests``, items of 20 bytes), one after the
    other, their padding dropped by ``mask`` (:func:`_entry_mask`); one
    uint8 array (``rows`` can take other digests next)."""
    rows["digest"] = digests
    return rows.view(np.uint8)[mask]  # type: ignore[no-any-return]


def _entry_mask(width: int, lens: np.ndarray) -> np.ndarray:
    """The bytes :func:`_entries` keeps of its fixed-width rows (names of
    ``width`` bytes, of lengths ``lens``): bool, a row after the other."""
    row = width + 28
    keep = np.ones((width + 1, row), bool)  # keep[k]: the bytes of a record whose name has k
    keep[:, 7 : 7 + width] = np.arange(width) < np.arange(width + 1)[:, None]
    return keep.view(f"V{row}").ravel()[lens].view(bool)  # type: ignore[no-any-return]


class _Plan(NamedTuple):
    """What laying out records depends on of their names alone (the names
    ``names`` of lengths ``lens``, in ``fanout``): their tree ``order``, in
    that order their lengths, entry rows (:func:`_entry_rows`) and the
    entries' mask, each leaf's path and the span of its bytes in the entries
    (``starts``, ``stops``)."""

    names: np.ndarray
    lens: np.ndarray
    order: np.ndarray
    olens: np.ndarray
    rows: np.ndarray
    mask: np.ndarray
    paths: list[tuple[str, ...]]
    starts: list[int]
    stops: list[int]

    def fits(self, names: np.ndarray, lens: np.ndarray) -> bool:
        """True when this plan lays out records named ``names`` (of ``lens``)."""
        if names is self.names:
            return True
        return (
            names.dtype == self.names.dtype
            and np.array_equal(lens, self.lens)
            and names.tobytes() == self.names.tobytes()  # (many times faster than ``==``)
        )


def _plan(names: np.ndarray, lens: np.ndarray, crc: np.ndarray, fanout: Fanout) -> _Plan:
    """The :class:`_Plan` of records named ``names`` (fixed-width bytes,
    NUL-padded; ``lens`` their lengths, ``crc`` their CRC-32s) in ``fanout``."""
    bits = 4 * sum(fanout)
    leaf = crc >> np.uint32(32 - bits)
    order = _tree_order(names, leaf, bits)
    leaf = leaf[order]
    olens = lens[order]
    ends = np.cumsum(olens + 28)
    cuts = np.flatnonzero(leaf[1:] != leaf[:-1]) + 1
    firsts = np.concatenate(([0], cuts))
    starts_b = np.concatenate(([0], ends[cuts - 1]))
    stops_b = np.concatenate((ends[cuts - 1], ends[-1:]))
    values = leaf[firsts].tolist()
    used = 0
    levels = []  # each leaf's directory name at each level of the fan-out
    for w in fanout:
        used += 4 * w
        shift, mask, hexes = bits - used, (1 << (4 * w)) - 1, HEX_NAMES[w]
        levels.append([hexes[(v >> shift) & mask] for v in values])
    return _Plan(
        names,
        lens,
        order,
        olens,
        _entry_rows(names[order]),
        _entry_mask(names.dtype.itemsize, olens),
        list(zip(*levels, strict=True)),
        starts_b.tolist(),
        stops_b.tolist(),
    )


def _lay_out(
    names: np.ndarray, lens: np.ndarray, crc: np.ndarray, digests: bytes, fanout: Fanout
) -> tuple[dict[tuple[str, ...], bytes], _TreeOrder]:
    """:func:`_fanned_leaves` of records given as arrays: ``names`` (fixed-width
    bytes, NUL-padded), their lengths ``lens`` and CRC-32s ``crc``, and the
    20-byte ``digests`` joined."""
    return _lay_out_planned(_plan(names, lens, crc, fanout), digests)


def _lay_out_planned(
    plan: _Plan, digests: bytes
) -> tuple[dict[tuple[str, ...], bytes], _TreeOrder]:
    """:func:`_lay_out` of the records of ``plan`` and the 20-byte ``digests`` joined."""
    # gathered as S20 items (as V20 ones, several times slower)
    odig = np.frombuffer(digests, "S20")[plan.order]
    raw = _entries(plan.rows, odig.view("V20"), plan.mask)
    # each leaf's bytes cut from the entries' array (no bytes copy of it whole first)
    cut = map(raw.data.__getitem__, map(slice, plan.starts, plan.stops))
    result = dict(zip(plan.paths, map(bytes, cut), strict=True))
    return result, _TreeOrder(plan.order, plan.names, plan.lens, odig)


def _write_fanned(
    repo: pygit2.Repository, leaves: Mapping[tuple[str, ...], bytes], fanout: Fanout
) -> bytes:
    """Write raw leaf trees and the fan-out levels above them; the top tree's id."""
    objects: list[bytes] = list(leaves.values())
    ids = tree_ids(objects)
    level: dict[tuple[str, ...], bytes] = dict(zip(leaves, ids, strict=True))
    for _ in fanout:
        parents: dict[tuple[str, ...], dict[str, Entry]] = defaultdict(dict)
        for path, oid in level.items():
            parents[path[:-1]][path[-1]] = (MODE_TREE, oid)
        level = {}
        for path, entries in parents.items():
            data = serialize_tree(entries)
            objects.append(data)
            (level[path],) = tree_ids([data])
            ids.append(level[path])
    return write_trees(repo, objects, ids)[-1]


def _write_leaves(
    repo: pygit2.Repository, leaves: Mapping[tuple[str, ...], Mapping[str, bytes]]
) -> dict[tuple[str, ...], bytes | None]:
    """Write the non-empty leaves at once (one pack when there are many)."""
    paths = [p for p, v in leaves.items() if v]
    datas = [serialize_links(leaves[p]) for p in paths]
    if len(datas) < PACK_MIN_OBJECTS:
        oids = [write_tree(repo, d) for d in datas]
    else:
        oids = write_trees(repo, datas)
    out: dict[tuple[str, ...], bytes | None] = dict.fromkeys(leaves)
    out.update(zip(paths, oids, strict=True))
    return out


def build_root(
    repo: pygit2.Repository,
    base: TreeRecords,
    asets: Mapping[str, StagedAset],
    meta: Mapping[str, str | None],
    changes: bytes | None = None,
) -> bytes:
    """The root tree of a new commit: ``base`` with staged changes applied
    (and ``changes``, the commit's change log, when given)."""
    aset_entries: dict[str, Entry] = dict(base.aset_entries)
    plans: dict[Fanout, _Plan] = {}  # (arraysets of the same keys: laid out once)
    for name, st in asets.items():
        if st.removed and not st.created:
            aset_entries.pop(name, None)
            continue
        if st.created:
            schema_oid = write_blob(repo, (st.schema or "").encode())
            samples_base = None
        elif name in base.aset_entries:
            if not st.samples:
                continue
            schema_oid = None
            samples_base = base.samples(name)
        else:  # sample changes logged against an arrayset that does not exist
            continue
        run = st.as_run() if samples_base is None else None
        if run is not None:  # bulk adds: laid out from their arrays
            samples_oid = write_sample_run(repo, *run, plans)
        else:
            samples_oid = build_samples(repo, samples_base, st.samples)
        tree: dict[str, Entry] = (
            {} if st.created else dict(parse_tree(read_raw(repo, base.aset_entries[name][1])))
        )
        if schema_oid is not None:
            tree["schema"] = (MODE_BLOB, schema_oid)
        if samples_oid is None:
            tree.pop("samples", None)
        else:
            tree["samples"] = (MODE_TREE, samples_oid)
        aset_entries[name] = (MODE_TREE, write_tree(repo, serialize_tree(tree)))

    root: dict[str, Entry] = {"hangar.json": (MODE_BLOB, write_blob(repo, FORMAT_BLOB))}
    if aset_entries:
        root["arraysets"] = (MODE_TREE, write_tree(repo, serialize_tree(aset_entries)))
    meta_entries: dict[str, Entry] = {}
    moid = base.metadata_oid()
    if moid is not None:
        meta_entries = dict(parse_tree(read_raw(repo, moid)))
    for enc, v in meta.items():
        if v is None:
            meta_entries.pop(enc, None)
        else:
            meta_entries[enc] = (MODE_BLOB, write_blob(repo, v.encode("ascii")))
    if meta_entries:
        root["metadata"] = (MODE_TREE, write_tree(repo, serialize_tree(meta_entries)))
    if changes is not None:
        root[CHANGES_NAME] = (MODE_BLOB, write_blob(repo, changes))
    out = write_tree(repo, serialize_tree(root))
    if base.tree is None or base.trusted:
        # checked records plus staged changes this process validated
        trust.remember(repo, out)
        if changes is not None:
            trust.remember(repo, out, trust.LOG)
        if base.payloads_trusted:  # and every payload checked as it was added
            trust.remember(repo, out, trust.PAYLOADS)
    return out
