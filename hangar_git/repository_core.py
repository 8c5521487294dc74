"""RepositoryCore: git and the store opened, the writer lock, the staging journal.

The base of :class:`hangar_git.repository.Repository`: what every other part of it
uses. Branches, tags and the read-only views are in :mod:`hangar_git.repository_refs`;
cherry-pick and revert in :mod:`hangar_git.repository_history`; checkouts, clone,
the other history tools and maintenance in :mod:`hangar_git.repository`.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2

from ._version import __version__
from .errors import NotInitializedError, WriterLockError
from .gitutil import (
    HEADS,
    branch_head,
    common_dir,
    config_identity,
    config_identity_outside_repo,
    discover,
)
from .live_writers import live_writers
from .records.staging import Journal

if TYPE_CHECKING:
    from filelock import FileLock

    from .checkout import WriterCheckout
    from .status import StagedState
    from .store import PackStore


class _DefaultBranch(str):
    """``'master'`` as the default of :meth:`Repository.checkout`, told apart from a
    ``branch='master'`` a caller wrote (only the default warns when it moves the
    current branch)."""

    __slots__ = ()


#: the ``branch`` default of :meth:`Repository.checkout`: ``'master'``, as in the reference
DEFAULT_BRANCH = _DefaultBranch("master")


class RepositoryCore:
    """The core of :class:`~hangar_git.repository.Repository` (see there)."""

    def __init__(self, path: str | os.PathLike[str], exists: bool = True) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
        try:
            p = Path(path).expanduser().resolve()
        except RuntimeError as exc:  # "~name" where no user is called name
            raise OSError(f"{os.fspath(path)}: {exc}") from None
        if not p.is_dir():
            raise OSError(f"{p} is not an existing directory")
        self._user_path = p
        self._git: pygit2.Repository | None = None
        self._hdir: Path | None = None
        self._pack_store: PackStore | None = None
        gitdir = discover(p)
        if gitdir is not None:
            self._attach(pygit2.Repository(gitdir))
        if not self.initialized and exists:
            warnings.warn(
                f"no hangar repository at {p}: call Repository.init() to create one",
                UserWarning,
                stacklevel=2,
            )

    # ---- internals -----------------------------------------------------------
    def _attach(self, git: pygit2.Repository) -> None:
        self._git = git
        self._hdir = common_dir(git) / "hangar"
        self._pack_store = None

    @property
    def _store(self) -> PackStore:
        """The payload store, opened on first use (status and diffs never need it)."""
        if self._pack_store is None:
            from .store import PackStore

            assert self._hdir is not None
            self._pack_store = PackStore(self._hdir / "store")
        return self._pack_store

    @property
    def initialized(self) -> bool:
        """True once :meth:`init` has run for this repository."""
        return self._hdir is not None and (self._hdir / "config.json").is_file()

    def _git_repo(self) -> pygit2.Repository:
        if not self.initialized or self._git is None:
            raise NotInitializedError(
                f"no hangar repository at {self._user_path}: call Repository.init() first"
            )
        return self._git

    @property
    def _config(self) -> dict[str, Any]:
        assert self._hdir is not None
        return json.loads((self._hdir / "config.json").read_text())

    # ---- creation ------------------------------------------------------------
    def init(
        self,
        user_name: str | None = None,
        user_email: str | None = None,
        *,
        remove_old: bool = False,
    ) -> str:
        """Initialise hangar in the git repository at ``path`` (creating it if needed).

        The user's git HEAD, index and work tree are never touched. When
        ``user_name``/``user_email`` are not given, commits take the identity
        from ``git config user.name``/``user.email``.

        Parameters
        ----------
        user_name, user_email : str, optional
            Identity recorded for this repository's commits (default: git's
            configured one, read at each commit).
        remove_old : bool, optional
            Delete a hangar repository that exists there (its refs and
            ``.git/hangar``) and start afresh; default False refuses.

        Returns
        -------
        str
            The directory holding hangar's state (``<git dir>/hangar``).

        Raises
        ------
        ValueError
            If no identity is given nor configured in git, or the arguments are
            not str.
        OSError
            If a hangar repository exists there and ``remove_old`` is False.
        """
        for label, v in (("user_name", user_name), ("user_email", user_email)):
            if v is not None and (
                not isinstance(v, str) or not v.strip() or "\n" in v or "<" in v or ">" in v
            ):
                raise ValueError(f"invalid {label} {v!r}")
        # the identity is checked before anything is created
        name, email = (
            config_identity(self._git) if self._git is not None else config_identity_outside_repo()
        )
        if (user_name or name) is None or (user_email or email) is None:
            raise ValueError(
                "no identity for commits: pass user_name and user_email, or set "
                "`git config user.name` and `git config user.email`"
            )
        if self._git is None:
            self._attach(pygit2.init_repository(str(self._user_path)))
        assert self._git is not None and self._hdir is not None
        if self.initialized:
            if not remove_old:
                raise OSError(f"a hangar repository already exists at {self._hdir}")
            if any(w.repository.same_as(self) for w in live_writers()):
                raise WriterLockError("a write checkout is open: close it before remove_old")
            for ref in list(self._git.references):
                if ref.startswith("refs/hangar/"):
                    self._git.references.delete(ref)
            shutil.rmtree(self._hdir)
        self._hdir.mkdir(parents=True, exist_ok=True)
        (self._hdir / "staging").mkdir(exist_ok=True)
        self._store.create()
        cfg = {
            "hangar_git_version": __version__,
            "user_name": user_name,
            "user_email": user_email,
            "created": time.time(),
        }
        tmp = self._hdir / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent=2))
        os.replace(tmp, self._hdir / "config.json")
        return str(self._hdir)

    # ---- properties ----------------------------------------------------------
    @property
    def path(self) -> str:
        """The repository's directory (work tree, or git dir when bare)."""
        if self._git is not None and self._git.workdir:
            return str(Path(self._git.workdir))
        if self._git is not None:
            return str(Path(self._git.path))
        return str(self._user_path)

    @property
    def version(self) -> str:
        """Version of hangar-git that initialised this repository."""
        self._git_repo()
        return str(self._config["hangar_git_version"])

    @property
    def writer_lock_held(self) -> bool:
        """True while a write checkout (in any process) holds the writer lock."""
        from filelock import Timeout

        self._git_repo()
        lock = self._lock_obj()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    def identity(self) -> tuple[str, str]:
        """Name and email that author and commit this repository's commits.

        The ones given to :meth:`init` win; else git's ``user.name`` and
        ``user.email`` as the repository's git config resolves them.

        Returns
        -------
        tuple of (str, str)
            ``(name, email)``.

        Raises
        ------
        NotInitializedError
            Before :meth:`init`.
        ValueError
            If no name or no email is set anywhere.
        """
        git = self._git_repo()
        cfg = self._config
        name, email = config_identity(git)
        name = cfg.get("user_name") or name
        email = cfg.get("user_email") or email
        if not name or not email:
            raise ValueError("no identity for commits: set `git config user.name` and `user.email`")
        return name, email

    def staging_journal_path(self) -> Path:
        """Where the staging area's journal lives (it may not exist yet).

        Returns
        -------
        pathlib.Path
            The file under ``.git/hangar/staging``; change it only under the
            writer lock.

        Raises
        ------
        NotInitializedError
            Before :meth:`init`.
        """
        self._git_repo()
        return self._journal_path()

    def same_as(self, other: RepositoryCore) -> bool:
        """True when ``other`` opens the same hangar repository as this one.

        Two objects opened on different paths of one git repository (its work
        tree and a subdirectory, or two linked work trees) are the same.

        Parameters
        ----------
        other : Repository
            Another repository object.

        Returns
        -------
        bool
            False when either is not initialised.
        """
        if not (self.initialized and other.initialized):
            return False
        return common_dir(self.git_repository()) == common_dir(other.git_repository())

    # ---- writer lock -----------------------------------------------------------
    def _lock_obj(self) -> FileLock:
        # imported here: diffs, logs and reads never take the lock
        from filelock import FileLock

        assert self._hdir is not None
        return FileLock(str(self._hdir / "writer.lock"), thread_local=False)

    def _acquire_writer(self) -> FileLock:
        assert self._hdir is not None
        from filelock import Timeout

        lock = self._lock_obj()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = "unknown"
            try:
                info = json.loads((self._hdir / "writer.json").read_text())
                holder = (
                    f"pid {info['pid']} on {info['host']} (user {info['user']}, "
                    f"since {time.ctime(info['since'])})"
                )
            except (OSError, ValueError, KeyError):
                pass
            raise WriterLockError(
                f"cannot acquire the writer lock: a write checkout is open in {holder}. "
                "Close it (co.close()); only if that process is gone for good, use "
                "Repository.force_release_writer_lock()"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": getpass.getuser(),
            "since": time.time(),
        }
        (self._hdir / "writer.json").write_text(json.dumps(info))
        return lock

    def _release_writer(self, lock: Any) -> None:
        assert self._hdir is not None
        try:
            (self._hdir / "writer.json").unlink(missing_ok=True)
        finally:
            lock.release()

    def force_release_writer_lock(self) -> bool:
        """Release the writer lock left by a write checkout that was not closed.

        A writer in this process is closed (its batched work written first);
        a lock held by another live process is broken by replacing the lock
        file: never do that while that process may still write.

        Returns
        -------
        bool
            True (the lock is free afterwards).

        Warns
        -----
        ResourceWarning
            Always, as the reference does: breaking a lock can lose the
            staged work of a writer that is still alive.
        """
        self._git_repo()
        warnings.warn(
            "force_release_writer_lock: the writer lock is released by force; a writer "
            "still running elsewhere must never write again",
            ResourceWarning,
            stacklevel=2,
        )
        assert self._hdir is not None
        for co in live_writers():
            if co.repository.same_as(self):
                co.close()
        if self.writer_lock_held:
            # the other process keeps its (now orphaned) locks on the old files;
            # the payload store's lock goes with the writer's, or the next
            # writer would wait on it
            (self._hdir / "writer.lock").unlink(missing_ok=True)
            (self._hdir / "writer.json").unlink(missing_ok=True)
            (self._store.root / "write.lock").unlink(missing_ok=True)
        return True

    def _journal_path(self) -> Path:
        assert self._hdir is not None
        return self._hdir / "staging" / "journal"

    def _staging_clean(self, journal: Journal) -> bool:
        """True when the journal's entries add up to no change of its base
        (e.g. an arrayset created then removed): status CLEAN."""
        from .diff import staged_diff
        from .records.snapshot import TreeRecords, commit_tree
        from .records.view import StagedView

        git = self._git_repo()
        return staged_diff(
            StagedView(TreeRecords(git, commit_tree(git, journal.base)), journal)
        ).empty

    def _has_commits(self) -> bool:
        git = self._git_repo()
        return any(r.startswith(HEADS) for r in git.references)

    def _recover_commit(self, journal: Journal) -> None:
        """Finish or undo a commit interrupted between its two steps."""
        pending = journal.pending_commit
        if pending is None:
            return
        if branch_head(self._git_repo(), journal.branch) == pending:
            journal.reset(journal.branch, pending)
        else:
            journal.drop_pending_commit()

    def _writer_branch(self) -> str:
        path = self._journal_path()
        if path.exists():
            try:
                first = path.read_text().split("\n", 1)[0].split("\t")
                return str(json.loads(first[1])["branch"])
            except (ValueError, IndexError, KeyError):
                pass
        return "master"

    # ---- read-only views: names, branches, staging area, writer lock -------------
    @property
    def has_git(self) -> bool:
        """True when the directory is inside a git repository (with hangar data or not)."""
        return self._git is not None

    @property
    def writer_branch(self) -> str:
        """Branch of the staging area (the write checkout's branch), read without the lock."""
        self._git_repo()
        return self._writer_branch()

    def writer_lock_holder(self) -> dict[str, Any] | None:
        """Who holds the writer lock, as the holder recorded it.

        Returns
        -------
        dict or None
            ``pid``, ``host``, ``user`` and ``since`` (a POSIX time); None when
            nothing is recorded (the lock is free, or its holder wrote nothing).
        """
        from .status import lock_holder

        self._git_repo()
        assert self._hdir is not None
        return lock_holder(self._hdir / "writer.json")

    def staged_state(self) -> StagedState:
        """What the staging area holds, read without taking the writer lock.

        Works while a write checkout is open in another process.

        Returns
        -------
        StagedState
            Branch, base commit, branch head, the staged changes, and whether
            they are stale (staged on a base the branch has moved from).
        """
        from .status import read_staged

        return read_staged(self._git_repo(), self._journal_path())

    # ---- for the maintenance and transfer modules (fsck, gc, remotes) ----------
    def git_repository(self) -> pygit2.Repository:
        """The git repository that holds the records.

        Returns
        -------
        pygit2.Repository

        Raises
        ------
        NotInitializedError
            Before :meth:`init`.
        """
        return self._git_repo()

    def git_repository_found(self) -> pygit2.Repository | None:
        """The git repository the directory is in, with hangar data or not.

        Returns
        -------
        pygit2.Repository or None
            None when the directory is not inside a git repository.
        """
        return self._git

    @property
    def hangar_dir(self) -> Path | None:
        """Hangar's own directory in the git directory (``.git/hangar``).

        Returns
        -------
        pathlib.Path or None
            None when the directory is not inside a git repository.
        """
        return self._hdir

    def forget_git_repository(self) -> None:
        """Drop this object's handle on its git repository.

        For a caller that has just removed a git repository this object
        created (a failed clone): afterwards the object is as if the directory
        held no git repository.
        """
        self._git = None
        self._hdir = None

    @property
    def payload_store(self) -> PackStore:
        """The local payload store (under ``.git/hangar/store``).

        Raises
        ------
        NotInitializedError
            Before :meth:`init`.
        """
        self._git_repo()
        return self._store

    def peek_staging(self) -> Journal | None:
        """The staging journal, read without the writer lock and without
        writing anything (a torn tail is ignored, not repaired).

        Returns
        -------
        Journal or None
            None when nothing was ever staged.

        Raises
        ------
        NotInitializedError
            Before :meth:`init`.
        UnreadableJournal
            If the journal holds no intact header.
        """
        self._git_repo()
        return Journal.peek(self._journal_path())

    def acquire_writer_lock(self) -> FileLock:
        """Take the writer lock, as a write checkout does, for work that must
        not run beside a writer (gc). Give it back with :meth:`release_writer_lock`.

        Returns
        -------
        FileLock
            The lock, held.

        Raises
        ------
        NotInitializedError
            Before :meth:`init`.
        WriterLockError
            (a PermissionError) if a write checkout is open anywhere.
        """
        self._git_repo()
        return self._acquire_writer()

    def release_writer_lock(self, lock: FileLock) -> None:
        """Give back a lock taken with :meth:`acquire_writer_lock`.

        Parameters
        ----------
        lock : FileLock
            What :meth:`acquire_writer_lock` returned.
        """
        self._release_writer(lock)

    def writer_checkout(self) -> WriterCheckout | None:
        """The write checkout open in this process on this repository.

        Returns
        -------
        WriterCheckout or None
            None when no write checkout of this repository is open here (one
            may be open in another process: see :attr:`writer_lock_held`).
        """
        self._git_repo()
        for co in live_writers():
            if not co.closed and co.repository.same_as(self):
                return co
        return None
