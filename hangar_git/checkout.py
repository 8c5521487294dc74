"""Checkouts: a read-only view of a commit, or the write-enabled staging area.

The write checkout is defined here; the read checkout and the base both
share are in :mod:`hangar_git.checkout_reader` (re-exported here). Reads of
payloads go through :class:`hangar_git.payloads.PayloadAccess` (re-exported
here); what a checkout hands out goes stale when it closes
(:mod:`hangar_git.handles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .checkout_reader import Checkout, ReaderCheckout
from .commits import commit_staged
from .diff_source import CheckoutDiffSource
from .held_rows import Holding
from .live_writers import LIVE_WRITERS
from .metadata import MetadataWriter
from .payloads import PayloadAccess
from .records import entry_hints
from .records.snapshot import TreeRecords, commit_tree
from .records.staging import Journal
from .records.view import StagedView
from .schema import ArraysetSchema
from .store import Payload, payload_from_array
from .store.digest import kind_of, stacked_digests
from .store.packs import BLOCK_TARGET
from .store.threads import parallel_map

if TYPE_CHECKING:
    from filelock import FileLock

    from .repository import Repository
    from .store.packs import PackWriter
    from .userdiff import WriterUserDiff


class WriterCheckout(Holding, Checkout):  # type: ignore[misc]  # view: a property
    """The write-enabled checkout: the staging area on the head of a branch.

    Only one exists at a time (the writer lock). Close it with :meth:`close`
    or use it as a context manager. Open one with
    ``Repository.checkout(write=True)``, which takes the lock and recovers the
    staging journal first.

    Parameters
    ----------
    repo : Repository
        The repository to write to.
    branch : str
        The branch the staging area is on.
    journal : Journal
        The staging journal, opened and recovered, based on ``branch``'s head.
    lock : FileLock
        The writer lock, held; released by :meth:`close`.
    """

    def __init__(self, repo: Repository, branch: str, journal: Journal, lock: FileLock) -> None:
        super().__init__(repo)
        self._lock = lock
        self._journal = journal
        self._batch = 0
        self._held = {}  # small samples set in a ``with`` block, not yet staged
        self._lost = None  # why held samples could not be staged
        git = repo.git_repository()
        self._git = git
        self._writer = repo.payload_store.writer()
        try:
            self._view = StagedView(TreeRecords(git, commit_tree(git, journal.base)), journal)
            self.payloads = PayloadAccess(self.view, repo.payload_store.reader(), self._writer)
        except BaseException:
            self._writer.close()
            raise
        self._metadata = self.hand_out(MetadataWriter(self))
        self._diff: WriterUserDiff | None = None
        LIVE_WRITERS.add(self)

    # ---- properties -----------------------------------------------------
    @property
    def metadata(self) -> MetadataWriter:
        """Metadata of the staging area (see :class:`MetadataWriter`)."""
        self.check_open()
        return self._metadata

    @property
    def branch_name(self) -> str:
        """Branch whose head the staging area is based on."""
        self.check_open()
        return self._journal.branch

    @property
    def commit_hash(self) -> str:
        """Commit the staging area is based on ('' before the first commit)."""
        self.check_open()
        return self._journal.base or ""

    @property
    def diff(self) -> WriterUserDiff:
        """Diff methods aware of staged changes."""
        self.check_open()
        if self._diff is None:
            from .userdiff import WriterUserDiff

            self._diff = self.hand_out(WriterUserDiff(CheckoutDiffSource(self)))
        return self._diff

    # ---- staging primitives (used by arraysets, metadata, importers) -------
    @property
    def payload_writer(self) -> PackWriter:
        """The store writer staged payloads go to (flushed by :meth:`sync`)."""
        return self._writer

    @property
    def has_staged_changes(self) -> bool:
        """True when the staging journal holds any entry (not yet committed or reset)."""
        self._settle()
        return self._journal.has_entries

    @property
    def batching(self) -> bool:
        """True inside a batch (a ``with aset:`` block, an ``update`` ...)."""
        return self._batch > 0

    def begin_batch(self) -> None:
        """Open a batch: payloads are flushed and the journal synced once, when
        the outermost batch ends."""
        if not self._batch:
            self._lost = None
        self._batch += 1
        self._journal.batching += 1

    def end_batch(self, exc: BaseException | None = None) -> None:
        """Close a batch; the outermost stages the held samples, flushes the payloads,
        then syncs the journal.

        With ``exc`` an :class:`OSError` (the store failed), or when the
        flush or the staging of held samples fails (then raised here, if
        not already), the batch's journal entries are discarded instead.

        Parameters
        ----------
        exc : BaseException, optional
            The error that ended the batch, if one did.
        """
        self.settle_before_batch_ends(exc)
        self._batch -= 1
        self._journal.batching -= 1
        if self._batch == 0 and not self.closed:
            lost, self._lost = self._lost, None
            if isinstance(exc, OSError) or lost is not None:  # the store failed (a full disk ...)
                self._drop_held()
                self._journal.discard()  # the batch staged nothing
                if lost is not None and exc is None:
                    raise lost  # held samples were not staged: the block must not pass
                return
            try:
                self._settle()
                self._writer.flush()
            except BaseException as err:  # nothing of the batch is staged
                self._lost = None
                self._drop_held()
                self._journal.discard()
                if exc is None or not isinstance(err, OSError):
                    raise
                return  # the block's own error goes on
            self._journal.sync()

    def stage_sample(self, aset: str, enc: str, p: Payload) -> None:
        """Stage payload ``p`` as sample ``enc`` (an encoded key) of arrayset ``aset``."""
        self._settle()
        self._writer.add(p)
        if not self._batch:
            self._writer.flush()
        self._journal.record_sample(aset, enc, p.digest)

    def stage_large(self, aset: str, enc: str, arr: np.ndarray) -> None:
        """Stage the C-contiguous ``arr`` of :data:`.store.chunked.THRESHOLD` bytes or
        more as sample ``enc`` of ``aset``: its digest is computed while its file
        is written (see :meth:`.store.writer.PackWriter.add_large`)."""
        self._settle()
        digest = self._writer.add_large(kind_of(arr), arr.reshape(-1).data.cast("B"))
        if not self._batch:
            self._writer.flush()
        self._journal.record_sample(aset, enc, digest)

    def stage_stacked(
        self,
        aset: str,
        encs: Sequence[str],
        rows: np.ndarray,
        digests: Sequence[bytes] | None = None,
    ) -> None:
        """Stage row ``i`` of the C-contiguous ``rows`` under ``encs[i]`` (the bulk path).

        Digests (unless given: ``digests[i]`` that of ``rows[i]``) are computed
        in one pass over the stacked buffer, while the payloads are written
        (:meth:`.store.writer.PackWriter.add_hashing`); the payloads
        are written in blocks straight from it and their index committed
        before the records are logged, so a killed process leaves either all
        of them staged or none (unreferenced payload bytes at worst).
        Rows of a block each go through :meth:`stage_sample`.
        """
        self._settle()
        if not len(encs):
            return
        if digests is not None and len(digests) != len(encs):
            raise ValueError(f"{len(digests)} digests for {len(encs)} rows")
        if rows.nbytes // len(encs) >= BLOCK_TARGET:
            if digests is None:
                digests = stacked_digests(rows)
            self.begin_batch()
            try:
                kind = kind_of(rows[0])
                for enc, d, row in zip(encs, digests, rows, strict=True):
                    data = memoryview(row.reshape(-1)).cast("B") if row.ndim else row.tobytes()
                    self.stage_sample(aset, enc, Payload(d, kind, data))  # type: ignore[arg-type]
            except BaseException as exc:
                self.end_batch(exc)
                raise
            self.end_batch()
            return
        if digests is None:  # hashed while the blocks are written
            digests = self._writer.add_hashing(kind_of(rows[0]), rows)
        else:
            self._writer.add_stacked(kind_of(rows[0]), digests, rows)
        self._journal.record_samples(aset, encs, digests)

    def stage_arrays(self, aset: str, encs: Sequence[str], arrs: Sequence[np.ndarray]) -> None:
        """Stage ``arrs[i]`` (C-contiguous) under ``encs[i]`` as they are: the path
        of large samples, which are not stacked into a copy; their digests are
        computed on every core (blake2b releases the GIL)."""
        self._settle()
        payloads = parallel_map(payload_from_array, arrs)
        self.begin_batch()
        try:
            for enc, p in zip(encs, payloads, strict=True):
                self.stage_sample(aset, enc, p)
        except BaseException as exc:
            self.end_batch(exc)
            raise
        self.end_batch()

    def unstage_sample(self, aset: str, enc: str) -> None:
        """Stage the removal of sample ``enc`` of arrayset ``aset``."""
        self._settle()
        self._journal.record("D", aset, enc)

    def restore_sample(self, aset: str, enc: str, digest: bytes) -> None:
        """Stage sample ``enc`` of ``aset`` back to the payload ``digest`` it had
        (already in the store: nothing is written but the journal entry)."""
        self._settle()
        self._journal.record("A", aset, enc, digest.hex())

    def stage_schema(self, aset: str, schema: ArraysetSchema) -> None:
        """Stage the creation of arrayset ``aset`` with ``schema``."""
        self._settle()
        self._journal.record("S", aset, schema.to_json())

    def stage_remove_aset(self, aset: str) -> None:
        """Stage the removal of arrayset ``aset`` and all its samples."""
        self._settle()
        self._journal.record("R", aset)

    def stage_meta(self, enc: str, value: str | None) -> None:
        """Stage metadata ``enc`` set to ``value`` (ASCII), or removed for None."""
        if value is None:
            self._journal.record("X", enc)
        else:
            self._journal.record("M", enc, value.encode("ascii").hex())

    def sync(self) -> None:
        """Stage what is held, flush staged payloads to the store, then the journal to disk."""
        self._settle()
        self._writer.flush()
        self._journal.sync()

    # ---- operations -----------------------------------------------------
    def commit(self, commit_message: str) -> str:
        """Commit the staged changes on the branch; returns the commit hash.

        The checkout stays open, based on the new commit.

        Parameters
        ----------
        commit_message : str
            The commit's message.

        Returns
        -------
        str
            Hash of the new commit, now the branch's head.

        Raises
        ------
        RuntimeError
            If nothing is staged, or the branch moved under the staging area.
        ValueError
            If the message is not a str.
        """
        self.check_open()
        if not isinstance(commit_message, str):
            raise ValueError("commit message must be a str")
        self.sync()
        if self.diff.status() == "CLEAN":
            raise RuntimeError("no changes staged: nothing to commit")
        before = self.view.base
        sha = commit_staged(self._git, self._journal, commit_message, self._repo.identity())
        self._rebase_view()
        placed, self._writer.placed_rows = self._writer.placed_rows, []  # used once
        entry_hints.keep_committed(self.payloads.reader, before, self.view.base, placed)
        return sha

    def _rebase_view(self) -> None:
        git = self._git
        self.view = StagedView(
            TreeRecords(git, commit_tree(git, self._journal.base)), self._journal
        )
        self.payloads.view = self.view

    def merge(self, message: str, dev_branch: str, *, strategy: str | None = None) -> str:
        """Merge ``dev_branch`` into this checkout's branch; returns the new head.

        A fast-forward when history is linear (``message`` is then unused),
        else a three-way merge commit with both parents. The checkout stays
        open, based on the new head.

        Parameters
        ----------
        message : str
            Message of the merge commit.
        dev_branch : str
            Branch to merge from (local, or remote-tracking ``remote/branch``).
        strategy : {None, 'ours', 'theirs'}, optional
            How conflicting samples and metadata are resolved: None (default)
            refuses the merge, ``'ours'`` keeps this branch's values,
            ``'theirs'`` takes ``dev_branch``'s.

        Returns
        -------
        str
            Hash of the branch's new head.

        Raises
        ------
        MergeConflictError
            (a ValueError) On conflicts without a strategy; nothing changes.
        ValueError
            An unknown branch, a bad strategy or message, or staged changes.
        """
        self.check_open()
        self.sync()
        if self.diff.status() != "CLEAN":
            raise ValueError("the staging area has uncommitted changes: commit or reset first")
        from .merge import merge_branches

        sha = merge_branches(
            self._git,
            self._repo.identity(),
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

        Returns
        -------
        str
            Hash of the commit the staging area is reset to ('' before the
            first commit).

        Raises
        ------
        RuntimeError
            If nothing is staged.
        """
        self.check_open()
        self.sync()
        if not self._journal.has_entries:
            raise RuntimeError("no changes staged: nothing to reset")
        base = self._journal.base
        self._journal.reset(self._journal.branch, base)
        self.close()
        return base or ""

    def close(self) -> None:
        """Write anything batched, and release the writer lock."""
        if self.closed:
            return
        try:
            self._batch = 0
            self._journal.batching = 0
            self.sync()
        finally:
            self.closed = True
            self._handles.close()
            LIVE_WRITERS.discard(self)
            try:
                self._writer.close()
                self.payloads.reader.close()
                self._journal.close()
            finally:
                self._repo.release_writer_lock(self._lock)

    def __repr__(self) -> str:
        if self.closed:
            return "<WriterCheckout (closed)>"
        return (
            "Hangar WriterCheckout\n"
            "    Writer       : True\n"
            f"    Base Branch  : {self._journal.branch}\n"
            f"    Num Arraysets : {len(self.view.aset_names())}\n"
            f"    Num Metadata : {len(self.view.meta_keys())}\n"
        )


__all__ = ["Checkout", "PayloadAccess", "ReaderCheckout", "WriterCheckout"]
