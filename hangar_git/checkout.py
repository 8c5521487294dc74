"""Checkouts: a read-only view of a commit, or the write-enabled staging area."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrayset import Arraysets, ReaderArraysets
from .commits import commit_staged
from .errors import ClosedError, IntegrityError, MissingPayloadError
from .gitutil import has_remote_source
from .handles import HandleSet
from .metadata import MetadataReader, MetadataWriter
from .naming import Key, decode_key
from .records import validate
from .records.snapshot import TreeRecords, commit_tree
from .records.staging import Journal
from .records.view import CommitView, StagedView
from .schema import ArraysetSchema
from .store import Location, PackReader, PackWriter, Payload, payload_from_array
from .store.chunked import LARGE_IOFF
from .store.digest import kind_of, stacked_digests
from .store.limits import payload_bound
from .store.packs import BLOCK_TARGET
from .store.threads import parallel_map

if TYPE_CHECKING:
    from .repository import Repository
    from .userdiff import ReaderUserDiff, WriterUserDiff


def _damaged(aset: str, enc: str, digest: bytes, why: object) -> IntegrityError:
    key = int(enc[2:]) if enc.startswith("i:") else enc[2:]
    return IntegrityError(
        f"sample {aset}[{key!r}] (payload {digest.hex()}) is damaged: {why}; run `git hangar fsck`"
    )


#: after this many fan-out leaves (or a quarter of them, if more) resolved one
#: at a time, an arrayset's reads are taken to be spread out and all its
#: digests are resolved at once
_SPREAD_LEAVES = 16
#: arraysets of up to this many samples are resolved whole once reads have
#: touched a quarter of their leaves (about 20 ms per 100k samples); larger
#: ones leaf by leaf, so scattered reads do not load every key
_RESOLVE_ALL_MAX = 262_144


class PayloadAccess:
    """Resolves digests to locations (a leaf at a time) and reads arrays.

    A read that fails its checksum raises :class:`IntegrityError` naming the
    sample and the file, never wrong bytes. Before calling it damage, the
    payload is located afresh: ``gc`` may have moved it to a new pack (pack
    numbers are never reused), so a stale location is retried, not reported.
    """

    def __init__(self, view: CommitView, reader: PackReader, writer: PackWriter | None) -> None:
        self.view = view
        self.reader = reader
        self.writer = writer
        self.locs: dict[bytes, Location] = {}
        #: digest -> index entry (block, item offset, kind): the fast path of reads
        self._ents: dict[bytes, tuple[int, int, int]] = {}
        self._leaf_misses: dict[str, int] = {}  # arrayset -> leaves until resolving all
        #: called with absent digests, and the most raw bytes any of them may
        #: hold, to fetch them (a checkout opened with fetch_missing)
        self.fetcher: Callable[[Collection[bytes], int | None], None] | None = None

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
        try:
            self.locs.update(self.reader.locate_many(want))
        except IntegrityError:  # a damaged index page: look this one up alone
            try:
                found = self.reader.locate(digest)
            except IntegrityError as exc:
                raise _damaged(aset, enc, digest, exc) from None
            if found is not None:
                self.locs[digest] = found
        loc = self.locs.get(digest)
        if loc is None and digest in self.reader.bad_rows:
            # gc may have moved it since this reader loaded the index: look again
            del self.reader.bad_rows[digest]
            self.reader.refresh()
            loc = self.reader.locate(digest)
            if loc is not None:
                self.locs[digest] = loc
        if loc is None and self.fetcher is not None:
            self.fetcher([digest], self._bound(aset))
            self.locs.update(self.reader.locate_many([digest]))
            loc = self.locs.get(digest)
        if loc is None:
            self._absent(aset, enc, digest)
            raise MissingPayloadError(
                f"sample {aset}[{decode_key(enc)!r}] is a remote reference: its payload is not on "
                f"this machine; fetch it with `git hangar fetch-data REMOTE COMMIT -d {aset}` "
                "(Repository.remote.fetch_data), or read through a checkout opened with "
                "fetch_missing=True"
            )
        return loc

    def _absent(self, aset: str, enc: str, digest: bytes) -> None:
        """Raise IntegrityError when an absent payload cannot be a remote reference."""
        why = self.reader.bad_rows.get(digest)
        if why is None and not has_remote_source(self.view.base.repo):
            why = (
                f"it is missing from {self.reader.store.index_path} and the repository "
                "has no remote it could come from"
            )
        if why is not None:
            raise _damaged(aset, enc, digest, why)

    def read(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        """The array of sample ``enc`` (payload ``digest``), of a kind its
        arrayset's schema allows (else CorruptRecordError)."""
        return self.view.check_payload(aset, enc, self._read(aset, enc, digest))

    def _read(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        ent = self._ents.get(digest)
        if ent is None:
            ent = self._resolve_entry(aset, enc, digest)
        if ent is not None:
            try:
                return self.reader.read_entry(*ent)
            except IntegrityError:
                self._ents.pop(digest, None)  # the careful path re-locates and reports
        return self._read_located(aset, enc, digest)

    def _bound(self, aset: str) -> int | None:
        """The most raw bytes a payload of arrayset ``aset`` may hold (what a
        fetch of one may download), None when its schema cannot say."""
        try:
            schema = self.view.schema(aset)
        except (KeyError, ValueError):
            return None
        return payload_bound(schema.dtype.itemsize, schema.shape)

    def read_region(self, aset: str, enc: str, digest: bytes, index: Any) -> object:
        """``array[index]`` of one sample, as a fresh array (or a scalar): of a
        large payload only the chunks ``index`` touches are read.

        In records not built on this machine, a large payload's kind (dtype
        and shape, as its index entry states it) is checked against the
        schema before a chunk is read; the whole-read fallback checks what it
        reads as :meth:`read` does.
        """
        ent = self._ents.get(digest)
        if ent is None:
            ent = self._resolve_entry(aset, enc, digest)
        if ent is not None and ent[1] == LARGE_IOFF:
            if not self.view.base.payloads_trusted:
                dtype, shape = self.reader.kind(ent[2])
                validate.check_kind(self.view.schema(aset), dtype, shape, aset, enc)
            try:
                return self.reader.read_large_region(ent[0], ent[2], index)
            except IntegrityError:
                self._ents.pop(digest, None)  # the whole read below reports it
        arr = self.read(aset, enc, digest)[index]
        return arr.copy() if isinstance(arr, np.ndarray) else arr

    def _resolve_entry(self, aset: str, enc: str, digest: bytes) -> tuple[int, int, int] | None:
        """Index entry ``(block, offset, kind)`` of ``digest``, resolving its whole
        fan-out leaf in one vectorised lookup; None leaves it to :meth:`_resolve`."""
        writer = self.writer
        if writer is not None and writer.has_pending(digest):
            writer.flush()
        n = self._leaf_misses.get(aset)
        if n is None:  # count down from a quarter of the arrayset's leaves
            base = self.view.base_samples(aset)
            n = max(_SPREAD_LEAVES, len(base.leaf_paths()) // 4 if base is not None else 0)
            if base is not None and base.estimate_count() > _RESOLVE_ALL_MAX:
                n = -1  # never: a few reads would hold every key in memory
        self._leaf_misses[aset] = n = n - 1
        if n == 0:  # reads spread over many leaves: resolve them all at once
            pool = dict.fromkeys(self.view.digests(aset, keep_leaves=True))
        else:
            pool = dict.fromkeys(self.view.leaf_of(aset, enc).values())
        ents = self._ents
        want = [d for d in pool if d not in ents]
        want.append(digest)
        try:
            found, e = self.reader.lookup(want)
        except IntegrityError:
            return None
        self._keep(want, found, e)
        return ents.get(digest)

    def prepare_reads(self, aset: str) -> None:
        """Resolve the index entries of every sample of ``aset`` at once, before
        a read loop (``with aset:``); arraysets of more than
        :data:`_RESOLVE_ALL_MAX` samples keep resolving a leaf at a time."""
        base = self.view.base_samples(aset)
        if base is None or self._leaf_misses.get(aset) == -1:
            return
        if base.estimate_count() > _RESOLVE_ALL_MAX:
            return
        self._leaf_misses[aset] = -1  # resolved whole: never again
        ents = self._ents
        want = [d for d in dict.fromkeys(base.flat().values()) if d not in ents]
        if not want:
            return
        try:
            found, e = self.reader.lookup(want)
        except IntegrityError:
            return  # the careful one-at-a-time path reports it
        self._keep(want, found, e)

    def _keep(self, digests: Sequence[bytes], found: np.ndarray, e: np.ndarray) -> None:
        idx = np.flatnonzero(found)
        if len(idx):
            sub = e[idx]
            self._ents.update(
                zip(
                    [digests[i] for i in idx.tolist()],
                    zip(
                        sub["block"].tolist(),
                        sub["ioff"].tolist(),
                        sub["kind"].tolist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )

    def _read_located(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        loc = self._resolve(aset, enc, digest)
        try:
            return self.reader.read(loc)
        except IntegrityError as exc:
            err: object = exc
            # gc may have moved the payload to a new pack since it was located:
            # locate it afresh, and only a failure at its current place is damage
            self.locs.pop(digest, None)
            try:
                self.reader.refresh()
                fresh = self.reader.locate(digest)
            except IntegrityError as exc2:
                raise _damaged(aset, enc, digest, exc2) from None
            if fresh is not None and fresh != loc:
                self.locs[digest] = fresh
                try:
                    return self.reader.read(fresh)
                except IntegrityError as exc2:
                    err = exc2
            elif fresh is None:
                self._absent(aset, enc, digest)
            raise _damaged(aset, enc, digest, err) from None

    def read_many(self, aset: str, pairs: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
        """The arrays of ``(encoded key, digest)`` pairs, in order."""
        return self.read_batch(aset, [d for _, d in pairs], [e for e, _ in pairs])

    def read_batch(
        self, aset: str, digests: Sequence[bytes], encs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """The arrays of ``digests`` (of samples ``encs``, found when needed)."""
        try:
            return self.view.check_payloads(aset, self._read_many(aset, digests, encs))
        except IntegrityError:
            # one at a time: re-locates moved payloads, names the damaged sample
            encs = encs if encs is not None else self._encs_of(aset, digests)
            return [self.read(aset, e, d) for e, d in zip(encs, digests, strict=True)]

    def _lookup_dedup(self, digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`PackReader.lookup`, each distinct digest searched once."""
        n = len(digests)
        if n > 4096:  # a strided probe says whether de-duplicating can pay
            probe = digests[:: n // 1024]
            if len(set(probe)) * 4 > len(probe) * 3:
                return self.reader.lookup(digests)
        uniq = dict.fromkeys(digests)
        if len(uniq) * 2 > len(digests):
            return self.reader.lookup(digests)
        keys = list(uniq)
        found, e = self.reader.lookup(keys)
        pos = {d: i for i, d in enumerate(keys)}
        inv = np.fromiter(map(pos.__getitem__, digests), np.intp, len(digests))
        return found[inv], e[inv]

    def _encs_of(self, aset: str, digests: Sequence[bytes]) -> list[str]:
        """Encoded keys of samples holding ``digests`` (for error messages)."""
        by_digest: dict[bytes, str] = {}
        for e, d in self.view.iter_items(aset):
            by_digest.setdefault(d, e)
        return [by_digest.get(d, "s:?") for d in digests]

    def _read_many(
        self, aset: str, digests: Sequence[bytes], encs: Sequence[str] | None
    ) -> list[np.ndarray]:
        """All of ``digests`` through one vectorised lookup and one gather."""
        if self.writer is not None and self.writer.has_pending():
            self.writer.flush()
        found, e = self._lookup_dedup(digests)
        if not found.all():
            absent = list(dict.fromkeys(digests[i] for i in np.flatnonzero(~found).tolist()))
            if self.fetcher is not None:
                self.fetcher(absent, self._bound(aset))
                found, e = self.reader.lookup(digests)
            if not found.all():
                if encs is None:
                    encs = self._encs_of(aset, digests)
                i = int(np.flatnonzero(~found)[0])
                self._resolve(aset, encs[i], digests[i])  # raises the error that fits
                return self._read_many_located(aset, list(zip(encs, digests, strict=True)))
        return self.reader.gather(e)

    def _read_many_located(self, aset: str, pairs: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
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
            absent = [d for d in todo if d not in self.locs]
            if absent and self.fetcher is not None:
                self.fetcher(absent, self._bound(aset))
                self.locs.update(self.reader.locate_many(absent))
        locs = [self._resolve(aset, e, d) for e, d in pairs]
        return self.reader.read_many(locs)

    def missing(self, digests: Iterable[bytes]) -> set[bytes]:
        want = [d for d in digests if d not in self._ents and d not in self.locs]
        if self.writer is not None:
            want = [d for d in want if d not in self.writer.known]
        found, e = self.reader.lookup(want)
        self._keep(want, found, e)
        return {want[i] for i in np.flatnonzero(~found).tolist()}


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
