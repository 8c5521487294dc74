"""Making remote packs: payloads gathered into blocks, blocks into one pack.

:class:`PackBuilder` takes payloads one at a time (:meth:`PackBuilder.add`)
or a kind's rows at once (:meth:`PackBuilder.add_rows`, cut into blocks
directly), and :meth:`PackBuilder.seal` returns a :class:`SealedPack`: the
pack's bytes, its index and its content name, ready for
:meth:`DataRemote.upload <hangar_git.remotes.data_remote.DataRemote.upload>`.
The format is described in :mod:`.packformat`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .packformat import BLOCK_TARGET, content_hash, encode_block, encode_index

if TYPE_CHECKING:
    from .backends.base import ObjectStream

#: bytes of blocks handed to the hashing thread at a time
HASH_STEP = 4 * 1024 * 1024

_hash_pool: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    if not _hash_pool:
        _hash_pool.append(ThreadPoolExecutor(1, thread_name_prefix="hangar-packhash"))
    return _hash_pool[0]


os.register_at_fork(after_in_child=_hash_pool.clear)  # its thread did not cross the fork


def _update(h: hashlib.blake2b, parts: list[bytes | memoryview]) -> None:
    for p in parts:
        h.update(p)


class _RunningHash:
    """:func:`~.packformat.content_hash` of the bytes appended, computed on a
    second thread as they come (blake2b releases the GIL on large buffers,
    so it overlaps with the checks the caller runs meanwhile)."""

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=20)
        self._jobs: list[Future[None]] = []
        self._parts: list[bytes | memoryview] = []
        self._bytes = 0

    def add(self, part: bytes | memoryview) -> None:
        self._parts.append(part)
        self._bytes += len(part)
        if self._bytes >= HASH_STEP:
            self._submit()

    def _submit(self) -> None:
        if self._parts:
            self._jobs.append(_pool().submit(_update, self._h, self._parts))
            self._parts, self._bytes = [], 0

    def digest(self) -> bytes:
        self._submit()
        for job in self._jobs:
            job.result()
        return self._h.digest()


@dataclass
class SealedPack:
    """A pack ready to upload.

    Attributes
    ----------
    pack_id : str
        Its content name (:func:`~.packformat.content_hash` of ``index``, hex).
    parts : list of bytes or memoryview
        The pack's body, in pieces (blocks as they were made or read: never
        joined here, a backend that can write pieces sends them as they are).
    index : bytes
        Its serialized index.
    digests : list of bytes
        The payloads it holds, in the order added.
    raw_bytes : int
        Their raw bytes.
    streamed : int
        How many of the first :attr:`parts` were handed out already by
        :meth:`PackBuilder.take_parts` (written ahead to :attr:`stream`).
    stream : ObjectStream or None
        Where those were written (None: nothing was written ahead).
    """

    pack_id: str
    parts: list[bytes | memoryview]
    index: bytes
    digests: list[bytes]
    raw_bytes: int
    streamed: int = 0
    stream: ObjectStream | None = None

    @property
    def size(self) -> int:
        """Bytes of the pack's body."""
        return sum(len(p) for p in self.parts)

    @property
    def data(self) -> bytes:
        """The pack's body in one piece (a copy of :attr:`parts`)."""
        return b"".join(self.parts)


