"""Run a test's child in a forked process, for the tests that kill it at a chosen point.

The child gets the write end of a pipe to report on (what it acknowledged,
how many events it saw); it ends with exit status 0 when its function
returns, 3 (its traceback printed) when it raises, or by the signal it sent
itself. The parent gets everything written to the pipe and the wait status.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def run_forked(child: Callable[[int], object]) -> tuple[bytes, int]:
    """Run ``child(wfd)`` in a forked process; what it wrote to ``wfd``, and its wait status."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(rfd)
        try:
            child(wfd)
            os._exit(0)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(3)
    os.close(wfd)
    out = b""
    while chunk := os.read(rfd, 64):
        out += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    return out, status
