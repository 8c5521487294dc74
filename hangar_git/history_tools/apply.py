"""Cherry-pick and revert: one commit's change, applied or undone on a branch.

Both are three-way merges of record trees
(:func:`hangar_git.merge.merge_trees`), so they cost what the change costs:

- cherry-pick of ``C`` onto head ``H``: base ``C^`` (C's first parent), ours
  ``H``, theirs ``C``: what C changed from its parent is applied to H;
- revert of ``C``: base ``C``, ours ``H``, theirs ``C^``: what C changed is
  changed back, where later commits left those keys as C made them.

Conflicts are the merge's (t1, t21, t22, t3, and arrayset conflicts) and are
resolved by the same ``strategy``; on a conflict nothing is written and no
ref moves. The new commit has one parent (the branch head) and a change log,
and is written, then named by its branch, as any commit
(:func:`hangar_git.commits.commit_on_branch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pygit2

from ..commits import commit_on_branch
from ..gitutil import branch_head, read_raw
from ..merge import check_journal, check_strategy, merge_trees
from ..records import changelog
from ..records.layout import parse_tree
from ..records.snapshot import commit_tree
from ..records.validate import commit_of
from ..refs import resolve_startpoint

if TYPE_CHECKING:
    from ..records.staging import Journal

SHORT = 10


class _NothingToDo(Exception):
    """The change is already on the branch: no commit is made."""


def _first_parent(git: pygit2.Repository, sha: str) -> str | None:
    parents = commit_of(git, sha).parent_ids
    return str(parents[0]) if parents else None


def _first_line(git: pygit2.Repository, sha: str) -> str:
    lines = commit_of(git, sha).message.strip().splitlines()
    return lines[0] if lines else ""


def _records(git: pygit2.Repository, tree: bytes | None) -> dict:
    """The entries of root ``tree`` that hold records (not its change log)."""
    if tree is None:
        return {}
    root = parse_tree(read_raw(git, tree))
    return {k: root.get(k) for k in ("arraysets", "metadata")}


def _apply(
    git: pygit2.Repository,
    identity: tuple[str, str],
    journal: Journal,
    trees: tuple[bytes | None, bytes | None],
    message: str,
    strategy: str | None,
    reflog: str,
) -> str:
    """Merge the change from ``trees[0]`` to ``trees[1]`` onto the journal's
    branch head and commit it; returns the new head (the old one when the
    change is there already)."""
    check_strategy(strategy)
    if not isinstance(message, str):
        raise ValueError(f"message must be a str, not {type(message).__name__}")
    branch = journal.branch
    head = branch_head(git, branch)
    if head is None:
        raise ValueError(f"branch {branch!r} has no commits yet: nothing to apply a change to")
    check_journal(git, journal, branch, head)
    base, theirs = trees

    def build_tree() -> bytes:
        head_tree = commit_tree(git, head)
        tree = merge_trees(git, base, head_tree, theirs, strategy=strategy)
        if _records(git, tree) == _records(git, head_tree):
            raise _NothingToDo
        log = changelog.from_trees(git, head, head_tree, tree)
        return changelog.attach(git, tree, log) if log is not None else tree

    try:
        sha = commit_on_branch(git, branch, head, build_tree, message, (), identity, reflog=reflog)
    except _NothingToDo:
        return head
    journal.reset(branch, sha)
    return sha


def cherry_pick(
    git: pygit2.Repository,
    identity: tuple[str, str],
    journal: Journal,
    commit: str,
    *,
    strategy: str | None = None,
    message: str | None = None,
) -> str:
    """Apply the change ``commit`` made (against its first parent) to the
    staging area's branch, as a new commit; returns the branch's new head.

    Parameters
    ----------
    git : pygit2.Repository
        The repository; the caller holds the writer lock.
    identity : (str, str)
        Author and committer of the new commit.
    journal : Journal
        The staging area: its branch is the one that moves; it must hold no
        changes, and is reset onto the new head.
    commit : str
        The commit to pick: a branch name (its head) or a commit hash prefix.
    strategy : {None, 'ours', 'theirs'}
        Resolution of sample and metadata conflicts, as in a merge: keep the
        branch's value ('ours') or take the picked commit's ('theirs').
    message : str, optional
        Message of the new commit (default: the picked commit's message and
        a line naming it).

    Returns
    -------
    str
        The new head; the unchanged head when the change is on the branch
        already (no commit is made then).

    Raises
    ------
    MergeConflictError
        (a ValueError) on conflicts; nothing is written, no ref moves.
    LookupError
        If ``commit`` names no data commit.
    ValueError
        Staged changes, a bad strategy, or a branch with no commits.
    """
    sha = resolve_startpoint(git, commit).commit
    parent = _first_parent(git, sha)
    if message is None:
        original = commit_of(git, sha).message.rstrip("\n")
        message = f"{original}\n\n(cherry picked from commit {sha})"
    return _apply(
        git,
        identity,
        journal,
        (commit_tree(git, parent), commit_tree(git, sha)),
        message,
        strategy,
        f"cherry-pick {sha[:SHORT]}",
    )


def revert(
    git: pygit2.Repository,
    identity: tuple[str, str],
    journal: Journal,
    commit: str,
    *,
    strategy: str | None = None,
    message: str | None = None,
) -> str:
    """Undo the change ``commit`` made (against its first parent) on the
    staging area's branch, as a new commit; returns the branch's new head.

    A key that a later commit changed again conflicts (t3, or t21/t22 when
    one side removed it); ``strategy`` resolves such conflicts as in a
    merge ('ours': keep the branch's value, 'theirs': take the parent's).
    Parameters and errors are those of :func:`cherry_pick`; the default
    message is ``Revert "<first line>"`` and a line naming the commit.
    """
    sha = resolve_startpoint(git, commit).commit
    parent = _first_parent(git, sha)
    if message is None:
        message = f'Revert "{_first_line(git, sha)}"\n\nThis reverts commit {sha}.'
    return _apply(
        git,
        identity,
        journal,
        (commit_tree(git, sha), commit_tree(git, parent)),
        message,
        strategy,
        f"revert {sha[:SHORT]}",
    )


__all__ = ["cherry_pick", "revert"]
