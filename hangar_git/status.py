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


__all__ = ["StagedState", "lock_holder", "read_staged"]
