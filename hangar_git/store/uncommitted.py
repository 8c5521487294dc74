"""What the pack writer wrote but has not yet indexed: :class:`Uncommitted`.

Blocks reach the disk before any index entry names them; until the
writer's next flush commits them (as one new index segment), their block
rows and entries wait here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .index import block_check, make_entries, sorted_entries


class Uncommitted:
    """Block rows and index entries written but not yet committed.

    Attributes
    ----------
    digests : list of bytes
        Digests of the entries added one by one (by :meth:`add`), in order.
    block_rows : list of tuple
        ``(block id, pack, offset, length, row check)`` of each new block.
    """

    def __init__(self) -> None:
        self.digests: list[bytes] = []
        self._blocks: list[int] = []
        self._ioffs: list[int] = []
        self._kinds: list[int] = []
        self.block_rows: list[tuple[int, int, int, int, int]] = []
        self._arrays: list[np.ndarray] = []  # entries added whole (stacked rows)

    def __bool__(self) -> bool:
        return bool(self.digests or self._arrays)

    def add_block(self, bid: int, pack: int, boff: int, blen: int) -> None:
        """A new block row (a large payload's too: pack 0, its file number)."""
        self.block_rows.append((bid, pack, boff, blen, block_check(bid, pack, boff, blen)))

    def add(
        self, digests: Sequence[bytes], bid: int, ioffs: Iterable[int], kinds: Iterable[int]
    ) -> None:
        """Entries of ``digests``, all in block ``bid``, at ``ioffs`` of ``kinds``."""
        self.digests.extend(digests)
        self._blocks.extend([bid] * len(digests))
        self._ioffs.extend(ioffs)
        self._kinds.extend(kinds)

    def add_entries(self, e: np.ndarray) -> None:
        """Entries already built (:data:`.index.ENTRY`, any order)."""
        self._arrays.append(e)

    def entries(self) -> np.ndarray:
        """Every entry added, sorted by digest."""
        new = make_entries(self.digests, self._blocks, self._ioffs, self._kinds)
        if self._arrays:
            new = sorted_entries(np.concatenate([new, *self._arrays]))
        return new

    def clear(self) -> None:
        """Forget everything (committed, or dropped)."""
        self.digests.clear()
        self._blocks.clear()
        self._ioffs.clear()
        self._kinds.clear()
        self.block_rows.clear()
        self._arrays.clear()


__all__ = ["Uncommitted"]
