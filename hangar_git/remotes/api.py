"""The user's side of remotes: ``Repository.remote`` and ``Repository.clone``.

Records travel with git (:mod:`.git_transport`), payloads through fsspec
(:mod:`.data_transport`, :mod:`.transfer`). A push sends the payloads the data
remote lacks, checks they landed, and only then moves the remote branch, so
whoever sees the new commits can fetch their payloads.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2

from ..errors import IntegrityError, MissingPayloadError
from ..gitutil import HEADS, branch_head, resolve_commit
from ..naming import check_arrayset_name, check_branch_name, check_remote_name
from . import config as rc
from . import git_transport as gt
from .data_remote import DataRemote
from .transfer import (
    LazyFetcher,
    Progress,
    TransferReport,
    commits_between,
    download_payloads,
    history,
    leaf_ids,
    payload_limits,
    referenced_digests,
    upload_payloads,
)

if TYPE_CHECKING:
    from ..repository import Repository


def _data_remote(repo: Repository, name: str) -> DataRemote:
    git = repo._git_repo()
    url = rc.data_url(git, name)
    if url is None:
        if rc.git_remote_url(git, name) is None:
            raise ValueError(f"no remote named {name!r}")
        raise ValueError(
            f"remote {name!r} has no data URL: set one with "
            f"`git config remote.{name}.{rc.DATA_KEY} URL` (or remove the remote and "
            f"add it again with a data URL)"
        )
    assert repo._hdir is not None
    import hashlib

    tag = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
    cache = repo._hdir / "remotes" / name / tag
    try:
        return DataRemote(url, cache, rc.data_options(git, name))
    except ImportError as exc:
        raise ValueError(f"the data URL {url!r} of remote {name!r} needs a package: {exc}")


#: last transfer report per Repository object (``Repository.remote`` is made per access)
_REPORTS: weakref.WeakKeyDictionary[Repository, TransferReport] = weakref.WeakKeyDictionary()
_TAG_REPORTS: weakref.WeakKeyDictionary[Repository, gt.TagReport] = weakref.WeakKeyDictionary()


class Remotes:
    """Remote operations of a repository (``Repository.remote``).

    A remote is a git remote (records) plus a data URL beside it in git config
    (payloads, through fsspec). See :mod:`hangar_git.remotes`.

    ``last_report`` tells what the last payload transfer moved (payloads,
    bytes, packs, requests, seconds).
    """

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    @property
    def last_report(self) -> TransferReport | None:
        """What the last payload transfer of this repository object moved."""
        return _REPORTS.get(self._repo)

    @last_report.setter
    def last_report(self, report: TransferReport | None) -> None:
        if report is None:
            _REPORTS.pop(self._repo, None)
        else:
            _REPORTS[self._repo] = report

    @property
    def last_tags(self) -> gt.TagReport | None:
        """What the last push or fetch of this repository object did with tags:
        ``added`` (names) and ``kept`` (``{name: their commit}`` of tags left
        alone because this side has them at another commit)."""
        return _TAG_REPORTS.get(self._repo)

    def _git(self) -> pygit2.Repository:
        return self._repo._git_repo()

    def _callbacks(
        self, progress: Progress | None = None, username: str = "", password: str = ""
    ) -> gt.Callbacks:
        return gt.Callbacks(
            self._repo.path, username=username, password=password, progress=progress
        )

    def _known(self, name: str) -> str:
        check_remote_name(name)
        if rc.git_remote_url(self._git(), name) is None:
            raise ValueError(f"no remote named {name!r}")
        return name

    # ---- configuration -------------------------------------------------
    def add(
        self,
        name: str,
        address: str | None = None,
        *,
        data: str | None = None,
        data_options: Mapping[str, Any] | None = None,
    ) -> rc.RemoteInfo:
        """Add remote ``name``: git ``address`` for records, ``data`` URL for payloads.

        An existing git remote of that name is reused (give its address, or
        none); a new one is created as an ordinary git remote. The data URL
        is any fsspec URL (a directory path, ``s3://bucket/prefix``, ...).

        Parameters
        ----------
        name : str
            Remote name (e.g. ``'origin'``).
        address : str, optional
            Git URL or path; may be omitted when the git remote exists.
        data : str, optional
            Where payloads go. Needed to push or fetch payloads.
        data_options : mapping, optional
            Extra fsspec storage options that are not secrets (e.g.
            ``{'endpoint_url': ...}``), kept in git config.

        Returns
        -------
        RemoteInfo
            ``(name, address)``, with the data URL as ``.data``.

        A hangar remote of that name with no data URL (as a clone without
        one leaves it) gets ``data`` as its data URL.

        Raises
        ------
        ValueError
            Invalid name, URL or option, a hangar remote of that name exists
            already with a data URL, or the git remote exists with another
            address.
        """
        return rc.add_remote(self._git(), name, address, data, data_options)

    def set_data(
        self, name: str, data: str, *, data_options: Mapping[str, Any] | None = None
    ) -> rc.RemoteInfo:
        """Set or replace the data URL of remote ``name`` (e.g. after a clone without one).

        Raises
        ------
        ValueError
            No such remote, or an invalid URL or option (nothing changes then).
        """
        info = rc.set_data(self._git(), name, data, data_options)
        if self._repo._hdir is not None:  # the cached indexes of the old data remote
            shutil.rmtree(self._repo._hdir / "remotes" / name, ignore_errors=True)
        return info

    def remove(self, name: str) -> rc.RemoteInfo:
        """Remove remote ``name``; its remote-tracking branches stay.

        A git remote that existed before it was added here keeps its URL.

        Raises
        ------
        ValueError
            If there is no such remote.
        """
        info = rc.remove_remote(self._git(), name)
        if self._repo._hdir is not None:  # the cached indexes of its data remote
            shutil.rmtree(self._repo._hdir / "remotes" / name, ignore_errors=True)
        return info

    def list_all(self) -> list[rc.RemoteInfo]:
        """Every remote: ``RemoteInfo(name, address)`` with ``.data``."""
        return rc.list_remotes(self._git())

    def ping(self, name: str) -> float:
        """Reach both halves of remote ``name``; returns the round trip in seconds.

        Raises
        ------
        KeyError
            If no remote of that name is configured.
        ConnectionError
            If the git remote or the data remote cannot be reached.
        """
        git = self._git()
        if rc.git_remote_url(git, name) is None or not rc.is_hangar_remote(git, name):
            raise KeyError(name)
        t0 = time.perf_counter()
        gt.list_heads(git, name, self._callbacks())
        if rc.data_url(git, name) is not None:
            _data_remote(self._repo, name).ping()
        return time.perf_counter() - t0

    # ---- records ---------------------------------------------------------
    def fetch(self, remote: str, branch: str, *, progress: Progress | None = None) -> str:
        """Fetch the commits of ``branch`` from ``remote`` (records only).

        They land on the remote-tracking branch ``<remote>/<branch>``
        (``refs/hangar/remotes/<remote>/<branch>``): read it with
        ``checkout(commit=...)``, merge it like any branch, and fetch its
        payloads with :meth:`fetch_data`.

        Returns
        -------
        str
            The remote-tracking branch name, ``'<remote>/<branch>'``.

        Raises
        ------
        ValueError
            Unknown remote, invalid branch name, or no such branch on the remote.
        ConnectionError
            If the remote cannot be reached.
        """
        self._known(remote)
        check_branch_name(branch)
        heads = gt.fetch(self._git(), remote, [branch], self._callbacks(progress))
        if branch not in heads:
            raise ValueError(f"remote {remote!r} has no branch {branch!r}")
        cb = self._callbacks(progress)
        _TAG_REPORTS[self._repo] = gt.fetch_tags(self._git(), remote, cb, all_tags=False)
        return f"{remote}/{branch}"

    def fetch_all(self, remote: str, *, progress: Progress | None = None) -> list[str]:
        """Fetch every branch and tag of ``remote`` (records only); returns ``remote/branch`` names.

        Tags the remote has and this repository lacks are created; a tag
        that exists here at another commit is kept (see :attr:`last_tags`).
        """
        self._known(remote)
        heads = gt.fetch(self._git(), remote, None, self._callbacks(progress))
        cb = self._callbacks(progress)
        _TAG_REPORTS[self._repo] = gt.fetch_tags(self._git(), remote, cb, all_tags=True)
        return [f"{remote}/{b}" for b in sorted(heads)]

    def push(
        self,
        remote: str,
        branch: str,
        *,
        username: str = "",
        password: str = "",
        progress: Progress | None = None,
    ) -> str:
        """Send ``branch`` to ``remote``: first the payloads it lacks, then the records.

        The payloads referenced by the commits the remote does not have go to
        the data remote in packs; once they are verified there, the git
        branch is pushed (fast-forward only), then the tags at its commits
        that the remote lacks (a tag the remote has is never moved; see
        :attr:`last_tags`). Rerunning an interrupted push sends only what did
        not arrive.

        Parameters
        ----------
        remote, branch : str
            Where to, and which branch.
        username, password : str, optional
            Credentials for an https git remote, for this call only (never
            stored). Without them git's credential helpers are asked.

        Returns
        -------
        str
            The branch name pushed.

        Raises
        ------
        PushRejectedError
            (a RuntimeError) if the remote branch holds commits you do not
            have: fetch, merge, and push again.
        MissingPayloadError
            If a payload to push is neither here nor on the data remote.
        ValueError
            Unknown remote or branch, or no data URL while payloads must go.
        ConnectionError
            If the remote cannot be reached.
        """
        git = self._git()
        self._known(remote)
        check_branch_name(branch)
        head = branch_head(git, branch)
        if head is None:
            raise ValueError(f"no branch named {branch!r} with commits")
        cb = self._callbacks(progress, username, password)
        heads = gt.list_heads(git, remote, cb)
        theirs = heads.get(HEADS + branch)
        if theirs is not None and theirs != head:
            known = git.get(theirs) is not None
            if not known or not git.descendant_of(pygit2.Oid(hex=head), pygit2.Oid(hex=theirs)):
                raise gt.PushRejectedError(gt._rejected_message(remote, branch, "non-fast-forward"))
        hide = [h for h in heads.values() if git.get(h) is not None]
        hide += [
            str(git.references[r].target)
            for r in git.references
            if r.startswith(f"refs/hangar/remotes/{remote}/")
        ]
        hide = list(dict.fromkeys(hide))
        new = commits_between(git, head, hide)
        digests = referenced_digests(git, new, skip_leaves=leaf_ids(git, hide[:8]))
        self.last_report = TransferReport()
        if digests:
            if rc.data_url(git, remote) is None:
                raise ValueError(
                    f"remote {remote!r} has no data URL, and branch {branch!r} has payloads "
                    f"to send: set one with `git config remote.{remote}.{rc.DATA_KEY} URL`"
                )
            self.last_report = upload_payloads(
                self._repo, _data_remote(self._repo, remote), digests, progress
            )
        if theirs != head:
            gt.push(git, remote, branch, self._callbacks(progress, username, password))
        git.references.create(
            gt.remote_tracking_ref(remote, branch), pygit2.Oid(hex=head), force=True
        )
        cb = self._callbacks(progress, username, password)
        _TAG_REPORTS[self._repo] = gt.push_tags(
            git, remote, gt.tags_at_or_before(git, self._repo.list_tags(), head), cb
        )
        return branch

    # ---- payloads --------------------------------------------------------
    def _startpoint(self, remote: str, branch: str | None, commit: str | None) -> str:
        git = self._git()
        if branch and commit:
            raise ValueError("give a branch or a commit, not both")
        if not branch and not commit:
            raise ValueError("give the branch or the commit whose data to fetch")
        if commit:
            return resolve_commit(git, commit)
        assert branch is not None
        if not isinstance(branch, str):
            raise ValueError(f"branch must be a str, not {branch!r}")
        check_branch_name(branch)
        head = branch_head(git, branch)  # a local branch first (names may have parts)
        if head is None:
            tracking = branch if "/" in branch else f"{remote}/{branch}"
            ref = git.references.get("refs/hangar/remotes/" + tracking)
            if ref is None and "/" in branch:
                ref = git.references.get(f"refs/hangar/remotes/{remote}/{branch}")
            if ref is None:
                raise ValueError(f"no branch named {branch!r} (nor {tracking!r})")
            head = str(ref.target)
        return head

    def fetch_data(
        self,
        remote: str,
        branch: str | None = None,
        commit: str | None = None,
        *,
        arrayset_names: Sequence[str] | None = None,
        max_num_bytes: int | None = None,
        retrieve_all_history: bool = False,
        progress: Progress | None = None,
    ) -> list[str]:
        """Fetch the payloads a branch head or commit references and that are absent here.

        Every payload is verified against its digest before it is stored; a
        payload that fails is refused (not stored) and reported by an
        :class:`IntegrityError` once the others are stored.

        Parameters
        ----------
        remote : str
            The remote whose data URL to read.
        branch : str, optional
            Branch whose head to fetch data for: a local branch, or a
            remote-tracking one (``'origin/master'``, or ``'master'`` when no
            local branch of that name exists).
        commit : str, optional
            Commit hash (or unique prefix), instead of ``branch``.
        arrayset_names : sequence of str, optional
            Only these arraysets.
        max_num_bytes : int, optional
            Stop before the (uncompressed) payload bytes fetched exceed this.
        retrieve_all_history : bool, optional
            Also every ancestor commit's payloads.

        Returns
        -------
        list of str
            The commits whose data was fetched.

        Raises
        ------
        ValueError
            Both or neither of branch and commit, unknown branch, commit,
            remote or arrayset, or a bad byte budget.
        IntegrityError
            Some payloads failed verification (the rest were stored).
        MissingPayloadError
            Some payloads are not on the data remote (the rest were stored).
        """
        git = self._git()
        self._known(remote)
        if max_num_bytes is not None and (
            isinstance(max_num_bytes, bool)
            or not isinstance(max_num_bytes, int)
            or max_num_bytes < 0
        ):
            raise ValueError(f"max_num_bytes must be an int >= 0, not {max_num_bytes!r}")
        if not isinstance(retrieve_all_history, bool):
            raise ValueError("retrieve_all_history must be a bool")
        start = self._startpoint(remote, branch, commit)
        names: set[str] | None = None
        if arrayset_names is not None:
            if isinstance(arrayset_names, str):
                arrayset_names = [arrayset_names]
            names = {check_arrayset_name(n) for n in arrayset_names}
        commits = history(git, start) if retrieve_all_history else [start]
        digests = referenced_digests(git, commits, names)
        if names is not None:
            found = set(digests.values()) | _aset_names(git, commits, names)
            unknown = sorted(names - found)
            if unknown:
                raise ValueError(
                    f"no arrayset named {', '.join(map(repr, unknown))} in {start[:12]}"
                )
        dr = _data_remote(self._repo, remote)
        report = download_payloads(
            self._repo,
            dr,
            list(digests),
            max_bytes=max_num_bytes,
            progress=progress,
            limits=payload_limits(git, commits, digests),
        )
        self.last_report = report
        if report.refused:
            raise IntegrityError(
                f"{len(report.refused)} payloads from remote {remote!r} ({dr.url}) failed "
                f"verification against their digests and were refused, not stored (first: "
                f"{report.refused[0].hex()}); {report.payloads} others were fetched"
            )
        if report.absent:
            damaged = (
                f" ({len(dr.damaged)} packs there are damaged and were ignored: "
                f"{', '.join(dr.damaged[:3])})"
                if dr.damaged
                else ""
            )
            raise MissingPayloadError(
                f"{len(report.absent)} payloads are not on the data remote of {remote!r} "
                f"({dr.url}){damaged}, first: {report.absent[0].hex()}; {report.payloads} "
                "others were fetched. Whoever pushed those commits may not have sent their "
                "data there"
            )
        return commits

    def fetcher(self, remote: str) -> LazyFetcher:
        """A callable that fetches given payload digests from ``remote`` (lazy reads)."""
        self._known(remote)
        return LazyFetcher(self._repo, remote, _data_remote(self._repo, remote))

    def default_remote(self) -> str:
        """The remote lazy reads use when none is named: ``origin``, or the only one.

        Raises
        ------
        ValueError
            If there is no remote, or several and none is ``origin``.
        """
        names = [r.name for r in self.list_all() if r.data]
        if "origin" in names:
            return "origin"
        if len(names) == 1:
            return names[0]
        if not names:
            raise ValueError("no remote with a data URL is configured")
        raise ValueError(f"several remotes ({', '.join(names)}): name the one to fetch from")

    def __repr__(self) -> str:
        return f"<hangar_git Remotes of {self._repo.path}>"


def _aset_names(git: pygit2.Repository, commits: Sequence[str], names: Collection[str]) -> set[str]:
    from ..records.snapshot import TreeRecords, commit_tree

    found: set[str] = set()
    for c in commits[:1]:
        found |= set(TreeRecords(git, commit_tree(git, c)).arrayset_names()) & set(names)
    return found


def clone_repository(
    repo: Repository,
    user_name: str | None,
    user_email: str | None,
    remote_address: str,
    *,
    remove_old: bool = False,
    data: str | None = None,
    remote_name: str = "origin",
    data_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> str:
    """Initialise ``repo`` from a remote's records (see :meth:`Repository.clone`)."""
    check_remote_name(remote_name)
    address = rc.normalize_address(remote_address)
    rc.check_no_credentials(address, "git address")
    if data is not None:
        data = rc.normalize_data_url(data)
    if repo.initialized and not remove_old:
        raise OSError(f"a hangar repository already exists at {repo.path}")
    if repo._git is not None:
        existing = rc.git_remote_url(repo._git, remote_name)
        if existing is not None and not rc._same_address(existing, address):
            raise ValueError(
                f"git remote {remote_name!r} already exists with address {existing!r}: "
                "clone under another remote name"
            )
    with tempfile.TemporaryDirectory(prefix="hangar-clone-") as tmp:
        scratch = pygit2.init_repository(tmp, bare=True)
        heads = gt.list_heads_url(address, scratch, gt.Callbacks(str(repo._user_path)))
        del scratch
    branches = sorted(h[len(HEADS) :] for h in heads)
    if not branches:
        raise ValueError(f"{remote_address} holds no hangar branches: nothing to clone")
    created_git = repo._git is None
    had_remote = repo._git is not None and rc.git_remote_url(repo._git, remote_name) is not None
    try:
        repo.init(user_name, user_email, remove_old=remove_old)
        git = repo._git_repo()
        remotes = Remotes(repo)
        if rc.is_hangar_remote(git, remote_name):
            rc.remove_remote(git, remote_name)
        remotes.add(remote_name, address, data=data, data_options=data_options)
        remotes.fetch_all(remote_name, progress=progress)
        main = "master" if "master" in branches else branches[0]
        target = git.references[gt.remote_tracking_ref(remote_name, main)].target
        git.references.create(HEADS + main, target, force=True)
    except BaseException:
        _undo_clone(repo, created_git, had_remote, remote_name)
        raise
    return main


def _undo_clone(repo: Repository, created_git: bool, had_remote: bool, remote_name: str) -> None:
    """Leave the directory as a failed clone found it (best effort)."""
    git = repo._git
    if git is None:
        return
    if created_git:
        gitdir = Path(git.path)
        repo._git = None
        repo._hdir = None
        shutil.rmtree(gitdir, ignore_errors=True)
        return
    with contextlib.suppress(Exception):
        if not had_remote and rc.git_remote_url(git, remote_name) is not None:
            rc.remove_remote(git, remote_name)
    for ref in [r for r in git.references if r.startswith("refs/hangar/")]:
        with contextlib.suppress(Exception):
            git.references.delete(ref)
    if repo._hdir is not None:
        shutil.rmtree(repo._hdir, ignore_errors=True)


def lazy_fetcher_for(repo: Repository, fetch_missing: bool | str) -> LazyFetcher | None:
    """The fetcher a checkout opened with ``fetch_missing`` uses (None when False)."""
    if fetch_missing is False or fetch_missing is None:
        return None
    remotes = Remotes(repo)
    if fetch_missing is True:
        name = remotes.default_remote()
    elif isinstance(fetch_missing, str):
        name = fetch_missing
    else:
        raise ValueError(f"fetch_missing must be a bool or a remote name, not {fetch_missing!r}")
    return remotes.fetcher(name)


__all__ = ["Remotes", "clone_repository", "lazy_fetcher_for"]
