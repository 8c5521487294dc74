"""Decoded samples of a dataloader's selection, shared by the processes reading it.

A stacked batch of an arrayset (see :meth:`.common.SampleSource.read_stacked`)
touches one or two of the store's blocks when the sampler walks the samples
in order, and dozens when it shuffles them. Each block is read and
decompressed whole; without a cache, the next batch that needs the same
block -- in this process, or, worse, in the *other* worker process, since
``DataLoader`` deals batches out to its workers in turn -- reads and
decompresses it again: with 2 workers every block of an ordered epoch is
decompressed twice, and a shuffled epoch decompresses each block about as
many times as it has samples.

A :class:`RowCache` keeps every selected sample of one arrayset, decoded,
in anonymous shared memory (``mmap``, ``MAP_SHARED``) made by the process
that made the dataset. It is filled a block at a time: a batch needing a
sample of a block not in the cache yet reads *all* the selected samples of
that block (the read costs the same) and marks the block filled; later
batches, in any process forked from the maker -- workers of this epoch and
of later ones -- take their rows from memory. A process started otherwise
(``spawn``) makes its own cache, on first use.

Safety: rows are read from the store into a private buffer, verified there
(the store checks every block's checksum), and only then copied into the
shared rows; a block is marked filled after its rows are written, under a
process-shared lock, and a reader looks at the marks under the same lock
(so the rows it then takes are complete on every architecture). Two
processes filling the same block at once write the same bytes. A lock not
obtained within :data:`LOCK_TIMEOUT` (a process killed holding it) turns
the cache off in that process, which then reads straight from the store.

Only arraysets whose selected samples take at most :data:`CACHE_LIMIT`
bytes are cached; the memory is given back when the dataset is closed or
collected (and its worker processes have ended).
"""

from __future__ import annotations

import mmap
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: the most bytes of decoded samples a cache of one arrayset may hold
CACHE_LIMIT = 256 << 20

#: seconds to wait for the cache's lock before reading around the cache
LOCK_TIMEOUT = 10.0

#: bytes before the rows in the shared memory: the count of filled blocks (the
#: rows stay aligned for any dtype)
_HEAD = 64

#: fills the rows ``rows`` (indices into the selection) into ``out``; False
#: when the store cannot give them that way (the cache is then not filled)
Fill = Callable[[np.ndarray, np.ndarray], bool]


