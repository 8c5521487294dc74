"""Checkouts: a read-only view of a commit, or the write-enabled staging area.

Reads of payloads go through :class:`hangar_git.payloads.PayloadAccess`
(re-exported here); what a checkout hands out goes stale when it closes
(:mod:`hangar_git.handles`).
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .arraysets import Arraysets, ReaderArraysets
from .commits import commit_staged
from .errors import ClosedError, MissingPayloadError
from .handles import HandleSet
from .metadata import MetadataReader, MetadataWriter
from .naming import Key
from .payloads import PayloadAccess
from .records.snapshot import TreeRecords, commit_tree
from .records.staging import Journal
from .records.view import CommitView, StagedView
from .schema import ArraysetSchema
from .store import Payload, payload_from_array
from .store.digest import kind_of, stacked_digests
from .store.packs import BLOCK_TARGET
from .store.threads import parallel_map

if TYPE_CHECKING:
    from .repository import Repository
    from .userdiff import ReaderUserDiff, WriterUserDiff


class _DiffAccess:
    """What a checkout offers its diff object (:class:`hangar_git.userdiff.DiffSource`)."""

    def __init__(self, checkout: ReaderCheckout | WriterCheckout) -> None:
        self._co = checkout
        self.git = checkout._view.base.repo

    def check_open(self) -> None:
        self._co._check()

    def head(self) -> str | None:
        return self._co.commit_hash or None

    def staged(self) -> StagedView | None:
        co = self._co
        if not isinstance(co, WriterCheckout):
            return None
        co._sync()
        assert isinstance(co._view, StagedView)
        return co._view

    def sample(self, arrayset: str, enc: str) -> np.ndarray | None:
        co = self._co
        if co._view.writeable:
            co._sync()  # type: ignore[union-attr]
        digest = co._view.get(arrayset, enc) if co._view.has_aset(arrayset) else None
        return co._payloads.read(arrayset, enc, digest) if digest is not None else None

    def array(self, arrayset: str, key: Key, digest: bytes) -> np.ndarray:
        pa = self._co._payloads
        loc = pa.locs.get(digest)
        if loc is None and pa.writer is not None:
            loc = pa.writer.pending_location(digest)
        if loc is None:
            loc = pa.reader.locate(digest)
        if loc is None:
            raise MissingPayloadError(
                f"sample {arrayset}[{key!r}] of the other side is a remote reference: its "
                "payload is not on this machine; fetch it with `git hangar fetch-data`"
            )
        return pa.reader.read(loc, digest)


class _Checkout:
    """Shared machinery of reader and writer checkouts."""

    _view: CommitView
    _payloads: PayloadAccess

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._closed = False
        #: what this checkout handed out: stale once it closes
        self._handles = HandleSet()
        cls = ReaderArraysets if isinstance(self, ReaderCheckout) else Arraysets
        self._arraysets = self._handles.add(cls(self))

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("this checkout is closed; open a new one with Repository.checkout()")

    def _hand_out(self, obj: Any) -> Any:
        """Remember ``obj`` (an accessor given to the user) to make it stale on close."""
        return self._handles.add(obj)

    @property
    def arraysets(self) -> Arraysets:
        """The arraysets of this checkout (see :class:`Arraysets`)."""
        self._check()
        return self._arraysets

    def __enter__(self) -> _Checkout:
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # batching hooks (no-ops for readers)
    def _begin_batch(self) -> None:
        pass

    def _end_batch(self, exc: BaseException | None = None) -> None:
        pass


class ReaderCheckout(_Checkout):
    """Read-only checkout of one commit; any number may be open at once.

    Readers never block writers, other readers or other processes; a reader
    sees exactly the commit it was opened on for its whole life.
    """

    def __init__(self, repo: Repository, commit: str) -> None:
        super().__init__(repo)
        self._commit = commit
        git = repo._git_repo()
        self._view = CommitView(TreeRecords(git, commit_tree(git, commit)))
        self._payloads = PayloadAccess(self._view, repo._store.reader(), None)
        self._metadata = self._hand_out(MetadataReader(self))
        self._diff: ReaderUserDiff | None = None

    @property
    def metadata(self) -> MetadataReader:
        """Metadata of this commit (see :class:`MetadataReader`)."""
        self._check()
        return self._metadata

    @property
    def commit_hash(self) -> str:
        """Hash of the commit this checkout reads."""
        self._check()
        return self._commit

    @property
    def diff(self) -> ReaderUserDiff:
        """Diff methods relative to this checkout's commit."""
        self._check()
        if self._diff is None:
            from .userdiff import ReaderUserDiff

            self._diff = self._hand_out(ReaderUserDiff(_DiffAccess(self)))
        return self._diff

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support: a read checkout reopens its commit in the process
        that unpickles it (once per process and commit)."""
        self._check()
        return (_shared_reader, (type(self._repo), self._repo.path, self._commit))

    def close(self) -> None:
        """Release file handles; later use raises :class:`ClosedError`."""
        if not self._closed:
            self._closed = True
            self._handles.close()
            self._payloads.reader.close()

    def __repr__(self) -> str:
        if self._closed:
            return "<ReaderCheckout (closed)>"
        return (
            "Hangar ReaderCheckout\n"
            "    Writer       : False\n"
            f"    Commit Hash  : {self._commit}\n"
            f"    Num Arraysets : {len(self._view.aset_names())}\n"
            f"    Num Metadata : {len(self._view.meta_keys())}\n"
        )


#: (repository class, path, commit) -> the read checkout unpickled for it in this process
_SHARED_READERS: dict[tuple[type, str, str], ReaderCheckout] = {}


def _shared_reader(repo_cls: type, path: str, commit: str) -> ReaderCheckout:
    """A read checkout of ``commit`` in the repository at ``path``, opened once
    per process (what an unpickled reader, or its arraysets, reads through)."""
    key = (repo_cls, path, commit)
    co = _SHARED_READERS.get(key)
    if co is None or co._closed:
        co = _SHARED_READERS[key] = repo_cls(path).checkout(commit=commit)
    return co


_LIVE_WRITERS: weakref.WeakSet[WriterCheckout] = weakref.WeakSet()


@atexit.register
def _close_live_writers() -> None:  # pragma: no cover - runs at interpreter exit
    for co in list(_LIVE_WRITERS):
        try:
            co.close()
        except Exception:
            pass


class WriterCheckout(_Checkout):
    """The write-enabled checkout: the staging area on the head of a branch.

    Only one exists at a time (the writer lock). Close it with :meth:`close`
    or use it as a context manager.
    """

    def __init__(self, repo: Repository, branch: str, journal: Journal, lock: object) -> None:
        super().__init__(repo)
        self._lock = lock
        self._journal = journal
        self._batch = 0
        git = repo._git_repo()
        self._git = git
        self._writer = repo._store.writer()
        try:
            self._view = StagedView(TreeRecords(git, commit_tree(git, journal.base)), journal)
            self._payloads = PayloadAccess(self._view, repo._store.reader(), self._writer)
        except BaseException:
            self._writer.close()
            raise
        self._metadata = self._hand_out(MetadataWriter(self))
        self._diff: WriterUserDiff | None = None
        _LIVE_WRITERS.add(self)

    # ---- properties -----------------------------------------------------
    @property
    def metadata(self) -> MetadataWriter:
        """Metadata of the staging area (see :class:`MetadataWriter`)."""
        self._check()
        return self._metadata

    @property
    def branch_name(self) -> str:
        """Branch whose head the staging area is based on."""
        self._check()
        return self._journal.branch

    @property
    def commit_hash(self) -> str:
        """Commit the staging area is based on ('' before the first commit)."""
        self._check()
        return self._journal.base or ""

    @property
    def diff(self) -> WriterUserDiff:
        """Diff methods aware of staged changes."""
        self._check()
        if self._diff is None:
            from .userdiff import WriterUserDiff

            self._diff = self._hand_out(WriterUserDiff(_DiffAccess(self)))
        return self._diff

    # ---- staging primitives (used by arraysets and metadata) --------------
    def _begin_batch(self) -> None:
        self._batch += 1
        self._journal.batching += 1

    def _end_batch(self, exc: BaseException | None = None) -> None:
        self._batch -= 1
        self._journal.batching -= 1
        if self._batch == 0 and not self._closed:
            if isinstance(exc, OSError):  # the store failed (a full disk ...)
                self._journal.discard()  # the batch staged nothing
                return
            try:
                self._writer.flush()
            except OSError:
                self._journal.discard()
                if exc is None:
                    raise
                return  # the block's own error goes on
            self._journal.sync()

    def _stage_sample(self, aset: str, enc: str, p: Payload) -> None:
        self._writer.add(p)
        if not self._batch:
            self._writer.flush()
        self._journal.record_sample(aset, enc, p.digest)

    def _stage_stacked(self, aset: str, encs: Sequence[str], rows: np.ndarray) -> None:
        """Stage row ``i`` of the C-contiguous ``rows`` under ``encs[i]`` (the bulk path).

        Digests are computed in one pass over the stacked buffer; the payloads
        are written in blocks straight from it and their index committed
        before the records are logged, so a killed process leaves either all
        of them staged or none (unreferenced payload bytes at worst).
        Rows of a block each go through :meth:`_stage_sample`.
        """
        if not len(encs):
            return
        digests = stacked_digests(rows)
        if rows.nbytes // len(encs) >= BLOCK_TARGET:
            self._begin_batch()
            try:
                kind = kind_of(rows[0])
                for enc, d, row in zip(encs, digests, rows, strict=True):
                    data = memoryview(row.reshape(-1)).cast("B") if row.ndim else row.tobytes()
                    self._stage_sample(aset, enc, Payload(d, kind, data))  # type: ignore[arg-type]
            except BaseException as exc:
                self._end_batch(exc)
                raise
            self._end_batch()
            return
        self._writer.add_stacked(kind_of(rows[0]), digests, rows)
        self._journal.record_samples(aset, encs, digests)

    def _stage_arrays(self, aset: str, encs: Sequence[str], arrs: Sequence[np.ndarray]) -> None:
        """Stage ``arrs[i]`` (C-contiguous) under ``encs[i]`` as they are: the path
        of large samples, which are not stacked into a copy; their digests are
        computed on every core (blake2b releases the GIL)."""
        payloads = parallel_map(payload_from_array, arrs)
        self._begin_batch()
        try:
            for enc, p in zip(encs, payloads, strict=True):
                self._stage_sample(aset, enc, p)
        except BaseException as exc:
            self._end_batch(exc)
            raise
        self._end_batch()

    def _unstage_sample(self, aset: str, enc: str) -> None:
        self._journal.record("D", aset, enc)

    def _stage_schema(self, aset: str, schema: ArraysetSchema) -> None:
        self._journal.record("S", aset, schema.to_json())

    def _stage_remove_aset(self, aset: str) -> None:
        self._journal.record("R", aset)

    def _stage_meta(self, enc: str, value: str | None) -> None:
        if value is None:
            self._journal.record("X", enc)
        else:
            self._journal.record("M", enc, value.encode("ascii").hex())

    def _sync(self) -> None:
        self._writer.flush()
        self._journal.sync()

    # ---- operations -----------------------------------------------------
    def commit(self, commit_message: str) -> str:
        """Commit the staged changes on the branch; returns the commit hash.

        Raises
        ------
        RuntimeError
            If nothing is staged, or the branch moved under the staging area.
        ValueError
            If the message is not a str.
        """
        self._check()
        if not isinstance(commit_message, str):
            raise ValueError("commit message must be a str")
        self._sync()
        if self.diff.status() == "CLEAN":
            raise RuntimeError("no changes staged: nothing to commit")
        sha = commit_staged(self._git, self._journal, commit_message, self._repo._identity())
        self._rebase_view()
        return sha

    def _rebase_view(self) -> None:
        git = self._git
        self._view = StagedView(
            TreeRecords(git, commit_tree(git, self._journal.base)), self._journal
        )
        self._payloads.view = self._view

    def merge(self, message: str, dev_branch: str, *, strategy: str | None = None) -> str:
        """Merge ``dev_branch`` into this checkout's branch; returns the new head.

        A fast-forward when history is linear (``message`` is then unused),
        else a three-way merge commit with both parents.

        Raises
        ------
        ValueError
            On conflicts (nothing changes), an unknown branch, or staged changes.
        """
        self._check()
        self._sync()
        if self.diff.status() != "CLEAN":
            raise ValueError("the staging area has uncommitted changes: commit or reset first")
        from .merge import merge_branches

        sha = merge_branches(
            self._git,
            self._repo._identity(),
            message,
            self._journal.branch,
            dev_branch,
            strategy=strategy,
            journal=self._journal,
        )
        self._rebase_view()
        return sha

    def reset_staging_area(self) -> str:
        """Drop every staged change and close the checkout.

        Returns the hash of the commit the staging area is reset to.

        Raises
        ------
        RuntimeError
            If nothing is staged.
        """
        self._check()
        self._sync()
        if not self._journal.has_entries:
            raise RuntimeError("no changes staged: nothing to reset")
        base = self._journal.base
        self._journal.reset(self._journal.branch, base)
        self.close()
        return base or ""

    def close(self) -> None:
        """Write anything batched, and release the writer lock."""
        if self._closed:
            return
        try:
            self._batch = 0
            self._journal.batching = 0
            self._sync()
        finally:
            self._closed = True
            self._handles.close()
            _LIVE_WRITERS.discard(self)
            try:
                self._writer.close()
                self._payloads.reader.close()
                self._journal.close()
            finally:
                self._repo._release_writer(self._lock)

    def __repr__(self) -> str:
        if self._closed:
            return "<WriterCheckout (closed)>"
        return (
            "Hangar WriterCheckout\n"
            "    Writer       : True\n"
            f"    Base Branch  : {self._journal.branch}\n"
            f"    Num Arraysets : {len(self._view.aset_names())}\n"
            f"    Num Metadata : {len(self._view.meta_keys())}\n"
        )


__all__ = ["PayloadAccess", "ReaderCheckout", "WriterCheckout"]
