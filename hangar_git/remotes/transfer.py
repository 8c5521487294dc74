"""Moving payloads between the local store and a data remote.

Plain functions over the local store and a :class:`DataRemote` (which
digests a set of commits needs is
:func:`hangar_git.records.reachable.referenced_digests`; its
:func:`~hangar_git.records.reachable.leaf_ids`,
:func:`~hangar_git.records.reachable.commits_between` and
:func:`~hangar_git.records.reachable.history` are named here too):
:func:`upload_payloads` packs and sends
what the remote lacks; :func:`download_payloads` reads exactly the wanted
payloads by ranged reads, verifies each against its digest and only then
stores it. Both can be rerun after an interruption: what arrived is found
(remote pack indexes, local store index) and not moved again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pygit2

from ..errors import IntegrityError, MissingPayloadError, WriterLockError
from ..records.leaves import RecordWalker
from ..records.reachable import Referenced, commits_between, history, leaf_ids
from ..store.digest_run import Digests
from ..store.packs import PackReader, PackWriter
from ..wording import are, plural, were
from . import bounded, large
from .data_transport import DataRemote, RemoteLookup, SealedPack
from .fetchplan import FetchPlan
from .lookup import DigestLimits, join_digests
from .sendpacks import READ_BYTES, READ_CHUNK, send_packs

if TYPE_CHECKING:
    from ..repository import Repository

#: (phase, done, total) progress callback
Progress = Callable[[str, int, int], None]

#: bytes of ranged reads gathered before their payloads are verified and stored
FETCH_BATCH = 128 * 1024 * 1024


@dataclass
class TransferReport:
    """What a transfer moved.

    Attributes
    ----------
    payloads : int
        Payloads sent or stored.
    raw_bytes : int
        Their uncompressed bytes.
    packs : int
        Packs uploaded.
    requests, bytes_sent, bytes_received : int
        What the data remote counted while the transfer ran.
    seconds : float
        Wall time.
    refused : list of bytes
        Digests fetched but refused (over their bound, or failing verification).
    absent : list of bytes
        Digests the remote does not have.
    skipped : int
        Payloads not moved because the other side had them already.
    """

    payloads: int = 0
    raw_bytes: int = 0
    packs: int = 0
    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    refused: list[bytes] = field(default_factory=list)
    absent: list[bytes] = field(default_factory=list)
    skipped: int = 0

    def add_remote_stats(self, remote: DataRemote, before: tuple[int, int, int]) -> None:
        """Add what ``remote`` counted since ``before`` to the report.

        Parameters
        ----------
        remote : DataRemote
            The remote of the transfer.
        before : tuple of (int, int, int)
            Its ``(requests, bytes_sent, bytes_received)`` when it began.
        """
        self.requests += remote.requests - before[0]
        self.bytes_sent += remote.bytes_sent - before[1]
        self.bytes_received += remote.bytes_received - before[2]


def _stats(remote: DataRemote) -> tuple[int, int, int]:
    return remote.requests, remote.bytes_sent, remote.bytes_received


class EarlyRefresh:
    """:meth:`DataRemote.refresh` started on a thread of its own, so the
    remote's listing and new pack indexes are read (network round trips on
    an object store) while the caller reads the records.

    Hand it to :func:`download_payloads`, which waits for it only when it
    has payloads to fetch (a fetch that finds everything here never waits
    on the network), and refreshes again itself when it failed: its error
    is then raised by that refresh, where it always was. The thread is a
    daemon (it is not waited for when the process ends) and touches only
    ``remote`` and its index cache.

    Parameters
    ----------
    remote : DataRemote
        Not used by anyone else until :meth:`wait` returns.
    """

    def __init__(self, remote: DataRemote) -> None:
        self.remote = remote
        #: the remote's counters when it began (its requests count in the transfer's)
        self.before = _stats(remote)
        self._ok = False
        self._done = threading.Event()
        threading.Thread(target=self._run, name="hangar-refresh", daemon=True).start()

    def _run(self) -> None:
        try:
            self.remote.refresh()
            self._ok = True
        except Exception:  # raised again by the refresh made after it
            pass
        finally:
            self._done.set()

    def wait(self) -> bool:
        """Wait for the refresh; True when it succeeded."""
        self._done.wait()
        return self._ok


# --------------------------------------------------------------------------
# the local store
# --------------------------------------------------------------------------
@contextmanager
def store_writer(repo: Repository) -> Iterator[PackWriter]:
    """The store's writer: the open write checkout's in this process, else a new one.

    Parameters
    ----------
    repo : Repository
        The repository whose store to write.

    Yields
    ------
    PackWriter
        Flushed (or closed, when made here) on leaving.

    Raises
    ------
    WriterLockError
        If another process holds the store's write lock (a write checkout is
        open there).
    """
    co = repo.writer_checkout()
    if co is not None:
        writer = co.payload_writer
        yield writer
        writer.flush()
        return
    from filelock import FileLock, Timeout

    store = repo.payload_store
    probe = FileLock(str(store.root / "write.lock"), thread_local=False)
    try:
        probe.acquire(timeout=5)
    except Timeout:
        raise WriterLockError(
            "the payload store is being written by a write checkout in another process: "
            "close it, then fetch again"
        ) from None
    probe.release()
    writer = store.writer()
    try:
        yield writer
    finally:
        writer.close()


# --------------------------------------------------------------------------
# upload
# --------------------------------------------------------------------------
def _distinct(digests: Iterable[bytes] | Referenced) -> tuple[list[bytes], bytes | None]:
    """``digests`` each once, in order, and joined (None when one is not 20
    bytes long): those of a :class:`Referenced` are distinct and joined already."""
    if isinstance(digests, Referenced):
        return digests.digest_list(), digests.joined
    wanted = list(dict.fromkeys(digests))
    return wanted, join_digests(wanted)


def _lookup_local(
    reader: PackReader, wanted: Sequence[bytes], joined: bytes | None
) -> tuple[np.ndarray, np.ndarray]:
    """``reader.lookup(wanted)``, of the joined digests when there are (about
    a seventh of the time at 60,000 digests in a store of one bulk add)."""
    return reader.lookup(wanted) if joined is None else reader.lookup_joined(joined)


def upload_payloads(
    repo: Repository,
    remote: DataRemote,
    digests: Iterable[bytes] | Referenced,
    progress: Progress | None = None,
    early: EarlyRefresh | None = None,
) -> TransferReport:
    """Send the payloads of ``digests`` that ``remote`` lacks, in packs.

    Parameters
    ----------
    repo : Repository
        The repository whose store holds the payloads.
    remote : DataRemote
        Where to send them.
    digests : iterable of bytes, or Referenced
        The payloads the remote must have afterwards.
    progress : callable, optional
        Called as ``progress("payloads", bytes done, bytes in all)``.
    early : EarlyRefresh, optional
        A refresh of ``remote`` started earlier: the local store is looked
        up while it runs, and when it succeeded it stands for the refresh
        made here.

    Returns
    -------
    TransferReport

    Raises
    ------
    MissingPayloadError
        If some payload is neither stored here nor on the remote (nothing is
        sent then).
    IntegrityError
        If a local payload no longer matches its digest, or an upload did not
        land whole.
    """
    t0 = time.perf_counter()
    report = TransferReport()
    before = _stats(remote) if early is None else early.before
    wanted, joined = _distinct(digests)
    reader = repo.payload_store.reader()
    uploaded: list[SealedPack] = []
    try:
        found, entries = _lookup_local(reader, wanted, joined)  # while the remote is listed
        if early is None or not early.wait():
            remote.refresh()
        there = _there(remote, wanted, joined)
        report.skipped = int(there.sum())
        if there.any():
            keep = np.flatnonzero(~there)
            wanted = [wanted[i] for i in keep.tolist()]
            found, entries = found[keep], entries[keep]
        if wanted:
            if not found.all():
                lost = [wanted[i] for i in np.flatnonzero(~found).tolist()]
                raise MissingPayloadError(
                    f"{plural(len(lost), 'payload')} referenced by the commits to push "
                    f"{are(len(lost))} neither on this machine nor on the data remote "
                    f"{remote.url} (first: {lost[0].hex()}): fetch them with `git hangar "
                    "fetch-data` from the remote they came from, then push"
                )
            remote.ensure_marker()
            # large payloads travel as objects of their own (remotes/large.py)
            todo, entries = large.upload(remote, reader, wanted, entries, report, progress)
            uploaded = send_packs(remote, reader, todo, entries, progress)
    finally:
        reader.close()
    report.packs += len(uploaded)
    report.payloads += sum(len(p.digests) for p in uploaded)
    report.raw_bytes += sum(p.raw_bytes for p in uploaded)
    report.add_remote_stats(remote, before)
    report.seconds = time.perf_counter() - t0
    return report


def _there(remote: DataRemote, wanted: list[bytes], joined: bytes | None = None) -> np.ndarray:
    """Which of ``wanted`` (``joined``, when given) ``remote`` has, in a pack
    or as a large object (bool each)."""
    there = remote.lookup().find(wanted if joined is None else joined) >= 0
    if remote.large:
        there |= np.fromiter((d in remote.large for d in wanted), bool, len(wanted))
    return there


# --------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------
def select_for_fetch(
    lookup: RemoteLookup,
    wanted: Sequence[bytes],
    max_bytes: int | None,
    joined: bytes | None = None,
) -> tuple[np.ndarray, list[bytes]]:
    """The wanted payloads the remote has, within the byte budget.

    Parameters
    ----------
    lookup : RemoteLookup
        The remote's pack indexes.
    wanted : sequence of bytes
        Digests, in the order to fetch them.
    max_bytes : int or None
        The budget of raw bytes (None: no budget).
    joined : bytes, optional
        ``wanted`` joined, when the caller has them so (not joined again).

    Returns
    -------
    tuple of (numpy.ndarray, list of bytes)
        Rows of ``lookup`` in order, and the digests the remote does not have.
    """
    rows = lookup.find(wanted if joined is None else joined)
    absent = [wanted[i] for i in np.flatnonzero(rows < 0).tolist()]
    rows = rows[rows >= 0]
    if max_bytes is not None:
        cum = np.cumsum(lookup.ilen[rows])
        rows = rows[: int(np.searchsorted(cum, max_bytes, side="right"))]
    return rows, absent


def _not_here(
    repo: Repository, digests: Iterable[bytes] | Referenced
) -> tuple[Sequence[bytes], Sequence[bytes], bytes | None]:
    """``(wanted, todo, joined)``: ``digests`` each once, those of them not
    stored here, and those joined when at hand (none stored here: all; those
    of a :class:`Referenced` stay joined, no bytes object made for each)."""
    if isinstance(digests, Referenced):
        wanted: Sequence[bytes] = Digests(digests.joined)
        joined: bytes | None = digests.joined
    else:
        wanted, joined = _distinct(digests)
    reader = repo.payload_store.reader()
    try:
        found, _ = _lookup_local(reader, wanted, joined)
    finally:
        reader.close()
    if found.any():
        return wanted, [wanted[i] for i in np.flatnonzero(~found).tolist()], None
    return wanted, wanted, joined  # none here (a fresh clone): all of them


def download_payloads(
    repo: Repository,
    remote: DataRemote,
    digests: Iterable[bytes] | Referenced,
    *,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    refresh: bool = True,
    limits: Mapping[bytes, int] | None = None,
    early: EarlyRefresh | None = None,
) -> TransferReport:
    """Fetch the payloads of ``digests`` not stored here, verified, into the store.

    Each payload is checked against its digest before it is stored; those
    that fail are left out and listed in ``report.refused``; those the
    remote does not have are listed in ``report.absent``.

    Sizes stated by the remote are checked before memory or disk is spent
    on them: a payload over ``limits[digest]`` raw bytes (what the records
    declare, see :func:`payload_limits`; default
    :data:`~hangar_git.remotes.bounded.MAX_PAYLOAD_BYTES`), a block longer
    than its payloads can need, or a large object over its bound is refused
    unread.

    Parameters
    ----------
    repo : Repository
        The repository whose store receives the payloads.
    remote : DataRemote
        Where they are.
    digests : iterable of bytes, or Referenced
        The payloads wanted, in the order to fetch them.
    max_bytes : int, optional
        Stop before the raw bytes fetched exceed this.
    progress : callable, optional
        Called as ``progress("payloads", bytes done, bytes in all)``.
    refresh : bool, optional
        Read the remote's list of packs again first (default).
    limits : mapping of bytes to int, optional
        The most raw bytes each payload may hold.
    early : EarlyRefresh, optional
        A refresh of ``remote`` started earlier: when it succeeded, it
        stands for the refresh ``refresh`` asks for.

    Returns
    -------
    TransferReport
    """
    t0 = time.perf_counter()
    report = TransferReport()
    before = _stats(remote) if early is None else early.before
    wanted, todo, joined = _not_here(repo, digests)
    report.skipped = len(wanted) - len(todo)
    if not todo:
        report.seconds = time.perf_counter() - t0
        return report
    if early is not None and early.wait():
        refresh = False  # read while the records were
    if refresh or not len(remote.lookup()):
        remote.refresh()
    lk = remote.lookup()
    rows, report.absent = select_for_fetch(lk, todo, max_bytes, joined)
    budget = None if max_bytes is None else max_bytes - int(lk.ilen[rows].sum())
    report.absent, large_todo = large.split_absent(remote, report.absent, budget)
    plan = FetchPlan(lk, rows, limits)
    report.refused.extend(plan.refused)
    with store_writer(repo) as writer:
        plan.run(remote, writer, report, progress, FETCH_BATCH)
        large.download(remote, writer, large_todo, report, progress, limits)
    report.add_remote_stats(remote, before)
    report.seconds = time.perf_counter() - t0
    return report


def payload_limits(
    git: pygit2.Repository, commits: Iterable[str], digests: Mapping[bytes, str] | Referenced
) -> Mapping[bytes, int]:
    """``{digest: largest raw bytes its records allow}``, from the schemas of
    the arraysets that reference each digest (the largest over ``commits``),
    capped at :data:`~hangar_git.remotes.bounded.MAX_PAYLOAD_BYTES`.

    A schema that cannot be read gives no bound beyond that cap.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the records.
    commits : iterable of str
        The commits the payloads come from.
    digests : mapping of bytes to str, or Referenced
        ``{digest: arrayset}``, as
        :func:`hangar_git.records.reachable.referenced_digests` gives them
        (or :func:`~hangar_git.records.reachable.referenced`: then the bounds
        are arrays, a :class:`~.lookup.DigestLimits`).

    Returns
    -------
    mapping of bytes to int
    """
    cap = bounded.MAX_PAYLOAD_BYTES
    per_aset: dict[str, int] = {}
    arraysets = digests.arraysets if isinstance(digests, Referenced) else digests.values()
    names = set(arraysets)
    walker = RecordWalker(git, keep_leaves=False)
    for c in commits:
        for aset in walker.commit(c).arraysets:
            if aset.name not in names or aset.schema is None:
                continue  # absent here, or unreadable: the cap holds
            sch = walker.schema(aset.schema, aset.name)
            if isinstance(sch, str):
                continue
            n = bounded.payload_bound(sch.dtype.itemsize, sch.shape)
            per_aset[aset.name] = max(per_aset.get(aset.name, 0), n)
    if isinstance(digests, Referenced):
        bound = np.array([per_aset.get(a, cap) for a in digests.arraysets] or [cap], np.int64)
        return DigestLimits(digests.joined, bound[digests.owner])
    return {d: per_aset.get(a, cap) for d, a in digests.items()}


class LazyFetcher:
    """Fetches absent payloads on demand for a checkout opened to do so.

    Each payload is bounded by what its records promise before anything is
    read for it: the checkout passes, as ``limit``, the largest sample the
    schema of the arrayset being read allows. A payload the remote states as
    larger, or whose object or block is larger than such a payload can need,
    is refused unread (:class:`~hangar_git.errors.IntegrityError`) and
    nothing is stored.
    """

    def __init__(self, repo: Repository, remote_name: str, remote: DataRemote) -> None:
        self.repo = repo
        self.remote_name = remote_name
        self.remote = remote
        self._refreshed = False

    def __call__(self, digests: Collection[bytes], limit: int | None = None) -> None:
        """Store whichever of ``digests`` the remote has (verified).

        Parameters
        ----------
        digests : collection of bytes
            The payloads wanted.
        limit : int, optional
            The most raw bytes any of them may hold (the checkout passes the
            bound of the arrayset being read; default:
            :data:`~hangar_git.remotes.bounded.MAX_PAYLOAD_BYTES`).

        Raises
        ------
        IntegrityError
            If a payload from the remote is larger than its bound (it is not
            read) or fails verification; it is not stored.
        """
        limits = None if limit is None else dict.fromkeys(digests, limit)
        report = download_payloads(
            self.repo, self.remote, digests, refresh=not self._refreshed, limits=limits
        )
        self._refreshed = True
        if report.absent and not report.refused:
            # the remote may have received new packs since: look once more
            self.remote.refresh()
            report = download_payloads(
                self.repo, self.remote, report.absent, refresh=False, limits=limits
            )
        if report.refused:
            why = "they failed verification against their digests"
            if limit is not None:
                why = f"larger than the {limit} bytes their records allow, or {why[5:]}"
            raise IntegrityError(
                f"{plural(len(report.refused), 'payload')} from remote {self.remote_name!r} "
                f"{were(len(report.refused))} refused "
                f"and not stored: {why} (first: {report.refused[0].hex()})"
            )


__all__ = [
    "FETCH_BATCH",
    "READ_BYTES",
    "READ_CHUNK",
    "LazyFetcher",
    "Progress",
    "TransferReport",
    "commits_between",
    "download_payloads",
    "history",
    "leaf_ids",
    "payload_limits",
    "select_for_fetch",
    "store_writer",
    "upload_payloads",
]
