"""The diff object's access to its checkout (:class:`hangar_git.userdiff.DiffSource`).

A checkout hands its :class:`~hangar_git.userdiff.ReaderUserDiff` /
``WriterUserDiff`` this small adapter rather than itself: the diff reads the
head, the staged view and payloads through it, and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import MissingPayloadError
from .naming import Key
from .records.view import StagedView

if TYPE_CHECKING:
    import numpy as np

    from .checkout import ReaderCheckout, WriterCheckout


class CheckoutDiffSource:
    """What a checkout offers its diff object: a :class:`hangar_git.userdiff.DiffSource`.

    Parameters
    ----------
    checkout : ReaderCheckout or WriterCheckout
        The checkout whose records and payloads the diff reads.
    """

    def __init__(self, checkout: ReaderCheckout | WriterCheckout) -> None:
        self._co = checkout
        self.git = checkout.view.base.repo

    def check_open(self) -> None:
        self._co.check_open()

    def head(self) -> str | None:
        return self._co.commit_hash or None

    def staged(self) -> StagedView | None:
        co = self._co
        if not co.view.writeable:
            return None
        co.sync()  # type: ignore[union-attr]
        assert isinstance(co.view, StagedView)
        return co.view

    def sample(self, arrayset: str, enc: str) -> np.ndarray | None:
        co = self._co
        if co.view.writeable:
            co.sync()  # type: ignore[union-attr]
        digest = co.view.get(arrayset, enc) if co.view.has_aset(arrayset) else None
        return co.payloads.read(arrayset, enc, digest) if digest is not None else None

    def array(self, arrayset: str, key: Key, digest: bytes) -> np.ndarray:
        pa = self._co.payloads
        loc = pa.locs.get(digest)
        if loc is None and pa.writer is not None:
            loc = pa.writer.pending_location(digest)
        if loc is None:
            loc = pa.reader.locate(digest)
        if loc is None:
            raise MissingPayloadError(
                f"sample {arrayset}[{key!r}] of the other side is a remote reference: its "
                "payload is not on this machine; fetch it with `git hangar fetch-data`"
            )
        return pa.reader.read(loc, digest)


__all__ = ["CheckoutDiffSource"]
