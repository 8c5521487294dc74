"""The pack writer's maintenance for ``git hangar gc``: :class:`PackMaintenance`.

Removing index entries (:meth:`~PackMaintenance.remove`), moving payloads
into a new pack (:meth:`~PackMaintenance.relocate`) and deleting a pack no
entry points into any more (:meth:`~PackMaintenance.drop_pack`). A mixin of
:class:`.writer.PackWriter`, which holds the store's lock and the state
these use; kept apart from the write path (:mod:`.writer`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .appender import PackAppender
from .block_format import BLOCK_TARGET
from .codec import encode_block, typesize_of
from .digest import Payload
from .index import Location, Segments, index_guard
from .manifest import manifest_path
from .uncommitted import Uncommitted

if TYPE_CHECKING:
    from .packs import PackStore


class PackMaintenance:
    """What ``gc`` asks of the store's writer (a mixin of :class:`.writer.PackWriter`)."""

    store: PackStore
    known: dict[bytes, Location]
    _con: sqlite3.Connection
    _segs: Segments
    _app: PackAppender
    _kind_ids: dict[str, int]
    _new: Uncommitted

    if TYPE_CHECKING:  # the writer's, used here

        def flush(self) -> None: ...

        def _commit_index(self, drop: Iterable[bytes]) -> None: ...

        def _dtype_of(self, kind: str) -> tuple[str, int]: ...

        def _queue_block(self, block: bytes, items: Sequence[Payload]) -> dict[bytes, Location]: ...

    def remove(self, digests: Iterable[bytes]) -> int:
        """Delete the index entries of ``digests`` in one transaction; returns
        how many there were.

        The bytes stay in their packs until :meth:`relocate` compacts them.

        Parameters
        ----------
        digests : iterable of bytes

        Returns
        -------
        int
        """
        self.flush()
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        gone = list(dict.fromkeys(digests))
        found, _ = self._segs.lookup(gone)
        n = int(found.sum())
        if n:
            self._commit_index(drop=gone)
        for d in gone:
            self.known.pop(d, None)
        return n

    def relocate(self, payloads: Iterable[Payload], new_pack: bool = True) -> dict[bytes, Location]:
        """Write ``payloads`` again, into a new pack, and point their entries there.

        With ``new_pack`` the writer first moves to a pack numbered above
        every existing one (numbers are never reused, so a location a reader
        cached can never name other bytes); otherwise it appends to the pack
        of the previous call. The bytes are synced to disk before the entries
        move, in one transaction: a process killed at any point leaves every
        entry pointing at intact bytes, the old ones until the commit, the
        new ones after.

        Parameters
        ----------
        payloads : iterable of Payload
            The payloads to move (their bytes, read from their old place).
        new_pack : bool, optional
            Start a new pack first.

        Returns
        -------
        dict of bytes to Location
            The new location of each payload.
        """
        self.flush()
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        if new_pack or self._app.full():
            self._app.switch_to(max([self._app.pack, *self.store.pack_numbers()]) + 1)
        moved: dict[bytes, Location] = {}
        groups: dict[str, list[Payload]] = {}
        for p in payloads:
            if p.digest not in moved:
                groups.setdefault(self._dtype_of(p.kind)[0], []).append(p)
                moved[p.digest] = Location(0, 0, 0, 0, 0, 0)
        for items in groups.values():
            start = 0
            while start < len(items):
                end, size = start, 0
                while end < len(items) and (end == start or size < BLOCK_TARGET):
                    size += len(items[end].data)
                    end += 1
                chunk = items[start:end]
                start = end
                raw = b"".join(p.data for p in chunk)
                block = encode_block(raw, typesize_of(chunk[0].kind))
                moved.update(self._queue_block(block, chunk))
        self._app.manifest.seal(self._app.pack, self._kind_ids)
        self._app.write_out()
        self._app.sync_always()  # gc syncs whatever HANGAR_FSYNC says: old bytes go
        if self._new.digests:
            self._commit_index(drop=list(moved))
        return moved

    def drop_pack(self, pack: int) -> None:
        """Delete pack file ``pack``; refused while an index entry points into it.

        Parameters
        ----------
        pack : int

        Raises
        ------
        ValueError
            The pack is the one appended to, or index entries still point into it.
        """
        self.flush()
        if pack == self._app.pack:
            raise ValueError(f"pack {pack} is the pack this writer appends to")
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        with index_guard(self.store.index_path):
            ids = [r[0] for r in self._con.execute("SELECT id FROM blocks WHERE pack=?", (pack,))]
        used = 0
        if ids:
            want = np.array(ids, np.uint32)
            used = sum(int(np.isin(r.entries["block"], want).sum()) for r in self._segs.runs)
        if used:
            raise ValueError(f"pack {pack} still holds {used} indexed payloads")
        with index_guard(self.store.index_path):
            # the row of the highest block id stays: block ids are never reused,
            # so a block row a reader cached can never name other bytes
            self._con.execute(
                "DELETE FROM blocks WHERE pack=? AND id < (SELECT MAX(id) FROM blocks)", (pack,)
            )
        self.store.pack_path(pack).unlink(missing_ok=True)
        manifest_path(self.store.packs_dir, pack).unlink(missing_ok=True)


__all__ = ["PackMaintenance"]
