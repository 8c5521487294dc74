"""Reading payloads from the pack store: :class:`PackReader`.

A reader resolves digests through the index (:mod:`.index`), reads blocks
with :func:`.codec.read_block` (checksum verified) into an LRU cache of
decompressed blocks, and copies items out of them; bulk reads
(:meth:`PackReader.gather`) stream uncompressed blocks through one buffer
with scattering ``preadv`` calls. Large payloads (``LARGE_PACK`` entries)
are read from their chunked files by a :class:`.chunked.LargeReader`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import IntegrityError, MissingPayloadError
from . import chunked
from .chunked import LARGE_IOFF, LARGE_PACK, LargeFiles, LargeReader
from .codec import read_block
from .digest import digest_bytes
from .gather import gather_kind
from .index import IndexTables, Location, connect_index, entry_digests, index_guard, init_index
from .limits import check_extent
from .placement import Placement, entries_at, place

if TYPE_CHECKING:
    from .packs import PackStore

#: decompressed bytes a reader keeps in its LRU block cache
CACHE_BYTES = 64 * 1024**2


#: bumped in a forked child: readers then reopen their handles there
_FORKS = [0]


def _after_fork() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_after_fork)


class PackReader(IndexTables):
    """Reads payloads; one per thread (a reader is not shared across threads).

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

    # ---- index -------------------------------------------------------
    def lookup(self, digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised resolution: ``(found, entries)`` parallel to ``digests``.

        ``entries`` is an array of :data:`ENTRY` (block id, item offset,
        kind id), valid where ``found``. The index is read again when a
        digest is not found in what this reader loaded before.

        Parameters
        ----------
        digests : sequence of bytes

        Returns
        -------
        found : numpy.ndarray of bool
        entries : numpy.ndarray of ENTRY
        """
        self._check_pid()
        with self._lock:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            found, e = self._segs.lookup(digests)
            if not found.all() and self._segs.load(self._con, self.store.index_path):
                found, e = self._segs.lookup(digests)
            self._note_damage(digests, found)
        return found, e

    def lookup_joined(self, joined: bytes) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lookup` of digests given joined (20 bytes each, one bytes
        object): no list of digests is made unless some are absent from a
        damaged index (then named in :attr:`bad_rows`)."""
        return self.lookup_placed(joined)[:2]

    def lookup_placed(
        self, joined: bytes, hint: Placement | None = None
    ) -> tuple[np.ndarray, np.ndarray, Placement | None]:
        """:meth:`lookup_joined`, with where the entries sit: taken at ``hint``
        when it is sound (checked entry by entry, see :mod:`.placement`; None
        is returned for it then), else searched for (and where they are found)."""
        self._check_pid()
        with self._lock:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            e = None if hint is None else entries_at(self._segs.runs, joined, hint)
            if e is not None:
                return np.ones(len(e), bool), e, None
            found, e, placed = place(self._segs.runs, joined)
            if not found.all() and self._segs.load(self._con, self.store.index_path):
                found, e, placed = place(self._segs.runs, joined)
            if not found.all() and self._segs.damaged:
                self._note_damage(np.frombuffer(joined, "V20").tolist(), found)
            return found, e, placed

    def locate_many(self, digests: Iterable[bytes]) -> dict[bytes, Location]:
        """Locations of those of ``digests`` stored here.

        Parameters
        ----------
        digests : iterable of bytes
            Payload digests (repeats are looked up once).

        Returns
        -------
        dict of bytes to Location
            Absent digests, and those whose entry is damaged (see
            :attr:`bad_rows`), are omitted.
        """
        uniq = list(dict.fromkeys(digests))
        found, e = self.lookup(uniq)
        return self._locations(uniq, found, e)

    def locate(self, digest: bytes) -> Location | None:
        """Location of one payload; None when absent or its entry is damaged.

        Parameters
        ----------
        digest : bytes

        Returns
        -------
        Location or None
        """
        return self.locate_many([digest]).get(digest)

    def count(self) -> int:
        """Number of payloads in the index."""
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)
            return len(self._segs)

    def all_locations(self) -> Iterator[tuple[bytes, Location | None]]:
        """Every index entry as ``(digest, location)``; location None if damaged.

        Entries of a damaged segment cannot be listed: see :attr:`damaged_segments`.
        """
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)
            runs = list(self._segs.runs)
        for run in runs:
            for d, e in zip(entry_digests(run.entries), run.entries, strict=True):
                try:
                    yield d, self._location(e)
                except IntegrityError as exc:
                    self.bad_rows[d] = str(exc)
                    yield d, None

    def refresh(self) -> None:
        """Load the index afresh (entries that ``gc`` moved since the last load)."""
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)

    @property
    def damaged_segments(self) -> dict[int, str]:
        """Index segments refused when loaded (id -> why)."""
        return dict(self._segs.damaged)

    def contains(self, digest: bytes) -> bool:
        """True when ``digest`` has a sound index entry."""
        return self.locate(digest) is not None

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

    def is_cached(self, pack: int, boff: int) -> bool:
        """True when the block at ``boff`` of ``pack`` is in the block cache."""
        return (pack, boff) in self._blocks

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

    def gather(self, entries: np.ndarray) -> list[np.ndarray]:
        """The arrays of index ``entries``, in order, each block read once.

        Items of one kind are copied out of each block with one fancy index
        (rows of a view of the block) into one array per kind; the arrays
        returned are its rows: fresh, writeable, and independent of each other.

        Parameters
        ----------
        entries : numpy.ndarray of ENTRY
            Index entries (see :meth:`lookup`), large payloads' included.

        Returns
        -------
        list of numpy.ndarray

        Raises
        ------
        IntegrityError
            An entry names an unknown block or kind, or bytes are damaged.
        """
        self._check_pid()
        if len(entries) and (entries["ioff"] == LARGE_IOFF).any():
            return self._gather_large(entries)
        n = len(entries)
        out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        if not n:
            return out
        kinds = entries["kind"]
        k0 = int(kinds[0])
        if (kinds == k0).all():
            return gather_kind(self, entries, *self.kind(k0), self.kind_nbytes(k0))
        for kid in np.unique(kinds).tolist():
            sel = np.flatnonzero(kinds == kid)
            res = gather_kind(self, entries[sel], *self.kind(kid), self.kind_nbytes(kid))
            for i, a in zip(sel.tolist(), res, strict=True):
                out[i] = a
        return out

    def gather_into(self, entries: np.ndarray, out: np.ndarray) -> bool:
        """Write the arrays of index ``entries`` straight into the rows of
        ``out``, each block read once, when they are small payloads all of
        the kind of a row of ``out`` (``out.dtype``, ``out.shape[1:]``).

        Parameters
        ----------
        entries : numpy.ndarray of ENTRY
            Index entries (see :meth:`lookup`), ``len(out)`` of them.
        out : numpy.ndarray
            A C-contiguous, writeable array.

        Returns
        -------
        bool
            True when ``out`` was filled; False (``out`` untouched) when some
            entry is a large payload or of another kind: read those with
            :meth:`gather`.

        Raises
        ------
        IntegrityError
            An entry names an unknown block or kind, or bytes are damaged.
        """
        self._check_pid()
        n = len(entries)
        if n != len(out) or not out.flags.c_contiguous or not out.flags.writeable:
            return False
        if not n:
            return True
        kinds = entries["kind"]
        k0 = int(kinds[0])
        if (entries["ioff"] == LARGE_IOFF).any() or not (kinds == k0).all():
            return False
        dtype, shape = self.kind(k0)
        if dtype != out.dtype or tuple(shape) != out.shape[1:]:
            return False
        nbytes = self.kind_nbytes(k0)
        if nbytes:
            gather_kind(self, entries, dtype, shape, nbytes, out)
        return True

    def read_many(self, locs: Sequence[Location]) -> list[np.ndarray]:
        """Arrays at ``locs``, in order, decompressing each block once.

        Parameters
        ----------
        locs : sequence of Location

        Returns
        -------
        list of numpy.ndarray
        """
        self._check_pid()
        if any(loc.pack == LARGE_PACK for loc in locs):
            return [self.read(loc) for loc in locs]
        order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].boff))
        out: list[np.ndarray | None] = [None] * len(locs)
        cur_key = None
        raw: bytes | memoryview = b""
        for i in order:
            loc = locs[i]
            key = (loc.pack, loc.boff)
            if key != cur_key:
                raw = self.block(loc.pack, loc.boff, loc.blen)
                cur_key = key
            dtype, shape = self.kind(loc.kind)
            if loc.ioff + loc.ilen > len(raw):
                raise IntegrityError(
                    f"payload at {loc.ioff} extends past its block "
                    f"in {self.store.pack_path(loc.pack)}"
                )
            out[i] = (
                np.frombuffer(raw, dtype=dtype, count=loc.ilen // dtype.itemsize, offset=loc.ioff)
                .reshape(shape)
                .copy()
            )
        return out  # type: ignore[return-value]

    def get(self, digest: bytes) -> np.ndarray:
        """The array of payload ``digest``.

        Raises
        ------
        MissingPayloadError
            The payload is not in the index.
        IntegrityError
            Its bytes are damaged.
        """
        loc = self.locate(digest)
        if loc is None:
            raise MissingPayloadError(f"payload {digest.hex()} is not stored locally")
        return self.read(loc)

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

    def _gather_large(self, entries: np.ndarray) -> list[np.ndarray]:
        """:meth:`gather` of entries some of which are large payloads: those are
        decoded straight into their arrays, all their chunks on every core."""
        big = entries["ioff"] == LARGE_IOFF
        out: list[np.ndarray] = [None] * len(entries)  # type: ignore[list-item]
        small = np.flatnonzero(~big)
        if len(small):
            for i, a in zip(small.tolist(), self.gather(entries[small]), strict=True):
                out[i] = a
        idx = np.flatnonzero(big).tolist()
        kids = [int(entries[i]["kind"]) for i in idx]
        arrays = chunked.empty_arrays([self.kind(k) for k in kids])
        items: list[tuple[int, np.ndarray]] = []
        for i, a in zip(idx, arrays, strict=True):
            out[i] = a
            items.append((self.large_number(int(entries[i]["block"])), a))
        self.large().read_many(items, [self.kind_text(k) for k in kids])
        return out
