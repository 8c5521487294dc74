"""Build a commit tree from a base tree plus staged changes.

Only the subtrees that hold a change are rebuilt: for an arrayset, the fan-out
leaves that hold changed keys and the trees above them. A commit of 10
changed samples on top of millions writes a handful of tree objects.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping

import pygit2

from ..gitutil import read_raw, write_blob, write_tree
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
from .objpack import PACK_MIN_OBJECTS, write_trees
from .snapshot import SampleRecords, TreeRecords
from .staging import StagedAset


def build_samples(
    repo: pygit2.Repository,
    base: SampleRecords | None,
    changes: Mapping[str, bytes | None],
) -> bytes | None:
    """New ``samples/`` tree id from ``base`` and ``changes`` (None if empty)."""
    if base is None or base.oid is None:  # a new arrayset: write it whole, once
        return write_samples(repo, {e: d for e, d in changes.items() if d is not None})
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
    count = max(0, base.estimate_count() + delta)
    target = choose_fanout(count, cur)
    if target != cur:
        return _build_full(repo, base, changes, target)
    if not cur:
        leaf = new_leaves[()]
        return write_tree(repo, serialize_links(leaf)) if leaf else None
    return _update_fanned(repo, base.oid, (), len(cur), _write_leaves(repo, new_leaves))


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
    repo: pygit2.Repository, records: Mapping[str, bytes], fanout: Fanout | None = None
) -> bytes | None:
    """Write ``{encoded key: digest}`` as a samples tree (None if empty)."""
    if not records:
        return None
    if fanout is None:
        fanout = choose_fanout(len(records), None)
    if not fanout:
        return write_tree(repo, serialize_links(records))
    leaves: dict[tuple[str, ...], dict[str, bytes]] = defaultdict(dict)
    if len(fanout) == 1 and fanout[0] in HEX_NAMES:  # leaf_path(), inlined
        names = [(name,) for name in HEX_NAMES[fanout[0]]]
        shift = 32 - 4 * fanout[0]
        crc = zlib.crc32
        for enc, d in records.items():
            leaves[names[crc(enc.encode()) >> shift]][enc] = d
    else:
        for enc, d in records.items():
            leaves[leaf_path(enc, fanout)][enc] = d
    return _update_fanned(repo, None, (), len(fanout), _write_leaves(repo, leaves))


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
) -> bytes:
    """The root tree of a new commit: ``base`` with staged changes applied."""
    aset_entries: dict[str, Entry] = dict(base.aset_entries)
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
    return write_tree(repo, serialize_tree(root))
