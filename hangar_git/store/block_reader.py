"""Reading blocks and single payloads of the pack store: :class:`BlockReader`.

The part of a reader that touches files: it opens the index connection and
the pack files (again in a forked child), reads blocks with
:func:`.codec.read_block` (checksum verified) into an LRU cache of
decompressed blocks, and copies single payloads out of them
(:meth:`BlockReader.read`, :meth:`BlockReader.read_entry`). Large payloads
(``LARGE_PACK`` entries) are read from their chunked files by a
:class:`.chunked.LargeReader`. :class:`.reader.PackReader` adds digest
resolution and bulk reads on top.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import IntegrityError
from . import chunked
from .chunked import LARGE_IOFF, LARGE_PACK, LargeFiles, LargeReader
from .codec import read_block
from .digest import digest_bytes
from .index import IndexTables, Location, connect_index, index_guard, init_index
from .limits import MAX_BLOCK, check_extent

if TYPE_CHECKING:
    from .packs import PackStore

#: decompressed bytes a reader keeps in its LRU block cache
CACHE_BYTES = 64 * 1024**2
#: bytes of the payload index a reader's connection maps (SQLite caps it
#: at the file's size)
INDEX_MMAP = 1 << 40


#: bumped in a forked child: readers then reopen their handles there
_FORKS = [0]


def _after_fork() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_after_fork)


class BlockReader(IndexTables):
    """Reads blocks and single payloads; one per thread (not shared across threads).

    A reader notices when it is used in a forked child and reopens its
    handles there, so it can cross into DataLoader worker processes. It keeps
    up to ``cache_bytes`` of decompressed blocks (least recently used first
    out), each verified against its checksum when read from its pack.
    """

    def __init__(self, store: PackStore, cache_bytes: int = CACHE_BYTES) -> None:
        self.store = store
        self._pid = -1
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._pid = os.getpid()
        self._forks = _FORKS[0]
        self._last_block = -1
        self._last_raw: bytes | memoryview = b""
        self._kind_info: dict[int, tuple[np.dtype, int, int, tuple[int, ...] | None]] = {}
        self._con = connect_index(self.store.index_path, readonly=True)
        with index_guard(self.store.index_path):
            init_index(self._con)
            # segments are read through a memory map, not a ``pread`` per
            # overflow page (2-3 ms of a fresh process's first read at 60k
            # entries); as on the writer's connection, the price is that a
            # disk failing to read a mapped page stops the process (SIGBUS)
            # instead of raising: nothing is written through the map
            self._con.execute(f"PRAGMA mmap_size={INDEX_MMAP}")
        self._fds: dict[int, int] = {}
        self._sizes: dict[int, int] = {}  # pack -> its size when last looked at
        self._paths: dict[int, Path] = {}
        self._init_tables()
        # (pack, offset) -> block bytes; also block id -> the same bytes (read_entry)
        self._blocks: OrderedDict[tuple[int, int] | int, bytes | memoryview] = OrderedDict()
        self._cached = 0
        self._large: LargeReader | None = None

    def _check_pid(self) -> None:
        if self._forks != _FORKS[0] or self._pid != os.getpid():
            self._open()

    def close(self) -> None:
        """Close the reader's files and index connection (in the process that
        opened them; a forked child's copy closes nothing of its parent's)."""
        if self._pid != os.getpid():
            return
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._blocks.clear()
        self._cached = 0
        self._last_block, self._last_raw = -1, b""
        if self._large is not None:
            self._large.close()
        self._con.close()

    # ---- bytes -------------------------------------------------------
    def fd(self, pack: int) -> int:
        """A descriptor of pack file ``pack``, open for reading (kept open).

        Raises
        ------
        IntegrityError
            The pack file is missing.
        """
        fd = self._fds.get(pack)
        if fd is None:
            path = self.store.pack_path(pack)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise IntegrityError(f"pack file {path} is missing") from None
            self._fds[pack] = fd
            self._paths[pack] = path
        return fd

    def checked_fd(self, pack: int, boff: int, blen: int) -> int:
        """:meth:`fd`, once the block at ``boff`` of ``blen`` bytes is known to
        lie inside the pack file (see :func:`.limits.check_extent`)."""
        fd = self.fd(pack)
        check_extent(fd, self._sizes, pack, boff, blen, str(self._paths[pack]))
        return fd

    def check_extents(self, rows: np.ndarray) -> None:
        """:meth:`checked_fd` of many blocks at once: ``rows`` of ``(pack,
        offset, length)`` (int64), the files opened and each pack's furthest
        block checked against its size (see :func:`.limits.check_extent`).

        Raises
        ------
        IntegrityError
            A pack file is missing, or a block does not lie inside its pack.
        """
        if not len(rows):
            return
        packs, boffs, blens = rows[:, 0], rows[:, 1], rows[:, 2]
        odd = (boffs < 0) | (blens < 0) | (blens > MAX_BLOCK)
        ends = np.where(odd, np.iinfo(np.int64).max, boffs + blens)  # odd ones first
        for pack in sorted(set(packs.tolist())):  # (np.unique would import numpy.ma: 30 ms)
            i = int(np.flatnonzero(packs == pack)[np.argmax(ends[packs == pack])])
            self.checked_fd(pack, int(boffs[i]), int(blens[i]))

    def block_rows(self, bids: list[int]) -> np.ndarray:
        """``(pack, offset, length)`` of each block of ``bids``, as rows of an
        int64 array, their row checks verified (see :meth:`block_row`).

        Raises
        ------
        IntegrityError
            A block is unknown or its row fails its check.
        """
        rows = self._blockrows
        try:
            got = [rows[b] for b in bids]
        except KeyError:
            self._load_blocks()  # rows added since they were loaded
            try:
                got = [rows[b] for b in bids]
            except KeyError:
                got = [self.block_row(b) for b in bids]  # says which is unknown
        try:  # a damaged row is its message (a str): no array of it
            return np.array(got, np.int64).reshape(len(bids), 3)
        except (ValueError, TypeError):
            got = [self.block_row(b) for b in bids]  # raises on the damaged one
        return np.array(got, np.int64).reshape(len(bids), 3)

    def is_cached(self, pack: int, boff: int) -> bool:
        """True when the block at ``boff`` of ``pack`` is in the block cache."""
        return (pack, boff) in self._blocks

    def caches_blocks(self) -> bool:
        """True when the block cache holds a block by place (what :meth:`is_cached`
        looks for; single reads keep theirs by block id only)."""
        return any(type(k) is tuple for k in self._blocks)

    def pack_path(self, pack: int) -> Path:
        """Path of pack file ``pack``."""
        return self.store.pack_path(pack)

    def block(self, pack: int, boff: int, blen: int) -> bytes | memoryview:
        """The decompressed bytes of a block, checksum verified (LRU cached).

        Parameters
        ----------
        pack, boff, blen : int
            Pack number, offset and stored length of the block (a block row).

        Returns
        -------
        bytes or memoryview

        Raises
        ------
        IntegrityError
            The pack is missing, too short, or the block fails its checks.
        """
        key = (pack, boff)
        blocks = self._blocks
        cached = blocks.get(key)
        if cached is not None:
            blocks.move_to_end(key)
            return cached
        fd = self.fd(pack)
        check_extent(fd, self._sizes, pack, boff, blen, str(self._paths[pack]))
        raw = read_block(fd, pack, boff, blen, self._paths[pack])
        blocks[key] = raw
        self._cached += len(raw)
        while self._cached > self._cache_bytes and len(blocks) > 1:
            self._cached -= len(blocks.popitem(last=False)[1])
        return raw

    def _cache_block(self, key: int, raw: bytes | memoryview) -> bytes | memoryview:
        """Keep ``raw`` in the LRU cache under block id ``key`` too (no copy)."""
        blocks = self._blocks
        blocks[key] = raw  # type: ignore[index]
        self._cached += len(raw)
        while self._cached > self._cache_bytes and len(blocks) > 1:
            self._cached -= len(blocks.popitem(last=False)[1])
        return raw

    def read(self, loc: Location, digest: bytes | None = None) -> np.ndarray:
        """The array stored at ``loc`` (a fresh, writeable array).

        Parameters
        ----------
        loc : Location
            Where the payload sits (see :meth:`locate`).
        digest : bytes, optional
            When given, the bytes are also hashed and checked against it (fsck).

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        IntegrityError
            The bytes are damaged or do not match ``digest``.
        """
        self._check_pid()
        if loc.pack == LARGE_PACK:
            return self._read_large(loc, digest)
        raw = self.block(loc.pack, loc.boff, loc.blen)
        dtype, shape = self.kind(loc.kind)
        item = raw[loc.ioff : loc.ioff + loc.ilen]
        if len(item) != loc.ilen:
            raise IntegrityError(
                f"payload {digest.hex() if digest else ''} extends past its block "
                f"in {self.store.pack_path(loc.pack)}"
            )
        if digest is not None and digest_bytes(self.kind_text(loc.kind), item) != digest:
            raise IntegrityError(
                f"payload {digest.hex()} does not match its digest "
                f"in {self.store.pack_path(loc.pack)}"
            )
        return np.frombuffer(bytearray(item), dtype=dtype).reshape(shape)

    def read_entry(self, block: int, ioff: int, kind: int) -> np.ndarray:
        """The array of one index entry (a fresh, writeable array): the fast
        path of single reads, which skips building a :class:`Location`.

        Parameters
        ----------
        block, ioff, kind : int
            The entry's block id, item offset and kind id (see :meth:`lookup`).

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        IntegrityError
            The entry names an unknown block or kind, or the bytes are damaged.
        """
        if self._forks != _FORKS[0]:
            self._open()
        if ioff == LARGE_IOFF:
            return self.large().read(self.large_number(block), self.kind_text(kind))
        if block == self._last_block:  # consecutive reads from one block
            raw = self._last_raw
        else:
            got = self._blocks.get(block)
            if got is None:
                pack, boff, blen = self.block_row(block)
                fd = self.fd(pack)
                check_extent(fd, self._sizes, pack, boff, blen, str(self._paths[pack]))
                raw = self._cache_block(block, read_block(fd, pack, boff, blen, self._paths[pack]))
            else:
                raw = got
                self._blocks.move_to_end(block)
            self._last_block, self._last_raw = block, raw
        info = self._kind_info.get(kind)
        if info is None:
            dtype, shape = self.kind(kind)
            n = self.kind_nbytes(kind)
            info = self._kind_info[kind] = (
                dtype,
                n // dtype.itemsize,
                n,
                None if len(shape) == 1 else shape,
            )
        dtype, count, n, rshape = info
        if ioff + n > len(raw):
            raise IntegrityError(
                f"payload at {ioff} of block {block} extends past its block "
                f"in {self.store.index_path.parent}"
            )
        a = np.frombuffer(raw, dtype, count, ioff)
        return (a if rshape is None else a.reshape(rshape)).copy()

    # ---- large payloads: a chunked file each (see chunked.py) ------------
    def large(self) -> LargeReader:
        """The reader of this store's large payload files."""
        self._check_pid()
        if self._large is None:
            self._large = LargeReader(LargeFiles(self.store.large_dir))
        return self._large

    def large_number(self, block: int) -> int:
        """The file number of the large payload whose index entry names block
        ``block`` (its block row is ``(LARGE_PACK, number, size)``).

        Raises
        ------
        IntegrityError
            The block row is not a large payload's, or is damaged.
        """
        pack, number, _ = self.block_row(block)
        if pack != LARGE_PACK:
            raise IntegrityError(
                f"payload index {self.store.index_path} names block {block} as a large "
                "payload file, its row says otherwise"
            )
        return number

    def read_large_region(self, block: int, kind: int, index: Any) -> Any:
        """``array[index]`` of a large payload, reading only the chunks
        ``index`` touches.

        Parameters
        ----------
        block, kind : int
            Block id and kind id of the payload's index entry.
        index : object
            A basic index (ints, slices, ``...``), as after the key in
            ``aset[key, ...]``.

        Returns
        -------
        numpy.ndarray or scalar
        """
        return self.large().read_region(self.large_number(block), index, self.kind_text(kind))

    def _read_large(self, loc: Location, digest: bytes | None) -> np.ndarray:
        """The array of a large payload at ``loc``; with ``digest``, every byte
        is also checked against it (fsck)."""
        large = self.large()
        kind = self.kind_text(loc.kind)
        arr = large.read(loc.boff, kind)
        if digest is not None:
            o = large.open(loc.boff, kind)
            if o.header.digest != digest or digest_bytes(kind, chunked.flat_bytes(arr)) != digest:
                raise IntegrityError(
                    f"payload {digest.hex()} does not match its digest in {o.path}"
                )
        return arr


__all__ = ["CACHE_BYTES", "BlockReader"]
