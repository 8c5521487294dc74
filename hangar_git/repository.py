"""The Repository: the entry point to a hangar-git data repository."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .gitutil import (
    branch_head,
    clear_stale_ref_locks,
)
from .naming import check_branch_name
from .records.staging import Journal
from .repository_core import DEFAULT_BRANCH
from .repository_refs import RepositoryRefs

if TYPE_CHECKING:
    from .checkout import ReaderCheckout, WriterCheckout
    from .diffref import DiffChanges
    from .history_tools import PurgeReport, SampleComparison
    from .repair import RepairReport


class Repository(RepositoryRefs):
    """A hangar-git repository: versioned arrays whose history is git's.

    Parameters
    ----------
    path : str or os.PathLike
        A directory: the git work tree (or bare git dir) that holds, or will
        hold, the hangar data. It must exist.
    exists : bool, optional
        When True (default), warn if no hangar repository is initialised
        there yet; when False, stay silent.

    Examples
    --------
    >>> repo = Repository(path)                    # doctest: +SKIP
    >>> repo.init(user_name="Ada", user_email="ada@example.org")  # doctest: +SKIP
    >>> co = repo.checkout(write=True)             # doctest: +SKIP
    """

    @property
    def remote(self) -> Any:
        """Remote operations (see :class:`hangar_git.remotes.Remotes`)."""
        from .remotes import Remotes

        return Remotes(self)

    # ---- checkouts ---------------------------------------------------------------
    def checkout(
        self,
        write: bool = False,
        *,
        branch: str = DEFAULT_BRANCH,
        commit: str = "",
        fetch_missing: bool | str = False,
    ) -> ReaderCheckout | WriterCheckout:
        """Open a checkout: read-only at a branch head, tag or commit, or the writer.

        ``branch`` defaults to ``master``, as in the reference. The write
        checkout's branch is the current branch, one for Python and the
        command line: the staging area's, which :attr:`writer_branch` and
        ``git hangar status`` show and ``git hangar checkout`` sets. Opening
        the writer on another branch moves it there; when that happens
        through the default (the current branch is not ``master`` and no
        ``branch`` was given), a :class:`UserWarning` says so (pass
        ``branch=repo.writer_branch`` to stay). ``commit`` is a commit hash
        (a unique prefix is enough) or a tag name.

        With ``fetch_missing`` (True for the default remote, or a remote name),
        reading a sample whose payload is not on this machine fetches it from
        that remote's data URL on the spot (verified, then stored); otherwise
        such a read raises :class:`MissingPayloadError`.

        Raises
        ------
        ValueError
            If ``write`` is not a bool, the branch or commit does not exist, the
            staging area holds changes for another branch, or ``fetch_missing``
            names no usable remote.
        WriterLockError
            (a PermissionError) if another write checkout is open.
        """
        git = self._git_repo()
        if not isinstance(write, bool):
            raise ValueError(f"write must be a bool, not {write!r}")
        implicit = branch is DEFAULT_BRANCH
        if not isinstance(branch, str):
            raise ValueError(f"branch must be a str, not {branch!r}")
        if fetch_missing is not False:
            from .remotes import lazy_fetcher_for

            fetcher = lazy_fetcher_for(self, fetch_missing)
            co = self.checkout(write, branch=branch, commit=commit)
            co.payloads.fetcher = fetcher
            return co
        if write:
            if commit:
                raise ValueError("a write checkout works on a branch head, not a commit")
            current = self._writer_branch()
            writer = self._open_writer(branch)
            if implicit and current != branch:
                warnings.warn(
                    f"the write checkout moved the current branch from {current!r} to "
                    f"{branch!r} (the default); pass branch={current!r} to stay on it",
                    stacklevel=2,
                )
            return writer
        if commit:
            sha = self._tag_or_commit(commit)
        else:
            check_branch_name(branch)
            head = branch_head(git, branch)
            if head is None:
                if branch not in self.list_branches():
                    raise ValueError(f"no branch named {branch!r}")
                raise ValueError(f"branch {branch!r} has no commits yet: nothing to read")
            sha = head
        from .checkout import ReaderCheckout  # numpy and the store: only when used

        return ReaderCheckout(self, sha)

    def _open_writer(self, branch: str) -> WriterCheckout:
        from .checkout import WriterCheckout
        from .records.objpack import remove_stale_keeps

        git = self._git_repo()
        check_branch_name(branch)
        lock = self._acquire_writer()
        try:
            clear_stale_ref_locks(git)
            remove_stale_keeps(git)
            head = branch_head(git, branch)
            if head is None and (branch != "master" or self._has_commits()):
                # before the first commit only master exists (as in the reference)
                raise ValueError(f"no branch named {branch!r}")
            journal = Journal.open(self._journal_path(), branch, head)
            try:
                self._recover_commit(journal)
                if journal.branch != branch or journal.base != branch_head(git, journal.branch):
                    if journal.has_entries and not self._staging_clean(journal):
                        if journal.branch != branch:
                            raise ValueError(
                                f"the staging area holds uncommitted changes on branch "
                                f"{journal.branch!r}: commit or reset them before writing "
                                f"to {branch!r}"
                            )
                    else:
                        journal.reset(branch, head)
                return WriterCheckout(self, branch, journal, lock)
            except BaseException:
                journal.close()
                raise
        except BaseException:
            self._release_writer(lock)
            raise

    def clone(
        self,
        user_name: str | None,
        user_email: str | None,
        remote_address: str,
        *,
        remove_old: bool = False,
        data: str | None = None,
        remote_name: str = "origin",
        progress: Any = None,
    ) -> str:
        """Clone the records of a remote here; payloads stay remote until fetched.

        Initialises hangar at ``path`` (creating the git repository if
        needed), adds ``remote_name`` for ``remote_address`` with the data URL
        ``data``, fetches every hangar branch to ``<remote_name>/<branch>``
        and creates the local ``master`` branch (or the remote's first branch
        when it has no master). Samples are then remote references: fetch
        their payloads with ``remote.fetch_data``, or read through
        ``checkout(fetch_missing=True)``.

        Returns
        -------
        str
            Name of the local branch created.

        Raises
        ------
        OSError
            If a hangar repository exists here and ``remove_old`` is False.
        ValueError
            Bad arguments, or the remote holds no hangar branch (nothing changes).
        ConnectionError
            If the remote cannot be reached (nothing changes).
        """
        from .remotes import clone_repository

        return clone_repository(
            self,
            user_name,
            user_email,
            remote_address,
            remove_old=remove_old,
            data=data,
            remote_name=remote_name,
            progress=progress,
        )

    def summary(
        self, *, branch: str = "", commit: str = "", return_contents: bool = False
    ) -> dict | None:
        """Print (or return) what a commit holds: arraysets, sample counts, metadata."""
        from .history import render_summary, summary_contents

        start = self._startpoint(branch or None, commit or None)
        if start is None:
            raise ValueError("the repository has no commits yet")
        contents = summary_contents(self, start)
        if return_contents:
            return contents
        print(render_summary(contents))
        return None

    # ---- diff and merge -----------------------------------------------------------
    def diff(self, master: str, dev: str) -> tuple[DiffChanges, dict[str, Any]]:
        """Changes and conflicts between two commits, without opening a checkout.

        The same result as ``repo.checkout(commit=master).diff.commit(dev)``
        (a three-way diff from the merge base, see
        :meth:`hangar_git.userdiff.ReaderUserDiff.branch`), read from the
        record trees alone: no checkout, no payload store, and only the parts
        of the records that changed.

        Parameters
        ----------
        master, dev : str
            STARTPOINTs: a branch, a tag, ``remote/branch`` or a commit hash
            (a unique prefix is enough).

        Returns
        -------
        tuple
            ``(changes, conflicts)``: ``changes['samples']['master'][aset]``
            holds the ``'additions'``, ``'removals'`` and ``'mutations'`` of
            ``master`` since the merge base, ``'dev'`` those of ``dev``;
            ``changes.records`` is the plain :class:`~hangar_git.diff.BranchDiff`
            (``master``, ``dev``, ``incoming``, ``base``).

        Raises
        ------
        StartpointError
            (a LookupError) No such branch, tag or commit, a commit without
            hangar data, or a branch with no commit yet.
        TypeError
            If ``master`` or ``dev`` is not a str.
        NotInitializedError
            Before :meth:`init`.

        Examples
        --------
        >>> changes, conflicts = repo.diff("master", "dev")   # doctest: +SKIP
        >>> changes.dev.samples["images"].mutations           # doctest: +SKIP
        """
        from .diffref import commit_diff

        for spec in (master, dev):
            if not isinstance(spec, str):
                raise TypeError(f"a STARTPOINT is a str, not {type(spec).__name__}")
        git = self._git_repo()
        a, b = self.resolve_startpoint(master), self.resolve_startpoint(dev)
        return commit_diff(git, a.commit, b.commit)

    # ---- merge -----------------------------------------------------------------
    def merge(
        self, message: str, master_branch: str, dev_branch: str, *, strategy: str | None = None
    ) -> str:
        """Merge ``dev_branch`` into ``master_branch``; returns the new head commit."""
        from .checkout import WriterCheckout

        self._git_repo()
        with self.checkout(write=True, branch=master_branch) as co:
            assert isinstance(co, WriterCheckout)
            return co.merge(message, dev_branch, strategy=strategy)

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
        """Apply one commit's change to ``branch`` (default: the staging area's)
        as a new commit; see :func:`hangar_git.history_tools.cherry_pick`."""
        from .history_tools import cherry_pick

        with self._staging_journal(branch) as journal:
            git, who = self._git_repo(), self._identity()
            return cherry_pick(git, who, journal, commit, strategy=strategy, message=message)

    def revert(
        self,
        commit: str,
        *,
        branch: str | None = None,
        strategy: str | None = None,
        message: str | None = None,
    ) -> str:
        """Undo one commit's change on ``branch`` (default: the staging area's)
        as a new commit; see :func:`hangar_git.history_tools.revert`."""
        from .history_tools import revert

        with self._staging_journal(branch) as journal:
            git, who = self._git_repo(), self._identity()
            return revert(git, who, journal, commit, strategy=strategy, message=message)

    def compare_sample(self, a: str, b: str, arrayset: str, key: str | int) -> SampleComparison:
        """One sample at STARTPOINTs ``a`` and ``b`` and at their merge base;
        see :func:`hangar_git.history_tools.compare_sample`."""
        from .history_tools import compare_sample

        return compare_sample(self, a, b, arrayset, key)

    def purge(
        self,
        arrayset: str | None,
        keys: Iterable[str | int] = (),
        *,
        meta_keys: Iterable[str | int] = (),
        dry_run: bool = False,
        data_remote: str | None = None,
    ) -> PurgeReport:
        """Remove samples (and metadata) from every commit of every local branch,
        then their payloads and the old commits from this machine (and from
        the data remote of remote ``data_remote``); see
        :func:`hangar_git.history_tools.purge_records`, ``drop_purged`` and
        ``purge_data_remote``."""
        from .history_tools import drop_purged, purge_data_remote, purge_records

        if data_remote is not None:
            self.remote.fetcher(data_remote)  # no such remote: refused before any change
        with self._staging_journal(None) as journal:
            report = purge_records(
                self._git_repo(), journal, arrayset, keys, meta_keys=meta_keys, dry_run=dry_run
            )
        if not dry_run and report.commits:
            drop_purged(self, report)
        if data_remote is not None:
            gone = report.payloads - report.payloads_kept
            report.data_remote = purge_data_remote(self, data_remote, gone, dry_run=dry_run)
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
        """Commit a schema change of ``arrayset`` (a raised maximum shape, made
        variable-shape, renamed, or cast to ``dtype``); returns the new head.
        See :func:`hangar_git.history_tools.change_schema` and ``change_dtype``."""
        from .history_tools import change_dtype, change_schema

        if dtype is not None:
            if shape is not None or variable_shape is not None or rename is not None:
                raise ValueError("change the dtype in a commit of its own")
            return change_dtype(self, arrayset, dtype, branch=branch, force=force, message=message)
        with self._staging_journal(branch) as journal:
            git, who = self._git_repo(), self._identity()
            change = {"shape": shape, "variable_shape": variable_shape, "rename": rename}
            return change_schema(git, who, journal, arrayset, **change, message=message)

    # ---- maintenance -------------------------------------------------------------
    def verify(self, full: bool = False) -> Any:
        """Check records, payloads and git objects (``git hangar fsck``).

        Returns a :class:`hangar_git.fsck.FsckReport`; ``report.ok`` is False
        when anything is damaged, and ``report.damaged`` names each damaged
        sample of each commit. ``full`` also hashes every git object and
        verifies payloads no commit references. Nothing is changed.
        """
        from .fsck import verify

        if not isinstance(full, bool):
            raise ValueError(f"full must be a bool, not {full!r}")
        self._git_repo()
        return verify(self, full=full)

    def repair(self, dry_run: bool = False) -> RepairReport:
        """Put back what a crash, a bad disk or a racing tool broke (``fsck --repair``).

        Branch refs that name a missing commit go back to the newest whole
        commit of their reflog (a staging area on such a branch keeps its
        changes, on the restored head); refs with none are deleted and noted
        in ``.git/hangar/lost-refs``; an unreadable payload index is rebuilt
        from the pack files. See :mod:`hangar_git.repair`.

        Parameters
        ----------
        dry_run : bool
            Only report what would be done.

        Returns
        -------
        RepairReport
            What was repaired; ``report.summary()`` says it in lines.

        Raises
        ------
        WriterLockError
            (a PermissionError) while a write checkout is open.
        """
        from .repair import repair

        if not isinstance(dry_run, bool):
            raise ValueError(f"dry_run must be a bool, not {dry_run!r}")
        self._git_repo()
        return repair(self, dry_run=dry_run)

    def gc(self, dry_run: bool = False) -> Any:
        """Reclaim unreferenced payloads, compact packs, repack git objects.

        Returns a :class:`hangar_git.gc.GcReport`.

        Raises
        ------
        WriterLockError
            (a PermissionError) while a write checkout is open.
        """
        from .gc import gc

        if not isinstance(dry_run, bool):
            raise ValueError(f"dry_run must be a bool, not {dry_run!r}")
        self._git_repo()
        return gc(self, dry_run=dry_run)

    def __repr__(self) -> str:
        state = "initialized" if self.initialized else "not initialized"
        return f"<hangar_git.Repository {self.path} ({state})>"
