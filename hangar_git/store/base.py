"""The payload store interface: :class:`PayloadStore`, which every backend implements.

A payload store maps a payload digest (see :mod:`.digest`) to an array. It
knows nothing of branches, commits or arraysets. The verbs, modelled on
zarr-python's ``Store``: put and get many at once, get a region of one,
say which are missing, delete, iterate, flush; and class-level capability
flags saying what a backend can do. Backends:

- :class:`.backend_packs.PackPayloadStore`: the repository's store, packs of
  compressed blocks with a SQLite index, large payloads in chunked files;
- :class:`.backend_large.LargeFileStore`: a directory of chunked files only
  (one file per payload, regions read chunk by chunk);
- :class:`.backend_memory.MemoryStore`: a dict, for tests and scratch work.

Every backend passes the one conformance test class
``tests/store_conformance.py``; a new backend is a module and a subclass of
that class of a few lines.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from .digest import DIGEST_SIZE, Payload, parse_kind


class PayloadStore(ABC):
    """A content-addressed store of arrays, named by their digest.

    Reads return fresh, writeable arrays, independent of each other and of
    the store. A payload put is readable from the same store object at once
    and survives a killed process once :meth:`flush` (or :meth:`close`)
    returns, in backends that are :attr:`persistent`. Putting a payload that
    is already stored costs nothing.

    Attributes
    ----------
    supports_writes : bool
        :meth:`put_many` stores payloads.
    supports_deletes : bool
        :meth:`delete` removes payloads.
    supports_listing : bool
        :meth:`digests` lists every payload stored.
    supports_partial_reads : bool
        :meth:`get_region` reads only the part of a large payload the index
        touches (otherwise it reads the whole array and slices it).
    persistent : bool
        Payloads outlive the store object (another one opened on the same
        place reads them).
    """

    supports_writes: ClassVar[bool] = True
    supports_deletes: ClassVar[bool] = True
    supports_listing: ClassVar[bool] = True
    supports_partial_reads: ClassVar[bool] = False
    persistent: ClassVar[bool] = False

    # ---- writing -------------------------------------------------------
    @abstractmethod
    def put_many(self, payloads: Iterable[Payload]) -> None:
        """Store ``payloads``.

        Every payload is checked (:func:`check_payloads`) before anything
        is stored: a malformed one stores none of them.

        Parameters
        ----------
        payloads : iterable of Payload

        Raises
        ------
        ValueError
            A payload's digest, kind or byte length is malformed.
        OSError
            The backend could not write (a full disk ...).
        """

    def put(self, payload: Payload) -> None:
        """Store one payload (see :meth:`put_many`).

        Parameters
        ----------
        payload : Payload
        """
        self.put_many([payload])

    # ---- reading -------------------------------------------------------
    @abstractmethod
    def get_many(self, digests: Sequence[bytes]) -> list[np.ndarray]:
        """The arrays of ``digests``, in order (a digest may repeat).

        Parameters
        ----------
        digests : sequence of bytes

        Returns
        -------
        list of numpy.ndarray

        Raises
        ------
        MissingPayloadError
            A digest is not stored.
        IntegrityError
            The stored bytes are damaged.
        """

    def get(self, digest: bytes) -> np.ndarray:
        """The array of one digest (see :meth:`get_many`).

        Parameters
        ----------
        digest : bytes

        Returns
        -------
        numpy.ndarray
        """
        return self.get_many([digest])[0]

    def get_region(self, digest: bytes, index: Any) -> Any:
        """``array[index]`` of payload ``digest`` (basic indexing: ints, slices,
        ``Ellipsis``), as a fresh array or, for a single element, a scalar.

        Raises
        ------
        MissingPayloadError
            The digest is not stored.
        IndexError
            ``index`` does not fit the array.
        """
        return np.array(self.get(digest)[index])[()]

    @abstractmethod
    def missing(self, digests: Iterable[bytes]) -> list[bytes]:
        """Those of ``digests`` not stored, in first-seen order, once each.

        Parameters
        ----------
        digests : iterable of bytes

        Returns
        -------
        list of bytes
        """

    def contains(self, digest: bytes) -> bool:
        """True when payload ``digest`` is stored.

        Parameters
        ----------
        digest : bytes

        Returns
        -------
        bool
        """
        return not self.missing([digest])

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, bytes) and self.contains(digest)

    # ---- the rest ------------------------------------------------------
    @abstractmethod
    def delete(self, digests: Iterable[bytes]) -> int:
        """Remove the payloads of ``digests``; returns how many were stored.

        Digests not stored are ignored.

        Parameters
        ----------
        digests : iterable of bytes

        Returns
        -------
        int
        """

    @abstractmethod
    def digests(self) -> Iterator[bytes]:
        """Every digest stored, each once, in no particular order."""

    def __iter__(self) -> Iterator[bytes]:
        return self.digests()

    def flush(self) -> None:  # noqa: B027 - a no-op unless a backend buffers
        """Make every payload put so far durable."""

    def close(self) -> None:
        """Flush and release the store's files; the object is not used after."""
        self.flush()

    def __enter__(self) -> PayloadStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def payload_nbytes(kind: str) -> int:
    """Bytes of the data of a payload of kind header ``kind``.

    Raises
    ------
    ValueError
        ``kind`` is not a kind header.
    """
    try:
        dtype, shape = parse_kind(kind)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed kind header {kind!r}: {exc}") from None
    return dtype.itemsize * math.prod(shape)


def check_payloads(payloads: Iterable[Payload]) -> list[Payload]:
    """``payloads`` as a list, each checked: a 20-byte digest, a kind header
    that parses, and data of exactly the kind's byte length.

    The digest itself is not recomputed (payloads are built by
    :func:`.digest.payload_from_array` or checked on arrival).

    Raises
    ------
    ValueError
        The first malformed payload, described.
    """
    out = list(payloads)
    sizes: dict[str, int] = {}
    for p in out:
        if not isinstance(p.digest, bytes) or len(p.digest) != DIGEST_SIZE:
            raise ValueError(f"payload digest {p.digest!r} is not {DIGEST_SIZE} bytes")
        n = sizes.get(p.kind)
        if n is None:
            n = sizes[p.kind] = payload_nbytes(p.kind)
        if len(p.data) != n:
            raise ValueError(
                f"payload {p.digest.hex()} holds {len(p.data)} bytes, its kind {p.kind!r} {n}"
            )
    return out


__all__ = ["PayloadStore", "check_payloads", "payload_nbytes"]
