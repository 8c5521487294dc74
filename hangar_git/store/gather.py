"""Bulk reads of many small payloads from the packs: :func:`gather_kind`.

The arrays of many index entries of one kind are read with each block read
once: items are copied out of each block with one fancy index (rows of a
view of the block) into one array for the kind. Uncached, uncompressed
blocks are streamed instead (:func:`_stream`): read with scattering
``preadv`` calls straight into one buffer per window of
:data:`.reader.STREAM_WINDOW` bytes, placed so their items are rows of it,
checksums verified; when the items fill most of a window they are handed
out as views of its rows, with no copy at all. Whole blocks whose items go
to consecutive rows of the caller's array are read straight into them
(:func:`_read_in_place`); from :data:`PARALLEL_BYTES` on, a second thread
helps, taking parts from the back while the caller's thread takes them
from the front (:func:`_read_in_parts`). The blocks come from a
:class:`BlockSource` (the :class:`.reader.PackReader`).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import IntegrityError
from . import threads
from .block_format import BLOCK_MAGIC, CODEC_RAW, CRC, HEADER, HEADER_SIZE
from .checksum import crc_many

#: bytes of blocks a batch read streams through one buffer
STREAM_WINDOW = 32 * 1024**2
#: buffers one ``preadv`` call fills at most (the usual IOV_MAX)
_IOV_MAX = 1024
#: bytes of blocks read in place from which a second thread helps (see
#: :func:`_read_in_parts`), and about the bytes of each part it or this one takes
PARALLEL_BYTES = 16 * 1024**2
PART_BYTES = 4 * 1024**2

#: a block of a window: (block position, pack, offset, length, start in the buffer)
_Slot = tuple[int, int, int, int, int]


class BlockSource(Protocol):
    """Where :func:`gather_kind` reads blocks from."""

    def block_row(self, bid: int) -> tuple[int, int, int]:
        """``(pack, offset, length)`` of block ``bid``, its row check verified."""
        ...

    def block(self, pack: int, boff: int, blen: int) -> bytes | memoryview:
        """The decoded bytes of a block, checksum verified (cached)."""
        ...

    def is_cached(self, pack: int, boff: int) -> bool:
        """True when the block at ``boff`` of ``pack`` is in the block cache."""
        ...

    def fd(self, pack: int) -> int:
        """A descriptor of pack file ``pack``, open for reading."""
        ...

    def checked_fd(self, pack: int, boff: int, blen: int) -> int:
        """:meth:`fd`, once the block is known to lie inside the pack file."""
        ...

    def block_rows(self, bids: list[int]) -> np.ndarray:
        """``(pack, offset, length)`` of each block of ``bids`` (int64 rows)."""
        ...

    def check_extents(self, rows: np.ndarray) -> None:
        """:meth:`checked_fd` of each block of ``rows`` (from :meth:`block_rows`)."""
        ...

    def caches_blocks(self) -> bool:
        """True when :meth:`is_cached` may be True for some block."""
        ...

    def pack_path(self, pack: int) -> Path:
        """Path of pack file ``pack`` (for messages)."""
        ...


@dataclass
class _Kind:
    """The items of one kind being gathered: sorted by block."""

    nbytes: int
    dtype: np.dtype
    shape: tuple[int, ...]
    ioffs: np.ndarray  # item offsets in their blocks
    rows: np.ndarray | None  # ioffs // nbytes, when every item sits on a row
    order: np.ndarray  # item positions, by block
    bounds: list[int]  # order[bounds[j]:bounds[j + 1]]: the items of block j
    buf: np.ndarray  # (items, nbytes) uint8: where copied items go
    direct: list[np.ndarray | None]  # items handed out as views of a window
    into: bool = False  # buf is the caller's array: never hand out views
    in_order: bool = False  # order is 0 .. n-1: a block's items go to a run of rows


def gather_kind(
    src: BlockSource,
    entries: np.ndarray,
    dtype: np.dtype,
    shape: tuple[int, ...],
    nbytes: int,
    out: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The arrays of index ``entries``, all of one kind, in order.

    Parameters
    ----------
    src : BlockSource
        Where the blocks are read.
    entries : numpy.ndarray of ENTRY (or of PLACE, see :func:`.reader.take_places`)
        Entries of small payloads of one kind.
    dtype, shape, nbytes
        The kind: dtype, shape and bytes of one item.

    Returns
    -------
    list of numpy.ndarray
        Fresh, writeable arrays, independent of each other.

    Raises
    ------
    IntegrityError
        A block row or block is damaged, or an item lies past its block.
    """
    blocks = entries["block"]
    ioffs, rows = _item_rows(entries["ioff"], nbytes)
    if len(blocks) < 2 or (blocks[1:] >= blocks[:-1]).all():  # in block order already
        order, sb = np.arange(len(blocks), dtype=_index_type(len(blocks))), blocks
    else:
        order = np.argsort(blocks, kind="stable")
        sb = blocks[order]
    bounds = [0, *(np.flatnonzero(sb[1:] != sb[:-1]) + 1).tolist(), len(sb)]
    bids = sb[bounds[:-1]].tolist()
    if out is None:
        buf = np.empty((len(entries), nbytes), np.uint8)
    else:
        buf = out.reshape(len(entries), -1).view(np.uint8)  # a view: out is C-contiguous
    g = _Kind(nbytes, dtype, shape, ioffs, rows, order, bounds, buf, [], out is not None)
    g.in_order = sb is blocks
    todo: Sequence[int] = range(len(bids))
    n_direct = 0
    if out is not None and rows is not None and len(bids) >= 4:
        todo = _read_in_place(src, g, bids)  # the caller's rows: no buffer between
    if rows is not None and len(todo) >= 4:
        g.direct = [None] * len(entries)
        todo, n_direct = _stream(src, g, bids, todo)
    for j in todo:
        _copy_block(src, g, j, bids[j])
    if out is not None:
        return []
    typed = buf.view(dtype).reshape((len(entries), *shape))
    if not shape:  # rows of 0-d items: 0-d arrays, not the numpy scalars list() gives
        typed = typed.reshape(len(entries), 1)
        return [
            (r.reshape(()) if a is None else a)
            for r, a in zip(typed, g.direct or [None] * len(entries), strict=True)
        ]
    if not g.direct:
        return list(typed)
    if n_direct == len(entries):
        return g.direct  # type: ignore[return-value]
    return [typed[i] if a is None else a for i, a in enumerate(g.direct)]


