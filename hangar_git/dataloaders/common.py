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
a copy of the whole arrayset, read once per process.

Sample order
------------
When ``keys`` is given the samples come in that order. Otherwise the selection
is every key present in *all* the arraysets, sorted: int keys ascending, then
str keys ascending. The order depends only on the commit, never on how this
machine stores payloads, so ``index_range`` picks the same samples everywhere.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from ..arrayset import ArraysetDataReader
from ..errors import MissingPayloadError
from ..naming import Key, decode_key, encode_key

if TYPE_CHECKING:
    from ..checkout import PayloadAccess, ReaderCheckout

#: how many keys an error message lists before it summarises the rest
_SHOW_KEYS = 10


def _sort_key(key: Key) -> tuple[bool, Any]:
    return (isinstance(key, str), key)


def _show(keys: Sequence[Key]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOW_KEYS])
    if len(keys) > _SHOW_KEYS:
        shown += f", ... ({len(keys) - _SHOW_KEYS} more)"
    return shown


def as_arrayset_list(arraysets: object) -> list[ArraysetDataReader]:
    """``arraysets`` (one accessor, or a list or tuple of them) as a list.

    Raises
    ------
    TypeError
        If an item is not an arrayset accessor, or comes from a write-enabled
        checkout.
    ValueError
        If no arrayset is given, or the arraysets come from different
        repositories or commits.
    """
    from ..checkout import ReaderCheckout

    if isinstance(arraysets, ArraysetDataReader):
        asets = [arraysets]
    elif isinstance(arraysets, (list, tuple)):
        asets = list(arraysets)
    else:
        raise TypeError(
            "arraysets must be an arrayset (co.arraysets['name']) or a list/tuple of "
            f"them, not {type(arraysets).__name__}"
        )
    if not asets:
        raise ValueError("no arraysets given: pass at least one")
    origin: tuple[str, str] | None = None
    for aset in asets:
        if not isinstance(aset, ArraysetDataReader):
            raise TypeError(f"expected an arrayset accessor, not {type(aset).__name__}: {aset!r}")
        co = aset.checkout
        co.check_open()
        if aset.iswriteable or not isinstance(co, ReaderCheckout):
            raise TypeError(
                f"arrayset {aset.name!r} comes from a write-enabled checkout; dataloaders "
                "read committed data only: open a read checkout with "
                "repo.checkout(commit=...) or repo.checkout(branch=...)"
            )
        here = (co.repository.path, co.commit_hash)
        if origin is None:
            origin = here
        elif here != origin:
            raise ValueError(
                "all arraysets must come from read checkouts of the same repository and "
                f"commit: {aset.name!r} is at {here[1][:12]} of {here[0]}, the first at "
                f"{origin[1][:12]} of {origin[0]}"
            )
    return asets


def select_keys(
    asets: Sequence[ArraysetDataReader],
    keys: Iterable[Key] | None,
    index_range: slice | None,
    records: Sequence[dict[str, bytes]],
) -> tuple[list[Key], list[str]]:
    """The keys a loader reads, in order (see the module docstring), and their
    encodings; ``records`` maps, per arrayset, encoded key -> payload digest.

    Raises
    ------
    TypeError
        If ``keys`` is a single str or int, or ``index_range`` is not a slice.
    ValueError
        If an item of ``keys`` cannot be a sample key (e.g. a bool or a negative
        int), or the selection is empty.
    KeyError
        If a given key is missing from one of the arraysets.
    """
    if index_range is not None and not isinstance(index_range, slice):
        raise TypeError(f"index_range must be a slice, not {type(index_range).__name__}")
    if keys is not None:
        if isinstance(keys, (str, bytes, int, np.integer)):
            raise TypeError("keys must be a sequence of sample keys, not a single key")
        # numpy integers (np.arange, an index array) are int keys
        selected = [int(k) if isinstance(k, np.integer) else k for k in keys]
        # ValueError for anything that cannot be a key (bool, -1, '')
        encs = [encode_key(k) for k in selected]
        for aset, have in zip(asets, records, strict=True):
            absent = [k for k, e in zip(selected, encs, strict=True) if e not in have]
            if absent:
                raise KeyError(
                    f"{len(absent)} of the given keys are not in arrayset {aset.name!r}: "
                    f"{_show(absent)}"
                )
    else:
        common = set(records[0]).intersection(*records[1:])
        if any(len(r) != len(common) for r in records):
            counts = ", ".join(f"{a.name!r}: {len(r)}" for a, r in zip(asets, records, strict=True))
            warnings.warn(
                f"the arraysets hold different keys ({counts}); only the {len(common)} "
                "keys present in all of them are used",
                UserWarning,
                stacklevel=4,
            )
        # int keys ascending, then str keys ascending (decode_key, inlined)
        ints = sorted(int(e[2:]) for e in common if e.startswith("i:"))
        strs = sorted(e[2:] for e in common if e.startswith("s:"))
        if len(ints) + len(strs) != len(common):  # pragma: no cover - records are checked
            for e in common:
                decode_key(e)  # CorruptRecordError naming the malformed key
        selected = [*ints, *strs]
        if index_range is not None:
            selected = selected[index_range]
        encs = [f"i:{k}" if type(k) is int else f"s:{k}" for k in selected]
    if not selected:
        raise ValueError("no samples selected: the arraysets, keys or index_range are empty")
    return selected, encs


