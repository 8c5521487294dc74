"""Arraysets: named collections of arrays sharing a schema, and their samples.

``ArraysetDataReader`` (:mod:`hangar_git.arrayset_reader`, re-exported
here) and ``ArraysetDataWriter`` (here: adds, updates, bulk adds, removals)
are the dict-like accessors of one arrayset's samples; the container a
checkout exposes as ``co.arraysets`` is :class:`hangar_git.arraysets.Arraysets`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrayset_reader import ArraysetDataReader
from .errors import ClosedError, MissingPayloadError
from .held_rows import HOLD_BYTES
from .naming import INT_KEY_BOUND, Key, decode_key, encode_key
from .records.keynames import int_key_names
from .schema import ArraysetSchema
from .store import Payload, chunked, payload_from_array
from .store.digest import digest_prefix, kind_of
from .store.packs import BLOCK_TARGET

if TYPE_CHECKING:
    from .checkout import WriterCheckout
    from .held_rows import HeldRows

_NDARRAY = np.ndarray  # (one global look-up in __setitem__, not two)


class ArraysetDataWriter(ArraysetDataReader):
    """Read and write access to the samples of one arrayset.

    ``with aset:`` (or ``with aset1, aset2:``) batches the work inside the
    block: payloads and records are written together when the block ends,
    which is much faster than one durable write per ``add``. Samples added
    in a block are durable once the block has exited.
    """

    _co: WriterCheckout  # only the write checkout hands out writers
    _kind: tuple[ArraysetSchema, str, Any] | None = None
    #: (staged view, staged state of the arrayset, schema) of the last look-up
    _wmemo: tuple[object, object, ArraysetSchema] | None = None
    #: the samples of this named arrayset the checkout holds (see ``__setitem__``)
    _hold: HeldRows | None = None

    @property
    def _schema(self) -> ArraysetSchema:
        # looked up in the staged view as it is: the samples a ``with`` block
        # holds change no schema, so they are not staged for it (the reader's
        # look-up reads ``co.view``, which stages them: a block setting two
        # arraysets would stage the first one's first sample on its own)
        co = self._co
        view = co.staged_view
        st = co.staged_state(self._name)
        memo = self._wmemo
        if memo is not None and memo[0] is view and memo[1] is st and not co.closed:
            return memo[2]
        co.check_open()
        if not view.has_aset(self._name):
            raise ClosedError(f"arrayset {self._name!r} was removed from this checkout")
        schema = view.schema(self._name)
        self._wmemo = (view, st, schema)
        return schema

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
        enc = f"i:{name}" if type(name) is int and 0 <= name < INT_KEY_BOUND else encode_key(name)
        arr = schema.validate(data)
        if co.batching and arr.nbytes < BLOCK_TARGET and arr.ndim and not schema.variable_shape:
            # held, staged in bulk with the others (a copy: the caller may refill its array)
            held_key = name if enc[0] == "i" and type(name) is int else enc  # see HeldRows
            co.hold_sample(self._name, held_key, arr.tobytes(), schema.dtype, schema.shape)
            self._hold = co.holding(self._name) if schema.named_samples else None
        elif arr.nbytes >= chunked.THRESHOLD:  # hashed while its file is written
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

    def __setitem__(self, key: Key, value: np.ndarray) -> Key:
        """``aset[key] = array``: store a sample (see :meth:`add`); returns ``key``."""
        held = self._hold
        # samples of this arrayset held since add() checked its schema (any change
        # to it stages them first): the checks of add() that remain, inlined
        if (
            held is not None
            and type(value) is _NDARRAY
            and held.live  # still the checkout's (else: staged, or dropped)
            and (value.dtype is held.dtype or value.dtype == held.dtype)
            and value.shape == held.shape
            and value.flags.c_contiguous
        ):
            if type(key) is int:
                if not 0 <= key < INT_KEY_BOUND:
                    return self.add(value, key)
                held.encs.append(key)  # encoded with the others (HeldRows.names)
            elif type(key) is str:
                held.encs.append(encode_key(key))  # Holding.hold_sample, inlined
            else:
                return self.add(value, key)
            buf = held.buf
            buf += value.tobytes()  # grows in place (HeldRows.buf)
            if len(buf) >= HOLD_BYTES:
                self._co.settle_held()
            return key
        return self.add(value, key)

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
        given: np.ndarray | None = None  # int keys given as a range or an array
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
            if names.dtype.itemsize < 8 or names.dtype == np.int64:  # the values, as int64
                given = names.astype(np.int64)
        else:
            keys = list(names)
            if type(names) is range and names.start >= 0 and names.step > 0:
                given = np.arange(names.start, names.stop, names.step, dtype=np.int64)
        if len(keys) != n:
            raise ValueError(f"{n} rows but {len(keys)} names")
        if not n:
            return []
        if data.shape[1:] != schema.shape or schema.variable_shape:
            schema.validate(np.array(data[0]))  # the shape checks of add()
        co.stage_stacked(self._name, _distinct_names(keys, given), np.ascontiguousarray(data))
        return keys

    def remove(self, name: Key) -> Key:
        """Remove the sample ``name`` from the staging area.

        Removing the last sample removes the arrayset too (as the reference
        does): this accessor's writes then raise ClosedError (its reads find
        no samples), and the arrayset must be created again with
        ``init_arrayset`` before adding to it.

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

    def __delitem__(self, key: Key) -> Key:
        """``del aset[key]``: remove a sample (see :meth:`remove`); returns ``key``."""
        return self.remove(key)


def _distinct_names(keys: list[Any], given: np.ndarray | None = None) -> Sequence[str]:
    """The encoded names of ``keys``, checked distinct (ValueError naming the
    first bad or repeated key). Non-negative ints are encoded in vectorised
    passes, as one array (:class:`.KeyNames`); ``given``, when not None, is
    ``keys`` as an int64 array already."""
    if given is not None or (keys and set(map(type, keys)) == {int}):
        ints = np.array(keys) if given is None else given
        if ints.dtype == np.int64 and ints.min() >= 0:
            ordered = np.sort(ints)
            if not (ordered[1:] == ordered[:-1]).any():
                return int_key_names(ints)
            # a repeated key: named below
    encs, ints_only = _encode_keys(keys)
    if len(set(keys) if ints_only else set(encs)) != len(keys):  # ints: one encoding each
        seen: set[str] = set()
        dup = next(e for e in encs if e in seen or seen.add(e))  # type: ignore[func-returns-value]
        raise ValueError(f"key {decode_key(dup)!r} appears more than once in names")
    return encs


def _encode_keys(keys: list[Any]) -> tuple[list[str], bool]:
    """:func:`encode_key` of each of ``keys`` (ValueError naming the first bad one),
    and whether they are all non-negative ``int``."""
    if keys and set(map(type, keys)) == {int} and min(keys) >= 0 and max(keys) < INT_KEY_BOUND:
        return ["i:" + str(k) for k in keys], True
    return [
        f"i:{k}" if type(k) is int and 0 <= k < INT_KEY_BOUND else encode_key(k) for k in keys
    ], False


__all__ = ["ArraysetDataReader", "ArraysetDataWriter", "MissingPayloadError"]