def _index_type(n: int) -> type[np.signedinteger]:
    """The int type of positions below ``n``: int32 when it holds them (half
    the fresh memory of intp, so half its page faults in a fresh process)."""
    return np.int32 if n < 2**31 else np.intp


def _item_rows(ioffs: np.ndarray, nbytes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(ioffs, rows)`` of the items at offsets ``ioffs`` in their blocks
    (unsigned 32-bit, as index entries keep them), items of ``nbytes``:
    ``rows`` is ``ioffs // nbytes`` when every item sits on a row, else None.
    Kept in 32 bits (no int64 copy of the offsets, no int64 temporaries)."""
    if ioffs.dtype != np.uint32 or not 0 < nbytes < 2**31:
        ioffs = ioffs.astype(np.int64)
        return ioffs, (None if not nbytes or (ioffs % nbytes).any() else ioffs // nbytes)
    rows, rem = np.divmod(ioffs, np.uint32(nbytes))
    return ioffs, (None if rem.any() else rows)


def _copy_block(src: BlockSource, g: _Kind, j: int, bid: int) -> None:
    """Copy the items of block position ``j`` (block ``bid``) into ``g.buf``."""
    nbytes, buf = g.nbytes, g.buf
    lo, hi = g.bounds[j], g.bounds[j + 1]
    idx = g.order[lo:hi]
    pack, boff, blen = src.block_row(bid)
    raw = src.block(pack, boff, blen)
    if g.rows is not None and len(raw) % nbytes == 0:
        rows = g.rows[lo:hi] if g.in_order else g.rows[idx]
        if int(rows.max()) < len(raw) // nbytes:  # (else reported below)
            # each item one opaque element: a plain take, not rows of bytes (10x faster)
            items = np.frombuffer(raw, f"V{nbytes}")
            dst = buf.view(f"V{nbytes}").reshape(-1)
            if g.in_order:  # the block's items fill rows lo .. hi - 1: taken into place
                np.take(items, rows, out=dst[lo:hi], mode="clip")
            else:
                dst[idx] = np.take(items, rows)
            return
    offs = g.ioffs[idx]
    if int(offs.max()) + nbytes > len(raw):
        raise IntegrityError(
            f"payload at {int(offs.max())} of block {boff} extends past its "
            f"block in {src.pack_path(pack)}"
        )
    arr = np.frombuffer(raw, np.uint8)
    for i, off in zip(idx.tolist(), offs.tolist(), strict=True):
        buf[i] = arr[off : off + nbytes]


def _whole_blocks(g: _Kind) -> np.ndarray:
    """Per block position: True when its items are all of its rows in order,
    going to consecutive rows of the output (read in place, in one piece)."""
    order, bounds = g.order, np.asarray(g.bounds)
    assert g.rows is not None
    if g.in_order:
        return _whole_blocks_in_order(g.rows, bounds)
    counts = np.diff(bounds)
    starts = np.repeat(bounds[:-1], counts)
    at = np.arange(len(order)) - starts  # each item's place among its block's
    # (when order is 0 .. n-1, each block's items go to consecutive rows)
    ok = (g.rows[order] == at) & (order - order[starts] == at)
    return np.logical_and.reduceat(ok, bounds[:-1])  # type: ignore[no-any-return]


def _whole_blocks_in_order(rows: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """:func:`_whole_blocks` of items in block order going to rows ``0 ..
    n-1`` (each block's items to consecutive rows): per block, True when
    its items' rows in it are ``0, 1, ...`` in turn, i.e. the first is row 0
    and each next one row further. With no array of each item's place in
    its block (two int64 arrays of the items' size fewer)."""
    n = len(rows)
    step = np.empty(n, bool)  # step[i]: item i + 1 is on the row after item i's
    # (of unsigned rows, the difference wraps: 1 only for the next row, as
    # no block holds 2**32 rows)
    np.equal(np.subtract(rows[1:], rows[:-1]), 1, out=step[:-1])
    step[bounds[1:] - 1] = True  # a block's last item: the next block starts anew
    first = rows[bounds[:-1]] == 0
    return first & np.logical_and.reduceat(step, bounds[:-1])  # type: ignore[no-any-return]


def _read_in_place(src: BlockSource, g: _Kind, bids: list[int]) -> list[int]:
    """Read the uncached, uncompressed blocks whose items fill them, in
    order, and go to consecutive rows of the caller's array straight into
    those rows (``os.preadv``: the header to a scratch buffer, the body to
    the rows; runs of blocks adjacent in a pack in one call, in file order),
    their checksums verified there. Returns the block positions left to
    the other paths (rows they overwrite). The blocks are planned and
    checked with numpy, not one by one."""
    nbytes, order, bounds = g.nbytes, g.order, np.asarray(g.bounds)
    rows = src.block_rows(bids)
    counts = np.diff(bounds)
    ok = _whole_blocks(g) & (rows[:, 2] == HEADER_SIZE + counts * nbytes)
    if src.caches_blocks():
        ok &= [not src.is_cached(p, b) for p, b in rows[:, :2].tolist()]
    sel = np.flatnonzero(ok)
    rest = np.flatnonzero(~ok).tolist()
    if not len(sel):
        return rest
    src.check_extents(rows[sel])  # inside their pack files
    plan = sel[np.lexsort((rows[sel, 1], rows[sel, 0]))]  # block positions, in file order
    packs, boffs, blens = (rows[plan, i] for i in range(3))
    starts = order[bounds[plan]].astype(np.int64) * nbytes  # each body's place in the rows
    fds = {p: src.fd(p) for p in set(packs.tolist())}  # (opened here, not on another thread)
    body = g.buf.reshape(-1).data
    sound, good = _read_in_parts(fds, body, packs, boffs, blens, starts)
    rest += plan[~sound].tolist()  # the careful path decodes them or says what is wrong
    bad = np.flatnonzero(sound & ~good)
    if len(bad):
        i = int(bad[0])
        raise IntegrityError(
            f"block at {int(boffs[i])} of {src.pack_path(int(packs[i]))} fails its checksum"
        )
    rest.sort()
    return rest


def _read_in_parts(
    fds: dict[int, int],
    body: memoryview,
    packs: np.ndarray,
    boffs: np.ndarray,
    blens: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_read_checked` of planned blocks; from :data:`PARALLEL_BYTES`
    of them on (and two processors), in parts of about :data:`PART_BYTES`
    that this thread takes from the front and a second one from the back
    (``preadv`` and the checksums release the GIL) until they meet. When
    the second thread does not get a processor soon (a busy machine), this
    one reads every part: never slower than alone by more than the cuts.
    Every part taken is done before it returns or raises; a part is never
    read after it returns."""
    cum = np.cumsum(blens)
    if not len(cum) or cum[-1] < PARALLEL_BYTES or threads.WORKERS < 2:
        return _read_checked(fds, body, packs, boffs, blens, starts)
    n = max(2, int(cum[-1] // PART_BYTES))
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n) // n) + 1  # at block bounds
    edges = sorted({0, len(cum), *cuts.tolist()})
    parts = list(itertools.pairwise(edges))
    done: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(parts)
    left = [0, len(parts) - 1]  # the next part from the front, and from the back
    busy = [False]  # the second thread is reading a part
    failed: list[BaseException] = []
    cond = threading.Condition()

    def read(i: int) -> None:
        a, b = parts[i]
        done[i] = _read_checked(fds, body, packs[a:b], boffs[a:b], blens[a:b], starts[a:b])

    def from_back() -> None:
        while True:
            with cond:
                if left[0] > left[1]:
                    return
                i = left[1]
                left[1] -= 1
                busy[0] = True
            try:
                read(i)
            except BaseException as exc:  # raised on the caller's thread
                failed.append(exc)
            finally:
                with cond:
                    busy[0] = False
                    cond.notify_all()

    threads.reader().submit(from_back)
    try:
        while True:
            with cond:
                if left[0] > left[1]:
                    break
                i = left[0]
                left[0] += 1
            read(i)
    finally:
        with cond:
            left[0] = left[1] + 1  # no part taken from now on
            while busy[0]:
                cond.wait()
    if failed:
        raise failed[0]
    got = [d for d in done if d is not None]
    assert len(got) == len(parts)
    return np.concatenate([d[0] for d in got]), np.concatenate([d[1] for d in got])


def _read_checked(
    fds: dict[int, int],
    body: memoryview,
    packs: np.ndarray,
    boffs: np.ndarray,
    blens: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Read planned blocks (:func:`_read_planned`); per block ``(sound,
    good)``: its header is sound and it was read whole, and (of the sound
    ones) its body's checksum is the header's."""
    got, heads, bodies = _read_planned(fds, body, packs, boffs, blens, starts)
    sound = (
        (got == blens)
        & (heads["magic"] == BLOCK_MAGIC)
        & (heads["codec"] == CODEC_RAW)
        & (heads["rawlen"] == blens - HEADER_SIZE)
    )
    # (a sound block's body is the whole of its view)
    views = bodies if sound.all() else [bodies[i] for i in np.flatnonzero(sound).tolist()]
    good = np.zeros(len(sound), bool)
    good[sound] = np.array(crc_many(views), np.uint32) == heads["crc"][sound]
    return sound, good


#: a block header as :mod:`.block_format` lays it out (magic, codec, raw length, CRC-32)
_HEAD = np.dtype(
    [("magic", "S4"), ("codec", "u1"), ("pad", "V3"), ("rawlen", "<u8"), ("crc", "<u4")]
)


def _read_planned(
    fds: dict[int, int],
    body: memoryview,
    packs: np.ndarray,
    boffs: np.ndarray,
    blens: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[memoryview]]:
    """Read blocks (in file order) with scattering ``preadv`` calls, runs of
    blocks adjacent in a pack in one call: each header to a scratch buffer,
    each body to ``body[starts[i]:]`` (``fds``: a descriptor of each pack,
    open for reading). Returns the bytes read per block (a short read
    shortens the last blocks of its run), the headers, and the views of
    ``body`` each body was read to (``blens[i]`` less a header)."""
    k = len(packs)
    heads = np.zeros(k, _HEAD)
    hv = heads.view(np.uint8).data
    # a run ends where the next block is in another pack or not adjacent, and
    # every IOV_MAX // 2 blocks
    cut = np.flatnonzero((packs[1:] != packs[:-1]) | (boffs[1:] != boffs[:-1] + blens[:-1])) + 1
    edges = sorted({0, k, *cut.tolist(), *range(0, k, _IOV_MAX // 2)})
    sizes = (blens - HEADER_SIZE).tolist()
    at = starts.tolist()
    got = np.zeros(k, np.int64)
    bodies: list[memoryview] = []
    for a, b in itertools.pairwise(edges):
        iov: list[memoryview] = []
        for t in range(a, b):
            iov.append(hv[t * HEADER_SIZE : (t + 1) * HEADER_SIZE])
            iov.append(view := body[at[t] : at[t] + sizes[t]])
            bodies.append(view)
        n = os.preadv(fds[int(packs[a])], iov, int(boffs[a]))
        before = np.cumsum(blens[a:b]) - blens[a:b]  # bytes of the run before each block
        got[a:b] = np.clip(n - before, 0, blens[a:b])
    return got, heads, bodies


def _stream(
    src: BlockSource, g: _Kind, bids: list[int], todo: Sequence[int] | None = None
) -> tuple[list[int], int]:
    """Read the items of uncached, uncompressed blocks in bulk.

    Blocks are read (``os.preadv``, no intermediate copies) into one
    buffer per window of :data:`STREAM_WINDOW` bytes, each placed so its
    items are rows of it, and their checksums verified. When the items
    fill most of the window, each is returned as a view of its row
    (``g.direct[i]``: no copy at all; items are distinct rows, so the
    arrays stay independent); otherwise they are copied into ``buf``
    with one fancy index. Blocks bypass the block cache (a bulk read
    would only flush it). Returns the block positions left to the
    caller (cached, compressed, or odd ones) and the number of items
    handed out in ``direct``.
    """
    rest: list[int] = []
    n_direct = 0
    window: list[_Slot] = []
    size = 0
    todo = range(len(bids)) if todo is None else todo
    last = todo[-1] if len(todo) else -1
    for j in todo:
        pack, boff, blen = src.block_row(bids[j])
        if src.is_cached(pack, boff) or blen <= HEADER_SIZE:
            rest.append(j)
        else:  # the window's buffer is sized from blen: check it first
            src.checked_fd(pack, boff, blen)
            window.append((j, pack, boff, blen, size))
            size += blen + g.nbytes  # room to align the next block's rows
        if window and (size >= STREAM_WINDOW or j == last):
            left, n = _stream_window(src, g, window, size)
            rest += left
            n_direct += n
            window, size = [], 0
    rest.sort()
    return rest, n_direct


def _stream_window(
    src: BlockSource, g: _Kind, window: list[_Slot], size: int
) -> tuple[list[int], int]:
    """Read one window of blocks (see :func:`_stream`); returns the block
    positions left to the caller and the number of items handed out."""
    nbytes, rows, order, bounds = g.nbytes, g.rows, g.order, g.bounds
    assert rows is not None  # streamed only when every item sits on a row
    big = np.empty(size + nbytes, np.uint8)
    mv = big.data
    rest: list[int] = []
    items: list[np.ndarray] = []
    srcs: list[np.ndarray] = []
    places = [start + (-(start + HEADER_SIZE)) % nbytes for _, _, _, _, start in window]
    gots = _scatter_read(src, window, places, mv)
    ok: list[int] = []  # window positions whose header is sound
    for w, (j, _pack, _boff, blen, _start) in enumerate(window):
        place = places[w]  # the body starts on a row
        magic, codec, rawlen = HEADER.unpack_from(mv, place)
        if (
            gots[w] != blen
            or magic != BLOCK_MAGIC
            or codec != CODEC_RAW
            or (rawlen != blen - HEADER_SIZE or rawlen % nbytes)
        ):
            rest.append(j)  # the careful path decodes it or says what is wrong
        else:
            ok.append(w)
    crcs = crc_many([mv[places[w] + HEADER_SIZE : places[w] + window[w][3]] for w in ok])
    for w, got_crc in zip(ok, crcs, strict=True):
        j, pack, boff, blen, _start = window[w]
        place = places[w]
        rawlen = blen - HEADER_SIZE
        (crc,) = CRC.unpack_from(mv, place + HEADER.size)
        if got_crc != crc:
            raise IntegrityError(f"block at {boff} of {src.pack_path(pack)} fails its checksum")
        idx = order[bounds[j] : bounds[j + 1]]
        r = rows[idx]
        if len(r) and int(r.max()) >= rawlen // nbytes:
            rest.append(j)
            continue
        items.append(idx)
        srcs.append(r + (place + HEADER_SIZE) // nbytes)
    if items:
        table = big[: len(big) - len(big) % nbytes].reshape(-1, nbytes)
        dst, picked = np.concatenate(items), np.concatenate(srcs)
        dense = not g.into and len(picked) * nbytes * 2 >= len(big)
        if dense and len(picked) > 1:
            ss = np.sort(picked)
            dense = bool((ss[1:] != ss[:-1]).all())  # no row shared by two items
        if dense:  # views of the rows: the window stays alive with them
            views = list(table.view(g.dtype).reshape((-1, *g.shape)))
            got = list(map(views.__getitem__, picked.tolist()))
            d0 = int(dst[0])
            if len(dst) == 1 or (np.diff(dst) == 1).all():  # blocks in output order
                g.direct[d0 : d0 + len(got)] = got
            else:
                for i, a in zip(dst.tolist(), got, strict=True):
                    g.direct[i] = a
            return rest, len(dst)
        d0 = int(dst[0])
        if len(dst) == 1 or (np.diff(dst) == 1).all():  # one run: no temporary copy
            np.take(table, picked, axis=0, out=g.buf[d0 : d0 + len(dst)], mode="clip")
        else:
            g.buf[dst] = table[picked]
    return rest, 0


def _scatter_read(
    src: BlockSource, window: list[_Slot], places: list[int], mv: memoryview
) -> list[int]:
    """Read each block of ``window`` to its place in ``mv``, runs of blocks
    adjacent in one pack with one scattering ``preadv``; bytes read per block."""
    gots = [0] * len(window)
    w = 0
    while w < len(window):
        _, pack, boff, blen, _ = window[w]
        end = w + 1
        nxt = boff + blen
        while end < len(window) and end - w < _IOV_MAX:
            _, p2, b2, l2, _ = window[end]
            if p2 != pack or b2 != nxt:
                break
            nxt += l2
            end += 1
        iov = [mv[places[k] : places[k] + window[k][3]] for k in range(w, end)]
        got = os.preadv(src.fd(pack), iov, boff)
        for k in range(w, end):  # a short read shortens the blocks at the end
            gots[k] = max(0, min(window[k][3], got))
            got -= window[k][3]
        w = end
    return gots


__all__ = ["PARALLEL_BYTES", "PART_BYTES", "STREAM_WINDOW", "BlockSource", "gather_kind"]
