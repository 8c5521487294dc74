"""Blocks checked elsewhere, appended as they are: the fetch side of the store's writer.

:class:`CheckedBlocks` is a mixin of :class:`.writer.PackWriter`: ``fetch-data``
hands it blocks whose CRC-32 and payload digests it verified
(:class:`.block_format.CheckedBlock`); they are written with a local header and
indexed without being decoded or compressed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .appender import PackAppender
from .block_format import CheckedBlock
from .digest import DIGEST_SIZE
from .gather import STREAM_WINDOW
from .index import ENTRY, QUERY
from .manifest import kind_size
from .uncommitted import Uncommitted


class CheckedBlocks:
    """Appending verified blocks (a mixin of :class:`.writer.PackWriter`)."""

    _app: PackAppender
    _new: Uncommitted
    _next_block: int
    _kind_ids: dict[str, int]

    if TYPE_CHECKING:  # the writer's own, used here

        def flush(self) -> None: ...

        def _kind_id(self, kind: str) -> int: ...

        def _fresh_rows(
            self, digests: Sequence[bytes], joined: bytes
        ) -> tuple[list[int] | None, np.ndarray | None]: ...

    def add_blocks(self, blocks: Sequence[CheckedBlock]) -> None:
        """Append blocks checked elsewhere (a fetch) as they are, index their
        payloads, and flush: nothing is decoded or compressed again.

        The bulk form of :meth:`add_stacked` for rows that arrive in blocks of
        the local layout. A block none of whose payloads is new is not
        written; one holding some stored ones is written whole and only its
        new payloads get entries. Local reads check each block as any other
        (CRC-32, length, codec).

        Parameters
        ----------
        blocks : sequence of CheckedBlock
            Each with its body's CRC-32 verified and every payload hashed
            against its digest by the caller.

        Raises
        ------
        ValueError
            A block of a codec local packs do not hold, or whose payloads do
            not fill its raw bytes exactly (nothing is written).
        """
        sizes = {k: kind_size(k) for k in {b.kind for b in blocks}}
        heads = [b.local_header(sizes[b.kind]) for b in blocks]  # all checked first
        digests = [d for b in blocks for d in b.digests]
        if not digests:
            return
        joined = b"".join(digests)
        if len(joined) != DIGEST_SIZE * len(digests):
            raise ValueError(f"digests of {DIGEST_SIZE} bytes expected")
        idx, order = self._fresh_rows(digests, joined)
        keep = None
        if idx is not None:
            if not idx:
                return  # every one stored already
            keep = np.zeros(len(digests), bool)
            keep[idx] = True
        e = np.empty(len(digests), ENTRY)
        start = 0
        for b, head in zip(blocks, heads, strict=True):
            stop = start + len(b.digests)
            fresh = None if keep is None or keep[start:stop].all() else keep[start:stop]
            if fresh is None or fresh.any():
                self._queue_checked(b, head, fresh, e[start:stop])
            start = stop
        q = np.frombuffer(joined, QUERY)
        e["key"], e["tail"] = q["key"], q["tail"]
        if keep is not None:
            self._new.add_entries(e[keep])
        elif order is not None:
            self._new.add_sorted_entries(np.take(e, order))
        else:
            self._new.add_entries(e)
        self.flush()

    def _queue_checked(
        self, b: CheckedBlock, head: bytes, fresh: np.ndarray | None, e: np.ndarray
    ) -> None:
        """Queue block ``b`` (its local header ``head``, then its body), its manifest record
        (of the payloads ``fresh`` marks; None: all) and fill its entries ``e``."""
        self._app.make_room(self._kind_ids)
        kid, size = self._kind_id(b.kind), b.rawlen // len(b.digests)
        body = memoryview(b.body).cast("B")
        boff, blen = self._app.queue_parts((head, body)), len(head) + len(body)
        bid = self._next_block
        self._next_block += 1
        self._new.add_block(bid, self._app.pack, boff, blen)
        if fresh is None:
            self._app.manifest.add_rows(boff, blen, kid, size, b.digests, slice(0, None))
        else:
            at = np.flatnonzero(fresh).tolist()
            items = {b.digests[i]: (0, 0, 0, i * size, 0, kid) for i in at}
            self._app.manifest.add_items(boff, blen, items)
        e["block"] = bid
        e["ioff"] = np.arange(0, b.rawlen, size)
        e["kind"] = kid
        if self._app.queued_bytes >= STREAM_WINDOW:  # written as it comes, synced once by flush
            self._app.write_out()  # (the bodies are held by the caller anyway)


__all__ = ["CheckedBlocks"]
