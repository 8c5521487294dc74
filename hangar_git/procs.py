"""Whether a process named by a pid (in a lock or keep file) is still running."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists on this machine (also when it belongs
    to another user, which ``kill(pid, 0)`` may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["pid_alive"]
