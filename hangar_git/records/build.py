"""Build a commit tree from a base tree plus staged changes.

Only the subtrees that hold a change are rebuilt: for an arrayset, the fan-out
leaves that hold changed keys and the trees above them. A commit of 10
changed samples on top of millions writes a handful of tree objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import pygit2

from ..gitutil import read_raw, write_blob, write_tree
from .layout import (
    FORMAT_BLOB,
    MODE_BLOB,
    MODE_TREE,
    Entry,
    Fanout,
    choose_fanout,
    leaf_path,
    parse_links,
    parse_tree,
    serialize_links,
    serialize_tree,
)
from .snapshot import SampleRecords, TreeRecords
from .staging import StagedAset


def build_samples(
    repo: pygit2.Repository,
    base: SampleRecords | None,
    changes: Mapping[str, bytes | None],
) -> bytes | None:
    """New ``samples/`` tree id from ``base`` and ``changes`` (None if empty)."""
    if base is None:
        base = SampleRecords(repo, None)
    if not changes:
        return base.oid
    cur: Fanout = base.fanout
    adds = sum(1 for d in changes.values() if d is not None)
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
    if base.oid is None:
        count = adds
    else:
        count = max(0, base.estimate_count() + delta)
    target = choose_fanout(count, cur if base.oid is not None else None)
    if target != cur:
        return _build_full(repo, base, changes, target)
    if not cur:
        leaf = new_leaves[()]
        return write_tree(repo, serialize_links(leaf)) if leaf else None
    leaf_oids = {
        path: (write_tree(repo, serialize_links(leaf)) if leaf else None)
        for path, leaf in new_leaves.items()
    }
    return _update_fanned(repo, base.oid, (), len(cur), leaf_oids)


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
            new = sub[prefix + (name,)]
        else:
            old = entries.get(name)
            new = _update_fanned(repo, old[1] if old else None, prefix + (name,), depth, sub)
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
    for enc, d in records.items():
        leaves[leaf_path(enc, fanout)][enc] = d
    leaf_oids = {p: write_tree(repo, serialize_links(v)) for p, v in leaves.items()}
    return _update_fanned(repo, None, (), len(fanout), leaf_oids)


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
