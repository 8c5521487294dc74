"""The plan of a ranged fetch from a data remote, and its careful execution.

:class:`FetchPlan` turns the rows of a remote's pack indexes that a fetch
wants into byte ranges of remote packs, after checking every size the remote
states (payload and block lengths) against what the records allow; its
:meth:`~FetchPlan.run` reads those ranges, decodes each block within its
bound and stores only the payloads that match their digests. Used by
:func:`hangar_git.remotes.transfer.download_payloads`.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IntegrityError
from ..store.block_format import CODEC_BLOSC2_LZ4, CODEC_RAW, CheckedBlock, written_here
from ..store.digest import digest_prefix
from ..store.digest import row_digests as digest_rows
from ..store.index import key_order
from . import bounded
from . import data_transport as dt
from .data_transport import DataRemote, RemoteLookup
from .lookup import DigestLimits, distinct
from .packformat import block_fields

if TYPE_CHECKING:
    from ..store.packs import PackWriter
    from .transfer import Progress, TransferReport


#: bytes of ranged reads asked for in one call: the next group is read while one is checked
READ_GROUP = 8 * 1024 * 1024
#: one ranged read: ``(pack id, start, end, [(block offset, block length) ...])``
Plan = tuple[str, int, int, list[tuple[int, int]]]
#: remote codec number -> the local packs' number for the same body (both read any blosc2)
LOCAL_CODEC = {dt.CODEC_RAW: CODEC_RAW, dt.CODEC_BLOSC2: CODEC_BLOSC2_LZ4}


def row_digests(kind: str, rows: np.ndarray) -> list[bytes]:
    """The digest of each row of ``rows`` as a payload of ``kind``.

    Row ``i`` gets ``digest_bytes(kind, rows[i])``: the kind header is hashed
    once and its hash state copied per row.

    Parameters
    ----------
    kind : str
        The kind header, exactly as the digests were made with it.
    rows : numpy.ndarray
        uint8, one payload a row.

    Returns
    -------
    list of bytes
    """
    n, size = rows.shape
    if 0 < size < 4096:  # rows as bytes cut by numpy, hashed with no Python code per row
        items = np.ascontiguousarray(rows).reshape(-1).view(f"V{size}")
        out: list[bytes] = []
        for lo in range(0, n, _HASH_ROWS):
            out += digest_rows(kind, items[lo : lo + _HASH_ROWS].tolist())
        return out
    copy = digest_prefix(kind).copy

    def one(data: bytes | memoryview) -> bytes:
        h = copy()
        h.update(data)
        return h.digest()

    if not size:
        return [one(b"")] * n
    view = np.ascontiguousarray(rows).reshape(-1).data.cast("B")
    return [one(view[i : i + size]) for i in range(0, len(view), size)]


#: small rows copied out as bytes at a time by :func:`row_digests`
_HASH_ROWS = 1024


def block_raw_bound(biggest_item: int) -> int:
    """The most raw bytes a block may state when the largest payload wanted
    from it has ``biggest_item`` bytes (what a packer may have put beside it).

    A block whose stored length exceeds ``BLOCK_HEADER_SIZE`` plus this bound
    cannot be one that holds such payloads: it is refused unread.
    """
    return max(bounded.MAX_BLOCK_RAW, dt.BLOCK_TARGET + biggest_item)


class FetchPlan:
    """Which byte ranges of which remote packs to read for the payloads at
    ``rows`` of a remote's lookup, with every size the remote states checked
    before anything is read for it.

    A payload over its limit (``limits[digest]``, at most
    :data:`~hangar_git.remotes.bounded.MAX_PAYLOAD_BYTES`) is refused unread;
    so is every payload of a block longer than its wanted payloads can need.
    :attr:`refused` lists them; :meth:`run` reads, verifies and stores the
    others.
    """

    def __init__(
        self, lk: RemoteLookup, rows: np.ndarray, limits: Mapping[bytes, int] | None
    ) -> None:
        self.lk = lk
        rows = np.asarray(rows, np.int64)
        self.rows = rows
        self.ioffs = lk.ioff[rows]
        self.ilens = lk.ilen[rows]
        self.knos = lk.kind[rows]
        self.total = int(self.ilens.sum())
        #: bytes of one payload of each kind number (-1: a kind refused)
        self.kind_bytes = np.array([_or(dt.kind_nbytes(k), -1) for k in lk.kinds] or [-1])
        self.bad = self._too_big(limits)  # bool per item
        # the wanted items of each block (in the block's order), the blocks in pack order
        packs, boffs, blens = lk.pack[rows], lk.boff[rows], lk.blen[rows]
        order = _block_order(packs, boffs, self.ioffs)
        cut = np.flatnonzero((np.diff(packs[order]) != 0) | (np.diff(boffs[order]) != 0)) + 1
        starts = np.concatenate(([0], cut)).astype(np.int64) if len(order) else cut
        ends = np.concatenate((cut, [len(order)])).astype(np.int64) if len(order) else cut
        heads = order[starts]  # an item of each block
        keys = list(zip(packs[heads].tolist(), boffs[heads].tolist(), strict=True))
        spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
        self.by_block: dict[tuple[int, int], np.ndarray] = {
            key: order[a:b] for key, (a, b) in zip(keys, spans, strict=True)
        }
        # the digests of each block's wanted items, in its order (one list cut in pieces)
        in_order = lk.digests_at(rows[order])
        self.block_digests: dict[tuple[int, int], list[bytes]] = {
            key: in_order[a:b] for key, (a, b) in zip(keys, spans, strict=True)
        }
        #: blocks whose wanted items are rows of one kind from offset 0, none refused
        self.rows_only = self._rows_only(order, cut, packs, boffs)
        self.pack_no = {pid: i for i, pid in enumerate(lk.pack_ids)}
        bounds, refused = self._check_blocks(order, starts, blens[heads])
        self.max_raw: dict[tuple[int, int], int] = dict(zip(keys, bounds.tolist(), strict=True))
        refused_blocks = {keys[b] for b in refused.tolist()}
        self.refused: list[bytes] = []
        skip = self.bad.copy()
        for key in refused_blocks:
            self.refused.extend(self.digests[j] for j in self.by_block[key].tolist())
            skip[self.by_block[key]] = False
        self.refused.extend(self.digests[j] for j in np.flatnonzero(skip).tolist())
        kept = np.ones(len(keys), bool)
        kept[refused] = False
        blocks = [
            (lk.pack_ids[pk], bo, bl)
            for (pk, bo), bl, k in zip(keys, blens[heads].tolist(), kept.tolist(), strict=True)
            if k
        ]
        self.plans = dt.plan_ranges(blocks)

    def _rows_only(
        self, order: np.ndarray, cut: np.ndarray, packs: np.ndarray, boffs: np.ndarray
    ) -> set[tuple[int, int]]:
        """The blocks whose wanted items (``order``, cut into blocks at ``cut``)
        are all of one kind, at its length, one after the other from offset 0,
        and none over its limit: their rows are read without a copy."""
        if not len(order):
            return set()
        starts = np.concatenate(([0], cut))
        first = np.zeros(len(order), bool)
        first[starts] = True
        ioff, ilen, kno = self.ioffs[order], self.ilens[order], self.knos[order]
        prev_end = np.concatenate(([0], (ioff + ilen)[:-1]))
        prev_end[first] = 0
        group_kind = np.repeat(kno[starts], np.diff(np.concatenate((starts, [len(order)]))))
        ok = (ioff == prev_end) & (ilen == self.kind_bytes[kno]) & (kno == group_kind)
        ok &= ~self.bad[order]
        good = np.logical_and.reduceat(ok, starts)
        heads = order[starts[good]]
        return set(zip(packs[heads].tolist(), boffs[heads].tolist(), strict=True))

    @cached_property
    def digests(self) -> list[bytes]:
        """The digest of each wanted item (built when first asked for: a
        fetch of whole blocks names its digests by block)."""
        return self.lk.digests_at(self.rows)

    def digest(self, j: int) -> bytes:
        """The digest of wanted item ``j``."""
        return self.digests[j]

    def _too_big(self, limits: Mapping[bytes, int] | None) -> np.ndarray:
        """Items stated larger than their limit."""
        cap = bounded.MAX_PAYLOAD_BYTES
        if limits is None:
            return self.ilens > cap
        if isinstance(limits, DigestLimits):  # arrays: no lookup per digest
            smallest = int(limits.bounds.min()) if len(limits.bounds) else cap
        else:
            smallest = min(cap, *limits.values())
        if not len(self.ilens) or int(self.ilens.max()) <= min(cap, smallest):
            return np.zeros(len(self.ilens), bool)  # none over even the smallest bound
        if isinstance(limits, DigestLimits):
            bound = limits.bounds_of(self.lk.index.at(self.rows), cap)
        else:
            get = limits.get
            bound = np.fromiter((get(d, cap) for d in self.digests), np.int64, len(self.digests))
        return self.ilens > np.minimum(bound, cap)

    def _check_blocks(
        self, order: np.ndarray, starts: np.ndarray, blens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(raw bound of each block, numbers of the blocks refused)``: the
        bound is :func:`block_raw_bound` of the largest of the block's wanted
        payloads not refused; a block is refused when no wanted payload can
        need it at its stated length ``blens``."""
        if not len(order):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        sizes = np.where(self.bad[order], -1, self.ilens[order])
        biggest = np.maximum.reduceat(sizes, starts)
        bounds = np.maximum(bounded.MAX_BLOCK_RAW, dt.BLOCK_TARGET + biggest)
        too_long = blens > dt.BLOCK_HEADER_SIZE + bounds
        return bounds, np.flatnonzero((biggest < 0) | too_long)

    def run(
        self,
        remote: DataRemote,
        writer: PackWriter,
        report: TransferReport,
        progress: Progress | None,
        batch_bytes: int,
    ) -> None:
        """Read the planned ranges, the next group while one is checked; store
        each payload that matches its digest, refuse the others, and flush
        each time about ``batch_bytes`` were read."""
        groups = _read_groups(self.plans, max(1, min(batch_bytes, READ_GROUP)))
        done = size = 0
        verified = _Verified()

        def read(group: list[Plan]) -> list[bytes]:
            return remote.read_ranges([(pid, s, e) for pid, s, e, _ in group])

        with ThreadPoolExecutor(1, thread_name_prefix="hangar-fetch") as pool:
            ahead = pool.submit(read, groups[0]) if groups else None
            for k, group in enumerate(groups):
                assert ahead is not None
                datas = ahead.result()
                ahead = pool.submit(read, groups[k + 1]) if k + 1 < len(groups) else None
                for (pid, start, end, blks), data in zip(group, datas, strict=True):
                    for boff, buf in dt.split_blocks(data, start, blks):
                        self._check_block(pid, boff, buf, verified, report)
                    size += end - start
                if size >= batch_bytes or ahead is None:
                    done += verified.store(writer, report)
                    writer.flush()
                    size = 0
                    if progress is not None:
                        progress("payloads", done, self.total)

    def _check_block(
        self,
        pid: str,
        boff: int,
        buf: bytes | memoryview,
        verified: _Verified,
        report: TransferReport,
    ) -> None:
        """Decode one block and queue its wanted payloads in ``verified`` (by
        kind); refuse those the block cannot hold at their stated kind."""
        key = (self.pack_no[pid], boff)
        items = self.by_block[key]
        try:
            raw = dt.block_raw(buf, f"at {boff} of remote pack {pid}", self.max_raw[key])
        except IntegrityError:
            report.refused.extend(self.digests[j] for j in items.tolist())
            return
        if key in self.rows_only:  # rows of one kind from offset 0: a view of them
            kno, n = int(self.knos[items[0]]), len(items)
            width = int(self.ilens[items[0]])
            if n * width <= len(raw):
                rows = np.frombuffer(raw, np.uint8, count=n * width).reshape(n, width)
                ds = self.block_digests[key]
                kind = self.lk.kinds[kno]
                verified.add(kno, kind, ds, rows, report, self._whole(buf, kind, ds, width))
                return
        items = items[~self.bad[items]]  # the others were refused when planned, unread
        ioff, ilen, kno = self.ioffs[items], self.ilens[items], self.knos[items]
        fits = (ioff + ilen <= len(raw)) & (self.kind_bytes[kno] == ilen)
        if not fits.all():
            report.refused.extend(self.digests[j] for j in items[~fits].tolist())
            items, ioff, ilen, kno = items[fits], ioff[fits], ilen[fits], kno[fits]
        for k in distinct(kno).tolist():
            sel = kno == k
            ds = [self.digests[j] for j in items[sel].tolist()]
            rows = _item_rows(raw, ioff[sel], ilen[sel])
            verified.add(k, self.lk.kinds[k], ds, rows, report)

    @staticmethod
    def _whole(
        buf: bytes | memoryview, kind: str, ds: list[bytes], width: int
    ) -> CheckedBlock | None:
        """Block ``buf`` (CRC verified) to keep as it is when its rows ``ds``
        fill it and it is shaped as the local writer shapes blocks (so it reads
        back as fast: see :func:`~hangar_git.store.block_format.written_here`)."""
        codec, rawlen, crc = block_fields(buf)
        local = LOCAL_CODEC.get(codec)
        body = memoryview(buf).cast("B")[dt.BLOCK_HEADER_SIZE :]
        if local is None or len(ds) * width != rawlen:  # bytes besides the rows
            return None
        if not written_here(local, body, len(ds), width):
            return None
        return CheckedBlock(kind, local, rawlen, crc, body, ds)