class PackBuilder:
    """Gathers payloads into blocks and blocks into one pack.

    Payloads of one kind added together (:meth:`add_rows`) are cut into
    blocks directly; :meth:`add` takes them one at a time. A digest added
    twice is kept once.

    Parameters
    ----------
    block_target : int, optional
        Raw bytes gathered into one block (default
        :data:`~.packformat.BLOCK_TARGET`).
    distinct : bool, optional
        The caller adds each digest once (a push's payloads are distinct):
        no set of the digests added is kept to find repeats (a repeat would
        be indexed twice; a lookup takes the first).

    Attributes
    ----------
    raw_bytes : int
        Raw bytes of the payloads added since the last seal.
    """

    def __init__(self, block_target: int | None = None, *, distinct: bool = False) -> None:
        self.block_target = BLOCK_TARGET if block_target is None else block_target
        self.distinct = distinct
        self._reset()

    def _reset(self) -> None:
        self._blocks: list[bytes | memoryview] = []
        self._hash = _RunningHash()
        self._size = 0
        self._digests: list[bytes] = []
        self._seen: set[bytes] = set()
        self._kinds: dict[str, int] = {}
        #: index columns of the payloads added, in chunks: kind number,
        #: block offset and length, item offset and length (one row each)
        self._cols: list[np.ndarray] = []
        self._pending: list[tuple[bytes, str, bytes | memoryview]] = []
        self._pending_bytes = 0
        self._pending_dtype = ""
        #: blocks added from one piece of memory, not appended yet: [base, start, end]
        self._run: list[Any] | None = None
        self._taken = 0
        self._taken_bytes = 0
        self.raw_bytes = 0

    def __len__(self) -> int:
        return len(self._digests) + len(self._pending)

    def add(self, digest: bytes, kind: str, data: bytes | memoryview) -> None:
        """Add one payload (its digest was computed by the caller)."""
        if not self.distinct:
            if digest in self._seen:
                return
            self._seen.add(digest)
        dtype = kind[: kind.rindex("|")]
        if self._pending and dtype != self._pending_dtype:
            self._seal_pending()
        self._pending.append((digest, kind, data))
        self._pending_dtype = dtype
        self._pending_bytes += len(data)
        self.raw_bytes += len(data)
        if self._pending_bytes >= self.block_target:
            self._seal_pending()

    def add_rows(self, digests: Sequence[bytes], kind: str, rows: np.ndarray) -> None:
        """Add payloads of one ``kind``: row ``i`` of uint8 matrix ``rows`` is ``digests[i]``."""
        self._seal_pending()
        if not self.distinct:
            keep = [i for i, d in enumerate(digests) if d not in self._seen]
            if not keep:
                return
            if len(keep) != len(digests):
                rows = rows[keep]
                digests = [digests[i] for i in keep]
            self._seen.update(digests)
        n, width = rows.shape
        typesize = np.dtype(kind[: kind.rindex("|")]).itemsize
        per = max(1, self.block_target // max(1, width))
        kno = self._kinds.setdefault(kind, len(self._kinds))
        for lo in range(0, n, per):
            hi = min(n, lo + per)
            block = encode_block(np.ascontiguousarray(rows[lo:hi]).reshape(-1).data, typesize)
            count = hi - lo
            self._digests.extend(digests[lo:hi])
            self._add_cols(kno, len(block), np.arange(count, dtype=np.int64) * width, width)
            self._append(block)
        self.raw_bytes += n * width

    def add_block(
        self,
        digests: Sequence[bytes],
        kinds: Sequence[str],
        ioff: Sequence[int] | np.ndarray,
        ilen: Sequence[int] | np.ndarray,
        header: bytes | memoryview,
        body: bytes | memoryview,
        base: memoryview | None = None,
        at: int = 0,
    ) -> None:
        """Add a block made already (``header`` and ``body``, see
        :func:`~.packformat.block_header`) holding payload ``digests[i]`` of
        kind ``kinds[i]`` at ``ioff[i]`` (``ilen[i]`` bytes) of its raw bytes.

        The caller has checked the block: its body is sent as it is. A
        digest added before is not indexed again (its bytes stay in the block).
        ``base`` and ``at``: the header and body lie one after the other at
        ``at`` of ``base``; blocks added one after the other from the same
        ``base`` in order go on as one piece of the pack (one write, one
        hash update, not two a block).
        """
        self._seal_pending()
        blen = len(header) + len(body)
        ioffs, ilens = np.asarray(ioff, np.int64), np.asarray(ilen, np.int64)
        ds, ks = list(digests), list(kinds)
        if not self.distinct:
            if not self._seen.isdisjoint(ds):
                keep = [i for i, d in enumerate(ds) if d not in self._seen]
                ds, ks = [ds[i] for i in keep], [ks[i] for i in keep]
                ioffs, ilens = ioffs[keep], ilens[keep]
            self._seen.update(ds)
        kno = {k: self._kinds.setdefault(k, len(self._kinds)) for k in dict.fromkeys(ks)}
        knos = kno[ks[0]] if len(kno) == 1 else np.array([kno[k] for k in ks], np.int64)
        self._digests.extend(ds)
        self._add_cols(knos, blen, ioffs, ilens)
        self.raw_bytes += int(ilens.sum())
        if base is None:
            self._append(header)
            self._append(body)
            return
        if self._run is not None and self._run[0] is base and self._run[2] == at:
            self._run[2] = at + blen
        else:
            self._end_run()
            self._run = [base, at, at + blen]
        self._size += blen
        if self._run[2] - self._run[1] >= HASH_STEP:  # hashed on while more are added
            self._end_run()

    def _end_run(self) -> None:
        """Append the blocks taken from one piece of memory since the last call, as one part."""
        if self._run is not None:
            base, start, end = self._run
            self._run = None
            self._size -= end - start  # counted as they came
            self._append(base[start:end])

    def take_parts(self, min_bytes: int = 0) -> list[bytes | memoryview]:
        """The pieces of the pack's body made since the last call (or the
        last seal), in order, once they hold ``min_bytes`` at least (else
        none): to write them ahead while more are added (the sealed pack
        still lists them, and counts them in its ``streamed``)."""
        if self._size - self._taken_bytes < max(1, min_bytes):
            return []
        self._end_run()
        out = self._blocks[self._taken :]
        self._taken = len(self._blocks)
        self._taken_bytes = self._size
        return out

    def _seal_pending(self) -> None:
        if not self._pending:
            return
        items = self._pending
        raw = b"".join(p[2] for p in items)
        typesize = np.dtype(self._pending_dtype).itemsize
        block = encode_block(raw, typesize)
        lens = np.array([len(p[2]) for p in items], np.int64)
        self._digests.extend(p[0] for p in items)
        knos = np.array([self._kinds.setdefault(p[1], len(self._kinds)) for p in items], np.int64)
        self._add_cols(knos, len(block), np.cumsum(lens) - lens, lens)
        self._append(block)
        self._pending = []
        self._pending_bytes = 0

    def _append(self, part: bytes | memoryview) -> None:
        self._end_run()  # what came before this part
        self._blocks.append(part)
        self._hash.add(part)
        self._size += len(part)

    def _add_cols(
        self, kno: int | np.ndarray, blen: int, ioff: np.ndarray, ilen: int | np.ndarray
    ) -> None:
        """Index the payloads of the block about to be appended at ``self._size``."""
        cols = np.empty((len(ioff), 5), np.int64)
        cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], cols[:, 4] = (
            kno,
            self._size,
            blen,
            ioff,
            ilen,
        )
        self._cols.append(cols)

    def seal(self) -> SealedPack:
        """The finished pack (the builder is then empty)."""
        self._seal_pending()
        self._end_run()
        cols = np.concatenate(self._cols) if self._cols else np.zeros((0, 5), np.int64)
        index = encode_index(
            self._digests,
            cols[:, 0],
            list(self._kinds),
            cols[:, 1],
            cols[:, 2],
            cols[:, 3],
            cols[:, 4],
            self._size,
            self._hash.digest(),
        )
        out = SealedPack(
            content_hash(index).hex(),
            self._blocks,
            index,
            self._digests,
            self.raw_bytes,
            self._taken,
        )
        self._reset()
        return out


__all__ = ["PackBuilder", "SealedPack"]
