"""Writing data commits and moving data branches: the one place that does both.

A commit is built, written and named by its branch in one step,
:func:`commit_on_branch`: the trees and the commit object are held in
memory while they are built, reach git at once as one pack guarded from
``git gc`` (see :func:`hangar_git.records.objpack.held_objects`), and the
branch moves (with a reflog entry) only if it is still where the caller
found it. Anything that fails before the branch moves leaves no object
behind. A fast-forward is :func:`move_branch_from`.
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from .gitutil import branch_head, code_head, move_branch, signature, write_commit_object
from .records import changelog
from .records.build import build_root
from .records.objpack import held_objects, publish, roll_up_packs
from .records.snapshot import TreeRecords, commit_tree
from .records.staging import Journal

#: trailer naming the code commit (``HEAD``) a data commit was made beside
CODE_TRAILER = "Code-Commit"


def commit_message(git: pygit2.Repository, message: str) -> str:
    """``message`` as stored: one final newline, plus the code-commit trailer
    when the work tree's ``HEAD`` names a commit."""
    msg = message.rstrip("\n") + "\n"
    code = code_head(git)
    if code is not None:
        msg += f"\n{CODE_TRAILER}: {code}\n"
    return msg


def commit_on_branch(
    git: pygit2.Repository,
    branch: str,
    expected_head: str | None,
    build_tree: Callable[[], bytes],
    message: str,
    extra_parents: tuple[str, ...],
    identity: tuple[str, str],
    *,
    before_move: Callable[[str], None] | None = None,
    reflog: str = "commit",
) -> str:
    """Build, write and name a commit on ``branch``; returns its hash.

    Parameters
    ----------
    git : pygit2.Repository
        The repository.
    branch : str
        The data branch to move; it must still be at ``expected_head``.
    expected_head : str or None
        The branch head the commit is built on (its first parent; None for
        the first commit).
    build_tree : callable
        Writes the commit's records and returns the raw id of its root tree;
        its objects are held until the commit is published.
    message : str
        The commit message (see :func:`commit_message`).
    extra_parents : tuple of str
        Parents after the first (a merge's other side).
    identity : (str, str)
        Author and committer name and email.
    before_move : callable, optional
        Called with the new hash once its objects are in git, before the
        branch moves (the staging journal records it there).
    reflog : str
        What the reflog entry says the move was.

    Raises
    ------
    RuntimeError
        If the branch moved away from ``expected_head``; nothing is written.
    """
    if branch_head(git, branch) != expected_head:
        raise RuntimeError(f"branch {branch!r} moved while the commit was prepared")
    parents = [p for p in (expected_head,) if p] + list(extra_parents)
    with held_objects(git) as batch:
        tree = build_tree()
        msg = commit_message(git, message)
        sha = write_commit_object(git, signature(*identity), msg, tree, parents)
        publish(git, batch)
        if before_move is not None:
            before_move(sha)
        first_line = message.splitlines()[0] if message.strip() else ""
        move_branch(git, branch, sha, f"hangar {reflog}: {first_line}")
    roll_up_packs(git)
    return sha


def commit_staged(
    git: pygit2.Repository,
    journal: Journal,
    message: str,
    identity: tuple[str, str],
) -> str:
    """Commit the staging area ``journal`` on its branch; returns the hash.

    The commit carries a change log (record format 2) when the staged
    changes allow one. The journal records the new hash (synced) before the
    branch moves, so a process killed in between is rolled forward or back
    on the next open; it is reset onto the new head afterwards.

    Raises
    ------
    RuntimeError
        If the branch moved away from the journal's base.
    """
    current = branch_head(git, journal.branch)
    if current != journal.base:
        raise RuntimeError(
            f"branch {journal.branch!r} moved to {current} while changes were staged on "
            f"{journal.base}; reset the staging area and redo the changes"
        )
    base = TreeRecords(git, commit_tree(git, journal.base))
    log = changelog.from_staged(journal.base, base, journal.asets)
    changes = changelog.encode(log) if log is not None else None

    def record(sha: str) -> None:
        journal.record("C", sha)
        journal.sync()  # durable before the ref moves, even inside a batch

    sha = commit_on_branch(
        git,
        journal.branch,
        journal.base,
        lambda: build_root(git, base, journal.asets, journal.meta, changes),
        message,
        (),
        identity,
        before_move=record,
    )
    journal.reset(journal.branch, sha)
    return sha


def move_branch_from(
    git: pygit2.Repository, branch: str, expected_head: str | None, target: str, reflog: str
) -> None:
    """Point ``branch`` at ``target`` if it is still at ``expected_head``.

    Raises
    ------
    RuntimeError
        If the branch moved; nothing is changed.
    """
    if branch_head(git, branch) != expected_head:
        raise RuntimeError(f"branch {branch!r} moved meanwhile; nothing was changed")
    move_branch(git, branch, target, f"hangar {reflog}")


__all__ = [
    "CODE_TRAILER",
    "commit_message",
    "commit_on_branch",
    "commit_staged",
    "move_branch_from",
]
