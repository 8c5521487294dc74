"""Three-way merge of record trees, and of branches.

:func:`merge_trees` applies dev's changes (found as :mod:`hangar_git.diff`
finds them) to master's tree and writes only the trees on the paths of those
changes; it is a function of (git object database, tree ids).
:func:`merge_branches` moves a branch: fast-forward where history is linear,
else a merge commit whose objects reach git at once (see
:func:`hangar_git.records.objpack.held_objects`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pygit2

from .commits import commit_on_branch, move_branch_from
from .diff import (
    KINDS,
    ConflictRecords,
    aset_conflict,
    conflict_kind,
    conflict_records,
    conflicts_dict,
    merge_base,
    merged_schema,
)
from .diffref import reference_conflicts
from .errors import MergeConflictError
from .gitutil import branch_head, write_blob, write_tree
from .naming import check_branch_name, decode_key
from .records import changelog, trust
from .records.build import build_samples
from .records.changelog import CHANGES_NAME
from .records.layout import (
    FORMAT_BLOB,
    MODE_BLOB,
    MODE_TREE,
    Entry,
    serialize_links,
    serialize_tree,
)
from .records.snapshot import SampleRecords, TreeRecords, commit_tree
from .records.validate import ensure_trusted
from .records.walk import (
    FanoutMismatch,
    Path,
    Roots,
    Trees,
    Triple,
    full_triples,
    leaf_triples,
)
from .refs import branch_commit

if TYPE_CHECKING:
    from .records.staging import Journal

STRATEGIES = (None, "ours", "theirs")


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

    def write(self, trees: Trees) -> bytes | None:
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


def _plan_samples(trees: Trees, oids: Triple) -> _SamplesMerge:
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
            take_leaf(path, leaf_triples(trees, t))
            return
        for name, child in trees.children(t):
            walk(child, (*path, name))

    try:
        walk(oids, ())
    except FanoutMismatch:
        plan = _SamplesMerge(oids, flat=True)
        take_leaf((), full_triples(trees, oids))
    return plan


def _apply(
    trees: Trees,
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
        them as ``co.diff.branch()`` reports them (record keys, see
        :mod:`hangar_git.diffref`). Nothing is written.
    """
    check_strategy(strategy)
    ensure_trusted(repo, (base, master, dev))  # before a byte is written
    trees = Trees(repo)
    roots = Roots(trees, (base, master, dev))
    asets = _plan_asets(trees, roots)
    meta_conf, meta_changes = _plan_meta(roots, strategy)
    conflicts = conflicts_dict(asets.conflicts, meta_conf, asets.sample_conflicts)
    if conflicts["aset"].conflict or (conflicts["conflict_found"] and strategy is None):
        # reported as a diff reports them: record keys, every arrayset in 'sample'
        names = [n for oid in roots.aset_oids for n in trees.tree(oid)]
        raise MergeConflictError(
            _conflict_message(conflicts, strategy), reference_conflicts(conflicts, names)
        )

    # ---- write: nothing above this line touched the object database ----
    aset_entries = _write_asets(trees, roots, asets, strategy)
    meta_entries = _changed_entries(trees.tree(roots.meta_oids[1]), meta_changes, MODE_BLOB)
    out = _write_root(repo, roots, aset_entries, meta_entries)
    trust.remember(repo, out)  # made of checked trees
    if all(t is None or trust.is_trusted(repo, t, trust.PAYLOADS) for t in (base, master, dev)):
        trust.remember(repo, out, trust.PAYLOADS)  # and of samples added here
    return out


@dataclass
class _AsetsMerge:
    """What a merge does to the arraysets both sides hold, and their conflicts.

    ``take`` maps an arrayset to dev's tree (None removes it) when master left
    it as the base had it; ``plans`` holds the samples merges of arraysets
    both sides changed without an arrayset conflict.
    """

    conflicts: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    sample_conflicts: dict[str, ConflictRecords] = field(default_factory=dict)
    take: dict[str, bytes | None] = field(default_factory=dict)
    plans: dict[str, _SamplesMerge] = field(default_factory=dict)


