"""The steps of :meth:`Remotes.push` and :meth:`Remotes.fetch_data`.

Opening a remote's data remote, deciding which payloads a push sends (and
refusing a push that is not a fast-forward), checking the arguments of a
data fetch and which payloads it wants, and turning what a fetch left
undone into the documented errors. :mod:`.api` strings them together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import pygit2

from ..errors import IntegrityError, MissingPayloadError
from ..naming import check_arrayset_name
from ..records import reachable
from ..records.reachable import Referenced, commits_between, history, leaf_ids
from ..wording import are, plural, were
from . import config as rc
from . import git_transport as gt
from .data_remote import DataRemote
from .transfer import TransferReport

if TYPE_CHECKING:
    from ..repository import Repository


def open_data_remote(repo: Repository, name: str) -> DataRemote:
    """The data remote of remote ``name``, with its index cache in the repository.

    Parameters
    ----------
    repo : Repository
        An initialised repository.
    name : str
        A configured remote.

    Returns
    -------
    DataRemote

    Raises
    ------
    ValueError
        No such remote, it has no data URL, or the URL needs a package that
        is not installed.
    """
    git = repo.git_repository()
    url = rc.data_url(git, name)
    if url is None:
        if rc.git_remote_url(git, name) is None:
            raise ValueError(f"no remote named {name!r}")
        raise ValueError(
            f"remote {name!r} has no data URL: set one with "
            f"`git config remote.{name}.{rc.DATA_KEY} URL` (or remove the remote and "
            f"add it again with a data URL)"
        )
    hdir = repo.hangar_dir
    assert hdir is not None  # git_repository() succeeded
    tag = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
    try:
        return DataRemote(url, hdir / "remotes" / name / tag, rc.data_options(git, name))
    except ImportError as exc:
        raise ValueError(f"the data URL {url!r} of remote {name!r} needs a package: {exc}")


def check_fast_forward(
    git: pygit2.Repository, remote: str, branch: str, head: str, theirs: str | None
) -> None:
    """Refuse a push of ``branch`` (at ``head``) over the remote's ``theirs``
    unless it only adds commits.

    Parameters
    ----------
    git : pygit2.Repository
        The pushing repository.
    remote, branch : str
        Where to, and which branch.
    head : str
        The commit pushed.
    theirs : str or None
        The remote branch's commit (None: the remote has no such branch).

    Raises
    ------
    PushRejectedError
        If ``theirs`` is unknown here or not an ancestor of ``head``.
    """
    if theirs is None or theirs == head:
        return
    known = git.get(theirs) is not None
    if not known or not git.descendant_of(pygit2.Oid(hex=head), pygit2.Oid(hex=theirs)):
        raise gt.PushRejectedError(gt.rejected_message(remote, branch, "non-fast-forward"))


def _hidden(git: pygit2.Repository, remote: str, remote_heads: Collection[str]) -> list[str]:
    """The remote's commits known here: its heads and our remote-tracking branches of it."""
    hide = [h for h in remote_heads if git.get(h) is not None]
    hide += [
        str(git.references[r].target)
        for r in git.references
        if r.startswith(f"refs/hangar/remotes/{remote}/")
    ]
    return list(dict.fromkeys(hide))


def commits_to_push(
    git: pygit2.Repository, remote: str, head: str, remote_heads: Collection[str]
) -> list[str]:
    """The commits up to ``head`` that the remote's commits (its heads and our
    remote-tracking branches of it) do not reach, newest first.

    None of them: a push has no payload to send (unless its data URL changed,
    see :func:`payloads_to_push`), and need not list the data remote.

    Parameters
    ----------
    git : pygit2.Repository
        The pushing repository.
    remote : str
        The remote pushed to.
    head : str
        The commit pushed.
    remote_heads : collection of str
        The commits the remote's branches are at.

    Returns
    -------
    list of str
    """
    return commits_between(git, head, _hidden(git, remote, remote_heads))


def payloads_to_push(
    git: pygit2.Repository,
    remote: str,
    head: str,
    remote_heads: Collection[str],
    resend: bool = False,
    *,
    new: Sequence[str] | None = None,
) -> Referenced:
    """The payloads the commits up to ``head`` reference that the remote's
    commits (its heads and our remote-tracking branches of it) do not.

    Parameters
    ----------
    git : pygit2.Repository
        The pushing repository.
    remote : str
        The remote pushed to.
    head : str
        The commit pushed.
    remote_heads : collection of str
        The commits the remote's branches are at.
    resend : bool, optional
        The remote's data URL changed (:func:`config.resend_pending`): its
        commits say nothing of what the new URL holds, so every payload of
        ``head``'s history and of the remote's known commits is offered (the
        upload skips what the data remote has).
    new : sequence of str, optional
        :func:`commits_to_push` of the same arguments, when the caller has
        it already (not used with ``resend``).

    Returns
    -------
    Referenced
        The digests, with the arraysets naming them.
    """
    hide = _hidden(git, remote, remote_heads)
    if resend:
        return reachable.referenced(git, commits_between(git, [head, *hide], ()))
    if new is None:
        new = commits_between(git, head, hide)
    if not new:  # nothing new: no record to read, not even the remote's leaves
        return reachable.referenced(git, [])
    return reachable.referenced(git, new, skip=leaf_ids(git, hide[:8]))


