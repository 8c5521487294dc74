"""blosc2, imported on first use.

Importing blosc2 takes about 170 ms (it pulls in an HTTP client for its
remote arrays), a third of the start-up time of every ``git hangar``
command, most of which never compress or decompress anything. Modules
use ``from ._blosc import blosc2`` and call it as the real module.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

_lock = threading.Lock()


class _LazyBlosc2:
    """Stands for the blosc2 module; imports it on first attribute access."""

    _mod: ModuleType | None = None

    def _load(self) -> ModuleType:
        with _lock:
            if _LazyBlosc2._mod is None:
                import blosc2

                # compression and decompression release the GIL: the chunked
                # store runs them on several threads at once
                blosc2.set_releasegil(True)
                _LazyBlosc2._mod = blosc2
        return _LazyBlosc2._mod

    def __getattr__(self, name: str) -> Any:
        mod = _LazyBlosc2._mod or self._load()
        return getattr(mod, name)


blosc2: Any = _LazyBlosc2()
