"""An in-memory payload store: :class:`MemoryStore` (tests, scratch work)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..errors import MissingPayloadError
from .base import PayloadStore, check_payloads
from .digest import Payload, parse_kind


class MemoryStore(PayloadStore):
    """Payloads in a dict of this process: nothing outlives the object."""

    persistent = False

    def __init__(self) -> None:
        self._items: dict[bytes, tuple[str, bytes]] = {}

    def put_many(self, payloads: Iterable[Payload]) -> None:
        """Store ``payloads`` (see :meth:`.PayloadStore.put_many`)."""
        for p in check_payloads(payloads):
            if p.digest not in self._items:
                self._items[p.digest] = (p.kind, bytes(p.data))

    def get_many(self, digests: Sequence[bytes]) -> list[np.ndarray]:
        """The arrays of ``digests`` (see :meth:`.PayloadStore.get_many`)."""
        out = []
        for d in digests:
            item = self._items.get(d)
            if item is None:
                raise MissingPayloadError(f"payload {bytes(d).hex()} is not stored")
            dtype, shape = parse_kind(item[0])
            out.append(np.frombuffer(bytearray(item[1]), dtype).reshape(shape))
        return out

    def missing(self, digests: Iterable[bytes]) -> list[bytes]:
        """Those of ``digests`` not stored (see :meth:`.PayloadStore.missing`)."""
        return [d for d in dict.fromkeys(digests) if d not in self._items]

    def delete(self, digests: Iterable[bytes]) -> int:
        """Remove payloads (see :meth:`.PayloadStore.delete`)."""
        n = 0
        for d in dict.fromkeys(digests):
            if self._items.pop(d, None) is not None:
                n += 1
        return n

    def digests(self) -> Iterator[bytes]:
        """Every digest stored."""
        return iter(list(self._items))


__all__ = ["MemoryStore"]
