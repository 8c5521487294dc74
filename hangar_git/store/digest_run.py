"""The digests of a bulk add, held joined in one ``bytes``: :class:`Digests`.

A bulk add of 300,000 small samples made a list of 300,000 digests and
joined it three times (for the payload index, the staging journal and the
record tree), each join 8-19 ms of scattered reads; while the list was
young, every collection of Python's garbage collector walked it too.
:func:`.digest.stacked_digests` joins the digests as it makes them, a
thousand at a time, into one :class:`Digests`, which is a
``Sequence[bytes]`` for code that takes digests one by one and hands its
``joined`` bytes to code that takes them joined (:func:`joined_digests`).

No numpy at the top: the staging journal (and ``git hangar status``)
imports this module without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    import numpy as np

#: bytes of a digest (as :data:`.digest.DIGEST_SIZE`; that module imports numpy)
DIGEST_SIZE = 20


class Digests(Sequence[bytes]):
    """Digests of :data:`DIGEST_SIZE` bytes, in order, held joined.

    Parameters
    ----------
    joined : bytes
        The digests one after the other.
    last : numpy.ndarray, optional
        Set when some digests repeat and the maker knows where (rows hashed
        once per distinct value, see :func:`.digest.stacked_digests`): the
        positions (int64, ascending) of the last occurrence of each distinct
        digest, what :func:`.uncommitted.last_occurrences` would sort out.

    Raises
    ------
    ValueError
        ``joined`` is not a whole number of digests.
    """

    __slots__ = ("joined", "last")

    def __init__(self, joined: bytes, last: np.ndarray | None = None) -> None:
        if len(joined) % DIGEST_SIZE:
            raise ValueError(f"digests of {DIGEST_SIZE} bytes expected")
        self.joined = joined
        self.last = last

    def __len__(self) -> int:
        return len(self.joined) // DIGEST_SIZE

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> Digests: ...

    def __getitem__(self, i: int | slice) -> bytes | Digests:
        n = len(self)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step == 1:
                return Digests(self.joined[DIGEST_SIZE * start : DIGEST_SIZE * max(start, stop)])
            return Digests(b"".join([self[k] for k in range(start, stop, step)]))
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("digest index out of range")
        return self.joined[DIGEST_SIZE * i : DIGEST_SIZE * (i + 1)]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Digests):
            return self.joined == other.joined
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(
                a == b for a, b in zip(self.tolist(), other, strict=True)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Digests(<{len(self)} digests>)"

    def tolist(self) -> list[bytes]:
        """The digests as a list of ``bytes``."""
        import numpy as np

        return np.frombuffer(self.joined, f"V{DIGEST_SIZE}").tolist()  # type: ignore[no-any-return]


def joined_digests(digests: Sequence[bytes]) -> bytes:
    """``b"".join(digests)``, with no copy when they are :class:`Digests`."""
    if isinstance(digests, Digests):
        return digests.joined
    return b"".join(digests)


__all__ = ["Digests", "joined_digests"]
