"""Helpers shared by the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import cProfile
import gc
import pstats
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], profile: bool = False) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, CPU seconds)``, after a garbage collection; with
    ``profile``, under cProfile, printing the top functions by cumulative and
    by own time."""
    gc.collect()
    prof = cProfile.Profile() if profile else None
    t0, c0 = time.perf_counter(), time.process_time()
    if prof is not None:
        prof.enable()
    out = fn()
    if prof is not None:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return out, wall, cpu