def _block_order(packs: np.ndarray, boffs: np.ndarray, ioffs: np.ndarray) -> np.ndarray:
    """``np.lexsort((ioffs, boffs, packs))`` (all >= 0): by one packed uint64
    key when the three fit in one (three times as fast at 60,000 items)."""
    if not len(packs):
        return np.zeros(0, np.int64)
    bits = [max(1, int(a.max()).bit_length()) for a in (packs, boffs, ioffs)]
    if min(int(a.min()) for a in (packs, boffs, ioffs)) < 0 or sum(bits) > 64:
        return np.lexsort((ioffs, boffs, packs))
    key = packs.astype(np.uint64) << np.uint64(bits[1] + bits[2])
    key |= boffs.astype(np.uint64) << np.uint64(bits[2])
    key |= ioffs.astype(np.uint64)
    return key_order(key)[0]


def _read_groups(plans: list[Plan], group_bytes: int) -> list[list[Plan]]:
    """``plans`` in groups of about ``group_bytes`` (at least one plan each),
    each group read in one call (its ranges concurrently where the backend can)."""
    groups: list[list[Plan]] = []
    size = 0
    for p in plans:
        if not groups or size + p[2] - p[1] > group_bytes:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += p[2] - p[1]
    return groups


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _item_rows(raw: bytes | memoryview, ioff: np.ndarray, ilen: np.ndarray) -> np.ndarray:
    """The items at ``ioff`` (all ``ilen[0]`` bytes long) of a block's raw
    bytes, as uint8 rows (each item was checked to lie within ``raw``)."""
    n, width = len(ioff), int(ilen[0]) if len(ilen) else 0
    buf = np.frombuffer(raw, np.uint8)
    if not n or not width:
        return np.zeros((n, width), np.uint8)
    base = int(ioff.min())
    rel = ioff - base
    if not (rel % width).any():  # on a grid of rows from the first: one fancy index
        grid = buf[base : base + (len(buf) - base) // width * width].reshape(-1, width)
        at = rel // width
        if int(at[-1]) == n - 1 and bool((np.diff(at) == 1).all()):
            return grid[:n]  # one after the other: a view, no copy
        return grid[at]
    out = np.empty((n, width), np.uint8)
    for r, o in enumerate(ioff.tolist()):
        out[r] = buf[o : o + width]
    return out


class _Verified:
    """The payloads of a batch of blocks that match their digests, by kind
    number, until they are stored; and the blocks whose payloads all match
    and fill them, to be stored as they are."""

    def __init__(self) -> None:
        self.by_kind: dict[int, tuple[str, list[bytes], list[np.ndarray]]] = {}
        self.whole: list[CheckedBlock] = []

    def add(
        self,
        kno: int,
        kind: str,
        digests: list[bytes],
        rows: np.ndarray,
        report: TransferReport,
        whole: CheckedBlock | None = None,
    ) -> None:
        """Keep the rows of ``rows`` that match their ``digests``; refuse the
        others. ``whole``: the block these rows fill, its CRC verified: kept
        as it is when every row matches."""
        got = row_digests(kind, rows)
        if got != digests:
            ok = [i for i, (g, d) in enumerate(zip(got, digests, strict=True)) if g == d]
            good = set(ok)
            report.refused.extend(d for i, d in enumerate(digests) if i not in good)
            rows = rows[ok]
            digests = [digests[i] for i in ok]
        elif whole is not None:
            self.whole.append(whole)
            return
        if not digests:
            return
        group = self.by_kind.get(kno)
        if group is None:
            group = self.by_kind[kno] = (kind, [], [])
        group[1].extend(digests)
        group[2].append(rows)

    def store(self, writer: PackWriter, report: TransferReport) -> int:
        """Store the payloads kept (the whole blocks as they are); the bytes stored."""
        stored = 0
        if self.whole:
            writer.add_blocks(self.whole)
            for b in self.whole:
                report.payloads += len(b.digests)
                stored += b.rawlen
            report.raw_bytes += stored
            self.whole.clear()
        for kind, digests, parts in self.by_kind.values():
            rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
            writer.add_stacked(kind, digests, rows)
            report.payloads += len(digests)
            report.raw_bytes += rows.nbytes
            stored += rows.nbytes
        self.by_kind.clear()
        return stored
