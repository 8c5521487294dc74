"""Arraysets: named collections of arrays sharing a schema, and their samples.

``ArraysetDataReader`` and ``ArraysetDataWriter`` are the dict-like
accessors of one arrayset's samples; the container a checkout exposes as
``co.arraysets`` is :class:`hangar_git.arraysets.Arraysets`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MissingPayloadError
from .naming import Key, decode_key, encode_key, is_key_like
from .schema import ArraysetSchema
from .store import Payload, chunked, payload_from_array
from .store.digest import digest_prefix, kind_of

if TYPE_CHECKING:
    from .checkout import Checkout, WriterCheckout


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
        self._table: dict[int, np.ndarray] | None = None

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
            co = self._co
            if co.closed:
                co.check_open()
            table = self._table
            if table is None:  # (a read checkout's tables stay as they are built)
                table = self._table = co.payloads.int_rows.get(self._name)
            if table is not None:  # every int key of a read checkout's arrayset
                got = table.get(key)
                if got is None:
                    raise KeyError(key)
                return got.copy()
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


class ArraysetDataWriter(ArraysetDataReader):
    """Read and write access to the samples of one arrayset.

    ``with aset:`` (or ``with aset1, aset2:``) batches the work inside the
    block: payloads and records are written together when the block ends,
    which is much faster than one durable write per ``add``. Samples added
    in a block are durable once the block has exited.
    """

    _co: WriterCheckout  # only the write checkout hands out writers
    _kind: tuple[ArraysetSchema, str, Any] | None = None

    @property
    def iswriteable(self) -> bool:
        """True: this accessor belongs to a write-enabled checkout."""
        return True

    def __enter__(self) -> ArraysetDataWriter:
        """Batch the writes of a ``with`` block: payloads are flushed once, at its end."""
        self._co.check_open()
        self._co.begin_batch()
        return self

    def __exit__(self, *exc: object) -> None:
        """End the batch: flush what it staged (discarded if the store failed)."""
        self._co.end_batch(exc[1])  # type: ignore[arg-type]

    def _gen_key(self) -> str:
        return uuid.uuid4().hex

    def add(self, data: np.ndarray, name: Key | None = None, **kwargs: Any) -> Key:
        """Store ``data`` as a sample under ``name`` (generated if unnamed).

        Parameters
        ----------
        data : numpy.ndarray
            The sample: the arrayset's dtype and shape (or, variable-shape, a
            shape that fits it), C-contiguous.
        name : str or int, optional
            Its key: required for named arraysets, not allowed for unnamed ones.
        **kwargs
            None accepted (a TypeError names any given).

        Returns
        -------
        str or int
            The key: ``name``, or the one generated.

        Raises
        ------
        ValueError
            If ``data`` does not fit the schema (type, dtype, shape, rank,
            layout) or the name is invalid or missing for a named arrayset.
        """
        co = self._co
        schema = self._schema  # raises ClosedError once the checkout is closed
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
        if name is None:
            if schema.named_samples:
                raise ValueError(f"arrayset {self._name!r} needs a name for every sample")
            name = self._gen_key()
        elif not schema.named_samples:
            raise ValueError(f"arrayset {self._name!r} has unnamed samples; do not pass a name")
        enc = f"i:{name}" if type(name) is int and name >= 0 else encode_key(name)
        arr = schema.validate(data)
        if arr.nbytes >= chunked.THRESHOLD:  # hashed while its file is written
            co.stage_large(self._name, enc, arr)
        else:
            co.stage_sample(self._name, enc, self._payload(schema, arr))
        return name

    def _payload(self, schema: ArraysetSchema, arr: np.ndarray) -> Payload:
        """:func:`payload_from_array`, the kind (and its hash state) of fixed shapes cached."""
        if schema.variable_shape or not arr.ndim:
            return payload_from_array(arr)
        cached = self._kind
        if cached is None or cached[0] is not schema:
            kind = kind_of(arr)
            cached = self._kind = (schema, kind, digest_prefix(kind))
        data = arr.tobytes()  # a copy: the caller may refill its array before the block ends
        h = cached[2].copy()
        h.update(data)
        return tuple.__new__(Payload, (h.digest(), cached[1], data))  # type: ignore[return-value]

    def __setitem__(self, key: Key, value: np.ndarray) -> None:
        """``aset[key] = array``: store a sample (see :meth:`add`)."""
        self.add(value, key)

    def update(self, mapping: Mapping[Key, np.ndarray] | None = None, /, **kw: np.ndarray) -> None:
        """Add many samples at once: ``{key: array}`` (and ``key=array`` keywords).

        The bulk form of ``aset[key] = array``: every array is checked first
        (a bad one raises and stages nothing), then all are digested, written
        and logged in vectorised runs, durable when the call returns (or when
        an enclosing ``with aset:`` block ends). A key given both in
        ``mapping`` and as a keyword takes the keyword's array, as in
        :meth:`dict.update`.

        Parameters
        ----------
        mapping : Mapping of (str or int) to numpy.ndarray, optional
            Key -> sample (positional only).
        **kw : numpy.ndarray
            More samples, under str keys.

        Raises
        ------
        TypeError
            If ``mapping`` is not a mapping.
        ValueError
            If a key is invalid, an array does not fit the schema, or the
            arrayset has unnamed samples.
        """
        if mapping is not None and not isinstance(mapping, Mapping):
            raise TypeError(f"update takes a mapping of key -> array, not {type(mapping).__name__}")
        co = self._co
        schema = self._schema  # raises ClosedError once the checkout is closed
        # a plain dict is only read: no copy of it
        items: Mapping[Any, Any] = (
            mapping if not kw and type(mapping) is dict else {**(mapping or {}), **kw}
        )
        if not items:
            return
        if not schema.named_samples:
            raise ValueError(
                f"arrayset {self._name!r} has unnamed samples; add them with add() or add_stacked()"
            )
        encs, _ = _encode_keys(list(items))
        vals = list(items.values())
        if schema.dtype.itemsize * int(np.prod(schema.shape)) >= chunked.THRESHOLD:
            # large samples: staged one by one (no stacked copy), hashed on every core
            co.stage_arrays(self._name, encs, [schema.validate(v) for v in vals])
            return
        groups: list[tuple[list[str], np.ndarray]]
        nd, dt, shape = np.ndarray, schema.dtype, schema.shape
        if not schema.variable_shape and all(
            type(v) is nd and v.dtype == dt and v.shape == shape and v.flags.c_contiguous
            for v in vals
        ):  # the common case, checked without a call per array
            groups = [(encs, np.frombuffer(b"".join(vals), dt).reshape(len(vals), *shape))]
        else:
            arrs = [schema.validate(v) for v in vals]  # raises the error that fits
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, a in enumerate(arrs):
                by_shape.setdefault(a.shape, []).append(i)
            groups = [
                ([encs[i] for i in idx], np.stack([arrs[i] for i in idx]))
                for idx in by_shape.values()
            ]
        co.begin_batch()
        try:
            for g_encs, rows in groups:
                co.stage_stacked(self._name, g_encs, rows)
        except BaseException as exc:
            co.end_batch(exc)
            raise
        co.end_batch()

    def add_stacked(self, data: np.ndarray, names: Sequence[Key] | None = None) -> list[Key]:
        """Add each row of a stacked array: ``data[i]`` under ``names[i]``.

        The fastest way to add many samples of one shape: ``data`` has shape
        ``(n, *sample_shape)`` (``sample_shape`` is the arrayset's shape, or
        for a variable-shape arrayset any shape that fits it), and the rows
        are digested, written and logged in vectorised runs straight from
        its buffer. Everything is checked before anything is staged; the
        samples are durable when the call returns (or when an enclosing
        ``with aset:`` block ends).

        Parameters
        ----------
        data : numpy.ndarray
            The stacked samples, of the arrayset's dtype.
        names : sequence of str or int, optional
            One distinct key per row (a list, a ``range``, or a 1-D numpy
            integer array). Required for named arraysets; not allowed for
            unnamed ones, whose keys are generated.

        Returns
        -------
        list
            The keys, in row order.

        Raises
        ------
        ValueError
            If ``data`` is not an ndarray of the arrayset's dtype and sample
            shape, the names are missing, invalid, repeated or not one per
            row, or names are given for an unnamed arrayset.
        """
        co = self._co
        schema = self._schema  # raises ClosedError once the checkout is closed
        if not isinstance(data, np.ndarray) or isinstance(data, np.matrix):
            raise ValueError(f"data must be a numpy.ndarray, not {type(data).__name__}")
        if data.ndim != len(schema.shape) + 1:
            raise ValueError(
                f"stacked data of shape {data.shape} must have one dimension more than the "
                f"arrayset's samples {schema.shape}: (n_samples, *sample_shape)"
            )
        if data.dtype != schema.dtype:
            raise ValueError(
                f"sample dtype {data.dtype} does not match the arrayset dtype {schema.dtype}"
            )
        n = len(data)
        if names is None:
            if schema.named_samples:
                raise ValueError(f"arrayset {self._name!r} needs a name for every sample")
            keys: list[Any] = [self._gen_key() for _ in range(n)]
        elif not schema.named_samples:
            raise ValueError(f"arrayset {self._name!r} has unnamed samples; do not pass names")
        elif isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
            raise ValueError(f"names must be a sequence of keys, not {type(names).__name__}")
        elif isinstance(names, np.ndarray):
            if names.ndim != 1 or names.dtype.kind not in "iu":
                raise ValueError("names given as a numpy array must be 1-D integers")
            keys = names.tolist()
        else:
            keys = list(names)
        if len(keys) != n:
            raise ValueError(f"{n} rows but {len(keys)} names")
        if not n:
            return []
        if data.shape[1:] != schema.shape or schema.variable_shape:
            schema.validate(np.array(data[0]))  # the shape checks of add()
        encs, ints = _encode_keys(keys)
        if len(set(keys) if ints else set(encs)) != n:  # ints: one encoding each, cheaper
            seen: set[str] = set()
            dup = next(e for e in encs if e in seen or seen.add(e))  # type: ignore[func-returns-value]
            raise ValueError(f"key {decode_key(dup)!r} appears more than once in names")
        co.stage_stacked(self._name, encs, np.ascontiguousarray(data))
        return keys

    def remove(self, name: Key) -> Key:
        """Remove the sample ``name`` from the staging area.

        Removing the last sample removes the arrayset too (as the reference
        does): this accessor then raises ClosedError, and the arrayset must
        be created again with ``init_arrayset`` before adding to it.

        Parameters
        ----------
        name : str or int
            The sample's key.

        Returns
        -------
        str or int
            ``name``.

        Raises
        ------
        KeyError
            If the arrayset holds no such sample.
        """
        co = self._co
        co.check_open()
        enc, _ = self._digest(name)
        co.unstage_sample(self._name, enc)
        if co.view.count(self._name) == 0:
            co.stage_remove_aset(self._name)
        return name

    def __delitem__(self, key: Key) -> None:
        """``del aset[key]``: remove a sample (see :meth:`remove`)."""
        self.remove(key)


def _reader_accessor(checkout: Any, name: str) -> ArraysetDataReader:
    """The accessor of arrayset ``name`` of an unpickled read checkout."""
    return checkout.arraysets[name]  # type: ignore[no-any-return]


def _encode_keys(keys: list[Any]) -> tuple[list[str], bool]:
    """:func:`encode_key` of each of ``keys`` (ValueError naming the first bad one),
    and whether they are all non-negative ``int``."""
    if keys and set(map(type, keys)) == {int} and min(keys) >= 0:  # one C pass
        return ["i:" + str(k) for k in keys], True
    return [f"i:{k}" if type(k) is int and k >= 0 else encode_key(k) for k in keys], False


__all__ = ["ArraysetDataReader", "ArraysetDataWriter", "MissingPayloadError"]