def check_fetch_options(max_num_bytes: object, retrieve_all_history: object) -> None:
    """Check the byte budget and history flag of :meth:`Remotes.fetch_data`.

    Parameters
    ----------
    max_num_bytes : object
        None, or an int >= 0.
    retrieve_all_history : object
        A bool.

    Raises
    ------
    ValueError
        If either is of another type or value.
    """
    if max_num_bytes is not None and (
        isinstance(max_num_bytes, bool) or not isinstance(max_num_bytes, int) or max_num_bytes < 0
    ):
        raise ValueError(f"max_num_bytes must be an int >= 0, not {max_num_bytes!r}")
    if not isinstance(retrieve_all_history, bool):
        raise ValueError("retrieve_all_history must be a bool")


def wanted_payloads(
    git: pygit2.Repository,
    start: str,
    arrayset_names: Sequence[str] | str | None,
    retrieve_all_history: bool,
) -> tuple[list[str], Referenced]:
    """The commits a data fetch covers and the payloads they reference.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the records.
    start : str
        The commit whose data is fetched.
    arrayset_names : sequence of str, str or None
        Only these arraysets (None: all).
    retrieve_all_history : bool
        Also every ancestor of ``start``.

    Returns
    -------
    tuple of (list of str, Referenced)
        The commits, and the digests with their arraysets.

    Raises
    ------
    ValueError
        An invalid arrayset name, or one that ``start`` does not have.
    """
    names: set[str] | None = None
    if arrayset_names is not None:
        if isinstance(arrayset_names, str):
            arrayset_names = [arrayset_names]
        names = {check_arrayset_name(n) for n in arrayset_names}
    commits = history(git, start) if retrieve_all_history else [start]
    digests = reachable.referenced(git, commits, names)
    if names is not None:
        found = set(digests.arraysets) | _aset_names(git, commits, names)
        unknown = sorted(names - found)
        if unknown:
            raise ValueError(f"no arrayset named {', '.join(map(repr, unknown))} in {start[:12]}")
    return commits, digests


def _aset_names(git: pygit2.Repository, commits: Sequence[str], names: Collection[str]) -> set[str]:
    from ..records.snapshot import TreeRecords, commit_tree

    found: set[str] = set()
    for c in commits[:1]:
        found |= set(TreeRecords(git, commit_tree(git, c)).arrayset_names()) & set(names)
    return found


def raise_for_report(report: TransferReport, remote: str, dr: DataRemote) -> None:
    """Raise for the payloads a data fetch refused or did not find.

    Parameters
    ----------
    report : TransferReport
        What the fetch did.
    remote : str
        The remote's name (for the message).
    dr : DataRemote
        Its data remote.

    Raises
    ------
    IntegrityError
        Some payloads failed verification (they were not stored).
    MissingPayloadError
        Some payloads are not on the data remote.
    """
    if report.refused:
        n = len(report.refused)
        raise IntegrityError(
            f"{plural(n, 'payload')} from remote {remote!r} ({dr.url}) failed verification "
            f"against their digests and {were(n)} refused, not stored (first: "
            f"{report.refused[0].hex()}); {plural(report.payloads, 'other')} "
            f"{were(report.payloads)} fetched"
        )
    if report.absent:
        nd = len(dr.damaged)
        damaged = (
            f" ({plural(nd, 'pack')} there {are(nd)} damaged and ignored: "
            f"{', '.join(dr.damaged[:3])})"
            if dr.damaged
            else ""
        )
        n = len(report.absent)
        raise MissingPayloadError(
            f"{plural(n, 'payload')} {are(n)} not on the data remote of {remote!r} "
            f"({dr.url}){damaged}, first: {report.absent[0].hex()}; "
            f"{plural(report.payloads, 'other')} {were(report.payloads)} fetched. Whoever "
            "pushed those commits may not have sent their data there"
        )


__all__ = [
    "check_fast_forward",
    "check_fetch_options",
    "commits_to_push",
    "open_data_remote",
    "payloads_to_push",
    "raise_for_report",
    "wanted_payloads",
]
