"""The write checkouts open in this process, kept apart from the checkout machinery.

:class:`~hangar_git.checkout.WriterCheckout` adds itself to
:data:`LIVE_WRITERS` when it opens and leaves when it closes; the repository
reads it (is a writer open here? close it on a forced lock release) without
importing :mod:`hangar_git.checkout`, and so without numpy or the payload
store, which ``git hangar status`` never needs. Writers still open when the
interpreter exits are closed then.
"""

from __future__ import annotations

import atexit
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checkout import WriterCheckout

#: every write checkout open in this process (weakly held)
LIVE_WRITERS: weakref.WeakSet[WriterCheckout] = weakref.WeakSet()


def live_writers() -> list[WriterCheckout]:
    """The write checkouts of this process not yet closed, on any repository.

    Returns
    -------
    list of WriterCheckout
        A snapshot: closing one of them while iterating is safe.
    """
    return list(LIVE_WRITERS)


@atexit.register
def _close_live_writers() -> None:  # pragma: no cover - runs at interpreter exit
    for co in list(LIVE_WRITERS):
        try:
            co.close()
        except Exception:
            pass


__all__ = ["LIVE_WRITERS", "live_writers"]
