"""The user's side of remotes: ``Repository.remote`` (clone is in :mod:`.clone`).

Records travel with git (:mod:`.git_transport`), payloads through fsspec
(:mod:`.data_transport`, :mod:`.transfer`). A push sends the payloads the data
remote lacks, checks they landed, and only then moves the remote branch, so
whoever sees the new commits can fetch their payloads.
"""

from __future__ import annotations

import shutil
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pygit2

from ..gitutil import HEADS, branch_head, resolve_commit
from ..naming import check_branch_name, check_remote_name
from . import config as rc
from . import git_transport as gt
from . import steps
from .transfer import (
    EarlyRefresh,
    LazyFetcher,
    Progress,
    TransferReport,
    download_payloads,
    payload_limits,
    upload_payloads,
)

if TYPE_CHECKING:
    from ..repository import Repository
    from .data_remote import DataRemote


#: last transfer report per Repository object (``Repository.remote`` is made per access)
_REPORTS: weakref.WeakKeyDictionary[Repository, TransferReport] = weakref.WeakKeyDictionary()
_TAG_REPORTS: weakref.WeakKeyDictionary[Repository, gt.TagReport] = weakref.WeakKeyDictionary()


class Remotes:
    """Remote operations of a repository (``Repository.remote``).

    A remote is a git remote (records) plus a data URL beside it in git config
    (payloads, through fsspec). See :mod:`hangar_git.remotes`.

    ``last_report`` tells what the last payload transfer moved (payloads,
    bytes, packs, requests, seconds).

    Parameters
    ----------
    repo : Repository
        The repository whose remotes these are (``Repository.remote`` makes
        this object; there is no need to make one yourself).
    """

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    @property
    def last_report(self) -> TransferReport | None:
        """What the last payload transfer of this repository object moved.

        Returns
        -------
        TransferReport or None
            None before any push or data fetch through this repository object.
        """
        return _REPORTS.get(self._repo)

    @last_report.setter
    def last_report(self, report: TransferReport | None) -> None:
        if report is None:
            _REPORTS.pop(self._repo, None)
        else:
            _REPORTS[self._repo] = report

    @property
    def last_tags(self) -> gt.TagReport | None:
        """What the last push or fetch of this repository object did with tags.

        Returns
        -------
        TagReport or None
            ``added`` (names) and ``kept`` (``{name: their commit}`` of tags
            left alone because this side has them at another commit); None
            before any push or fetch through this repository object.
        """
        return _TAG_REPORTS.get(self._repo)

    def _git(self) -> pygit2.Repository:
        return self._repo.git_repository()

    def _callbacks(
        self, progress: Progress | None = None, username: str = "", password: str = ""
    ) -> gt.Callbacks:
        return gt.Callbacks(
            self._repo.path, username=username, password=password, progress=progress
        )

    def _forget_cache(self, name: str) -> None:
        hdir = self._repo.hangar_dir
        if hdir is not None:
            shutil.rmtree(hdir / "remotes" / name, ignore_errors=True)

    def _known(self, name: str) -> str:
        check_remote_name(name)
        if rc.git_remote_url(self._git(), name) is None:
            raise ValueError(f"no remote named {name!r}")
        return name

    def _data_remote(self, name: str, why: str = "") -> DataRemote:
        """The data remote of ``name``, or a ValueError that says how to give it one."""
        if rc.data_url(self._git(), name) is None:
            raise ValueError(
                f"remote {name!r} has no data URL{why}: set one with `git hangar remote "
                f"set-data {name} URL` (Python: repo.remote.set_data({name!r}, URL))"
            )
        return steps.open_data_remote(self._repo, name)

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

        Parameters
        ----------
        name : str
            A configured remote.
        data : str
            The new data URL (any fsspec URL, or a directory path).
        data_options : mapping, optional
            Extra fsspec storage options that are not secrets; they replace
            the remote's current ones.

        Returns
        -------
        RemoteInfo
            ``(name, address)``, with the new data URL as ``.data``.

        Raises
        ------
        ValueError
            No such remote, or an invalid URL or option (nothing changes then).
        """
        info = rc.set_data(self._git(), name, data, data_options)
        self._forget_cache(name)  # the cached indexes of the old data remote
        return info

    def remove(self, name: str) -> rc.RemoteInfo:
        """Remove remote ``name``; its remote-tracking branches stay.

        A git remote that existed before it was added here keeps its URL.

        Parameters
        ----------
        name : str
            The remote to remove.

        Returns
        -------
        RemoteInfo
            What the remote was: ``(name, address)`` with ``.data``.

        Raises
        ------
        ValueError
            If there is no such remote.
        """
        info = rc.remove_remote(self._git(), name)
        self._forget_cache(name)  # the cached indexes of its data remote
        return info

    def list_all(self) -> list[rc.RemoteInfo]:
        """Every remote of the repository.

        Returns
        -------
        list of RemoteInfo
            ``RemoteInfo(name, address)`` with ``.data`` (None when the
            remote has no data URL).

        Raises
        ------
        NotInitializedError
            Before :meth:`Repository.init`.
        """
        return rc.list_remotes(self._git())

    def ping(self, name: str) -> float:
        """Reach both halves of remote ``name``: the git remote, then the data remote.

        Parameters
        ----------
        name : str
            A configured hangar remote.

        Returns
        -------
        float
            The round trip, in seconds.

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
            steps.open_data_remote(self._repo, name).ping()
        return time.perf_counter() - t0

    # ---- records ---------------------------------------------------------
    def fetch(self, remote: str, branch: str, *, progress: Progress | None = None) -> str:
        """Fetch the commits of ``branch`` from ``remote`` (records only).

        They land on the remote-tracking branch ``<remote>/<branch>``
        (``refs/hangar/remotes/<remote>/<branch>``): read it with
        ``checkout(commit=...)``, merge it like any branch, and fetch its
        payloads with :meth:`fetch_data`.

        Parameters
        ----------
        remote : str
            A configured remote.
        branch : str
            The remote's branch to fetch.
        progress : callable, optional
            Called as ``progress(phase, done, total)`` while the transfer runs.

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
        """Fetch every branch and tag of ``remote`` (records only).

        Tags the remote has and this repository lacks are created; a tag
        that exists here at another commit is kept (see :attr:`last_tags`).

        Parameters
        ----------
        remote : str
            A configured remote.
        progress : callable, optional
            Called as ``progress(phase, done, total)`` while the transfer runs.

        Returns
        -------
        list of str
            The remote-tracking branches, ``'<remote>/<branch>'``, sorted.

        Raises
        ------
        ValueError
            Unknown remote.
        ConnectionError
            If the remote cannot be reached.
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
        progress : callable, optional
            Called as ``progress(phase, done, total)`` while the transfer runs.

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
        heads = gt.list_heads(git, remote, self._callbacks(progress, username, password))
        theirs = heads.get(HEADS + branch)
        steps.check_fast_forward(git, remote, branch, head, theirs)
        resend = rc.resend_pending(git, remote)
        new = [] if resend else steps.commits_to_push(git, remote, head, heads.values())
        early: EarlyRefresh | None = None
        if resend or new:  # else no payload to send: the data remote is not asked
            try:  # its packs are listed while what to send is worked out
                early = EarlyRefresh(self._data_remote(remote))
            except ValueError:
                pass  # no data URL: said below if payloads must go
        digests = steps.payloads_to_push(git, remote, head, heads.values(), resend, new=new)
        self.last_report = TransferReport()
        if digests:
            why = f", and branch {branch!r} has payloads to send"
            dr = self._data_remote(remote, why) if early is None else early.remote
            self.last_report = upload_payloads(self._repo, dr, digests, progress, early=early)
        if resend:  # the new data URL now holds what the remote's commits need
            rc.clear_resend(git, remote)
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
        progress : callable, optional
            Called as ``progress(phase, done, total)`` while the transfer runs.

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
        steps.check_fetch_options(max_num_bytes, retrieve_all_history)
        start = self._startpoint(remote, branch, commit)
        try:  # the remote's packs are listed while the records are read
            early: EarlyRefresh | None = EarlyRefresh(self._data_remote(remote))
        except ValueError:
            early = None  # no data URL: said once the records are read, as ever
        commits, digests = steps.wanted_payloads(git, start, arrayset_names, retrieve_all_history)
        limits = payload_limits(git, commits, digests)
        dr = self._data_remote(remote) if early is None else early.remote
        report = download_payloads(
            self._repo,
            dr,
            digests,
            max_bytes=max_num_bytes,
            progress=progress,
            limits=limits,
            early=early,
        )
        self.last_report = report
        steps.raise_for_report(report, remote, dr)
        return commits

    def fetcher(self, remote: str) -> LazyFetcher:
        """A callable that fetches given payload digests from ``remote`` (lazy reads).

        Parameters
        ----------
        remote : str
            A configured remote with a data URL.

        Returns
        -------
        LazyFetcher
            Called with digests (and a byte bound), it stores the verified
            payloads the remote has.

        Raises
        ------
        ValueError
            Unknown remote, or one without a usable data URL.
        """
        self._known(remote)
        return LazyFetcher(self._repo, remote, self._data_remote(remote))

    def default_remote(self) -> str:
        """The remote lazy reads use when none is named: ``origin``, or the only one.

        Only remotes with a data URL count.

        Returns
        -------
        str
            The remote's name.

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


__all__ = ["Remotes", "lazy_fetcher_for"]
