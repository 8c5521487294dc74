"""``co.arraysets``: the dict-like container of a checkout's arraysets.

:class:`Arraysets` creates and removes arraysets and hands out their
accessors (:mod:`hangar_git.arrayset`), one per name, which go stale with
the checkout; :class:`ReaderArraysets` is the read-only checkout's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

import numpy as np

from .arrayset import ArraysetDataReader, ArraysetDataWriter
from .naming import Key, check_arrayset_name, encode_key
from .schema import ArraysetSchema, check_dtype, check_shape
from .store import payload_from_array

if TYPE_CHECKING:
    from .checkout import Checkout, WriterCheckout

_BACKENDS = (None, "packs")
_READ_ONLY = "this is a read-only checkout; open one with write=True"


class Arraysets:
    """The arraysets of a checkout: a dict-like container of accessors.

    ``co.arraysets[name]`` is the accessor of an arrayset; ``with
    co.arraysets:`` batches the writes of several arraysets into one flush.
    A checkout makes its own: reach it as ``co.arraysets``.

    Parameters
    ----------
    checkout : Checkout
        The checkout whose records and payloads these arraysets read (and,
        for a write checkout, stage).
    """

    def __init__(self, checkout: Checkout) -> None:
        self._co = checkout
        self._accessors: dict[str, Any] = {}

    @property
    def iswriteable(self) -> bool:
        """True for the arraysets of a write-enabled checkout."""
        self._co.check_open()
        return self._co.view.writeable

    def _accessor(self, name: str) -> Any:
        """The accessor of arrayset ``name`` (one per name, stale when the checkout closes)."""
        acc = self._accessors.get(name)
        if acc is None:
            cls = ArraysetDataWriter if self._co.view.writeable else ArraysetDataReader
            acc = self._accessors[name] = self._co.hand_out(cls(self._co, name))
        return acc

    def __contains__(self, name: object) -> bool:
        """``name in co.arraysets``: whether an arrayset of that name exists."""
        self._co.check_open()
        return isinstance(name, str) and self._co.view.has_aset(name)

    def __len__(self) -> int:
        """The number of arraysets."""
        self._co.check_open()
        return len(self._co.view.aset_names())

    def __iter__(self) -> Iterator[str]:
        """The arrayset names, sorted."""
        return iter(self.keys())

    def __getitem__(self, name: str) -> Any:
        """``co.arraysets[name]``: the accessor of arrayset ``name`` (see :meth:`get`)."""
        return self.get(name)

    def get(self, name: str) -> Any:
        """The accessor of arrayset ``name``.

        Parameters
        ----------
        name : str
            The arrayset.

        Returns
        -------
        ArraysetDataWriter or ArraysetDataReader
            The writer's accessor in a write checkout, else the reader's; the
            same object every time for a name.

        Raises
        ------
        KeyError
            If no arrayset of that name exists.
        """
        self._co.check_open()
        if not isinstance(name, str) or not self._co.view.has_aset(name):
            raise KeyError(name)
        return self._accessor(name)

    def __setitem__(self, key: object, value: object) -> None:
        """Refused: raises PermissionError (create arraysets with :meth:`init_arrayset`)."""
        raise PermissionError("arraysets cannot be set with []: create one with init_arrayset()")

    def __delitem__(self, name: str) -> str:
        """``del co.arraysets[name]``: remove the arrayset (see :meth:`remove_aset`);
        returns ``name``."""
        return self.remove_aset(name)

    def keys(self) -> list[str]:
        """The arrayset names.

        Returns
        -------
        list of str
            Sorted.
        """
        self._co.check_open()
        return self._co.view.aset_names()

    def values(self) -> Iterator[Any]:
        """The accessor of each arrayset, in name order.

        Yields
        ------
        ArraysetDataWriter or ArraysetDataReader
        """
        for name in self.keys():
            yield self._accessor(name)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Each arrayset's name and accessor, in name order.

        Yields
        ------
        tuple of (str, ArraysetDataWriter or ArraysetDataReader)
        """
        for name in self.keys():
            yield name, self._accessor(name)

    def __enter__(self) -> Arraysets:
        """Batch the writes of a ``with`` block: payloads are flushed once, at its end."""
        self._co.check_open()
        self._co.begin_batch()
        return self

    def __exit__(self, *exc: object) -> None:
        """End the batch: flush what it staged (discarded if the store failed)."""
        self._co.end_batch(exc[1])  # type: ignore[arg-type]

    @property
    def contains_remote_references(self) -> dict[str, bool]:
        """Per arrayset, True when some payloads are not on this machine."""
        return {n: a.contains_remote_references for n, a in self.items()}

    @property
    def remote_sample_keys(self) -> dict[str, list[Key]]:
        """Per arrayset, the keys of samples whose payloads are remote."""
        return {n: a.remote_reference_sample_keys for n, a in self.items()}

    def _require_writer(self) -> WriterCheckout:
        """The write checkout these arraysets belong to (PermissionError for a reader)."""
        self._co.check_open()
        if not self._co.view.writeable:
            raise PermissionError(_READ_ONLY)
        return cast("WriterCheckout", self._co)

    def init_arrayset(
        self,
        name: str,
        shape: int | tuple[int, ...] | None = None,
        dtype: Any = None,
        prototype: np.ndarray | None = None,
        named_samples: bool = True,
        variable_shape: bool = False,
        *,
        backend: str | None = None,
    ) -> ArraysetDataWriter:
        """Create an arrayset from a ``prototype`` array or ``shape`` + ``dtype``.

        The arrayset is staged (committed with the next commit); its samples
        all have the dtype, and the shape (or, variable-shape, at most the
        shape) given here.

        Parameters
        ----------
        name : str
            The arrayset's name: 1-200 ASCII letters, digits, ``-``, ``.``, ``_``.
        shape : int or tuple of int, optional
            Shape of every sample (with ``variable_shape``: the maximum size of
            each dimension). Give it with ``dtype``, or give ``prototype``.
        dtype : numpy dtype-like, optional
            dtype of every sample.
        prototype : numpy.ndarray, optional
            A C-contiguous array whose shape and dtype the samples have.
        named_samples : bool, optional
            True (default): each sample is added under a key of the caller's;
            False: :meth:`~hangar_git.arrayset.ArraysetDataWriter.add` makes
            one up.
        variable_shape : bool, optional
            Samples may be smaller than ``shape`` in any dimension (same rank).
        backend : {None, 'packs'}, optional
            Where payloads are stored; only the pack store exists.

        Returns
        -------
        ArraysetDataWriter
            The new arrayset's accessor.

        Raises
        ------
        ValueError
            Invalid name, missing or conflicting shape/dtype/prototype, a
            prototype that is not a C-contiguous ndarray, rank > 31, a zero
            dimension, an unsupported dtype, or an unknown backend.
        LookupError
            If an arrayset of that name exists.
        """
        co = self._require_writer()
        check_arrayset_name(name)
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: packs")
        if prototype is not None:
            if shape is not None or dtype is not None:
                raise ValueError("give either prototype, or shape and dtype, not both")
            if not isinstance(prototype, np.ndarray):
                raise ValueError("prototype must be a numpy.ndarray")
            if not prototype.flags.c_contiguous:
                raise ValueError("prototype must be a C-contiguous array")
            shape, dtype = prototype.shape, prototype.dtype
        elif shape is None or dtype is None:
            raise ValueError("init_arrayset needs a prototype, or both shape and dtype")
        if not isinstance(named_samples, bool) or not isinstance(variable_shape, bool):
            raise ValueError("named_samples and variable_shape must be bool")
        schema = ArraysetSchema(
            check_dtype(dtype), check_shape(shape), variable_shape, named_samples
        )
        if co.view.has_aset(name):
            raise LookupError(f"an arrayset named {name!r} already exists")
        co.stage_schema(name, schema)
        return self._accessor(name)  # type: ignore[no-any-return]

    def remove_aset(self, aset_name: str) -> str:
        """Remove arrayset ``aset_name`` and its samples from the staging area.

        Parameters
        ----------
        aset_name : str
            The arrayset.

        Returns
        -------
        str
            ``aset_name``.

        Raises
        ------
        KeyError
            If no arrayset of that name exists.
        PermissionError
            In a read-only checkout.
        """
        co = self._require_writer()
        if not isinstance(aset_name, str) or not co.view.has_aset(aset_name):
            raise KeyError(aset_name)
        co.stage_remove_aset(aset_name)
        return aset_name

    def multi_add(self, mapping: Mapping[str, np.ndarray]) -> str:
        """Add one sample to each of several unnamed arraysets under one new key.

        Every array is checked against its arrayset before anything is staged.

        Parameters
        ----------
        mapping : Mapping of str to numpy.ndarray
            Arrayset name -> the sample to add to it; the arraysets must have
            been made with ``named_samples=False``.

        Returns
        -------
        str
            The key the samples were added under (the same in each arrayset).

        Raises
        ------
        KeyError
            If an arrayset does not exist.
        ValueError
            An empty mapping, an arrayset with named samples, or an array
            that does not fit its arrayset's schema.
        PermissionError
            In a read-only checkout.
        """
        co = self._require_writer()
        if not isinstance(mapping, Mapping) or not mapping:
            raise ValueError("multi_add takes a non-empty mapping of arrayset name -> array")
        key = uuid.uuid4().hex
        staged = []
        for name, data in mapping.items():
            if not isinstance(name, str) or not co.view.has_aset(name):
                raise KeyError(name)
            schema = co.view.schema(name)
            if schema.named_samples:
                raise ValueError(f"arrayset {name!r} has named samples; multi_add is for unnamed")
            staged.append((name, payload_from_array(schema.validate(data))))
        co.begin_batch()
        try:
            for name, p in staged:
                co.stage_sample(name, encode_key(key), p)
        except BaseException as exc:
            co.end_batch(exc)
            raise
        co.end_batch()
        return key

    def __repr__(self) -> str:
        lines = [
            "Hangar Arraysets",
            f"    Writeable: {self.iswriteable}",
            "    Arrayset Names / Partial Remote References:",
        ]
        for name, remote in self.contains_remote_references.items():
            lines.append(f"      - {name} / {remote}")
        return "\n".join(lines) + "\n"


class ReaderArraysets(Arraysets):
    """The arraysets of a read-only checkout.

    As in Hangar 0.2, ``init_arrayset``, ``remove_aset`` and ``multi_add``
    are None here (calling them raises TypeError), and ``del`` raises
    PermissionError, as the reference says.
    """

    init_arrayset = None  # type: ignore[assignment]
    remove_aset = None  # type: ignore[assignment]
    multi_add = None  # type: ignore[assignment]

    def __delitem__(self, name: str) -> NoReturn:
        """Refused: raises PermissionError (this is a read-only checkout)."""
        self._co.check_open()
        raise PermissionError(_READ_ONLY)


__all__ = ["Arraysets", "ReaderArraysets"]
