"""The pack writer's payloads too large for a block: :class:`LargePayloads`.

A payload of :data:`.chunked.THRESHOLD` bytes or more is written to a
chunked file of its own (:mod:`.chunked`), synced, renamed into place and
indexed by the writer's next flush. A mixin of :class:`.writer.PackWriter`,
which holds the store's lock and the state these use; kept apart from the
block write path (:mod:`.writer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import chunked
from .chunked import LARGE_IOFF, LARGE_PACK, LargeFiles
from .digest import Payload, parse_kind
from .index import Location
from .uncommitted import Uncommitted


class LargePayloads:
    """Large payloads of the store's writer (a mixin of :class:`.writer.PackWriter`)."""

    known: dict[bytes, Location]
    _next_block: int
    _large: LargeFiles
    _large_pending: list[tuple[chunked.Pending, int, int]]
    _pending_set: set[bytes]
    _kind_ids: dict[str, int]
    _new: Uncommitted

    if TYPE_CHECKING:  # the writer's own, used here

        def _have(self, digest: bytes) -> bool: ...

        def _kind_id(self, kind: str) -> int: ...

    def _add_large(self, p: Payload) -> None:
        """Write a large payload to a chunked file of its own (see :mod:`.chunked`);
        the next :meth:`flush` syncs it, puts it in place and indexes it."""
        if not self._have(p.digest):
            self._write_large(p.digest, p.kind, p.data)

    def add_large(self, kind: str, data: memoryview) -> bytes:
        """:meth:`add` of a payload of :data:`.chunked.THRESHOLD` bytes or more
        without its digest, computed (and returned) while the file is written."""
        return self._write_large(None, kind, data)

    def _write_large(self, digest: bytes | None, kind: str, data: memoryview) -> bytes:
        number = self._next_block  # a block id: never reused, so never another file's
        self._next_block += 1
        p = self._large.write_temporary(number, digest, kind, data, sync=digest is not None)
        if digest is None:  # known only now: a payload stored already is not written twice
            if self._have(p.digest):
                self._large.discard([p])
                return p.digest
            p = self._large.start_sync(p)
        self._queue_large(p, len(data))
        return p.digest

    def _queue_large(self, p: chunked.Pending, nbytes: int) -> None:
        self._large_pending.append((p, self._kind_ids.get(p.kind) or self._kind_id(p.kind), nbytes))
        self._pending_set.add(p.digest)

    def adopt_large(self, path: Path, digest: bytes, kind: str) -> None:
        """Take the chunked payload file ``path`` (under ``large/tmp/``, e.g.
        fetched from a remote, checked by :func:`.chunked.verify_file`) as
        payload ``digest`` of ``kind``: the next :meth:`flush` moves it into
        place and indexes it; it is removed if the payload is stored already."""
        if self._have(digest):
            path.unlink(missing_ok=True)
            return
        number = self._next_block
        self._next_block += 1
        dtype, shape = parse_kind(kind)
        pending = chunked.Pending(number, digest, kind, path.stat().st_size, path)
        self._queue_large(pending, dtype.itemsize * int(np.prod(shape)))

    def _place_large(self) -> None:
        """Sync and rename the large payload files written since the last
        flush, and queue their index entries (committed by the flush)."""
        todo = self._large_pending
        self._large.place([p for p, _, _ in todo])  # on failure all stay pending
        self._large_pending = []
        for p, kid, nbytes in todo:
            self._new.add_block(p.number, LARGE_PACK, p.number, p.size)
            self._new.add([p.digest], p.number, [LARGE_IOFF], [kid])
            self.known[p.digest] = Location(LARGE_PACK, p.number, p.size, LARGE_IOFF, nbytes, kid)
            self._pending_set.discard(p.digest)
