"""History tools of a repository: cherry-pick, revert, purge, schema changes.

A layer of :class:`hangar_git.repository.Repository` over
:class:`~hangar_git.repository_refs.RepositoryRefs`; it also holds the
staging journal opened under the writer lock that the history tools
(these, :meth:`~hangar_git.repository.Repository.purge` and
:meth:`~hangar_git.repository.Repository.change_arrayset`) work through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from .gitutil import branch_head, clear_stale_ref_locks
from .naming import check_branch_name
from .records.staging import Journal
from .repository_refs import RepositoryRefs

if TYPE_CHECKING:
    from .history_tools import PurgeReport, SampleComparison
    from .repository import Repository


class RepositoryHistory(RepositoryRefs):
    """Cherry-pick, revert, compare_sample, purge and change_arrayset of
    :class:`~hangar_git.repository.Repository`."""

    def _whole(self) -> Repository:
        """This object as the :class:`~hangar_git.repository.Repository` it is
        (the history tools take the whole repository)."""
        return cast("Repository", self)  # the only class built on this one

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

    def compare_sample(self, a: str, b: str, arrayset: str, key: str | int) -> SampleComparison:
        """One sample at STARTPOINTs ``a`` and ``b`` and at their merge base.

        See :func:`hangar_git.history_tools.compare_sample`.

        Parameters
        ----------
        a, b : str
            Branch names (local or ``remote/branch``), tags or commit hash prefixes.
        arrayset : str
            The arrayset of the sample.
        key : str or int
            The sample's key; ``s:NAME`` / ``i:NUMBER`` pick its type, and a
            digit string means the int key when no str key of that text exists.

        Returns
        -------
        SampleComparison
            The sample on each side (None where absent) and how they differ.

        Raises
        ------
        LookupError
            If ``a`` or ``b`` names no data commit, or no side holds the sample.
        """
        from .history_tools import compare_sample

        return compare_sample(self._whole(), a, b, arrayset, key)

    def purge(
        self,
        arrayset: str | None,
        keys: Iterable[str | int] = (),
        *,
        meta_keys: Iterable[str | int] = (),
        dry_run: bool = False,
        data_remote: str | None = None,
    ) -> PurgeReport:
        """Remove samples (and metadata) from every commit of every local branch.

        Every commit holding them is rewritten and the refs moved; then their
        payloads and the old commits are deleted from this machine (and from
        the data remote of remote ``data_remote``). Remote-tracking refs whose
        history holds them are deleted. See
        :func:`hangar_git.history_tools.purge_records`, ``drop_purged`` and
        ``purge_data_remote``.

        Parameters
        ----------
        arrayset : str or None
            The arrayset of ``keys`` (None when only metadata is purged).
        keys : iterable of str or int, optional
            Keys of the samples to remove.
        meta_keys : iterable of str or int, optional
            Keys of the metadata to remove.
        dry_run : bool, optional
            Report what would be rewritten and deleted, change nothing.
        data_remote : str, optional
            Also delete the payloads from this remote's data URL.

        Returns
        -------
        PurgeReport
            The commits and refs rewritten, refs deleted and payloads removed.

        Raises
        ------
        ValueError
            No key given, a bad key or arrayset name, staged changes, or no
            remote named ``data_remote`` (nothing changes).
        WriterLockError
            (a PermissionError) While a write checkout is open.
        """
        from .history_tools import drop_purged, purge_records

        if data_remote is not None:
            self._whole().remote.fetcher(data_remote)  # no such remote: refused before any change
        with self._staging_journal(None) as journal:
            report = purge_records(
                self._git_repo(), journal, arrayset, keys, meta_keys=meta_keys, dry_run=dry_run
            )
        if not dry_run and report.commits:
            drop_purged(self._whole(), report)
        if data_remote is not None:
            from .history_tools import purge_data_remote  # the remotes: only when asked

            gone = report.payloads - report.payloads_kept
            report.data_remote = purge_data_remote(
                self._whole(), data_remote, gone, dry_run=dry_run
            )
        return report

    def change_arrayset(
        self,
        arrayset: str,
        *,
        branch: str | None = None,
        shape: Any = None,
        variable_shape: bool | None = None,
        rename: str | None = None,
        dtype: Any = None,
        force: bool = False,
        message: str | None = None,
    ) -> str:
        """Commit a schema change of ``arrayset``; returns the new head.

        The change is a raised maximum shape, the arrayset made
        variable-shape, renamed, or (in a commit of its own) cast to
        ``dtype``. See :func:`hangar_git.history_tools.change_schema` and
        ``change_dtype``.

        Parameters
        ----------
        arrayset : str
            The arrayset to change.
        branch : str, optional
            Branch to commit on (default: the staging area's branch).
        shape : tuple of int, optional
            The new (maximum) shape; every sample must fit it.
        variable_shape : bool, optional
            True to make the arrayset variable-shape.
        rename : str, optional
            The arrayset's new name.
        dtype : numpy dtype-like, optional
            Cast every sample to this dtype (alone: no other change with it).
        force : bool, optional
            Allow a ``dtype`` cast that can lose values.
        message : str, optional
            Commit message (default: one describing the change).

        Returns
        -------
        str
            Hash of the branch's new head.

        Raises
        ------
        KeyError
            If the branch head has no such arrayset.
        ValueError
            A schema some sample cannot fit, a taken or bad name, nothing to
            change, a lossy cast without ``force``, or staged changes.
        WriterLockError
            (a PermissionError) While a write checkout is open.
        """
        from .history_tools import change_dtype, change_schema

        if dtype is not None:
            if shape is not None or variable_shape is not None or rename is not None:
                raise ValueError("change the dtype in a commit of its own")
            return change_dtype(
                self._whole(), arrayset, dtype, branch=branch, force=force, message=message
            )
        with self._staging_journal(branch) as journal:
            git, who = self._git_repo(), self.identity()
            change = {"shape": shape, "variable_shape": variable_shape, "rename": rename}
            return change_schema(git, who, journal, arrayset, **change, message=message)
