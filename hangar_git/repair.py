"""Put a damaged repository back in working order (``git hangar fsck --repair``).

:func:`fsck.verify <hangar_git.fsck.verify>` only reports; this module
changes things, and only what it can put back without guessing:

- **branch refs that name a missing or broken commit** (left by an older
  version racing ``git gc --prune=now``, a copied repository missing objects,
  a disk that lost files): each ``refs/hangar/*`` ref whose commit, or that
  commit's root tree, is not in git is moved back to the newest commit of its
  reflog that is whole. A ref with no such commit is deleted, and its name and
  the id it named are appended to ``.git/hangar/lost-refs``. A staging area
  based on a repaired branch keeps its staged changes, now on top of the
  restored head (a copy of the journal as it was is set aside first).
- **a payload index that cannot be read** (``index.sqlite`` truncated,
  deleted or damaged): rebuilt from the manifests the pack files carry and
  from the headers of the large payload files (see
  :mod:`hangar_git.store.rebuild`); the old file is kept beside it.

Everything runs under the writer lock, so no write checkout can be open
while it happens. ``dry_run`` reports what would be done and changes nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2
from pygit2.enums import ObjectType

from .gitutil import branch_ref, common_dir
from .records.staging import Journal
from .store.durable import fsync_dir, fsync_fd, write_all

if TYPE_CHECKING:
    from .repository import Repository

HANGAR_REFS = "refs/hangar/"
ZERO = b"0" * 40
#: where refs that could not be restored are written down
LOST_REFS = "lost-refs"


@dataclass(frozen=True)
class RefRepair:
    """What was done (or would be) to one damaged ref."""

    ref: str
    #: the id the ref named, or what it was instead of a commit
    broken: str
    #: why it is broken
    problem: str
    #: the commit it names now; None when the ref was deleted
    restored: str | None
    #: reflog entries newer than the restored commit (moves that were lost)
    lost_moves: int = 0

    def __str__(self) -> str:
        if self.restored is None:
            return (
                f"{self.ref}: {self.problem}; no whole commit in its reflog: deleted "
                f"(it named {self.broken}; noted in .git/hangar/{LOST_REFS})"
            )
        moves = f", {self.lost_moves} later moves lost" if self.lost_moves > 1 else ""
        return f"{self.ref}: {self.problem}; {self.broken} -> {self.restored}{moves}"


@dataclass
class RepairReport:
    """What :func:`repair` did, or would do with ``dry_run``."""

    dry_run: bool = False
    refs: list[RefRepair] = field(default_factory=list)
    #: the journal copy set aside before its base was moved, if any
    journal_copy: str | None = None
    #: the index rebuild's report, when the index needed one
    index: object | None = None

    @property
    def changed(self) -> bool:
        """True when anything was (or, with ``dry_run``, would be) repaired."""
        return bool(self.refs) or self.index is not None

    def summary(self) -> str:
        """Lines for people: one per repair, or that nothing needed one."""
        would = "would be " if self.dry_run else ""
        lines = [f"ref {r}" for r in self.refs]
        if self.journal_copy:
            lines.append(
                f"staging area: rebased onto the restored head; the journal as it was "
                f"is kept as {self.journal_copy}"
            )
        if self.index is not None:
            lines.append(f"payload index {would}rebuilt: {self.index}")
        if not lines:
            return "nothing to repair"
        if self.dry_run:
            lines.append("(dry run: nothing was changed)")
        return "\n".join(lines)


def commit_problem(git: pygit2.Repository, oid: pygit2.Oid) -> str | None:
    """Why ``oid`` is not a whole commit (None when it is one).

    Whole means: the commit object and its root tree are in git. Deeper
    damage is for :func:`hangar_git.fsck.verify` to list.
    """
    try:
        kind = git.odb.read_header(oid)[0]
    except (KeyError, ValueError, pygit2.GitError):
        return f"commit {oid} is missing"
    if kind != ObjectType.COMMIT:
        return f"{oid} is not a commit"
    try:
        commit = git[oid]
        assert isinstance(commit, pygit2.Commit)
        git.odb.read_header(commit.tree_id)
    except (KeyError, ValueError, pygit2.GitError):
        return f"the root tree of commit {oid} is missing"
    return None


def damaged_refs(git: pygit2.Repository) -> list[tuple[str, str, str]]:
    """``(ref, what it names, problem)`` for every broken ``refs/hangar/*`` ref."""
    out = []
    for name in list(git.references):
        if not name.startswith(HANGAR_REFS):
            continue
        try:
            ref = git.references[name]
            target = ref.target
        except (KeyError, ValueError, pygit2.GitError) as exc:
            out.append((name, "?", f"unreadable ({exc})"))
            continue
        if not isinstance(target, pygit2.Oid):
            out.append((name, str(target), f"symbolic (to {target})"))
            continue
        problem = commit_problem(git, target)
        if problem is not None:
            out.append((name, str(target), problem))
    return out


def _last_whole(git: pygit2.Repository, name: str, broken: str) -> tuple[str | None, int]:
    """Newest whole commit named in ``name``'s reflog, and how many newer
    entries there were."""
    try:
        entries = list(git.references[name].log())
    except (KeyError, ValueError, pygit2.GitError):
        return None, 0
    seen: set[str] = {broken}
    for i, entry in enumerate(entries):
        for oid in (entry.oid_new, entry.oid_old):
            sha = str(oid)
            if sha in seen or sha == ZERO.decode():
                continue
            seen.add(sha)
            if commit_problem(git, oid) is None:
                return sha, i + (oid == entry.oid_old)
    return None, len(entries)


def repair_refs(git: pygit2.Repository, *, dry_run: bool = False) -> list[RefRepair]:
    """Move every broken ``refs/hangar/*`` ref back to its last whole commit.

    A ref whose reflog holds no whole commit is deleted, and noted in
    ``.git/hangar/lost-refs``. Returns what was (or would be) done.
    """
    done = []
    for name, broken, problem in damaged_refs(git):
        restored, lost = _last_whole(git, name, broken)
        done.append(RefRepair(name, broken, problem, restored, lost))
        if dry_run:
            continue
        if restored is not None:
            git.create_reference_direct(
                name, pygit2.Oid(hex=restored), True, message=f"hangar repair: from {broken}"
            )
            _drop_broken_log_entries(git, name)
        else:
            _note_lost(git, name, broken, problem)
            git.references.delete(name)
    return done


def _drop_broken_log_entries(git: pygit2.Repository, name: str) -> None:
    """Rewrite ``name``'s reflog without the ids that are not whole commits
    (``git fsck`` reports every such entry): an entry whose new id is broken
    goes, a broken old id becomes git's zero id."""
    path = common_dir(git) / "logs" / name
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError:
        return
    verdicts: dict[bytes, bool] = {ZERO: True}

    def whole(sha: bytes) -> bool:
        if sha not in verdicts:
            try:
                verdicts[sha] = commit_problem(git, pygit2.Oid(hex=sha.decode())) is None
            except ValueError:
                verdicts[sha] = False
        return verdicts[sha]

    kept = []
    for line in lines:
        old, new = line[:40], line[41:81]
        if not whole(new):
            continue
        kept.append(line if whole(old) else ZERO + line[40:])
    tmp = path.with_name(path.name + ".repair")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        write_all(fd, b"".join(kept))
        fsync_fd(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _note_lost(git: pygit2.Repository, name: str, broken: str, problem: str) -> None:
    path = common_dir(git) / "hangar" / LOST_REFS
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{name}\t{broken}\t{problem}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        write_all(fd, line.encode())
        fsync_fd(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def _rebase_journal(path: Path, moved: dict[str, str | None], dry_run: bool) -> str | None:
    """Keep staged changes whose base commit was repaired, on the new head."""
    if not path.exists():
        return None
    try:
        peeked = Journal.peek(path)
    except RuntimeError:  # unreadable: the next write checkout sets it aside
        return None
    if peeked is None or peeked.base is None:
        return None
    ref = branch_ref(peeked.branch)
    if ref not in moved or moved[ref] is None:
        return None
    if dry_run:
        return str(path.with_name("journal.before-repair-<time>"))
    copy = path.with_name(f"journal.before-repair-{time.time_ns()}")
    copy.write_bytes(path.read_bytes())
    journal = Journal.open(path, peeked.branch, peeked.base)
    try:
        journal.rebase(moved[ref])
    finally:
        journal.close()
    return str(copy)


def repair(repo: Repository, *, dry_run: bool = False) -> RepairReport:
    """Repair broken branch refs and an unreadable payload index.

    Parameters
    ----------
    repo : Repository
        An initialised repository; no write checkout may be open.
    dry_run : bool
        Report what would be done, change nothing.

    Returns
    -------
    RepairReport
        Each ref moved back or deleted, the journal copy kept, and the index
        rebuild's report when there was one.

    Raises
    ------
    WriterLockError
        (a PermissionError) while a write checkout is open.
    """
    from .store.rebuild import index_problem, rebuild_index

    git = repo.git_repository()
    lock = repo.acquire_writer_lock()
    try:
        report = RepairReport(dry_run=dry_run)
        report.refs = repair_refs(git, dry_run=dry_run)
        moved = {r.ref: r.restored for r in report.refs}
        report.journal_copy = _rebase_journal(repo.staging_journal_path(), moved, dry_run)
        store_root = repo.payload_store.root
        if index_problem(store_root) is not None:
            report.index = rebuild_index(store_root, dry_run=dry_run)
        return report
    finally:
        repo.release_writer_lock(lock)
