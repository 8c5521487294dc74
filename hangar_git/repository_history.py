"""Commits made from history on a branch: cherry-pick and revert.

A layer of :class:`hangar_git.repository.Repository` over
:class:`~hangar_git.repository_refs.RepositoryRefs`; it also holds the
staging journal opened under the writer lock that the history tools
(these, :meth:`~hangar_git.repository.Repository.purge` and
:meth:`~hangar_git.repository.Repository.change_arrayset`) work through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .gitutil import branch_head, clear_stale_ref_locks
from .naming import check_branch_name
from .records.staging import Journal
from .repository_refs import RepositoryRefs


class RepositoryHistory(RepositoryRefs):
    """Cherry-pick and revert of :class:`~hangar_git.repository.Repository`."""

    @contextmanager
    def _staging_journal(self, branch: str | None) -> Iterator[Journal]:
        """The staging journal on ``branch`` (default: its own), under the
        writer lock, recovered and reset onto the branch head when clean."""
        from .records.objpack import remove_stale_keeps

        git = self._git_repo()
        lock = self._acquire_writer()
        try:
            clear_stale_ref_locks(git)
            remove_stale_keeps(git)
            current = self._writer_branch()
            branch = current if branch is None else branch
            check_branch_name(branch)
            head = branch_head(git, branch)
            if head is None and branch != current:  # the staging area never moves to it
                raise ValueError(f"no branch named {branch!r} with commits")
            journal = Journal.open(self._journal_path(), branch, head)
            try:
                self._recover_commit(journal)
                moved = journal.branch != branch or journal.base != branch_head(git, branch)
                if moved and (not journal.has_entries or self._staging_clean(journal)):
                    journal.reset(branch, head)
                yield journal
            finally:
                journal.close()
        finally:
            self._release_writer(lock)

    def cherry_pick(
        self,
        commit: str,
        *,
        branch: str | None = None,
        strategy: str | None = None,
        message: str | None = None,
    ) -> str:
        """Apply one commit's change to ``branch`` as a new commit.

        The change ``commit`` made against its first parent is applied to the
        head of ``branch``; see :func:`hangar_git.history_tools.cherry_pick`.

        Parameters
        ----------
        commit : str
            The commit to pick: a branch name (its head), tag or commit hash prefix.
        branch : str, optional
            The branch to commit on (default: the staging area's branch).
        strategy : {None, 'ours', 'theirs'}, optional
            How conflicts are resolved, as in :meth:`merge`: keep the
            branch's value (``'ours'``) or take the picked commit's (``'theirs'``).
        message : str, optional
            Commit message (default: the picked commit's, and a line naming it).

        Returns
        -------
        str
            The branch's new head (its old head when the change is on it already).

        Raises
        ------
        MergeConflictError
            (a ValueError) On conflicts without a strategy; nothing changes.
        LookupError
            If ``commit`` names no commit with hangar data.
        ValueError
            Changes staged on the branch, a bad strategy, or no commit yet.
        WriterLockError
            (a PermissionError) While a write checkout is open.
        """
        from .history_tools import cherry_pick

        with self._staging_journal(branch) as journal:
            git, who = self._git_repo(), self.identity()
            return cherry_pick(git, who, journal, commit, strategy=strategy, message=message)

    def revert(
        self,
        commit: str,
        *,
        branch: str | None = None,
        strategy: str | None = None,
        message: str | None = None,
    ) -> str:
        """Undo one commit's change on ``branch`` as a new commit.

        The change ``commit`` made against its first parent is applied in
        reverse; a key changed again since conflicts. See
        :func:`hangar_git.history_tools.revert`.

        Parameters
        ----------
        commit : str
            The commit to undo: a branch name (its head), tag or commit hash prefix.
        branch : str, optional
            The branch to commit on (default: the staging area's branch).
        strategy : {None, 'ours', 'theirs'}, optional
            How conflicts are resolved: keep the branch's value (``'ours'``)
            or take the value before ``commit`` (``'theirs'``).
        message : str, optional
            Commit message (default: ``Revert "<first line>"`` and a line
            naming the commit).

        Returns
        -------
        str
            The branch's new head.

        Raises
        ------
        MergeConflictError
            (a ValueError) On conflicts without a strategy; nothing changes.
        LookupError
            If ``commit`` names no commit with hangar data.
        ValueError
            Changes staged on the branch, a bad strategy, or no commit yet.
        WriterLockError
            (a PermissionError) While a write checkout is open.
        """
        from .history_tools import revert

        with self._staging_journal(branch) as journal:
            git, who = self._git_repo(), self.identity()
            return revert(git, who, journal, commit, strategy=strategy, message=message)
