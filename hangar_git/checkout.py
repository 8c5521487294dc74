"""Checkouts: a read-only view of a commit, or the write-enabled staging area."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .arrayset import Arraysets
from .errors import ClosedError, MissingPayloadError
from .gitutil import branch_head, resolve_commit
from .metadata import MetadataReader, MetadataWriter
from .records.layout import leaf_path
from .records.snapshot import TreeRecords, commit_tree
from .records.staging import Journal
from .records.view import CommitView, StagedView
from .schema import ArraysetSchema
from .store import Location, PackReader, PackWriter, Payload

if TYPE_CHECKING:
    from .diff import ReaderUserDiff, WriterUserDiff
    from .repository import Repository


class PayloadAccess:
    """Resolves digests to locations (a leaf at a time) and reads arrays."""

    def __init__(self, view: CommitView, reader: PackReader, writer: PackWriter | None) -> None:
        self.view = view
        self.reader = reader
        self.writer = writer
        self.locs: dict[bytes, Location] = {}

    def _resolve(self, aset: str, enc: str, digest: bytes) -> Location:
        loc = self.locs.get(digest)
        if loc is not None:
            return loc
        if self.writer is not None:
            loc = self.writer.pending_location(digest)
            if loc is not None:
                return loc
        leaf = self.view.leaf_of(aset, enc)
        want = [d for d in leaf.values() if d not in self.locs]
        want.append(digest)
        self.locs.update(self.reader.locate_many(want))
        loc = self.locs.get(digest)
        if loc is None:
            raise MissingPayloadError(
                f"sample {aset}[{enc[2:]!r}] is a remote reference: its payload is not on "
                "this machine; fetch it with `git hangar fetch-data` "
                "(Repository.remote.fetch_data)"
            )
        return loc

    def read(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        return self.reader.read(self._resolve(aset, enc, digest))

    def read_many(self, aset: str, pairs: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
        todo = [d for _, d in pairs if d not in self.locs]
        if todo:
            if self.writer is not None:
                for d in todo:
                    loc = self.writer.pending_location(d)
                    if loc is not None:
                        self.locs[d] = loc
                todo = [d for d in todo if d not in self.locs]
            if todo:
                self.locs.update(self.reader.locate_many(todo))
        locs = [self._resolve(aset, e, d) for e, d in pairs]
        return self.reader.read_many(locs)

    def missing(self, digests: Iterable[bytes]) -> set[bytes]:
        want = [d for d in digests if d not in self.locs]
        if self.writer is not None:
            want = [d for d in want if d not in self.writer.known]
        found = self.reader.locate_many(want)
        self.locs.update(found)
        return {d for d in want if d not in found}


class _Checkout:
    """Shared machinery of reader and writer checkouts."""

    _view: CommitView
    _payloads: PayloadAccess

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._closed = False
        self._arraysets = Arraysets(self)

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(
                "this checkout is closed; open a new one with Repository.checkout()"
            )

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

    def _end_batch(self) -> None:
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
        self._metadata = MetadataReader(self)
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
            from .diff import ReaderUserDiff

            self._diff = ReaderUserDiff(self)
        return self._diff

    def close(self) -> None:
        """Release file handles; later use raises :class:`ClosedError`."""
        if not self._closed:
            self._closed = True
            self._payloads.reader.close()

    def __repr__(self) -> str:
        if self._closed:
            return "<ReaderCheckout (closed)>"
        return (
            "Hangar ReaderCheckout\n"
            "    Writer       : False\n"
            f"    Commit Hash  : {self._commit}\n"
            f"    Num Arraysets : {len(self._view.aset_names())}\n"
            f"    Num Metadata : {len(self._view.meta())}\n"
        )


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
        self._metadata = MetadataWriter(self)
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
            from .diff import WriterUserDiff

            self._diff = WriterUserDiff(self)
        return self._diff

    # ---- staging primitives (used by arraysets and metadata) --------------
    def _begin_batch(self) -> None:
        self._batch += 1
        self._journal.batching += 1

    def _end_batch(self) -> None:
        self._batch -= 1
        self._journal.batching -= 1
        if self._batch == 0 and not self._closed:
            self._writer.flush()
            self._journal.sync()

    def _stage_sample(self, aset: str, enc: str, p: Payload) -> None:
        self._writer.add(p)
        if not self._batch:
            self._writer.flush()
        self._journal.record("A", aset, enc, p.digest.hex())

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
        sha = self._repo._commit_staged(self._journal, commit_message)
        self._rebase_view()
        return sha

    def _rebase_view(self) -> None:
        git = self._git
        self._view = StagedView(TreeRecords(git, commit_tree(git, self._journal.base)),
                                self._journal)
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

        sha = merge_branches(self._repo, message, self._journal.branch, dev_branch,
                             strategy=strategy, journal=self._journal)
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
            f"    Num Metadata : {len(self._view.meta())}\n"
        )


__all__ = ["ReaderCheckout", "WriterCheckout", "branch_head", "resolve_commit", "leaf_path"]
