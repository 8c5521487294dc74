"""Whole local blocks sent as they are stored: the fast path of a push.

The local store's blocks and the data remote's have the same layout (a
20-byte header: magic, codec, raw length, CRC-32 of the stored body; then
the body, compressed by the same codec numbers; see
:mod:`hangar_git.store.block_format` and :mod:`.packformat`), only the
magic differs. A local block whose items are *all* wanted by a push, and
whose raw bytes are nothing but those items, is therefore sent with its body
unchanged: no payload is copied out, and nothing is compressed again.

It is still checked before it leaves, as every payload a push sends: the
block's CRC-32, its length, and each of its payloads hashed against its
digest (:class:`~hangar_git.errors.IntegrityError` otherwise, and nothing of
it is sent). Local blocks are read through a private (copy-on-write)
mapping of the pack: once checked, a block's header is overwritten there
with the remote one (only that page is copied; the file never changes), so
neighbouring blocks sent whole lie one after the other in memory exactly as
the remote pack holds them, and travel (and are hashed) as one piece.

A block holding any byte that is not a wanted payload (a payload of
another branch, one dropped by ``gc``, one the remote has already) never
leaves this way: its wanted payloads are left to :mod:`.transfer`, which
reads them out and packs them anew.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IntegrityError
from ..store.block_format import BLOCK_MAGIC, CRC, HEADER, HEADER_SIZE
from ..store.checksum import crc32
from ..store.codec import decode_body
from .fetchplan import row_digests
from .lookup import distinct
from .packformat import block_header

if TYPE_CHECKING:
    from ..store.packs import PackReader

#: bytes of neighbouring local blocks read in one call
READ_WINDOW = 16 * 1024 * 1024


@dataclass
class WholeBlock:
    """A local block to send as it is, checked.

    Attributes
    ----------
    digests : list of bytes
        Its payloads, in item order.
    kinds : list of str
        Their kind headers.
    ioff, ilen : numpy.ndarray
        Offset and length of each in the block's raw bytes.
    header : bytes or memoryview
        The remote block header (:func:`~.packformat.block_header`).
    body : memoryview
        The stored body, unchanged.
    raw_bytes : int
        The block's raw length.
    base : memoryview or None
        When set, the header and body lie one after the other at ``at`` of
        ``base`` (read-only; shared by the neighbouring blocks read with it).
    at : int
        Where the block starts in ``base``.
    """

    digests: list[bytes]
    kinds: list[str]
    ioff: np.ndarray
    ilen: np.ndarray
    header: bytes | memoryview
    body: memoryview
    raw_bytes: int
    base: memoryview | None = None
    at: int = 0


def _item_order(bid: np.ndarray, ioff: np.ndarray) -> np.ndarray:
    """``np.lexsort((ioff, bid))`` (int64 arrays): by one sort of uint64 keys
    packing block, offset and position when the three fit in 64 bits (a
    tenth of the time at 60,000 items; the position keeps equal pairs in
    their order, as lexsort does)."""
    n = len(bid)
    pbits = max(1, (n - 1).bit_length())
    obits = max(1, int(ioff.max()).bit_length())
    bbits = max(1, int(bid.max()).bit_length())
    if min(int(bid.min()), int(ioff.min())) < 0 or pbits + obits + bbits > 64:
        return np.lexsort((ioff, bid))
    key = bid.astype(np.uint64) << np.uint64(obits + pbits)
    key |= ioff.astype(np.uint64) << np.uint64(pbits)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    return (key & np.uint64((1 << pbits) - 1)).astype(np.int64)


def _candidates(
    entries: np.ndarray, ilen: np.ndarray, max_raw: int
) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
    """``([(block id, positions in item order)], the other positions)``: the
    blocks whose wanted items follow each other from offset 0 without a gap,
    ``max_raw`` bytes at most (whether they end where the block does is seen
    once its header is read)."""
    n = len(entries)
    if not n:
        return [], np.zeros(0, np.intp)
    bid = entries["block"].astype(np.int64)
    ioff = entries["ioff"].astype(np.int64)
    order = _item_order(bid, ioff)
    b, o, s = bid[order], ioff[order], ilen[order]
    first = np.ones(n, bool)
    first[1:] = b[1:] != b[:-1]
    prev_end = np.zeros(n, np.int64)
    prev_end[1:] = (o + s)[:-1]
    prev_end[first] = 0
    starts = np.flatnonzero(first)
    good = np.logical_and.reduceat((o == prev_end) & (s > 0), starts)
    good &= np.add.reduceat(s, starts) <= max_raw
    groups = np.split(order, starts[1:])
    whole = [(int(b[st]), g) for st, g, ok in zip(starts, groups, good, strict=True) if ok]
    rest = [g for g, ok in zip(groups, good, strict=True) if not ok]
    return whole, (np.concatenate(rest) if rest else np.zeros(0, np.intp))


def _read_ranges(
    reader: PackReader, rows: list[tuple[int, int, int]]
) -> list[tuple[int, int, bytes | memoryview]]:
    """``(pack, start, bytes)`` reads covering the blocks ``rows`` (pack,
    offset, length; sorted), neighbours read together up to READ_WINDOW:
    each window mapped (:func:`_map_window`), else read."""
    out: list[tuple[int, int, bytes | memoryview]] = []
    i = 0
    while i < len(rows):
        pack, start, blen = rows[i]
        end = start + blen
        j = i + 1
        while j < len(rows) and rows[j][0] == pack and rows[j][1] == end:
            if rows[j][1] + rows[j][2] - start > READ_WINDOW:
                break
            end += rows[j][2]
            j += 1
        fd = reader.checked_fd(pack, start, end - start)
        mapped = _map_window(fd, start, end - start)
        data = os.pread(fd, end - start, start) if mapped is None else mapped
        if len(data) != end - start:
            raise IntegrityError(f"blocks at {start} of {reader.pack_path(pack)} are truncated")
        out.append((pack, start, data))
        i = j
    return out


def _map_window(fd: int, start: int, n: int) -> memoryview | None:
    """The ``n`` bytes at ``start`` of pack file ``fd``, mapped privately (no
    copy: checked, hashed and written from the page cache; a write to the
    view copies the page it touches and never reaches the file); None when
    the file is shorter than that now (the caller reads, and finds it
    truncated) or cannot be mapped. Local packs only ever grow (a failed
    write is cut back past the indexed blocks, never into them), so a
    mapping of indexed blocks stays whole while the push reads it; it is
    unmapped once the last view of it is dropped."""
    if n <= 0:
        return None
    try:
        if os.fstat(fd).st_size < start + n:
            return None
        base = start - start % mmap.ALLOCATIONGRANULARITY
        mapped = mmap.mmap(fd, start + n - base, access=mmap.ACCESS_COPY, offset=base)
    except (OSError, ValueError, OverflowError):
        return None
    return memoryview(mapped)[start - base :]


def _check(
    where: str,
    buf: memoryview,
    ds: list[bytes],
    kinds: list[str],
    ioff: np.ndarray,
    ilen: np.ndarray,
) -> WholeBlock | None:
    """The block in ``buf`` holding exactly the payloads ``ds``, checked;
    None when its raw bytes hold more than them."""
    if len(buf) < HEADER_SIZE:
        raise IntegrityError(f"block {where} is truncated")
    magic, codec, rawlen = HEADER.unpack_from(buf)
    (crc,) = CRC.unpack_from(buf, HEADER.size)
    body = buf[HEADER_SIZE:]
    if magic != BLOCK_MAGIC or crc32(body) != crc:
        raise IntegrityError(f"block {where} fails its checksum")
    if rawlen != int(ioff[-1] + ilen[-1]):
        return None  # bytes beside the wanted payloads: they must not leave
    raw = np.frombuffer(decode_body(codec, body, rawlen, where), np.uint8)
    if kinds.count(kinds[0]) == len(kinds):
        got = row_digests(kinds[0], raw.reshape(len(ds), -1))
    else:
        got = [
            row_digests(k, raw[o : o + n].reshape(1, n))[0]
            for k, o, n in zip(kinds, ioff.tolist(), ilen.tolist(), strict=True)
        ]
    if got != ds:
        bad = next(d for d, g in zip(ds, got, strict=True) if g != d)
        raise IntegrityError(
            f"local payload {bad.hex()} does not match its digest: run `git hangar fsck`"
        )
    return WholeBlock(ds, kinds, ioff, ilen, block_header(codec, rawlen, crc), body, rawlen)


def _header_in_place(got: WholeBlock, view: memoryview, shown: memoryview, at: int) -> None:
    """Put the remote header of checked block ``got`` in place of its local
    one at ``at`` of the private mapping ``view`` (``shown``: its read-only
    face), and point ``got`` there: its bytes then follow those of the block
    before it, as in the remote pack."""
    if len(got.header) != HEADER_SIZE:  # never: both headers are of 20 bytes
        return
    view[at : at + HEADER_SIZE] = got.header
    got.header = shown[at : at + HEADER_SIZE]
    got.body = shown[at + HEADER_SIZE : at + HEADER_SIZE + len(got.body)]
    got.base, got.at = shown, at


def send_whole_blocks(
    reader: PackReader,
    digests: Sequence[bytes],
    entries: np.ndarray,
    send: Callable[[WholeBlock], None],
    max_raw: int,
) -> np.ndarray:
    """Hand each local block holding only payloads of ``digests`` to ``send``, checked.

    Parameters
    ----------
    reader : PackReader
        The local store.
    digests : sequence of bytes
        The payloads to push (distinct, all small).
    entries : numpy.ndarray
        Their local index entries, parallel to ``digests``.
    send : callable
        Called with each :class:`WholeBlock`, in pack order.
    max_raw : int
        Raw bytes of the largest block sent whole (a pack's target: a larger
        one is left to be packed anew, cut into packs of that size).

    Returns
    -------
    numpy.ndarray
        Positions in ``digests`` of the payloads not sent: those sharing a
        block with bytes that are not to be pushed, or in a block over
        ``max_raw``.

    Raises
    ------
    IntegrityError
        If a block is truncated or fails its checksum, or a payload does
        not match its digest (``git hangar fsck`` finds which).
    """
    kid = entries["kind"].astype(np.int64)
    uk = distinct(kid)
    nbytes = np.array([reader.kind_nbytes(int(k)) for k in uk.tolist()], np.int64)
    texts = {int(k): reader.kind_text(int(k)) for k in uk.tolist()}
    ilen = nbytes[np.searchsorted(uk, kid)] if len(kid) else np.zeros(0, np.int64)
    whole, rest = _candidates(entries, ilen, max_raw)
    blocks = sorted((*reader.block_row(b), pos) for b, pos in whole)
    left: list[np.ndarray] = [rest]
    ioffs = entries["ioff"].astype(np.int64)
    one_kind = texts[int(uk[0])] if len(uk) == 1 else None  # the usual case: no lookup a block
    digest_at = digests.__getitem__
    k = 0
    for pack, start, data in _read_ranges(reader, [b[:3] for b in blocks]):
        view = memoryview(data)
        shown = None if view.readonly else view.toreadonly()  # a private mapping
        path = reader.pack_path(pack)
        while k < len(blocks) and blocks[k][0] == pack and blocks[k][1] < start + len(data):
            _, boff, blen, pos = blocks[k]
            k += 1
            if one_kind is not None:
                kinds = [one_kind] * len(pos)
            else:
                ks = kid[pos]
                if (ks == ks[0]).all():  # one kind: one name, not one lookup a payload
                    kinds = [texts[int(ks[0])]] * len(ks)
                else:
                    kinds = [texts[x] for x in ks.tolist()]
            got = _check(
                f"at {boff} of {path}",
                view[boff - start : boff - start + blen],
                list(map(digest_at, pos.tolist())),
                kinds,
                ioffs[pos],
                ilen[pos],
            )
            if got is None:
                left.append(pos)
                continue
            if shown is not None:
                _header_in_place(got, view, shown, boff - start)
            send(got)
    return np.sort(np.concatenate(left)) if left else np.zeros(0, np.intp)


__all__ = ["READ_WINDOW", "WholeBlock", "send_whole_blocks"]
