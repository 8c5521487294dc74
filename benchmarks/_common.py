"""Helpers shared by the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
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


def tree_child(script: Path, tree: Path, *args: str) -> str:
    """Run ``script`` with ``args`` in a fresh Python importing ``hangar_git``
    from source tree ``tree``; the last line it prints ("" when none).

    ``PYTHONDONTWRITEBYTECODE`` is dropped from the child's environment: with
    it, a tree whose ``.pyc`` files are stale would compile every module in
    every fresh process, and the figures would time the compiler. A child
    that fails ends the benchmark with its stderr.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode:
        raise SystemExit(f"{tree}: {script.name} {' '.join(args)} failed:\n{out.stderr}")
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""