class RowCache:
    """The decoded selected samples of one arrayset, filled a block at a time.

    Parameters
    ----------
    blocks : numpy.ndarray of int
        The store's block id of each selected sample, in selection order.
    dtype, shape
        The samples' dtype and shape (fixed-shape arraysets only).
    """

    def __init__(self, blocks: np.ndarray, dtype: Any, shape: tuple[int, ...]) -> None:
        n = len(blocks)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        uniq, self._block_pos = np.unique(np.asarray(blocks), return_inverse=True)
        self._block_pos = self._block_pos.reshape(-1).astype(np.intp)
        #: the selected rows of block position b: _order[_bounds[b]:_bounds[b + 1]]
        self._order = np.argsort(self._block_pos, kind="stable")
        self._bounds = np.searchsorted(self._block_pos[self._order], np.arange(len(uniq) + 1))
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
        size = _HEAD + n * row_bytes + len(uniq)
        self._mem = mmap.mmap(-1, max(size, 1))  # anonymous, MAP_SHARED: seen by forked children
        self.rows = np.frombuffer(
            self._mem, self.dtype, n * int(np.prod(self.shape)), offset=_HEAD
        ).reshape((n, *self.shape))
        #: per block position: 1 once all its selected rows are in :attr:`rows`
        self._filled = np.frombuffer(self._mem, np.uint8, len(uniq), offset=_HEAD + n * row_bytes)
        #: how many blocks are filled (0: an ordered batch need look no further)
        self._count = np.frombuffer(self._mem, np.int64, 1)
        # (a fork context's lock is unlinked at once: no resource tracker process
        # started for it where another start method is the default)
        fork = "fork" in multiprocessing.get_all_start_methods()
        self._lock = multiprocessing.get_context("fork" if fork else None).Lock()
        #: False once the lock could not be obtained: this process reads around the cache
        self.usable = True

    @classmethod
    def make(cls, blocks: np.ndarray, dtype: Any, shape: tuple[int, ...]) -> RowCache | None:
        """A cache, or None when the selection is over :data:`CACHE_LIMIT` bytes
        or this system gives no process-shared lock or anonymous memory."""
        nbytes = len(blocks) * np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        if not len(blocks) or nbytes > CACHE_LIMIT:
            return None
        try:
            return cls(blocks, dtype, shape)
        except (OSError, ImportError, ValueError):  # no sem_open (some containers), no mmap
            return None

    def take(self, indices: Sequence[int], out: np.ndarray, fill: Fill) -> bool:
        """Fill ``out`` with the rows at ``indices``, reading the blocks that
        hold any of them and are not cached yet through ``fill`` (all the
        selected rows of each). False (``out`` untouched) when ``fill``
        fails or the cache is unusable, and when ``indices`` are a run of
        the selection (``a, a + 1, ...``: an ordered sampler's batch) not all
        cached: the caller reads around the cache. A run reads its one or two
        blocks straight into ``out`` best; filling them here would cost a
        copy and the first touch of the cache's pages, and, with worker
        processes reading neighbouring runs at once, save no decompression."""
        n = len(indices)
        if not self.usable or not n:
            return False
        if not self._count[0] and indices[n - 1] - indices[0] + 1 == n:
            return False  # (a run, as its ends tell, and nothing cached: read around)
        idx = np.asarray(indices, dtype=np.intp)
        pos = self._block_pos[idx]
        if not self._acquire():
            return False
        try:
            missing = pos[self._filled[pos] == 0]
        finally:
            self._lock.release()
        if len(missing):
            first = int(idx[0])
            if int(idx[-1]) - first + 1 == len(idx) and (len(idx) < 2 or _is_run(idx)):
                return False
            if not self._fill(np.unique(missing), fill):
                return False
        self.rows.take(idx, axis=0, out=out)
        return True

    def _fill(self, missing: np.ndarray, fill: Fill) -> bool:
        """Read all the selected rows of block positions ``missing`` into the cache."""
        lo, hi = self._bounds[missing], self._bounds[missing + 1]
        if len(missing) == 1:
            rows = self._order[lo[0] : hi[0]]
        else:
            rows = np.concatenate([self._order[a:b] for a, b in zip(lo, hi, strict=True)])
        got = np.empty((len(rows), *self.shape), self.dtype)  # verified here first
        if not fill(rows, got):
            return False
        first, last = int(rows[0]), int(rows[-1])
        if last - first + 1 == len(rows) and (len(rows) < 2 or (np.diff(rows) == 1).all()):
            self.rows[first : last + 1] = got  # the common case: a run of the selection
        else:
            self.rows[rows] = got
        if not self._acquire():
            return False
        try:
            self._filled[missing] = 1
            self._count[0] = np.count_nonzero(self._filled)
        finally:
            self._lock.release()
        return True

    def _acquire(self) -> bool:
        if self._lock.acquire(timeout=LOCK_TIMEOUT):
            return True
        self.usable = False  # (a process died holding it)
        return False

    def filled_blocks(self) -> int:
        """How many of the selection's blocks are cached (for tests and benchmarks)."""
        return int(np.count_nonzero(self._filled))

    def close(self) -> None:
        """Give the memory back (in this process; views of it must be gone)."""
        self.usable = False
        self.rows = np.empty((0, *self.shape), self.dtype)
        self._filled = np.empty(0, np.uint8)
        self._count = np.zeros(1, np.int64)
        try:
            self._mem.close()
        except BufferError:  # a view of the rows is still alive: freed with it
            pass


def _is_run(idx: np.ndarray) -> bool:
    """True when ``idx`` counts up by one."""
    return bool((idx[1:] - idx[:-1] == 1).all())


__all__ = ["CACHE_LIMIT", "RowCache"]
