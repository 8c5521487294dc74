"""The Repository: the entry point to a hangar-git data repository."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .gitutil import (
    branch_head,
    clear_stale_ref_locks,
)
from .naming import check_branch_name
from .records.staging import Journal
from .repository_core import DEFAULT_BRANCH
from .repository_history import RepositoryHistory

if TYPE_CHECKING:
    from .checkout import ReaderCheckout, WriterCheckout
    from .diffref import DiffChanges
    from .fsck import FsckReport
    from .gc import GcReport
    from .remotes import Remotes
    from .repair import RepairReport


class Repository(RepositoryHistory):
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
    def remote(self) -> Remotes:
        """Remote operations: add, list, fetch, push (see :class:`hangar_git.remotes.Remotes`)."""
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

        The writer works on the current branch (:attr:`writer_branch`, which
        ``git hangar checkout`` sets too); opening it on another moves the
        current branch there, with a :class:`UserWarning` when only the default
        ``branch`` asked for it (pass ``branch=repo.writer_branch`` to stay).

        Parameters
        ----------
        write : bool, optional
            True for the write checkout (default: read-only).
        branch : str, optional
            Branch to read the head of, or to write on (default ``'master'``).
        commit : str, optional
            Read this commit (hash, unique prefix, or tag name), not a branch head.
        fetch_missing : bool or str, optional
            A remote's name (True: the default remote) whose data URL a read
            fetches a payload missing here from, verified, then stored; False
            (default): such a read raises :class:`MissingPayloadError`.

        Returns
        -------
        ReaderCheckout or WriterCheckout
            Close it (or use it in a ``with`` block) when done.

        Raises
        ------
        ValueError
            A non-bool ``write``, no such branch or commit, changes staged on
            another branch, or no usable remote for ``fetch_missing``.
        WriterLockError
            (a PermissionError) If another write checkout is open.
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

        Parameters
        ----------
        user_name, user_email : str or None
            Identity of the commits made here; None takes git's
            ``user.name`` / ``user.email``.
        remote_address : str
            Where the remote's git repository is (a path or URL).
        remove_old : bool, optional
            Replace a hangar repository that exists here (default False: refuse).
        data : str, optional
            The remote's data URL, where its payloads are fetched from.
        remote_name : str, optional
            Name of the remote to add (default ``'origin'``).
        progress : callable, optional
            Called as ``progress(stage, done, total)`` while refs are fetched.

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
        """Print (or return) what a commit holds: arraysets, sample counts, metadata.

        Parameters
        ----------
        branch : str, optional
            Summarise this branch's head (local or ``remote/branch``).
        commit : str, optional
            Summarise this commit (hash or unique prefix); wins over ``branch``.
            With neither, the head of the staging area's branch.
        return_contents : bool, optional
            Return the summary instead of printing it.

        Returns
        -------
        dict or None
            With ``return_contents``: ``commit``, ``spec`` (time, user,
            message ...), ``arraysets`` (name -> sample count, dtype, shape and
            flags), ``metadata``, ``path`` and ``disk_usage`` (bytes of the
            payload store). Otherwise None (the summary is printed).

        Raises
        ------
        ValueError
            If the repository has no commits yet, or no such branch or commit.
        """
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
        """Merge ``dev_branch`` into ``master_branch``; returns the new head commit.

        Opens the write checkout on ``master_branch`` for the merge (so no
        other may be open) and closes it after; see
        :meth:`WriterCheckout.merge <hangar_git.checkout.WriterCheckout.merge>`.

        Parameters
        ----------
        message : str
            Message of the merge commit (unused for a fast-forward).
        master_branch : str
            Branch to merge into; it moves.
        dev_branch : str
            Branch to merge from (local, or remote-tracking ``remote/branch``).
        strategy : {None, 'ours', 'theirs'}, optional
            How conflicting samples and metadata are resolved: None (default)
            refuses the merge, ``'ours'`` keeps ``master_branch``'s values,
            ``'theirs'`` takes ``dev_branch``'s.

        Returns
        -------
        str
            Hash of ``master_branch``'s new head.

        Raises
        ------
        MergeConflictError
            (a ValueError) On conflicts without a strategy; nothing changes.
        ValueError
            Unknown branches, a bad strategy, or changes staged on ``master_branch``.
        WriterLockError
            (a PermissionError) If a write checkout is open.
        """
        from .checkout import WriterCheckout

        self._git_repo()
        with self.checkout(write=True, branch=master_branch) as co:
            assert isinstance(co, WriterCheckout)
            return co.merge(message, dev_branch, strategy=strategy)

    # ---- maintenance -------------------------------------------------------------
    def verify(self, full: bool = False) -> FsckReport:
        """Check records, payloads and git objects (``git hangar fsck``).

        Nothing is changed.

        Parameters
        ----------
        full : bool, optional
            Also hash every git object and verify the payloads no commit
            references.

        Returns
        -------
        FsckReport
            ``report.ok`` is False when anything is damaged, and
            ``report.damaged`` names each damaged sample of each commit.

        Raises
        ------
        ValueError
            If ``full`` is not a bool.
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

    def gc(self, dry_run: bool = False) -> GcReport:
        """Reclaim unreferenced payloads, compact packs, repack git objects.

        Parameters
        ----------
        dry_run : bool, optional
            Only report what would be reclaimed.

        Returns
        -------
        GcReport
            What was (or would be) deleted, compacted and reclaimed.

        Raises
        ------
        ValueError
            If ``dry_run`` is not a bool.
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
