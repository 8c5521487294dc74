"""Read access to one arrayset's samples: :class:`ArraysetDataReader`.

The dict-like reader a checkout hands out for ``co.arraysets[name]``
(``aset[key]``, ``get_batch``, ``read_into``, iteration); the write accessor
:class:`hangar_git.arrayset.ArraysetDataWriter` builds on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .naming import Key, decode_key, encode_key, is_key_like
from .schema import ArraysetSchema

if TYPE_CHECKING:
    from .checkout import Checkout


class ArraysetDataReader:
    """Read access to the samples of one arrayset.

    Dict-like over samples: ``aset[key]``, ``key in aset``, ``len(aset)``,
    ``keys()``, ``values()``, ``items()``; ``aset[key, 0:10]`` reads a
    sub-array. Keys are str (letters, digits, ``-._``) or int >= 0, and
    ``'1'`` and ``1`` are different keys. Reach it as ``co.arraysets[name]``.

    Parameters
    ----------
    checkout : Checkout
        The checkout whose records and payloads are read.
    name : str
        The arrayset.
    """

    def __init__(self, checkout: Checkout, name: str) -> None:
        self._co = checkout
        self._name = name
        #: the int keys of the checkout's row table of this arrayset, once
        #: built (see :meth:`hangar_git.payloads.PayloadAccess.row_table`)
        self._table: dict[int, np.ndarray] | np.ndarray | None = None

    @property
    def checkout(self) -> Checkout:
        """The checkout this accessor belongs to."""
        return self._co

    # ---- schema properties -----------------------------------------------
    #: (view, staged state of the arrayset, schema) of the last look-up
    _schema_memo: tuple[object, object, ArraysetSchema] | None = None

    @property
    def _schema(self) -> ArraysetSchema:
        co = self._co
        co.check_open()
        view = co.view
        journal = getattr(view, "journal", None)
        st = journal.asets.get(self._name) if journal is not None else None
        memo = self._schema_memo
        # the staged state object of an arrayset is replaced whenever it is
        # created or removed, and the view whenever the base commit changes
        if memo is not None and memo[0] is view and memo[1] is st:
            return memo[2]
        if not view.has_aset(self._name):
            from .errors import ClosedError

            raise ClosedError(f"arrayset {self._name!r} was removed from this checkout")
        schema = view.schema(self._name)
        self._schema_memo = (view, st, schema)
        return schema

    @property
    def name(self) -> str:
        """Name of the arrayset."""
        return self._name

    @property
    def dtype(self) -> np.dtype:
        """dtype of every sample."""
        return self._schema.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of every sample (maximum shape when ``variable_shape``)."""
        return self._schema.shape

    @property
    def variable_shape(self) -> bool:
        """True when samples may be smaller than ``shape`` in any dimension."""
        return self._schema.variable_shape

    @property
    def named_samples(self) -> bool:
        """True when samples are added under names the user gives."""
        return self._schema.named_samples

    @property
    def schema_hash(self) -> str:
        """Short hash of the schema."""
        return self._schema.schema_hash

    @property
    def iswriteable(self) -> bool:
        """True for the accessor of a write-enabled checkout."""
        return False

    @property
    def backend(self) -> str:
        """The local storage backend (not part of history)."""
        return "packs"

    # ---- reading -----------------------------------------------------------
    def _digest(self, key: object) -> tuple[str, bytes]:
        enc = encode_key(key)
        d = self._co.view.get(self._name, enc)
        if d is None:
            raise KeyError(key)
        return enc, d

    def __contains__(self, key: object) -> bool:
        """``key in aset``: whether a sample is stored under ``key``."""
        self._co.check_open()
        if not is_key_like(key):
            return False
        try:
            enc = encode_key(key)
        except ValueError:
            return False
        return self._co.view.get(self._name, enc) is not None

    def __len__(self) -> int:
        """The number of samples."""
        self._co.check_open()
        return self._co.view.count(self._name)

    def __iter__(self) -> Iterator[Key]:
        """The sample keys (see :meth:`keys`)."""
        return self.keys()

    def __getitem__(self, key: Any) -> np.ndarray:
        """``aset[key]``: the sample (see :meth:`get`); ``aset[key, idx...]`` a
        read-only copy of ``aset[key][idx...]``, reading only what it needs."""
        if type(key) is int and key >= 0:  # the hot path of get(), inlined
            table = self._table
            if table is not None:  # every int key of a read checkout's arrayset
                # (no look at whether the checkout is closed: closing it turns
                # this accessor into a stale handle, see hangar_git.handles)
                try:  # a dict by key, or the stacked rows when the keys are 0 .. n-1
                    return table[key].copy()
                except (KeyError, IndexError, OverflowError):  # past int64: not a row
                    raise KeyError(key) from None
            co = self._co
            if co.closed:
                co.check_open()
            # (a read checkout's tables stay as they are built)
            table = self._table = co.payloads.int_rows.get(self._name)
            if table is None:  # its first read: the table, when cheap to build
                table = self._table = co.payloads.first_rows(self._name)
            if table is not None:
                return self[key]
            enc = f"i:{key}"
            d = co.view.get(self._name, enc)
            if d is None:
                raise KeyError(key)
            return co.payloads.read(self._name, enc, d)
        if type(key) is tuple:
            if not key:
                raise KeyError(key)
            return self._get_region(key[0], key[1:])
        return self.get(key)

    def _locate(self, name: Key) -> tuple[str, bytes]:
        """``(encoded key, digest)`` of sample ``name``; KeyError when absent."""
        co = self._co
        if co.closed:
            co.check_open()
        enc = f"i:{name}" if type(name) is int and name >= 0 else encode_key(name)
        d = co.view.get(self._name, enc)
        if d is None:
            raise KeyError(name)
        return enc, d

    def _get_region(self, name: Key, index: tuple) -> Any:
        """``self.get(name)[index]`` as a read-only copy (a scalar when every
        axis is an int); of a large payload only the chunks it touches are read."""
        enc, d = self._locate(name)
        view = self._co.payloads.read_region(self._name, enc, d, index)
        if isinstance(view, np.ndarray):
            view.flags.writeable = False
        return view

    def get(self, name: Key) -> np.ndarray:
        """The sample stored under ``name``.

        Parameters
        ----------
        name : str or int
            The sample's key.

        Returns
        -------
        numpy.ndarray
            The sample, of the arrayset's dtype.

        Raises
        ------
        KeyError
            If the arrayset holds no such sample.
        MissingPayloadError
            If the sample's payload is not on this machine (fetch it first).
        """
        enc, d = self._locate(name)
        return self._co.payloads.read(self._name, enc, d)

    def get_batch(
        self, names: Iterable[Key], *, n_cpus: int | None = None, start_method: str = "spawn"
    ) -> list[np.ndarray]:
        """The samples stored under ``names``, in order, read in one pass.

        Payloads that share a storage block are decompressed once.

        Parameters
        ----------
        names : iterable of str or int
            Sample keys (a sequence, not a single key).
        n_cpus : int, optional
            Accepted for compatibility (a positive int); no process pool is used.
        start_method : str, optional
            Accepted for compatibility; unused.

        Returns
        -------
        list of numpy.ndarray
            One array per key, in the order of ``names``.

        Raises
        ------
        KeyError
            If the arrayset holds no sample under one of ``names``.
        MissingPayloadError
            If a sample's payload is not on this machine (fetch it first).
        """
        self._co.check_open()
        if n_cpus is not None and (not isinstance(n_cpus, int) or n_cpus < 1):
            raise ValueError(f"n_cpus must be a positive int, not {n_cpus!r}")
        if isinstance(names, (str, int)):
            raise TypeError("get_batch takes a sequence of keys; use get() for one key")
        names = list(names)
        encs = [f"i:{k}" if type(k) is int and k >= 0 else encode_key(k) for k in names]
        digests = self._co.view.get_many(self._name, encs)
        if None in digests:
            raise KeyError(names[digests.index(None)])
        return self._co.payloads.read_batch(self._name, digests, encs)  # type: ignore[arg-type]

    def read_into(self, names: Iterable[Key], out: np.ndarray) -> np.ndarray:
        """Read the samples stored under ``names`` into the rows of ``out``, in
        order: ``out[i]`` gets sample ``names[i]``, with no list of arrays built.

        The fastest bulk read: each storage block is read once and its
        payloads copied straight into ``out``.

        Parameters
        ----------
        names : iterable of keys
            Sample keys (a sequence, not a single key).
        out : numpy.ndarray
            A writeable array of ``len(names)`` rows, each of a sample's shape
            and the arrayset's dtype, e.g. ``np.empty((len(names), *aset.shape),
            aset.dtype)``.

        Returns
        -------
        numpy.ndarray
            ``out``.

        Raises
        ------
        KeyError
            If the arrayset holds no sample under one of ``names`` (``out`` is
            then untouched).
        ValueError
            If ``out`` has not one row per key, is read-only, or a sample's
            shape or dtype differs from a row of ``out``.
        MissingPayloadError
            If a sample's payload is not on this machine (fetch it first).
        """
        self._co.check_open()
        if isinstance(names, (str, int)):
            raise TypeError("read_into takes a sequence of keys")
        if not isinstance(out, np.ndarray) or out.ndim < 1:
            raise TypeError(f"out must be a numpy array with one row per key, not {type(out)}")
        if type(names) is not range:
            names = list(names)
        if len(out) != len(names):
            raise ValueError(f"out has {len(out)} rows for {len(names)} keys")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        s = self._schema
        if out.dtype != s.dtype or (not s.variable_shape and out.shape[1:] != s.shape):
            raise ValueError(
                f"out rows are {out.shape[1:]} {out.dtype}; samples of {self._name!r} "
                f"are {s.shape} {s.dtype}"
            )
        if type(names) is range and names.start >= 0 and names.step > 0:
            if self._co.payloads.read_range_into(self._name, names, out):
                return out  # keys 0 .. n-1 of a commit: digests taken by position
            encs = [f"i:{k}" for k in names]  # no per-key type checks
        else:
            encs = [f"i:{k}" if type(k) is int and k >= 0 else encode_key(k) for k in names]
        digests = self._co.view.get_many(self._name, encs)
        if None in digests:
            raise KeyError(names[digests.index(None)])
        self._co.payloads.read_into(self._name, digests, encs, out)  # type: ignore[arg-type]
        return out

    def keys(self) -> Iterator[Key]:
        """Every sample key (a snapshot taken when iteration starts).

        Returns
        -------
        Iterator of str or int
            The keys, in record order.
        """
        self._co.check_open()
        encs = [e for e, _ in self._co.view.iter_items(self._name)]
        return (decode_key(e) for e in encs)

    def _batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:  # about 32 MiB of samples per batch
            s = self._schema
            nbytes = s.dtype.itemsize * int(np.prod(s.shape, dtype=np.int64))
            return max(1, (32 << 20) // max(1, nbytes))  # one at least: samples may be huge
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        return batch_size

    def values(self, batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Every sample array in record order, read in batches: the fastest way to read all.

        Parameters
        ----------
        batch_size : int, optional
            Samples read per batch (default: about 32 MiB of them).

        Returns
        -------
        Iterator of numpy.ndarray
            The samples, in the order of :meth:`keys`.
        """
        self._co.check_open()
        size = self._batch_size(batch_size)
        return itertools.chain.from_iterable(self._value_batches(size))

    def _value_batches(self, size: int) -> Iterator[list[np.ndarray]]:
        self._co.check_open()
        digests = self._co.view.digests(self._name)
        for i in range(0, len(digests), size):
            yield self._co.payloads.read_batch(self._name, digests[i : i + size])

    def items(self, batch_size: int | None = None) -> Iterator[tuple[Key, np.ndarray]]:
        """Every ``(key, array)`` pair, read in batches as :meth:`values` does.

        Parameters
        ----------
        batch_size : int, optional
            Samples read per batch (default: about 32 MiB of them).

        Yields
        ------
        tuple of (str or int, numpy.ndarray)
            Each key and its sample, in record order.
        """
        self._co.check_open()
        size = self._batch_size(batch_size)
        pairs = list(self._co.view.iter_items(self._name))
        for i in range(0, len(pairs), size):
            chunk = pairs[i : i + size]
            encs = [e for e, _ in chunk]
            arrays = self._co.payloads.read_batch(self._name, [d for _, d in chunk], encs)
            yield from zip([decode_key(e) for e in encs], arrays, strict=True)

    # ---- the fast form, and other processes ---------------------------------
    def __enter__(self) -> ArraysetDataReader:
        """``with aset:`` before a read loop: the arrayset is decoded once
        (up to 128 MiB of samples per checkout, in arraysets of up to about
        262k samples; see :meth:`hangar_git.payloads.PayloadAccess.row_table`),
        so each ``get`` in the block is a dict look-up and a copy; otherwise
        the index entries of every sample are resolved at once, and each
        ``get`` is a dict look-up and a block read."""
        co = self._co
        co.check_open()
        co.payloads.prepare_reads(self._name)
        return self

    def __exit__(self, *exc: object) -> None:
        """End the ``with aset:`` block (what was resolved stays valid)."""
        pass  # what was resolved stays valid: the commit never changes

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support: the accessor of a read checkout (and so its bound
        ``get``) can be sent to another process, a ``spawn`` pool's included;
        it reopens the same commit there."""
        co = self._co
        co.check_open()
        if co.view.writeable:
            raise TypeError(
                "the arraysets of a write-enabled checkout cannot be sent to another "
                "process; read from a read-only checkout there"
            )
        return (_reader_accessor, (co, self._name))

    # ---- locality -------------------------------------------------------
    @property
    def contains_remote_references(self) -> bool:
        """True when some samples' payloads are not stored on this machine."""
        return bool(self.remote_reference_sample_keys)

    @property
    def remote_reference_sample_keys(self) -> list[Key]:
        """Keys of samples whose payloads are not stored on this machine."""
        self._co.check_open()
        pairs = list(self._co.view.iter_items(self._name))
        missing = self._co.payloads.missing({d for _, d in pairs})
        return [decode_key(e) for e, d in pairs if d in missing]

    def __repr__(self) -> str:
        s = self._schema
        return (
            f"Hangar {type(self).__name__} \n"
            f"    Arrayset Name            : {self._name}\n"
            f"    Schema Hash              : {s.schema_hash}\n"
            f"    Variable Shape           : {s.variable_shape}\n"
            f"    (max) Shape              : {s.shape}\n"
            f"    Datatype                 : {s.dtype.type}\n"
            f"    Named Samples            : {s.named_samples}\n"
            f"    Access Mode              : {'a' if self.iswriteable else 'r'}\n"
            f"    Number of Samples        : {len(self)}\n"
            f"    Partial Remote Data Refs : {self.contains_remote_references}\n"
        )


def _reader_accessor(checkout: Any, name: str) -> ArraysetDataReader:
    """The accessor of arrayset ``name`` of an unpickled read checkout."""
    return checkout.arraysets[name]  # type: ignore[no-any-return]


__all__ = ["ArraysetDataReader"]