def _plan_asets(trees: Trees, roots: Roots) -> _AsetsMerge:
    """Plan the merge of the arraysets of ``roots`` (reads only)."""
    out = _AsetsMerge()
    for name, (a, m, d) in roots.asets.items():
        kind = aset_conflict(trees, a, m, d)
        if kind is not None:
            out.conflicts[kind].append(name)
        if d.entry == a.entry or d.entry == m.entry:
            continue
        if m.entry == a.entry and kind is None:
            out.take[name] = d.entry
            continue
        plan = _plan_samples(trees, (a.samples, m.samples, d.samples))
        conf: dict[str, list] = defaultdict(list)
        for ck, enc, _, _ in plan.conflicts:
            conf[ck].append(decode_key(enc))
        out.sample_conflicts[name] = conflict_records(conf)
        if kind is None:
            out.plans[name] = plan
    return out


def _plan_meta(
    roots: Roots, strategy: str | None
) -> tuple[dict[str, list], dict[str, bytes | None]]:
    """The metadata conflicts (decoded keys by kind) and the changes to make
    to master's metadata (None removes a key); 'theirs' takes dev's values."""
    conflicts: dict[str, list] = defaultdict(list)
    changes: dict[str, bytes | None] = {}
    for enc, t in roots.meta.items():
        kind = conflict_kind(*t)
        if kind is not None:
            conflicts[kind].append(decode_key(enc))
            if strategy == "theirs":
                changes[enc] = t[2]
        elif t[2] != t[0] and t[2] != t[1]:
            changes[enc] = t[2]
    return conflicts, changes


def _changed_entries(
    entries: Mapping[str, Entry], changes: Mapping[str, bytes | None], mode: bytes
) -> dict[str, Entry]:
    """``entries`` with ``changes`` made: an id sets an entry of ``mode``, None removes it."""
    out = dict(entries)
    for name, oid in changes.items():
        if oid is None:
            out.pop(name, None)
        else:
            out[name] = (mode, oid)
    return out


def _write_asets(
    trees: Trees, roots: Roots, asets: _AsetsMerge, strategy: str | None
) -> dict[str, Entry]:
    """Write the merged arrayset trees; returns the entries of the merged
    ``arraysets`` tree."""
    entries = _changed_entries(trees.tree(roots.aset_oids[1]), asets.take, MODE_TREE)
    for name, plan in asets.plans.items():
        plan.resolve(strategy)
        samples = plan.write(trees)
        a, m, d = roots.asets[name]
        tree = dict(trees.tree(m.entry if m.entry is not None else d.entry))
        schema = merged_schema(trees, a, m, d)  # one side's widened schema, or the common one
        assert schema is not None  # else an arrayset conflict: no plan
        tree["schema"] = (MODE_BLOB, schema)
        if samples is None:
            tree.pop("samples", None)
        else:
            tree["samples"] = (MODE_TREE, samples)
        entries[name] = (MODE_TREE, write_tree(trees.repo, serialize_tree(tree)))
    return entries


def _write_root(
    repo: pygit2.Repository,
    roots: Roots,
    aset_entries: Mapping[str, Entry],
    meta_entries: Mapping[str, Entry],
) -> bytes:
    """Write the merged root tree around the merged arraysets and metadata."""
    root = dict(roots.roots[1] or roots.roots[2])
    root.pop(CHANGES_NAME, None)  # master's log is not the merge commit's
    root["hangar.json"] = (MODE_BLOB, write_blob(repo, FORMAT_BLOB))
    for key, entries in (("arraysets", aset_entries), ("metadata", meta_entries)):
        if entries:
            root[key] = (MODE_TREE, write_tree(repo, serialize_tree(entries)))
        else:
            root.pop(key, None)
    return write_tree(repo, serialize_tree(root))


