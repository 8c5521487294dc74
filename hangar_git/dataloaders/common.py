"""What every dataloader builds on: the selection of samples and how to read them.

A :class:`SampleSource` is made from the arraysets of a *read* checkout. It
keeps only plain data -- the repository path, the commit hash, the arrayset
names, the selected keys and their payload digests -- so it pickles into
worker processes (``fork`` or ``spawn``) and opens read checkouts of its own,
lazily, in each process that reads through it (one per concurrent reader:
threads never share one). Nothing unpicklable (git handles, SQLite
connections, file descriptors) ever crosses a process boundary.

Hot path
--------
The digests of the selected samples are resolved once, when the source is
made (a commit's records never change). Reading a batch is then, per
arrayset, a list of digests handed to the checkout's batch read
(``PayloadAccess.read_batch``: one vectorised index look-up, one
decompression pass per storage block) -- no per-sample key encoding or
record look-up. Stacked batches (:meth:`SampleSource.read_stacked`) of an
arrayset whose selected samples fit in :data:`COLUMN_LIMIT` bytes come from
a copy of the whole arrayset, read once per process; those of the others
straight from the store's index entries of the selection (32 bytes a
sample), found once per process -- or once in the parent of forked workers
(``preload``) -- so a batch looks up no digest in the store's index. A
shuffled batch of those reads the whole blocks it touches once into a cache
of decoded samples that forked workers share (:mod:`.row_cache`).

Sample order: see :mod:`.selection`.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from ..arrayset import ArraysetDataReader
from ..errors import IntegrityError
from ..naming import Key, encode_key
from ..records import entry_hints
from .row_cache import RowCache
from .selection import (
    TableSelection,
    as_arrayset_list,
    check_local,
    select_keys,
    table_selection,
)

if TYPE_CHECKING:
    from ..checkout import PayloadAccess, ReaderCheckout

_TUPLE_TYPES: dict[str, type] = {}


def sample_type(field_names: Sequence[str] | None, aset_names: Sequence[str]) -> type:
    """The namedtuple class of a sample (or batch): one field per arrayset.

    Without ``field_names`` the fields are the arrayset names (names that are
    not Python identifiers, such as ``'my-images'``, become ``_0``, ``_1`` ...).
    The class is registered in this module under a name derived from its
    fields, so its instances pickle between processes (DataLoader workers).

    Raises
    ------
    ValueError
        If ``field_names`` does not give one valid identifier per arrayset.
    """
    fields: tuple[str, ...]
    if field_names is None:
        fields = namedtuple("BatchTuple", list(aset_names), rename=True)._fields  # type: ignore[misc,attr-defined]
    else:
        fields = check_field_names(field_names, len(aset_names)) or ()
    qual = "BatchTuple_" + hashlib.blake2b("\0".join(fields).encode(), digest_size=8).hexdigest()
    found = _TUPLE_TYPES.get(qual)
    if found is not None:
        return found
    made: type = namedtuple("BatchTuple", fields, rename=True, module=__name__)  # type: ignore[misc]
    made.__qualname__ = qual
    globals()[qual] = made
    _TUPLE_TYPES[qual] = made
    return made


def check_field_names(field_names: object, n_asets: int) -> tuple[str, ...] | None:
    """``field_names`` as a tuple (None stays None); ValueError when unusable."""
    if field_names is None:
        return None
    if isinstance(field_names, str) or not isinstance(field_names, (list, tuple)):
        raise ValueError("field_names must be a list or tuple of str")
    if len(field_names) != n_asets:
        raise ValueError(f"{len(field_names)} field_names given for {n_asets} arraysets")
    if not all(isinstance(f, str) for f in field_names):
        raise ValueError("field_names must be a list or tuple of str")
    namedtuple("BatchTuple", list(field_names))  # raises ValueError for bad names
    return tuple(field_names)


def pad_stack(arrays: Sequence[np.ndarray], pad_value: Any = 0) -> np.ndarray:
    """Stack arrays of one rank and dtype, padding each to the batch's max shape.

    Every dimension is padded at its end with ``pad_value``; equal shapes are
    simply stacked.
    """
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return np.stack(arrays)
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise ValueError(f"cannot pad arrays of different ranks {sorted(ranks)}")
    top = tuple(max(dims) for dims in zip(*shapes, strict=True))
    out = np.full((len(arrays), *top), pad_value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        region: tuple[int | slice, ...] = (i, *(slice(0, d) for d in a.shape))
        out[region] = a
    return out


class _Handle(NamedTuple):
    """A read checkout this process opened, and its arrayset accessors."""

    pid: int
    generation: int
    co: ReaderCheckout
    asets: list[ArraysetDataReader]


class _Pool:
    """Read checkouts of one process: lent out one user at a time, then reused."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.generation = 0
        self.free: list[_Handle] = []
        self.opened: list[_Handle] = []
        #: small arraysets read whole (index of the arrayset -> its samples); a
        #: forked child keeps its parent's (they are read-only copies of
        #: immutable payloads)
        self.columns: dict[int, np.ndarray] = {}
        #: the other arraysets: index of the arrayset -> the store's index
        #: entries of its selected samples (None: not gathered that way); a
        #: forked child keeps its parent's too (entries name blocks by ids
        #: the store never reuses)
        self.entries: dict[int, np.ndarray | None] = {}
        #: the decoded samples of those arraysets, filled as batches read
        #: them, in memory a forked child shares with its parent and siblings
        #: (see :mod:`.row_cache`; None: not cached)
        self.caches: dict[int, RowCache | None] = {}

    def forked(self) -> None:
        # handles copied from the parent stay untouched (closing them here could
        # disturb the parent's); this process opens its own
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.free, self.opened = [], []

    def close(self) -> None:
        with self.lock:
            self.forked()
            self.generation += 1
            mine, self.free, self.opened = self.opened, [], []
            caches = self.caches
            self.columns, self.entries, self.caches = {}, {}, {}
        for cache in caches.values():
            if cache is not None:
                cache.close()
        for h in mine:
            try:
                h.co.close()
            except Exception:  # pragma: no cover - best effort at teardown
                pass


