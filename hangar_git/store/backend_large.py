"""A directory of chunked payload files as a :class:`~.base.PayloadStore`:
:class:`LargeFileStore`.

Every payload, whatever its size, gets a file of its own in the chunked
format (:mod:`.chunk_format`), so a region of any payload reads only the
chunks it touches. The files name their payloads (the digest is in each
header): the store's map of digest to file is read from the headers when it
is opened, and files whose header is damaged are left out and listed in
:attr:`LargeFileStore.damaged`. One process writes a directory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IntegrityError, MissingPayloadError
from .base import PayloadStore, check_payloads
from .chunked import LargeFiles, Pending
from .digest import Payload, parse_kind
from .large_reader import LargeReader, empty_arrays, open_file


class LargeFileStore(PayloadStore):
    """Chunked payload files under ``root`` (created when absent).

    Parameters
    ----------
    root : str or path-like
        The directory of the files (``<number>.hgc``).

    Attributes
    ----------
    damaged : dict of int to str
        File number -> why its header was refused when the store was opened.
    """

    supports_partial_reads = True
    persistent = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.files = LargeFiles(Path(root))
        self.files.root.mkdir(parents=True, exist_ok=True)
        self._reader = LargeReader(self.files)
        self._where: dict[bytes, tuple[int, str]] = {}  # digest -> (file number, kind)
        self.damaged: dict[int, str] = {}
        self._top = 0
        for number in sorted(self.files.numbers()):
            self._top = number
            try:
                o = open_file(self.files.path(number), number)
            except IntegrityError as exc:
                self.damaged[number] = str(exc)
                continue
            os.close(o.fd)
            self._where.setdefault(o.header.digest, (number, o.header.kind))

    def put_many(self, payloads: Iterable[Payload]) -> None:
        """Store ``payloads``, a file each (see :meth:`.PayloadStore.put_many`);
        written, synced and renamed into place before this returns."""
        todo: dict[bytes, Payload] = {}
        for p in check_payloads(payloads):
            if p.digest not in self._where:
                todo.setdefault(p.digest, p)
        pending: list[Pending] = []
        try:
            for p in todo.values():
                number = self._top + 1 + len(pending)
                pending.append(self.files.write_temporary(number, p.digest, p.kind, p.data))
            self.files.place(pending)
        except BaseException:
            self.files.discard(pending)
            raise
        for pend in pending:
            self._where[pend.digest] = (pend.number, pend.kind)
            self._top = max(self._top, pend.number)

    def _find(self, digest: bytes) -> tuple[int, str]:
        where = self._where.get(digest)
        if where is None:
            raise MissingPayloadError(
                f"payload {bytes(digest).hex()} is not stored in {self.files.root}"
            )
        return where

    def get_many(self, digests: Sequence[bytes]) -> list[np.ndarray]:
        """The arrays of ``digests``, decoded on every core (see
        :meth:`.PayloadStore.get_many`)."""
        where = [self._find(d) for d in digests]
        arrays = empty_arrays([parse_kind(kind) for _, kind in where])
        self._reader.read_many(
            [(n, a) for (n, _), a in zip(where, arrays, strict=True)], [k for _, k in where]
        )
        return arrays

    def get_region(self, digest: bytes, index: Any) -> Any:
        """``array[index]``, reading only the chunks ``index`` touches."""
        number, kind = self._find(digest)
        return self._reader.read_region(number, index, kind)

    def missing(self, digests: Iterable[bytes]) -> list[bytes]:
        """Those of ``digests`` not stored (see :meth:`.PayloadStore.missing`)."""
        return [d for d in dict.fromkeys(digests) if d not in self._where]

    def delete(self, digests: Iterable[bytes]) -> int:
        """Delete the files of ``digests``; returns how many there were."""
        n = 0
        for d in dict.fromkeys(digests):
            where = self._where.pop(d, None)
            if where is not None:
                self.files.path(where[0]).unlink(missing_ok=True)
                n += 1
        return n

    def digests(self) -> Iterator[bytes]:
        """Every digest stored."""
        return iter(list(self._where))

    def close(self) -> None:
        """Close the files the reader holds open."""
        self._reader.close()


__all__ = ["LargeFileStore"]
