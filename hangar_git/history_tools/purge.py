"""Purge: samples and metadata removed from every commit of every local branch.

Deleting one person's data from all history is sometimes a legal duty. A
purge rewrites, parents first, every commit reachable from the hangar refs
(``refs/hangar/*`` but the remote-tracking ones) whose records hold one of
the keys, and every commit above such a commit (its parent changed, so its
id does); the others keep their ids. A rewritten commit keeps its author,
committer, dates and message; its change log is found again against its new
parent. Each root tree is rewritten once however many commits share it, and
only the leaves holding the keys are written, so the cost is that of the
commits rewritten. An arrayset renamed in history (``change_arrayset(rename=
...)``) is purged under each of its names (:mod:`.lineage`).

Then (:func:`drop_purged`) what only the old history needed leaves this
machine: remote-tracking refs whose history holds the keys are deleted (fetch
them again after the force-push the report prints), the reflogs of the hangar
refs are expired (they would keep the old commits reachable), the payloads
no commit names any more are dropped from the store and every pack holding
dead bytes is rewritten (:func:`hangar_git.gc.gc` with threshold 0), and git
drops its unreachable objects (``git repack -A -d``, ``git prune
--expire=now``: this also drops other unreachable objects of the git
repository, as ``git gc --prune=now`` would). A payload another sample still
names (same content) stays.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pygit2

from ..gitutil import (
    HEADS,
    REMOTES,
    TYPE_COMMIT,
    common_dir,
    open_batch_of,
    read_raw,
    ref_commit,
    write_tree,
)
from ..merge import check_journal
from ..naming import check_arrayset_name, encode_key
from ..records import changelog, trust
from ..records.build import build_samples
from ..records.changelog import CHANGES_NAME
from ..records.layout import MODE_TREE, parse_tree, serialize_tree
from ..records.objpack import held_objects, publish
from ..records.snapshot import SampleRecords
from ..records.validate import ensure_trusted
from ..refs import TAGS
from ..wording import plural
from .lineage import arrayset_names

if TYPE_CHECKING:
    from ..gc import GcReport
    from ..records.staging import Journal
    from ..repository import Repository
    from .remote_purge import RemotePurge

HANGAR_REFS = "refs/hangar/"


@dataclass
class PurgeReport:
    """What :func:`purge_records` and :func:`drop_purged` did (or would do).

    Attributes
    ----------
    dry_run : bool
        True when nothing was changed.
    arrayset : str or None
    keys, meta_keys : list of str
        The encoded sample and metadata keys purged.
    commits : dict of str to str
        Old -> new hash of every commit rewritten.
    refs : dict of str to tuple of (str, str)
        Ref name -> (old, new) head of every ref moved.
    remote_refs : list of str
        Remote-tracking refs deleted (their history held the keys).
    remotes : list of str
        The git remotes of the repository (see :meth:`push_commands`).
    renamed : list of str
        The other names of ``arrayset`` in history whose samples were purged
        too (renames are followed: see :mod:`.lineage`).
    payloads : set of bytes
        Digests the purged samples named.
    payloads_kept : set of bytes
        Those still in the store afterwards: other samples name them.
    gc : GcReport or None
        The payload collection run after the rewrite.
    git : list of str
        What was done to git's reflogs and objects.
    data_remote : RemotePurge or None
        What was removed from a data remote, when one was named.
    """

    dry_run: bool
    arrayset: str | None
    keys: list[str]
    meta_keys: list[str]
    commits: dict[str, str] = field(default_factory=dict)
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    remote_refs: list[str] = field(default_factory=list)
    remotes: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    payloads: set[bytes] = field(default_factory=set)
    payloads_kept: set[bytes] = field(default_factory=set)
    gc: GcReport | None = None
    git: list[str] = field(default_factory=list)
    data_remote: RemotePurge | None = None

    def push_commands(self) -> list[str]:
        """The force-pushes that rewrite the moved branches and tags on each
        git remote of this repository (``<remote>`` when it has none)."""
        heads = [r for r in sorted(self.refs) if r.startswith((HEADS, TAGS))]
        specs = " ".join(f"+{r}:{r}" for r in heads)
        if not specs:
            return []
        return [f"git push {remote} {specs}" for remote in self.remotes or ["<remote>"]]

    def summary(self) -> str:
        """Lines for people: the refs moved, payloads, the force-push to run."""
        would = "would " if self.dry_run else ""
        verb = "would rewrite" if self.dry_run else "rewrote"
        lines = [f"{verb} {plural(len(self.commits), 'commit')} (commit ids change):"]
        for ref, (old, new) in sorted(self.refs.items()):
            lines.append(f"  {ref}: {old[:10]} -> {new[:10]}")
        for ref in self.remote_refs:
            lines.append(f"  {ref}: {would}delete (fetch it again after the force-push)")
        if self.dry_run and self.commits:
            lines.append("commits that would be rewritten (old -> new, parents first):")
            lines.extend(f"  {old} -> {new}" for old, new in self.commits.items())
        if self.renamed:
            names = ", ".join(repr(n) for n in self.renamed)
            lines.append(f"{would}purged under its names in history too: {names}")
        n = len(self.payloads)
        lines.append(f"the purged samples named {n} payload{'s' if n != 1 else ''}")
        if self.dry_run and self.payloads:
            lines.append("  removed unless another sample holds the same data:")
            lines.extend(f"  payload {d.hex()}" for d in sorted(self.payloads))
        if self.payloads_kept:
            lines.append(f"  {len(self.payloads_kept)} stay: other samples hold the same data")
        lines.extend(self.git)
        if self.gc is not None:
            lines.append(self.gc.summary())
        if self.data_remote is not None:
            lines.append(self.data_remote.summary())
        push = self.push_commands()
        if push:
            lines.append("rewrite the records on your remotes (a force-push) with:")
            lines.extend(f"  {c}" for c in push)
        return "\n".join(lines)


class _Rewriter:
    """Root trees and commits without the purged keys, each rewritten once."""

    def __init__(
        self, git: pygit2.Repository, report: PurgeReport, names: dict[str, frozenset[str]]
    ) -> None:
        self.git = git
        self.report = report
        #: commit hash -> the names the purged arrayset has there (renames followed)
        self.names = names
        self.roots: dict[tuple[bytes, frozenset[str]], bytes] = {}
        self.samples: dict[bytes, bytes | None] = {}
        self.mapped: dict[str, str] = {}
        #: new commit hash -> its root tree
        self.trees: dict[str, bytes] = {}

    def samples_tree(self, oid: bytes) -> bytes | None:
        """Samples tree ``oid`` without the purged keys."""
        if oid not in self.samples:
            records = SampleRecords(self.git, oid)
            found = {enc: d for enc in self.report.keys if (d := records.get(enc)) is not None}
            self.report.payloads.update(found.values())
            self.samples[oid] = (
                build_samples(self.git, records, dict.fromkeys(found)) if found else oid
            )
        return self.samples[oid]

    def root(self, oid: bytes, names: frozenset[str]) -> bytes:
        """Root tree ``oid`` without the purged keys in the arraysets ``names``
        (and without its change log when anything changed: the caller finds it
        again)."""
        if (oid, names) in self.roots:
            return self.roots[oid, names]
        root = parse_tree(read_raw(self.git, oid))
        changed = False
        aset_entry = root.get("arraysets")
        if names and aset_entry is not None:
            asets = parse_tree(read_raw(self.git, aset_entry[1]))
            for name in sorted(names):
                changed |= self._purge_arrayset(asets, name)
            if changed:
                root["arraysets"] = (MODE_TREE, write_tree(self.git, serialize_tree(asets)))
        meta_entry = root.get("metadata")
        if self.report.meta_keys and meta_entry is not None:
            meta = parse_tree(read_raw(self.git, meta_entry[1]))
            gone = [k for k in self.report.meta_keys if meta.pop(k, None) is not None]
            if gone:
                changed = True
                if meta:
                    root["metadata"] = (MODE_TREE, write_tree(self.git, serialize_tree(meta)))
                else:
                    del root["metadata"]
        if changed:
            root.pop(CHANGES_NAME, None)
        out = write_tree(self.git, serialize_tree(root)) if changed else oid
        if changed and trust.is_trusted(self.git, oid):
            trust.remember(self.git, out)
            if trust.is_trusted(self.git, oid, trust.PAYLOADS):
                trust.remember(self.git, out, trust.PAYLOADS)
        self.roots[oid, names] = out
        return out

    def _purge_arrayset(self, asets: dict[str, tuple[bytes, bytes]], name: str) -> bool:
        """Arrayset ``name`` of ``asets`` without the purged keys; True if it changed."""
        entry = asets.get(name)
        tree = parse_tree(read_raw(self.git, entry[1])) if entry is not None else {}
        if "samples" not in tree:
            return False
        new = self.samples_tree(tree["samples"][1])
        if new == tree["samples"][1]:
            return False
        if new is None:
            del tree["samples"]
        else:
            tree["samples"] = (MODE_TREE, new)
        asets[name] = (MODE_TREE, write_tree(self.git, serialize_tree(tree)))
        if name != self.report.arrayset and name not in self.report.renamed:
            self.report.renamed.append(name)
        return True

    def commit(self, c: pygit2.Commit) -> str:
        """The hash of commit ``c`` rewritten (its own when nothing changes)."""
        sha = str(c.id)
        parents = [self.mapped[str(p)] for p in c.parent_ids]
        old_parents = [str(p) for p in c.parent_ids]
        tree = self.root(c.tree_id.raw, self.names.get(sha, frozenset()))
        if tree == c.tree_id.raw and parents == old_parents:
            self.mapped[sha] = sha
            self.trees[sha] = tree
            return sha
        if CHANGES_NAME in parse_tree(read_raw(self.git, c.tree_id.raw)):
            tree = self._with_log(tree, parents[0] if parents else None)
        raw = read_raw(self.git, c.id).split(b"\n\n", 1)
        headers = [h for h in raw[0].split(b"\n") if not h.startswith((b"tree ", b"parent "))]
        head = [b"tree " + tree.hex().encode()] + [b"parent " + p.encode() for p in parents]
        body = b"\n".join(head + headers) + b"\n\n" + (raw[1] if len(raw) > 1 else b"")
        new = _add_commit(self.git, body)
        self.mapped[sha] = new
        self.trees[new] = tree
        self.report.commits[sha] = new
        return new

    def _with_log(self, tree: bytes, parent: str | None) -> bytes:
        """Root ``tree`` with its change log found again against ``parent``."""
        root = parse_tree(read_raw(self.git, tree))
        if root.pop(CHANGES_NAME, None) is not None:
            tree = write_tree(self.git, serialize_tree(root))
        before = self.trees[parent] if parent is not None else None
        log = changelog.from_trees(self.git, parent, before, tree)
        return changelog.attach(self.git, tree, log) if log is not None else tree


def _add_commit(git: pygit2.Repository, body: bytes) -> str:
    batch = open_batch_of(git)
    assert batch is not None  # purge_records holds its objects
    return batch.add(TYPE_COMMIT, body).hex()


def _keys(keys: Iterable[str | int], kind: str) -> list[str]:
    if isinstance(keys, (str, int)):
        raise ValueError(f"{kind} keys must be given as a list, not one {type(keys).__name__}")
    return sorted({encode_key(k, kind) for k in keys})


def purge_records(
    git: pygit2.Repository,
    journal: Journal,
    arrayset: str | None,
    keys: Iterable[str | int] = (),
    *,
    meta_keys: Iterable[str | int] = (),
    dry_run: bool = False,
) -> PurgeReport:
    """Rewrite every commit of the hangar refs without the samples ``keys`` of
    ``arrayset`` and the metadata ``meta_keys``; move the refs.

    Parameters
    ----------
    git : pygit2.Repository
        The repository; the caller holds the writer lock.
    journal : Journal
        The staging area: it must hold no changes, and is reset onto its
        branch's new head.
    arrayset : str or None
        The arrayset of ``keys`` (None when only metadata is purged).
    keys, meta_keys : iterable of str or int
        Sample keys, metadata keys.
    dry_run : bool
        Find the new commits (their ids are exact) but write nothing.

    Returns
    -------
    PurgeReport
        With the commits and refs rewritten, remote-tracking refs deleted and
        the payloads the purged samples named.

    Raises
    ------
    ValueError
        No key given, a bad key or arrayset name, or staged changes.
    """
    enc, menc = _purge_keys(arrayset, keys, meta_keys, dry_run)
    head = ref_commit(git, HEADS + journal.branch)
    check_journal(git, journal, journal.branch, head)
    report = PurgeReport(dry_run, arrayset, enc, menc)
    refs = {n: ref_commit(git, n) for n in git.references if n.startswith(HANGAR_REFS)}
    heads = {n: c for n, c in refs.items() if c is not None}
    remote_refs = [n[len(REMOTES) :] for n in heads if n.startswith(REMOTES)]
    configured = {r.name for r in git.remotes if r.name}
    report.remotes = sorted(configured | {n.split("/", 1)[0] for n in remote_refs})
    if not heads:
        return report
    commits = _history(git, heads.values())
    ensure_trusted(git, [c.tree_id.raw for c in commits])
    names = arrayset_names(git, commits, arrayset) if arrayset is not None else {}
    rw = _Rewriter(git, report, names)
    with held_objects(git) as batch:
        for commit in commits:
            rw.commit(commit)
        for name, old in heads.items():
            if rw.mapped[old] == old:
                continue
            if name.startswith(REMOTES):
                report.remote_refs.append(name)
            else:
                report.refs[name] = (old, rw.mapped[old])
        if dry_run or not report.commits:
            return report
        publish(git, batch)
        _move_refs(git, report)
    journal.reset(journal.branch, rw.mapped.get(head, head) if head is not None else None)
    return report


def _purge_keys(
    arrayset: str | None,
    keys: Iterable[str | int],
    meta_keys: Iterable[str | int],
    dry_run: object,
) -> tuple[list[str], list[str]]:
    """The encoded sample and metadata keys of a purge, its arguments checked.

    Raises
    ------
    ValueError
        As :func:`purge_records` says.
    """
    if not isinstance(dry_run, bool):
        raise ValueError(f"dry_run must be a bool, not {dry_run!r}")
    enc, menc = _keys(keys, "sample"), _keys(meta_keys, "metadata")
    if enc and arrayset is None:
        raise ValueError("name the arrayset of the sample keys to purge")
    if arrayset is not None:
        check_arrayset_name(arrayset)
    if not enc and not menc:
        raise ValueError("nothing to purge: name sample keys or metadata keys")
    return enc, menc


def _history(git: pygit2.Repository, heads: Iterable[str]) -> list[pygit2.Commit]:
    """Every commit reachable from ``heads``, parents first."""
    walker = git.walk(None, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    for sha in set(heads):
        walker.push(pygit2.Oid(hex=sha))
    return list(walker)


def _move_refs(git: pygit2.Repository, report: PurgeReport) -> None:
    """Move the refs to their rewritten heads and delete the remote-tracking
    refs, as ``report`` says; refuse a ref that moved since the purge read it."""
    for name, (old, new) in report.refs.items():
        if ref_commit(git, name) != old:
            raise RuntimeError(f"{name} moved during the purge; run it again")
        git.create_reference_direct(name, pygit2.Oid(hex=new), True, message="hangar purge")
    for name in report.remote_refs:
        git.references.delete(name)


def _git(git: pygit2.Repository, *args: str) -> str | None:
    """Run git on the repository; None when it worked, else why not."""
    exe = shutil.which("git")
    if exe is None:
        return "no git executable"
    cmd = [exe, f"--git-dir={common_dir(git)}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    return None


def drop_purged(repo: Repository, report: PurgeReport) -> None:
    """Remove from this machine what only the history before ``report``'s purge needed.

    Expires the reflogs of the hangar refs (leaving one entry naming each
    ref's head), collects payloads and compacts every pack with dead bytes
    (:func:`hangar_git.gc.gc`, threshold 0), then repacks git's objects and
    prunes the unreachable ones. Fills ``report.gc``, ``payloads_kept`` and
    ``git``.

    Raises
    ------
    WriterLockError
        (a PermissionError) while a write checkout is open.
    """
    from ..gc import gc

    git = repo.git_repository()
    lock = repo.acquire_writer_lock()
    try:
        names = sorted(n for n in git.references if n.startswith(HANGAR_REFS))
        # a ref with no reflog (a tag) has nothing to expire, and git refuses it
        logged = [n for n in names if any(True for _ in git.references[n].log())]
        why = None
        if logged:
            why = _git(git, "reflog", "expire", "--expire=now", "--expire-unreachable=now", *logged)
        if why is None:
            for name in logged:  # one entry again: repair finds the head there
                target = ref_commit(git, name)
                if target is not None:
                    git.create_reference_direct(
                        name, pygit2.Oid(hex=target), True, message="hangar purge: reflog expired"
                    )
            report.git.append(f"expired the reflogs of {len(logged)} hangar refs")
        else:
            report.git.append(f"reflogs not expired ({why}): the old commits stay reachable")
    finally:
        repo.release_writer_lock(lock)
    report.gc = gc(repo, threshold=0.0)
    lock = repo.acquire_writer_lock()
    try:
        why = _git(git, "prune", "--expire=now")
        report.git.append(
            "pruned unreachable git objects" if why is None else f"git prune failed: {why}"
        )
    finally:
        repo.release_writer_lock(lock)
    reader = repo.payload_store.reader()
    try:
        report.payloads_kept = {d for d in report.payloads if reader.contains(d)}
    finally:
        reader.close()


__all__ = ["PurgeReport", "drop_purged", "purge_records"]