#: an arrayset whose selected samples take at most this many bytes (labels,
#: say) is read whole on its first stacked batch in a process, and later
#: batches are taken from memory: reading a batch costs about the same for 64
#: labels as for 64 images, taking one a few microseconds
COLUMN_LIMIT = 4 << 20

#: reads the samples at some indices of a source: per arrayset, their arrays
BatchRead = Callable[[Sequence[int]], list[list[np.ndarray]]]


def _joined(digests: list[bytes]) -> list[bytes] | tuple[int, bytes]:
    """``digests`` as ``(length, concatenation)`` when all have one length."""
    size = len(digests[0]) if digests else 0
    joined = b"".join(digests)
    return (size, joined) if size and len(joined) == size * len(digests) else digests


def _split(state: list[bytes] | tuple[int, bytes]) -> list[bytes]:
    """Invert :func:`_joined`."""
    if isinstance(state, list):
        return state
    size, joined = state
    return [joined[i : i + size] for i in range(0, len(joined), size)]


class SampleSource:
    """The selected samples of some arraysets at one commit; picklable.

    Build one with :meth:`from_arraysets`. Samples are addressed by index
    into :attr:`keys`. :meth:`read` (or a :meth:`reader` held for many
    batches) returns the arrays of a list of indices through the checkout's
    batch read path, using read checkouts that this object opens itself in
    each process, on first use (see :meth:`lease`).
    """

    def __init__(
        self,
        path: str,
        commit: str,
        names: Sequence[str],
        keys: Sequence[Key],
        specs: Sequence[tuple[np.dtype, tuple[int, ...], bool]],
        digests: Sequence[Sequence[bytes]],
        encs: Sequence[str] | None = None,
    ) -> None:
        self.path = path
        self.commit = commit
        self.names = tuple(names)
        self.keys = list(keys)
        #: per arrayset: (dtype, (max) shape, variable_shape)
        self.specs = list(specs)
        #: per arrayset: the payload digest of each selected key, in order
        self.digests = [list(d) for d in digests]
        if len(self.digests) != len(self.names) or any(
            len(d) != len(self.keys) for d in self.digests
        ):
            raise ValueError("one digest per selected key and arrayset is needed")
        #: the encoded keys (as records name them), in order
        self.encs = [encode_key(k) for k in self.keys] if encs is None else list(encs)
        if len(self.encs) != len(self.keys):
            raise ValueError("one encoded key per selected key is needed")
        self._setup()

    @classmethod
    def from_arraysets(
        cls,
        arraysets: object,
        keys: Iterable[Key] | None = None,
        index_range: slice | None = None,
        field_names: object = None,
        preload: bool = False,
    ) -> SampleSource:
        """Validate the arguments of a ``make_*`` function and select the samples.

        With ``preload``, the small arraysets are read whole now (see
        :meth:`preload`).

        Raises
        ------
        TypeError, ValueError, KeyError
            See :func:`as_arrayset_list`, :func:`check_field_names` and
            :func:`select_keys`.
        MissingPayloadError
            If a selected sample's payload is not on this machine.
        """
        asets = as_arrayset_list(arraysets)
        check_field_names(field_names, len(asets))
        co = cast("ReaderCheckout", asets[0].checkout)  # as_arrayset_list checked it
        table = table_selection(asets, index_range) if keys is None else None
        if table is not None:
            selected: list[Key] = list(table.keys)
            encs, digests = table.encs, table.digests
        else:
            records = [dict(co.view.iter_items(a.name)) for a in asets]  # one pass each
            selected, encs = select_keys(asets, keys, index_range, records)
            digests = [list(map(r.__getitem__, encs)) for r in records]
        specs = [(a.dtype, a.shape, a.variable_shape) for a in asets]
        source = cls(
            co.repository.path,
            co.commit_hash,
            [a.name for a in asets],
            selected,
            specs,
            digests,
            encs,
        )
        source.check_local_payloads(co, asets, table)
        if preload:
            source.preload(co)
        return source

    def check_local_payloads(
        self, co: ReaderCheckout, asets: list[ArraysetDataReader], table: TableSelection | None
    ) -> None:
        """Raise unless every selected sample's payload is on this machine.

        The store's index entries of the arraysets read by entries (see
        :meth:`read_stacked`) are found through the places kept for their key
        tables when ``table`` gives them (no index search; see
        :mod:`hangar_git.records.entry_hints`), and kept for the batches: all
        found, none of their payloads is missing. The others go through
        :func:`.selection.check_local`.

        Parameters
        ----------
        co : ReaderCheckout
            A read checkout of :attr:`commit`.
        asets : list of ArraysetDataReader
            Its arraysets of :attr:`names`, in order.
        table : TableSelection or None
            The selection, when it was taken from the key tables.

        Raises
        ------
        MissingPayloadError
            See :func:`.selection.check_local`.
        """
        rest = []
        for j, aset in enumerate(asets):
            if table is None or self._small[j] or self.specs[j][2]:
                rest.append(j)
                continue
            records = co.view.base_samples(aset.name)
            oid = records.oid if records is not None else None
            found, e = entry_hints.table_entries(
                co.payloads.reader, co.view.base.repo, oid, table.tables[j]
            )
            if found.all():
                self._pool.entries[j] = e[table.positions]
            else:
                rest.append(j)
        if rest:
            check_local([asets[j] for j in rest], self.keys, [self.digests[j] for j in rest])

    # ---- per-process handles -------------------------------------------------
    def _setup(self) -> None:
        self._pool = _Pool()
        weakref.finalize(self, self._pool.close)
        n = len(self.keys)
        self._small = [
            not var and n * np.dtype(dtype).itemsize * math.prod(shape) <= COLUMN_LIMIT
            for dtype, shape, var in self.specs
        ]

    def __getstate__(self) -> dict[str, Any]:
        names = ("path", "commit", "names", "keys", "specs", "encs")
        state = {k: self.__dict__[k] for k in names}
        # each arrayset's digests as one bytes object when they are all of
        # one length: a twentieth of the time to pickle (spawned workers)
        state["digests"] = [_joined(d) for d in self.digests]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["digests"] = [_split(d) for d in state["digests"]]
        self.__dict__.update(state)
        self._setup()

    def _open(self, generation: int) -> _Handle:
        from ..repository import Repository

        co = cast("ReaderCheckout", Repository(self.path).checkout(commit=self.commit))
        return _Handle(os.getpid(), generation, co, [co.arraysets[n] for n in self.names])

    @contextmanager
    def lease(self) -> Iterator[list[ArraysetDataReader]]:
        """Exclusive use of a read checkout of this process (opened on first need).

        Yields the arrayset accessors of the checkout. Each user -- a thread,
        an epoch's generator -- gets a checkout no one else uses meanwhile;
        returned ones are reused, so their caches stay warm across batches
        and epochs. A forked child never touches its parent's checkouts.
        """
        with self._borrow() as handle:
            yield handle.asets

    @contextmanager
    def reader(self) -> Iterator[BatchRead]:
        """A function reading the samples at a list of indices, for many batches.

        It holds one read checkout of this process (as :meth:`lease`) until
        the ``with`` block ends. Called with indices into :attr:`keys`, it
        returns, per arrayset, the samples' arrays in that order (fresh,
        writeable arrays).
        """
        with self._borrow() as handle:
            co = handle.co
            payloads = co.payloads
            columns = list(zip(self.names, self.digests, strict=True))

            def read(indices: Sequence[int]) -> list[list[np.ndarray]]:
                co.check_open()  # ClosedError once close() closed it under us
                return [payloads.read_batch(name, [d[i] for i in indices]) for name, d in columns]

            yield read

    @contextmanager
    def _borrow(self) -> Iterator[_Handle]:
        pool = self._pool
        with pool.lock:
            pool.forked()
            handle = pool.free.pop() if pool.free else None
            generation = pool.generation
        if handle is None:
            handle = self._open(generation)
            with pool.lock:
                pool.forked()
                pool.opened.append(handle)
        try:
            yield handle
        finally:
            with pool.lock:
                if handle.pid == pool.pid == os.getpid() and handle.generation == pool.generation:
                    pool.free.append(handle)

    def close(self) -> None:
        """Close the read checkouts this process opened (later reads reopen)."""
        self._pool.close()

    # ---- reading -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    @property
    def variable(self) -> bool:
        """True when some arrayset has variable-shape samples."""
        return any(v for _, _, v in self.specs)

    def read(self, indices: Sequence[int]) -> list[list[np.ndarray]]:
        """Per arrayset, the arrays of the samples at ``indices`` (into :attr:`keys`),
        in that order (fresh, writeable arrays)."""
        with self.reader() as read:
            return read(indices)

    def read_stacked(self, indices: Sequence[int], out: Sequence[np.ndarray]) -> None:
        """Fill ``out`` (one array per arrayset, shaped ``(len(indices), *shape)``
        and of its dtype) with the samples at ``indices``.

        Raises
        ------
        ValueError
            If an arrayset has variable-shape samples, or ``out`` does not
            match the batch.
        """
        if self.variable:
            raise ValueError("variable-shape samples cannot be stacked")
        if len(out) != len(self.names):
            raise ValueError(f"{len(out)} output arrays for {len(self.names)} arraysets")
        for o, (dtype, shape, _var) in zip(out, self.specs, strict=True):
            if o.shape != (len(indices), *shape) or o.dtype != dtype:
                raise ValueError(f"output {o.shape} {o.dtype} for samples {shape} {dtype}")
        columns = self._pool.columns
        with self._borrow() as handle:
            co = handle.co
            co.check_open()  # ClosedError once close() closed it under us
            payloads = co.payloads
            for j, o in enumerate(out):
                if self._small[j]:
                    column = columns.get(j)
                    if column is None:
                        column = columns[j] = self._read_column(j, payloads)
                    column.take(indices, axis=0, out=o)
                elif o.flags.c_contiguous:  # contiguous rows are filled best
                    self._fill(j, indices, payloads, o)
                else:
                    tmp = np.empty(o.shape, o.dtype)
                    self._fill(j, indices, payloads, tmp)
                    o[...] = tmp

    def _fill(
        self, j: int, indices: Sequence[int], payloads: PayloadAccess, out: np.ndarray
    ) -> None:
        """Fill ``out`` (C-contiguous) with the samples at ``indices`` of arrayset ``j``."""
        if not self._gather(j, indices, payloads, out):
            encs = list(map(self.encs.__getitem__, indices))
            digests = list(map(self.digests[j].__getitem__, indices))
            payloads.read_into(self.names[j], digests, encs, out)

    def _gather(
        self, j: int, indices: Sequence[int], payloads: PayloadAccess, out: np.ndarray
    ) -> bool:
        """Fill ``out`` (C-contiguous) with the samples at ``indices`` of arrayset
        ``j`` straight from the store's index entries of the selection, found
        once per process (or inherited from the parent): no digest looked up
        per batch. False (``out`` not to be trusted) when that does not apply
        -- some payloads not in this machine's store, large or of another
        kind, or moved since (``gc``) -- then never tried again here: the
        caller reads through :meth:`PayloadAccess.read_into`, which locates
        them afresh, fetches or reports them."""
        entries = self._pool.entries
        if j not in entries:
            entries[j] = self._entries(j, payloads)
        ents = entries[j]
        if ents is None:
            return False
        cache = self._cache(j, ents)
        done = False
        if cache is not None:

            def fill(rows: np.ndarray, got: np.ndarray) -> bool:
                return self._gather_entries(j, ents.take(rows), payloads, got)

            done = cache.take(indices, out, fill)
            if not done and entries[j] is None:  # the store could not give them
                return False
        # not from the cache (none, an ordered batch not cached, a cache turned off)
        if not done and not self._gather_entries(j, ents.take(indices), payloads, out):
            return False
        if len(out):  # one kind for all (gather_into checked that)
            payloads.view.check_payload(self.names[j], self.encs[indices[0]], out[0])
        return True

    def _gather_entries(
        self, j: int, ents: np.ndarray, payloads: PayloadAccess, out: np.ndarray
    ) -> bool:
        """Fill ``out`` with the payloads of index entries ``ents`` of arrayset
        ``j``; False, and the entries of ``j`` never used again here, when the
        store cannot give them that way (see :meth:`_gather`)."""
        try:
            done = payloads.reader.gather_into(ents, out)
        except IntegrityError:
            done = False
        if not done:
            self._pool.entries[j] = None
        return done

    def _cache(self, j: int, ents: np.ndarray) -> RowCache | None:
        """The cache of the decoded samples of arrayset ``j`` in this process
        (made on first need; a forked child shares its parent's)."""
        caches = self._pool.caches
        if j not in caches:
            dtype, shape, _var = self.specs[j]
            caches[j] = RowCache.make(ents["block"], dtype, shape)
        return caches[j]

    def _entries(self, j: int, payloads: PayloadAccess) -> np.ndarray | None:
        """The store's index entries of the selected samples of arrayset ``j``,
        in order; None unless all of them are in this machine's store."""
        found, ents = payloads.reader.lookup(self.digests[j])
        return ents if found.all() else None

    def _read_column(self, j: int, payloads: PayloadAccess) -> np.ndarray:
        """Every selected sample of arrayset ``j``, stacked: each distinct
        payload read once (labels share a handful)."""
        dtype, shape, _var = self.specs[j]
        digests = self.digests[j]
        # each distinct digest -> a sample holding it (the last: one C loop)
        first = dict(zip(digests, self.encs, strict=True))
        distinct = np.empty((len(first), *shape), dtype)
        payloads.read_into(self.names[j], list(first), list(first.values()), distinct)
        row = {d: i for i, d in enumerate(first)}
        at = np.fromiter(map(row.__getitem__, digests), np.intp, len(self.keys))
        return distinct.take(at, axis=0)

    def preload(self, checkout: ReaderCheckout) -> None:
        """Read the small arraysets whole now, and find the store's index
        entries of the others' samples (and make their caches of decoded
        samples), through ``checkout`` (a read checkout of :attr:`commit`),
        for every batch of this process and of worker processes forked from
        it."""
        columns, entries = self._pool.columns, self._pool.entries
        for j, small in enumerate(self._small):
            if small and j not in columns:
                columns[j] = self._read_column(j, checkout.payloads)
            elif not small and not self.specs[j][2]:
                if j not in entries:
                    entries[j] = self._entries(j, checkout.payloads)
                ents = entries[j]
                if ents is not None:  # made here: forked workers share it
                    self._cache(j, ents)

    def __repr__(self) -> str:
        return (
            f"<SampleSource {len(self.keys)} samples of {list(self.names)} "
            f"at {self.commit[:12]} in {self.path}>"
        )


__all__ = ["SampleSource", "pad_stack", "sample_type"]
