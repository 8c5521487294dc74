"""Metadata: small str -> str labels stored with each commit.

Metadata is a minor key/value store beside the arraysets (labels, notes,
provenance), not a place for data: a value is an ASCII str of at most
:data:`MAX_VALUE_BYTES` (1 MiB). Larger values are refused on write with a
ValueError, and on read (a value fetched from elsewhere) with a
:class:`~hangar_git.errors.CorruptRecordError` before it is read. ``len``,
``keys`` and ``in`` never read values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .naming import Key, decode_key, encode_key
from .records.validate import MAX_META_VALUE

#: largest metadata value accepted, in bytes (ASCII: one byte a character)
MAX_VALUE_BYTES = MAX_META_VALUE

if TYPE_CHECKING:
    from .checkout import Checkout, WriterCheckout


def _check_value(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"metadata value must be str, not {type(value).__name__}")
    if not value.isascii():
        raise ValueError("metadata value must hold ASCII characters only")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(
            f"metadata value of {len(value)} bytes exceeds the limit of {MAX_VALUE_BYTES} "
            "bytes: metadata holds short labels; store large data in an arrayset"
        )
    return value


class MetadataReader:
    """Read access to the metadata of a checkout (dict-like, str -> str).

    Keys are str (letters, digits, ``-._``) or int >= 0. Reach it as
    ``co.metadata``.

    Parameters
    ----------
    checkout : Checkout
        The checkout whose metadata records are read.
    """

    def __init__(self, checkout: Checkout) -> None:
        self._co = checkout

    @property
    def iswriteable(self) -> bool:
        """True for the metadata of a write-enabled checkout."""
        return False

    def __enter__(self) -> MetadataReader:
        """``with co.metadata:`` (the reference's form for reads from threads).

        A read needs nothing held open here (values are read on demand and
        kept, safe to share between threads), so the block adds no work; on
        the write checkout it batches (see :class:`MetadataWriter`).
        """
        self._co.check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        """End the ``with co.metadata:`` block (nothing to release)."""
        pass

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(
            "metadata cannot be sent to another process: read the values first, "
            "or open a checkout in that process"
        )

    def _items(self) -> dict[str, str]:
        self._co.check_open()
        return self._co.view.meta()

    def _keys(self) -> list[str]:
        self._co.check_open()
        return self._co.view.meta_keys()

    def __contains__(self, key: object) -> bool:
        """``key in co.metadata``: whether a value is stored under ``key`` (none is read)."""
        try:
            enc = encode_key(key, "metadata")
        except ValueError:
            return False
        return enc in self._keys()

    def __len__(self) -> int:
        """The number of keys (no value is read)."""
        return len(self._keys())

    def __iter__(self) -> Iterator[Key]:
        """The keys (see :meth:`keys`)."""
        return self.keys()

    def __getitem__(self, key: Key) -> str:
        """``co.metadata[key]``: the value stored under ``key`` (see :meth:`get`)."""
        return self.get(key)

    def get(self, key: Key) -> str:
        """The value stored under ``key``.

        Parameters
        ----------
        key : str or int
            The metadata key.

        Returns
        -------
        str
            The value (ASCII).

        Raises
        ------
        ValueError
            If ``key`` is not a valid metadata key.
        KeyError
            If no value is stored under ``key``.
        """
        enc = encode_key(key, "metadata")
        self._co.check_open()
        value = self._co.view.meta_get(enc)
        if value is None:
            raise KeyError(key)
        return value

    def keys(self) -> Iterator[Key]:
        """Every key (no value is read).

        Returns
        -------
        Iterator of str or int
            The keys, in record order.
        """
        return (decode_key(k) for k in self._keys())

    def values(self) -> Iterator[str]:
        """Every value, in the order of :meth:`keys`.

        Returns
        -------
        Iterator of str
            The values, all read when the call is made.
        """
        return iter(list(self._items().values()))

    def items(self) -> Iterator[tuple[Key, str]]:
        """Every ``(key, value)`` pair, in the order of :meth:`keys`.

        Returns
        -------
        Iterator of tuple of (str or int, str)
            The pairs, all read when the call is made.
        """
        return ((decode_key(k), v) for k, v in list(self._items().items()))

    def __repr__(self) -> str:
        return (
            f"Hangar Metadata\n    Writeable: {self.iswriteable}\n    Number of Keys: {len(self)}\n"
        )


class MetadataWriter(MetadataReader):
    """Read and write access to the metadata of the write checkout.

    ``with co.metadata:`` (or ``with aset, co.metadata:``) batches the
    writes inside the block, as ``with aset:`` does.
    """

    _co: WriterCheckout  # only the write checkout has one

    @property
    def iswriteable(self) -> bool:
        """True for the metadata of a write-enabled checkout."""
        return True

    def __enter__(self) -> MetadataWriter:
        """``with co.metadata:`` batches the writes inside the block: values
        are staged together, durable once the block exits (as ``with aset:``)."""
        self._co.check_open()
        self._co.begin_batch()
        return self

    def __exit__(self, *exc: object) -> None:
        """End the batch: flush what it staged (discarded if the store failed)."""
        self._co.end_batch(exc[1] if isinstance(exc[1], BaseException) else None)

    def add(self, key: Key, value: str) -> Key:
        """Stage ``value`` under ``key`` (replacing any value it had).

        Parameters
        ----------
        key : str or int
            The metadata key.
        value : str
            The value: ASCII, at most :data:`MAX_VALUE_BYTES` bytes.

        Returns
        -------
        str or int
            ``key``.

        Raises
        ------
        ValueError
            If the key is invalid, or the value is not an ASCII str of at
            most :data:`MAX_VALUE_BYTES` bytes.
        """
        self._co.check_open()
        enc = encode_key(key, "metadata")
        self._co.stage_meta(enc, _check_value(value))
        return key

    def __setitem__(self, key: Key, value: str) -> Key:
        """``co.metadata[key] = value``: store a value (see :meth:`add`); returns ``key``."""
        return self.add(key, value)

    def remove(self, key: Key) -> Key:
        """Stage the removal of ``key`` and its value.

        Parameters
        ----------
        key : str or int
            The metadata key.

        Returns
        -------
        str or int
            ``key``.

        Raises
        ------
        KeyError
            If no value is stored under ``key``.
        ValueError
            If ``key`` is not a valid metadata key.
        """
        enc = encode_key(key, "metadata")
        if enc not in self._keys():
            raise KeyError(key)
        self._co.stage_meta(enc, None)
        return key

    def __delitem__(self, key: Key) -> Key:
        """``del co.metadata[key]``: remove a value (see :meth:`remove`); returns ``key``."""
        return self.remove(key)
