"""The Repository: the entry point to a hangar-git data repository."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2
from filelock import FileLock, Timeout

from ._version import __version__
from .checkout import _LIVE_WRITERS, ReaderCheckout, WriterCheckout
from .errors import NotInitializedError, WriterLockError
from .gitutil import (
    HEADS,
    branch_head,
    branch_ref,
    clear_stale_ref_locks,
    common_dir,
    config_identity,
    config_identity_outside_repo,
    discover,
    list_branches,
    move_branch,
    ref_commit,
    resolve_commit,
)
from .naming import check_branch_name
from .records.objpack import remove_stale_keeps
from .records.snapshot import TreeRecords, commit_tree
from .records.staging import Journal
from .repair import RepairReport
from .store import PackStore

if TYPE_CHECKING:
    from .history_tools import PurgeReport, SampleComparison
    from .refs import BranchHead, Startpoint
    from .status import StagedState


class _DefaultBranch(str):
    """``'master'`` as the default of :meth:`Repository.checkout`, told apart from a
    ``branch='master'`` a caller wrote (only the default warns when it moves the
    current branch)."""

    __slots__ = ()


#: the ``branch`` default of :meth:`Repository.checkout`: ``'master'``, as in the reference
DEFAULT_BRANCH = _DefaultBranch("master")


class Repository:
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
        self._store = PackStore(self._hdir / "store")

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
            if _LIVE_WRITERS and any(w._repo._hdir == self._hdir for w in _LIVE_WRITERS):
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
        self._git_repo()
        lock = self._lock_obj()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    @property
    def remote(self) -> Any:
        """Remote operations (see :class:`hangar_git.remotes.Remotes`)."""
        from .remotes import Remotes

        return Remotes(self)

    def _identity(self) -> tuple[str, str]:
        cfg = self._config
        name, email = config_identity(self._git_repo())
        name = cfg.get("user_name") or name
        email = cfg.get("user_email") or email
        if not name or not email:
            raise ValueError("no identity for commits: set `git config user.name` and `user.email`")
        return name, email

    # ---- writer lock -----------------------------------------------------------
    def _lock_obj(self) -> FileLock:
        assert self._hdir is not None
        return FileLock(str(self._hdir / "writer.lock"), thread_local=False)

    def _acquire_writer(self) -> FileLock:
        assert self._hdir is not None
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
        for co in list(_LIVE_WRITERS):
            if co._repo._hdir == self._hdir:
                co.close()
        if self.writer_lock_held:
            # the other process keeps its (now orphaned) locks on the old files;
            # the payload store's lock goes with the writer's, or the next
            # writer would wait on it
            (self._hdir / "writer.lock").unlink(missing_ok=True)
            (self._hdir / "writer.json").unlink(missing_ok=True)
            (self._store.root / "write.lock").unlink(missing_ok=True)
        return True

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
        return ReaderCheckout(self, sha)

    def _journal_path(self) -> Path:
        assert self._hdir is not None
        return self._hdir / "staging" / "journal"

    def _open_writer(self, branch: str) -> WriterCheckout:
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

    def _staging_clean(self, journal: Journal) -> bool:
        """True when the journal's entries add up to no change of its base
        (e.g. an arrayset created then removed): status CLEAN."""
        from .diff import staged_diff
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

    # ---- branches ----------------------------------------------------------------
    def list_branches(self) -> list[str]:
        """Names of the hangar branches (``master`` exists from the start)."""
        git = self._git_repo()
        names = list_branches(git)
        if not names:
            names = ["master"]
        return names

    def create_branch(self, name: str, base_commit: str | None = None) -> str:
        """Create branch ``name`` at ``base_commit`` (default: the writer's branch head).

        Raises
        ------
        ValueError
            Invalid name, a branch of that name exists, or no such commit.
        RuntimeError
            If no commit exists yet (nothing to branch from).
        """
        git = self._git_repo()
        ref = branch_ref(name)
        if git.references.get(ref) is not None:
            raise ValueError(f"a branch named {name!r} already exists")
        if base_commit is None:
            sha = branch_head(git, self._writer_branch())
            if sha is None:
                raise RuntimeError("no commit to branch from: make a first commit")
        else:
            sha = resolve_commit(git, base_commit)
        move_branch(git, name, sha, f"hangar branch: created from {sha}")
        return name

    def _writer_branch(self) -> str:
        path = self._journal_path()
        if path.exists():
            try:
                first = path.read_text().split("\n", 1)[0].split("\t")
                return str(json.loads(first[1])["branch"])
            except (ValueError, IndexError, KeyError):
                pass
        return "master"

    def remove_branch(self, name: str, *, force: bool = False) -> str:
        """Delete branch ``name``; returns the commit it pointed at.

        Refuses to drop work that no other branch holds unless ``force``.

        Raises
        ------
        ValueError
            No such branch, it is the writer's branch, or it holds unmerged
            commits and ``force`` is False.
        """
        git = self._git_repo()
        ref = branch_ref(name)
        head = branch_head(git, name)
        if head is None:
            raise ValueError(f"no branch named {name!r}")
        if name == self._writer_branch():
            raise ValueError(
                f"branch {name!r} is the write checkout's branch; check out another first"
            )
        if not force:
            others = [branch_head(git, b) for b in list_branches(git, remotes=True) if b != name]
            target = pygit2.Oid(hex=head)
            held = any(
                o == head or git.descendant_of(pygit2.Oid(hex=o), target) for o in others if o
            )
            if not held:
                raise ValueError(
                    f"branch {name!r} holds commits no other branch contains; merge it or "
                    "pass force=True to delete it anyway"
                )
        git.references.delete(ref)
        return head

    # ---- tags ----------------------------------------------------------------------
    def create_tag(self, name: str, commit: str | None = None) -> str:
        """Tag ``commit`` (default: the current branch's head) as ``name``.

        A tag is a fixed name for a commit (``refs/hangar/tags/<name>``): a
        STARTPOINT everywhere a branch is, never moved by commits or merges,
        carried by push and fetch.

        Parameters
        ----------
        name : str
            The tag; parts separated by ``/`` are allowed (``release/v1``).
        commit : str, optional
            A STARTPOINT: branch, tag, ``remote/branch`` or commit hash prefix.

        Returns
        -------
        str
            The full hash of the tagged commit.

        Raises
        ------
        ValueError
            Invalid name, the tag exists (tags are not moved: remove it
            first), or no such commit.
        """
        from .refs import check_tag_name, create_tag

        check_tag_name(name)
        try:
            sha = self.resolve_startpoint(commit).commit
        except LookupError as exc:
            raise ValueError(str(exc)) from None
        create_tag(self._git_repo(), name, sha)
        return sha

    def list_tags(self) -> dict[str, str]:
        """Every tag: ``{name: commit hash}``, sorted by name."""
        from .refs import list_tags

        return list_tags(self._git_repo())

    def remove_tag(self, name: str) -> str:
        """Delete tag ``name`` (its commits stay on their branches); returns its commit.

        Raises
        ------
        ValueError
            Invalid name or no such tag.
        """
        from .refs import remove_tag

        return remove_tag(self._git_repo(), name)

    def _tag_or_commit(self, spec: str) -> str:
        """The commit of tag ``spec``, else of the commit hash (prefix) ``spec``."""
        from .refs import TAGS, check_tag_name

        git = self._git_repo()
        try:
            sha = ref_commit(git, TAGS + check_tag_name(spec))
        except ValueError:  # not a tag name: a commit hash, or nothing
            sha = None
        return sha if sha is not None else resolve_commit(git, spec)

    # ---- history ---------------------------------------------------------------
    def log(
        self,
        branch: str | None = None,
        commit: str | None = None,
        *,
        return_contents: bool = False,
        show_time: bool = False,
        show_user: bool = False,
    ) -> dict | None:
        """Print the commit graph from a branch head or commit (like ``git log --graph``).

        With ``return_contents`` the graph is returned as a dict instead:
        ``head``, ``order`` (newest first), ``ancestors`` (commit -> parents)
        and ``specs`` (commit -> time, user, email, message, code commit).
        """
        from .history import log_contents, render_log

        git = self._git_repo()
        start = self._startpoint(branch, commit)
        if start is None:
            return None
        contents = log_contents(git, start)
        if return_contents:
            return contents
        print(render_log(git, contents, show_time=show_time, show_user=show_user))
        return None

    def _startpoint(self, branch: str | None, commit: str | None) -> str | None:
        git = self._git_repo()
        if commit:
            return resolve_commit(git, commit)
        if branch:
            check_branch_name(branch)
            head = branch_head(git, branch)
            if head is None:
                remote = ref_commit(git, "refs/hangar/remotes/" + branch)
                if remote is not None:
                    return remote
                raise ValueError(f"no branch named {branch!r} with commits")
            return head
        return branch_head(git, self._writer_branch())

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

    # ---- merge -----------------------------------------------------------------
    def merge(
        self, message: str, master_branch: str, dev_branch: str, *, strategy: str | None = None
    ) -> str:
        """Merge ``dev_branch`` into ``master_branch``; returns the new head commit."""
        self._git_repo()
        with self.checkout(write=True, branch=master_branch) as co:
            assert isinstance(co, WriterCheckout)
            return co.merge(message, dev_branch, strategy=strategy)

    @contextmanager
    def _staging_journal(self, branch: str | None) -> Iterator[Journal]:
        """The staging journal on ``branch`` (default: its own), under the
        writer lock, recovered and reset onto the branch head when clean."""
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

    def resolve_startpoint(self, spec: str | None = None) -> Startpoint:
        """The commit a STARTPOINT names: a branch, ``remote/branch`` or commit hash prefix.

        Parameters
        ----------
        spec : str, optional
            What the user typed; None for the head of the staging area's branch.

        Returns
        -------
        Startpoint
            ``commit``, and ``branch`` when a branch was named.

        Raises
        ------
        StartpointError
            (a LookupError) No such branch or commit, a commit without hangar
            data, or a branch with no commit yet.
        """
        from .refs import branch_startpoint, resolve_startpoint

        git = self._git_repo()
        if spec is None:
            return branch_startpoint(git, self._writer_branch())
        return resolve_startpoint(git, spec)

    def branch_heads(self, *, messages: bool = False) -> list[BranchHead]:
        """Every branch with its head commit: local ones, then remote-tracking ones.

        Parameters
        ----------
        messages : bool
            Also read each head commit's message.

        Returns
        -------
        list of BranchHead
        """
        from .refs import branch_heads

        return branch_heads(self._git_repo(), self.list_branches(), messages=messages)

    def branch_commit(self, name: str, *, required: bool = True) -> str | None:
        """Head commit of branch ``name`` (local, or remote-tracking ``remote/branch``).

        Parameters
        ----------
        name : str
            The branch.
        required : bool
            Raise ValueError when no such branch has a commit (default); else
            return None.

        Returns
        -------
        str or None
        """
        from .refs import branch_commit

        return branch_commit(self._git_repo(), name, required=required)

    def branch_labels(self) -> dict[str, list[str]]:
        """Commit -> names of the branches (local and remote-tracking) at it."""
        from .history import branch_labels

        return branch_labels(self._git_repo())

    def log_text(self, commit: str, *, show_time: bool = False, show_user: bool = False) -> str:
        """The commit graph from ``commit``, drawn like ``git log --graph --oneline``.

        Parameters
        ----------
        commit : str
            Full hash of the newest commit to draw.
        show_time, show_user : bool
            Also show each commit's time, author.

        Returns
        -------
        str
            The lines of the graph, with branch names.
        """
        from .history import log_contents, render_log

        git = self._git_repo()
        return render_log(git, log_contents(git, commit), show_time=show_time, show_user=show_user)

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
        for co in list(_LIVE_WRITERS):
            if co._repo._hdir == self._hdir and not co.closed:
                return co
        return None
