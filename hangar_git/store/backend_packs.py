"""The repository's payload store through the :class:`~.base.PayloadStore`
interface: :class:`PackPayloadStore`, over a :class:`~.packs.PackStore`.

Small payloads go into blocks of pack files, large ones into chunked files
(:mod:`.chunked`), all named in one index; the store's writer (and with it
the store's write lock) is taken on the first write and held until
:meth:`PackPayloadStore.close`. Not shared across threads (a reader is one
per thread).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import MissingPayloadError
from .base import PayloadStore, check_payloads
from .chunk_format import LARGE_IOFF
from .digest import Payload
from .packs import PackStore
from .reader import PackReader
from .writer import PackWriter


class PackPayloadStore(PayloadStore):
    """Packs and chunked large files under ``root`` (created when absent).

    Parameters
    ----------
    root : str or path-like
        The store directory (``index.sqlite``, ``packs/``, ``large/``).
    """

    supports_partial_reads = True
    persistent = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.packs = PackStore(root)
        if not self.packs.exists():
            self.packs.create()
        self._reader: PackReader | None = None
        self._writer: PackWriter | None = None

    @property
    def reader(self) -> PackReader:
        """The reader of this store object (pending writes flushed first)."""
        if self._writer is not None and self._writer.has_pending():
            self._writer.flush()
        if self._reader is None:
            self._reader = self.packs.reader()
        return self._reader

    @property
    def writer(self) -> PackWriter:
        """The store's writer, opened (and its lock taken) on first use."""
        if self._writer is None:
            self._writer = self.packs.writer()
        return self._writer

    def put_many(self, payloads: Iterable[Payload]) -> None:
        """Store ``payloads`` (see :meth:`.PayloadStore.put_many`)."""
        checked = check_payloads(payloads)
        w = self.writer
        for p in checked:
            w.add(p)

    def _entries(self, digests: Sequence[bytes]) -> np.ndarray:
        found, entries = self.reader.lookup(digests)
        if not found.all():
            d = digests[int(np.flatnonzero(~found)[0])]
            raise MissingPayloadError(
                f"payload {bytes(d).hex()} is not stored in {self.packs.root}"
            )
        return entries

    def get_many(self, digests: Sequence[bytes]) -> list[np.ndarray]:
        """The arrays of ``digests`` (see :meth:`.PayloadStore.get_many`)."""
        uniq = list(dict.fromkeys(digests))
        arrays = self.reader.gather(self._entries(uniq))
        if len(uniq) == len(digests):  # no repeats: the same order
            return arrays
        by = dict(zip(uniq, arrays, strict=True))
        seen: set[bytes] = set()
        out = []
        for d in digests:  # a repeated digest gets a copy of its own
            out.append(by[d].copy() if d in seen else by[d])
            seen.add(d)
        return out

    def get_region(self, digest: bytes, index: Any) -> Any:
        """``array[index]`` of one payload; a large one reads only the chunks
        ``index`` touches (see :meth:`.PayloadStore.get_region`)."""
        entries = self._entries([digest])
        e = entries[0]
        if int(e["ioff"]) == LARGE_IOFF:
            return self.reader.read_large_region(int(e["block"]), int(e["kind"]), index)
        return np.array(self.reader.gather(entries)[0][index])[()]

    def missing(self, digests: Iterable[bytes]) -> list[bytes]:
        """Those of ``digests`` not stored (see :meth:`.PayloadStore.missing`)."""
        uniq = list(dict.fromkeys(digests))
        found, _ = self.reader.lookup(uniq)
        return [d for d, f in zip(uniq, found.tolist(), strict=True) if not f]

    def delete(self, digests: Iterable[bytes]) -> int:
        """Remove the index entries of ``digests``; their bytes stay in the
        packs until ``gc`` compacts them (see :meth:`.PackWriter.remove`)."""
        n = self.writer.remove(digests)
        if self._reader is not None:
            self._reader.refresh()
        return n

    def digests(self) -> Iterator[bytes]:
        """Every digest in the index."""
        r = self.reader
        r.refresh()
        return iter([d for d, _ in r.all_locations()])

    def flush(self) -> None:
        """Write, sync and index every payload put so far."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush, release the write lock and close the files."""
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._writer = None
            if self._reader is not None:
                self._reader.close()
                self._reader = None


__all__ = ["PackPayloadStore"]