def check_local(
    asets: Sequence[ArraysetDataReader], keys: Sequence[Key], digests: Sequence[Sequence[bytes]]
) -> None:
    """Raise if any selected sample's payload is not stored on this machine;
    ``digests`` holds, per arrayset, the payload digest of each of ``keys``.

    Raises
    ------
    MissingPayloadError
        Listing, per arrayset, the selected keys whose payloads are remote
        references; its ``remote_keys`` attribute maps arrayset name -> keys.
    """
    missing: dict[str, list[Key]] = {}
    for aset, digs in zip(asets, digests, strict=True):
        absent = aset.checkout.payloads.missing(set(digs))
        if absent:
            remote = [k for k, d in zip(keys, digs, strict=True) if d in absent]
            missing[aset.name] = sorted(set(remote), key=_sort_key)
    if missing:
        parts = "; ".join(f"{name!r}: {_show(ks)}" for name, ks in missing.items())
        total = sum(len(ks) for ks in missing.values())
        err = MissingPayloadError(
            f"{total} selected samples are remote references whose payloads are not on "
            f"this machine ({parts}); fetch them first (`git hangar fetch-data`, "
            "Repository.remote.fetch_data) or leave them out with `keys=`"
        )
        err.remote_keys = missing  # type: ignore[attr-defined]
        raise err


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
            self.columns = {}
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
        records = [dict(co.view.iter_items(a.name)) for a in asets]  # one pass each
        selected, encs = select_keys(asets, keys, index_range, records)
        digests = [list(map(r.__getitem__, encs)) for r in records]
        check_local(asets, selected, digests)
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
        if preload:
            source.preload(co)
        return source

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
        encs = list(map(self.encs.__getitem__, indices))
        columns = self._pool.columns
        with self._borrow() as handle:
            co = handle.co
            co.check_open()  # ClosedError once close() closed it under us
            payloads = co.payloads
            for j, (name, digests, o) in enumerate(zip(self.names, self.digests, out, strict=True)):
                if self._small[j]:
                    column = columns.get(j)
                    if column is None:
                        column = columns[j] = self._read_column(j, payloads)
                    column.take(indices, axis=0, out=o)
                elif o.flags.c_contiguous:  # read_into fills contiguous rows best
                    payloads.read_into(name, list(map(digests.__getitem__, indices)), encs, o)
                else:
                    tmp = np.empty(o.shape, o.dtype)
                    payloads.read_into(name, list(map(digests.__getitem__, indices)), encs, tmp)
                    o[...] = tmp

    def _read_column(self, j: int, payloads: PayloadAccess) -> np.ndarray:
        """Every selected sample of arrayset ``j``, stacked: each distinct
        payload read once (labels share a handful)."""
        dtype, shape, _var = self.specs[j]
        first: dict[bytes, str] = {}  # each distinct digest -> a sample holding it
        for d, e in zip(self.digests[j], self.encs, strict=True):
            first.setdefault(d, e)
        distinct = np.empty((len(first), *shape), dtype)
        payloads.read_into(self.names[j], list(first), list(first.values()), distinct)
        row = {d: i for i, d in enumerate(first)}
        at = np.fromiter(map(row.__getitem__, self.digests[j]), np.intp, len(self.keys))
        return distinct.take(at, axis=0)

    def preload(self, checkout: ReaderCheckout) -> None:
        """Read the small arraysets whole now, through ``checkout`` (a read
        checkout of :attr:`commit`), for every batch of this process and of
        worker processes forked from it."""
        columns = self._pool.columns
        for j, small in enumerate(self._small):
            if small and j not in columns:
                columns[j] = self._read_column(j, checkout.payloads)

    def __repr__(self) -> str:
        return (
            f"<SampleSource {len(self.keys)} samples of {list(self.names)} "
            f"at {self.commit[:12]} in {self.path}>"
        )


__all__ = ["SampleSource", "pad_stack", "sample_type"]
