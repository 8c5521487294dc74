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
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IntegrityError
from ..store.digest import Payload, digest_bytes
from . import bounded
from . import data_transport as dt
from .data_transport import DataRemote, RemoteLookup

if TYPE_CHECKING:
    from ..store.packs import PackWriter
    from .transfer import Progress, TransferReport


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
        self.row_list = rows.tolist()
        self.ioffs = lk.ioff[rows].tolist()
        self.ilens = lk.ilen[rows].tolist()
        self.knos = lk.kind[rows].tolist()
        self.blens = lk.blen[rows].tolist()
        self.total = int(lk.ilen[rows].sum())
        self.kinds_ok = [dt.kind_nbytes(k) for k in lk.kinds]
        # the wanted items of each block, and the blocks in pack order
        self.by_block: dict[tuple[int, int], list[int]] = {}
        packs, boffs = lk.pack[rows].tolist(), lk.boff[rows].tolist()
        for j, (pk, bo) in enumerate(zip(packs, boffs, strict=True)):
            self.by_block.setdefault((pk, bo), []).append(j)
        self.pack_no = {pid: i for i, pid in enumerate(lk.pack_ids)}
        self.bad_items = self._too_big(limits)
        self.max_raw: dict[tuple[int, int], int] = {}
        refused_blocks = self._check_blocks()
        self.refused: list[bytes] = []
        for key in refused_blocks:
            self.refused.extend(self.digest(j) for j in self.by_block[key])
        self.refused.extend(
            self.digest(j)
            for j in sorted(self.bad_items)
            if (packs[j], boffs[j]) not in refused_blocks
        )
        blocks = [
            (lk.pack_ids[pk], bo, self.blens[items[0]])
            for (pk, bo), items in self.by_block.items()
            if (pk, bo) not in refused_blocks
        ]
        self.plans = dt.plan_ranges(blocks)

    def digest(self, j: int) -> bytes:
        return self.lk.digest_of(self.row_list[j])

    def _too_big(self, limits: Mapping[bytes, int] | None) -> set[int]:
        """Items stated larger than their limit."""
        cap = bounded.MAX_PAYLOAD_BYTES
        if limits is None:
            return {j for j, n in enumerate(self.ilens) if n > cap}
        return {
            j for j, n in enumerate(self.ilens) if n > min(cap, limits.get(self.digest(j), cap))
        }

    def _check_blocks(self) -> set[tuple[int, int]]:
        """Set the raw bound of each block; the blocks no wanted payload can
        need at their stated length."""
        ilens, bad = self.ilens, self.bad_items
        refused = set()
        for key, items in self.by_block.items():
            good = [ilens[j] for j in items if j not in bad] if bad else None
            biggest = max(ilens[j] for j in items) if good is None else max(good, default=-1)
            allowed = block_raw_bound(biggest)
            self.max_raw[key] = allowed
            if biggest < 0 or self.blens[items[0]] > dt.BLOCK_HEADER_SIZE + allowed:
                refused.add(key)
        return refused

    def run(
        self,
        remote: DataRemote,
        writer: PackWriter,
        report: TransferReport,
        progress: Progress | None,
        batch_bytes: int,
    ) -> None:
        """Read the planned ranges in batches of about ``batch_bytes``; store
        each payload that matches its digest, refuse the others."""
        plans, done, i = self.plans, 0, 0
        while i < len(plans):
            batch: list[tuple[str, int, int, list[tuple[int, int]]]] = []
            size = 0
            while i < len(plans) and (not batch or size + plans[i][2] - plans[i][1] <= batch_bytes):
                batch.append(plans[i])
                size += plans[i][2] - plans[i][1]
                i += 1
            datas = remote.read_ranges([(pid, s, e) for pid, s, e, _ in batch])
            for (pid, start, _end, blks), data in zip(batch, datas, strict=True):
                for boff, buf in dt.split_blocks(data, start, blks):
                    done += self._store_block(pid, boff, buf, writer, report)
            writer.flush()
            if progress is not None:
                progress("payloads", done, self.total)

    def _store_block(
        self,
        pid: str,
        boff: int,
        buf: bytes | memoryview,
        writer: PackWriter,
        report: TransferReport,
    ) -> int:
        """Decode one block and store its wanted payloads; the bytes stored."""
        key = (self.pack_no[pid], boff)
        items = self.by_block[key]
        try:
            raw = memoryview(
                dt.decode_block(buf, f"at {boff} of remote pack {pid}", self.max_raw[key])
            )
        except IntegrityError:
            report.refused.extend(self.digest(j) for j in items)
            return 0
        kinds, stored = self.lk.kinds, 0
        for j in items:
            if j in self.bad_items:
                continue  # refused when planned, unread
            d, ioff, ilen, kno = self.digest(j), self.ioffs[j], self.ilens[j], self.knos[j]
            item = raw[ioff : ioff + ilen]
            if (
                len(item) != ilen
                or self.kinds_ok[kno] != ilen
                or digest_bytes(kinds[kno], item) != d
            ):
                report.refused.append(d)
                continue
            writer.add(Payload(d, kinds[kno], item))
            report.payloads += 1
            report.raw_bytes += ilen
            stored += ilen
        return stored
