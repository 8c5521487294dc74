"""fsck's walk: history, records, payloads and git objects, in that order.

:func:`verify` is four stages, each a function here: the records of every
commit (:class:`~hangar_git.records.leaves.RecordWalker`, each distinct
tree once), the staging area, the payloads those records name (each
distinct payload once, :mod:`.payloads`), and ``git fsck``. A payload found
damaged is then traced back to every sample of every commit that names it.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import pygit2
from pygit2.enums import ObjectType

from ..errors import IntegrityError, first_line
from ..gitutil import REMOTES, common_dir
from ..naming import decode_key
from ..records.leaves import ArraysetRecords, RecordWalker
from .payloads import PayloadSchemas, check_payloads, check_store, leftover_large_files
from .report import STAGING, FsckReport, Progress, RecordIssue, SampleIssue

if TYPE_CHECKING:
    from ..repository import Repository

#: the refs whose history is checked (and kept by gc)
HANGAR_REFS = "refs/hangar/"


# --------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------
def hangar_commits(git: pygit2.Repository) -> tuple[list[str], set[str], list[str]]:
    """Commits reachable from ``refs/hangar/*``.

    Parameters
    ----------
    git : pygit2.Repository
        The repository.

    Returns
    -------
    tuple of (list of str, set of str, list of str)
        ``(commits, remote_reachable, problems)``: every commit (oldest
        parents after children), those reachable from remote-tracking refs,
        and refs or parents that could not be read.
    """
    problems: list[str] = []
    starts: list[tuple[str, bool]] = []
    for name in sorted(git.references):
        if not name.startswith(HANGAR_REFS):
            continue
        try:
            target = git.references[name].resolve().target
            obj = git.get(target)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            problems.append(f"ref {name} cannot be read: {exc}")
            continue
        if obj is None or obj.type != ObjectType.COMMIT:
            problems.append(f"ref {name} does not point at a commit ({target})")
            continue
        starts.append((str(target), name.startswith(REMOTES)))
    order: list[str] = []
    seen: set[str] = set()
    remote: set[str] = set()
    # remote-tracking refs first, so their commits are marked on first visit
    for start, is_remote in sorted(starts, key=lambda s: not s[1]):
        stack = [start]
        while stack:
            sha = stack.pop()
            if sha in seen:
                continue
            seen.add(sha)
            order.append(sha)
            if is_remote:
                remote.add(sha)
            stack.extend(_parents(git, sha, problems))
    return order, remote, problems


def _parents(git: pygit2.Repository, sha: str, problems: list[str]) -> list[str]:
    try:
        commit = git.get(sha)
        if not isinstance(commit, pygit2.Commit):
            raise KeyError(sha)
        return [str(p) for p in commit.parent_ids]
    except (KeyError, ValueError, pygit2.GitError) as exc:
        problems.append(f"commit {sha} cannot be read: {exc}")
        return []


def staged_digests(repo: Repository) -> set[bytes]:
    """Payload digests the staging area names (samples added, not yet committed).

    Parameters
    ----------
    repo : Repository
        An initialised repository.

    Returns
    -------
    set of bytes
    """
    journal = repo.peek_staging()
    if journal is None:
        return set()
    return {d for st in journal.asets.values() for d in st.samples.values() if d is not None}


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------
class _Records:
    """What stage 1 found: the readable arraysets of each commit, and the
    payloads their samples name."""

    def __init__(self, walker: RecordWalker) -> None:
        self.per_commit: dict[str, list[ArraysetRecords]] = {}
        self.schemas = PayloadSchemas(walker)
        self.remote_digests: set[bytes] = set()


def verify(repo: Repository, full: bool = False, *, progress: Progress | None = None) -> FsckReport:
    """Check the whole repository; see :mod:`hangar_git.fsck`.

    Parameters
    ----------
    repo : Repository
        An initialised repository. Nothing in it is changed.
    full : bool, optional
        Also hash every git object (``git fsck --full --strict`` instead of a
        connectivity check), verify every payload in the store (referenced or
        not), and run SQLite's integrity check on the payload index.
    progress : callable, optional
        Called as ``progress(stage, done, total)`` while payloads are verified.

    Returns
    -------
    FsckReport
        ``report.ok`` is False when anything is damaged.
    """
    git = repo.git_repository()
    report = FsckReport(full=full)
    commits, remote_commits, ref_problems = hangar_commits(git)
    report.git.extend(ref_problems)
    report.commits = len(commits)
    walker = RecordWalker(git)
    found = _check_records(walker, commits, remote_commits, report)
    staged = _staged_samples(repo, report)
    problems, remote = _check_all_payloads(repo, found, staged, full, progress, report)
    if problems or remote:
        _name_samples(report, walker, commits, found, staged, problems, remote)
    report.git.extend(_git_fsck(git, full))
    return report


def _check_records(
    walker: RecordWalker, commits: list[str], remote_commits: set[str], report: FsckReport
) -> _Records:
    """Stage 1: the records of every commit, and which payloads each arrayset names."""
    found = _Records(walker)
    remote_sids: set[bytes] = set()
    counted: dict[bytes, int] = {}
    for sha in commits:
        report.records.extend(RecordIssue(sha, p, w) for p, w in walker.check(sha))
        asets = [a for a in walker.commit(sha).arraysets if a.readable]
        found.per_commit[sha] = asets
        for aset in asets:
            sid, schema = aset.samples, aset.schema
            if sid is None or schema is None:
                continue
            n = counted.get(sid)
            if n is None:
                n = 0
                for _, records in walker.iter_samples(sid):
                    n += len(records)
                    for d in records.values():
                        found.schemas.note(d, schema)
                counted[sid] = n
            if sha in remote_commits and sid not in remote_sids:
                remote_sids.add(sid)
                for _, records in walker.iter_samples(sid):
                    found.remote_digests.update(records.values())
            report.samples += n
    return found


def _staged_samples(repo: Repository, report: FsckReport) -> list[tuple[str, str, bytes]]:
    """Stage 1b: ``(arrayset, encoded key, digest)`` of every sample staged."""
    staged: list[tuple[str, str, bytes]] = []
    try:
        journal = repo.peek_staging()
    except Exception as exc:
        journal = None
        report.records.append(RecordIssue(STAGING, "journal", first_line(exc)))
    if journal is not None:
        for aset, st in sorted(journal.asets.items()):
            for enc, d in st.samples.items():
                if d is not None:
                    staged.append((aset, enc, d))
    report.samples += len(staged)
    return staged


def _check_all_payloads(
    repo: Repository,
    found: _Records,
    staged: list[tuple[str, str, bytes]],
    full: bool,
    progress: Progress | None,
    report: FsckReport,
) -> tuple[dict[bytes, str], set[bytes]]:
    """Stage 2: each distinct payload once. Returns ``({digest: problem},
    digests absent here but on a remote)``."""
    schemas = found.schemas
    wanted = schemas.digests()
    wanted.extend(d for _, _, d in staged if d not in schemas)
    absent: set[bytes] = set()
    try:
        reader = repo.payload_store.reader()
    except IntegrityError as exc:  # the index cannot be opened: no payload can be found
        problems = dict.fromkeys(wanted, str(exc))
        report.store.append(str(exc))
    else:
        try:
            problems, absent = check_payloads(reader, wanted, schemas, progress)
            report.payloads = len(wanted) - len(absent)
            if full:
                report.store.extend(check_store(reader, set(wanted), progress))
            report.warnings.extend(leftover_large_files(reader))
        finally:
            reader.close()
    remote = {d for d in absent if d in found.remote_digests}
    problems.update(
        (d, "its payload is missing from the local store") for d in absent if d not in remote
    )
    return problems, remote


def _name_samples(
    report: FsckReport,
    walker: RecordWalker,
    commits: list[str],
    found: _Records,
    staged: list[tuple[str, str, bytes]],
    problems: dict[bytes, str],
    remote: set[bytes],
) -> None:
    """Stage 3: which samples of which commits name a damaged or remote payload."""
    hit = problems.keys() | remote
    in_leaf: dict[bytes, list[tuple[str, bytes]]] = {}  # leaf id -> its hit samples
    in_tree: dict[bytes, list[tuple[str, bytes]]] = {}  # samples tree id -> the same
    for sha in commits:
        for aset in found.per_commit[sha]:
            sid = aset.samples
            if sid is None:
                continue
            hits = in_tree.get(sid)
            if hits is None:
                hits = []
                for lid, records in walker.iter_samples(sid):
                    got = in_leaf.get(lid)
                    if got is None:
                        got = in_leaf[lid] = [(e, d) for e, d in records.items() if d in hit]
                    hits.extend(got)
                in_tree[sid] = hits
            for enc, d in hits:
                _file(report, problems, sha, aset.name, enc, d)
    for name, enc, d in staged:
        if d in hit:
            _file(report, problems, STAGING, name, enc, d)


def _file(
    report: FsckReport, problems: dict[bytes, str], commit: str, aset: str, enc: str, digest: bytes
) -> None:
    why = problems.get(digest)
    issue = SampleIssue(
        commit,
        aset,
        decode_key(enc),
        digest.hex(),
        why or "remote reference: payload not on this machine",
    )
    (report.damaged if why is not None else report.remote_references).append(issue)


# --------------------------------------------------------------------------
# git objects
# --------------------------------------------------------------------------
def _git_fsck(git: pygit2.Repository, full: bool) -> list[str]:
    """What git finds wrong with the object database (nothing: an empty list)."""
    exe = shutil.which("git")
    gitdir = str(common_dir(git))
    if exe is None:
        return _odb_check(git) if full else []
    args = [exe, f"--git-dir={gitdir}", "fsck", "--no-progress", "--no-dangling"]
    args += ["--full", "--strict"] if full else ["--connectivity-only"]
    res = subprocess.run(args, capture_output=True, text=True, errors="replace")
    if res.returncode == 0:
        return []
    lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("notice:", "Checking"))]
    return lines or [f"git fsck exited with status {res.returncode}"]


def _odb_check(git: pygit2.Repository) -> list[str]:
    """Read every object through libgit2 (which verifies each one's hash)."""
    out: list[str] = []
    for oid in git.odb:
        try:
            git.odb.read(oid)
        except Exception as exc:
            out.append(f"object {oid}: {first_line(exc)}")
    return out


__all__ = ["HANGAR_REFS", "hangar_commits", "staged_digests", "verify"]
