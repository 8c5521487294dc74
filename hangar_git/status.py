"""What the staging area holds, and who holds the writer lock, read without the lock.

``git hangar status`` and ``git hangar diff`` read the staging journal
read-only, so they work while a write checkout is open in another process.
The public way in is through :class:`hangar_git.Repository`
(:meth:`~hangar_git.Repository.staged_state`,
:meth:`~hangar_git.Repository.writer_lock_holder`). Nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pygit2

    from .diff import DiffRecords


@dataclass
class StagedState:
    """What the staging area holds, read without taking the writer lock.

    Attributes
    ----------
    branch : str
        The staging area's branch.
    base : str or None
        Commit the staged changes are on (None before the first commit).
    head : str or None
        The branch's head commit now.
    diff : DiffRecords
        The staged changes against ``base``.
    stale : bool
        Changes are staged on a base the branch has moved away from (a commit
        of them would fail).
    """

    branch: str
    base: str | None
    head: str | None
    diff: DiffRecords
    stale: bool


def read_staged(git: pygit2.Repository, journal_path: Path) -> StagedState:
    """Read the staging journal read-only and diff it against its base.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the hangar refs and records.
    journal_path : Path
        The staging journal (it may not exist: nothing staged, on ``master``).

    Returns
    -------
    StagedState
        Branch, base, head and the staged changes.
    """
    from .diff import staged_diff
    from .gitutil import branch_head
    from .records.snapshot import TreeRecords, commit_tree
    from .records.staging import Journal
    from .records.view import StagedView

    journal = Journal.peek(journal_path)
    if journal is None:
        journal = Journal(journal_path)  # empty, on master
    head = branch_head(git, journal.branch)
    if journal.pending_commit and journal.pending_commit == head:
        journal.asets, journal.meta, journal.base = {}, {}, head  # the commit landed
    base = journal.base if journal.has_entries else head
    journal.base = base
    view = StagedView(TreeRecords(git, commit_tree(git, base)), journal)
    diff = staged_diff(view)
    return StagedState(journal.branch, base, head, diff, journal.has_entries and base != head)


def lock_holder(holder_file: Path) -> dict[str, Any] | None:
    """Who the writer lock's holder says it is: ``pid``, ``host``, ``user``, ``since``.

    Parameters
    ----------
    holder_file : Path
        The ``writer.json`` a write checkout leaves beside the lock.

    Returns
    -------
    dict or None
        None when the file is missing or unreadable.
    """
    try:
        info = json.loads(holder_file.read_text())
        return {k: info[k] for k in ("pid", "host", "user", "since")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Tracking:
    """A branch against its remote-tracking branch, as of the last fetch or push.

    Attributes
    ----------
    upstream : str
        The remote-tracking branch, ``remote/branch``.
    commit : str
        Its head commit.
    ahead, behind : int
        Commits on the branch and not on ``upstream``, and the other way round.
    """

    upstream: str
    commit: str
    ahead: int
    behind: int


def tracking_state(git: pygit2.Repository, branch: str, remote: str) -> Tracking | None:
    """How local ``branch`` stands against ``remote/branch`` (None when either has no commit).

    Counts what the last fetch or push recorded: nothing is asked of the remote.
    """
    import pygit2

    from .gitutil import REMOTES, branch_head, ref_commit

    upstream = f"{remote}/{branch}"
    theirs = ref_commit(git, REMOTES + upstream)
    ours = branch_head(git, branch)
    if theirs is None or ours is None:
        return None
    ahead, behind = git.ahead_behind(pygit2.Oid(hex=ours), pygit2.Oid(hex=theirs))
    return Tracking(upstream, theirs, ahead, behind)


__all__ = ["StagedState", "Tracking", "lock_holder", "read_staged", "tracking_state"]