def _conflict_message(conflicts: Mapping[str, Any], strategy: str | None) -> str:
    parts: list[str] = []

    def show(label: str, rec: ConflictRecords) -> None:
        for kind in KINDS:
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


def check_strategy(strategy: object) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be None, 'ours' or 'theirs', not {strategy!r}")


def check_journal(git: pygit2.Repository, journal: Journal, branch: str, head: str | None) -> None:
    """Refuse to move ``branch`` (at ``head``) under a staging area that would lose work.

    Raises
    ------
    ValueError
        If the staging area is on another branch or holds changes.
    RuntimeError
        If the branch moved away from the staging area's base.
    """
    if journal.branch != branch:
        raise ValueError(f"the write checkout is on {journal.branch!r}, not {branch!r}")
    if journal.base != head:
        raise RuntimeError(
            f"branch {branch!r} moved to {head} while the staging area is "
            f"based on {journal.base}; reopen the write checkout"
        )
    if journal.has_entries:
        from .diff import staged_diff
        from .records.view import StagedView

        view = StagedView(TreeRecords(git, commit_tree(git, head)), journal)
        if not staged_diff(view).empty:
            raise ValueError("the staging area has uncommitted changes: commit or reset them first")


def merge_branches(
    git: pygit2.Repository,
    identity: tuple[str, str],
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
    git : pygit2.Repository
        The repository; the caller holds the writer lock.
    identity : (str, str)
        Name and email of the merge commit's author and committer.
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
    _check_merge_args(message, strategy, master_branch, dev_branch)
    dev_head = branch_commit(git, dev_branch)
    master_head = branch_head(git, master_branch)
    if journal is not None:
        check_journal(git, journal, master_branch, master_head)
    if master_head == dev_head:
        return dev_head
    base = merge_base(git, master_head, dev_head)
    if base == dev_head:
        assert master_head is not None
        return master_head  # already merged
    if master_head is None or base == master_head:
        sha = _fast_forward(git, master_branch, master_head, dev_head)
    else:
        # a conflict raises from building the tree: nothing is written, the branch stays
        sha = commit_on_branch(
            git,
            master_branch,
            master_head,
            lambda: _merged_tree(git, base, master_head, dev_head, strategy),
            message,
            (dev_head,),
            identity,
            reflog=f"merge {dev_branch}",
        )
    if journal is not None:
        journal.reset(master_branch, sha)
    return sha


def _check_merge_args(
    message: object, strategy: object, master_branch: str, dev_branch: str
) -> None:
    """Refuse a merge :func:`merge_branches` cannot make, before anything is read."""
    if not isinstance(message, str):
        raise ValueError(f"merge message must be a str, not {type(message).__name__}")
    check_strategy(strategy)
    check_branch_name(master_branch)
    if dev_branch == master_branch:
        raise ValueError(f"cannot merge branch {master_branch!r} into itself")


def _fast_forward(git: pygit2.Repository, branch: str, head: str | None, dev_head: str) -> str:
    """Move ``branch`` from ``head`` to its descendant ``dev_head``; returns ``dev_head``."""
    # dev's records become master's: checked first, against master's
    ensure_trusted(git, (commit_tree(git, head), commit_tree(git, dev_head)))
    move_branch_from(git, branch, head, dev_head, "merge: fast-forward")
    return dev_head


def _merged_tree(
    git: pygit2.Repository, base: str | None, master_head: str, dev_head: str, strategy: str | None
) -> bytes:
    """Root tree of the merge commit of ``dev_head`` into ``master_head``, with
    its change log: what the merge brought to master."""
    master_tree = commit_tree(git, master_head)
    tree = merge_trees(
        git, commit_tree(git, base), master_tree, commit_tree(git, dev_head), strategy=strategy
    )
    # found by a walk that skips every subtree the merge left as master had it
    log = changelog.from_trees(git, master_head, master_tree, tree)
    return changelog.attach(git, tree, log) if log is not None else tree
