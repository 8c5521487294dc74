"""The worker threads of the store: one pool per process for chunk work and
one thread that syncs files in the background (both made afresh in a
forked child), and the helpers that spread work over them."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def _cores() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(8, os.cpu_count() or 1))


#: threads working on one operation (the calling thread included)
WORKERS = _cores()
_POOL: list[Any] = [None, -1]  # executor, pid it belongs to
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The process's worker threads (made afresh in a forked child)."""
    pool, pid = _POOL
    if pid != os.getpid():
        with _POOL_LOCK:
            if _POOL[1] != os.getpid():
                _POOL[0] = ThreadPoolExecutor(
                    max_workers=max(1, WORKERS - 1), thread_name_prefix="hangar-chunks"
                )
                _POOL[1] = os.getpid()
            pool = _POOL[0]
    return pool


def run_parallel(fn: Callable[[int], None], n: int, workers: int | None = None) -> None:
    """Call ``fn(i)`` for ``i`` in ``range(n)`` on up to ``workers`` threads.

    The calling thread takes part; items are handed out one at a time from a
    shared counter, so a slow item does not hold the others back. The first
    exception raised stops the handing out and is raised here.
    """
    workers = WORKERS if workers is None else workers
    if n <= 1 or workers <= 1:
        for i in range(n):
            fn(i)
        return
    counter = itertools.count()
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            for i in counter:
                if i >= n or failed:
                    return
                fn(i)
        except BaseException as exc:
            failed.append(exc)

    pool = _pool()
    futures: list[Future[None]] = [pool.submit(loop) for _ in range(min(workers, n) - 1)]
    loop()
    for f in futures:
        f.result()
    if failed:
        raise failed[0]


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(x) for x in items]``, computed on every core."""
    out: list[Any] = [None] * len(items)

    def one(i: int) -> None:
        out[i] = fn(items[i])

    run_parallel(one, len(items))
    return out


_SINGLES: dict[str, list[Any]] = {}  # name -> [executor, pid it belongs to]


def _single(name: str) -> ThreadPoolExecutor:
    """The process's one background thread ``name`` (made afresh in a forked child)."""
    slot = _SINGLES.get(name) or [None, -1]
    if slot[1] != os.getpid():
        with _POOL_LOCK:
            slot = _SINGLES.setdefault(name, slot)
            if slot[1] != os.getpid():
                slot[0] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hangar-{name}")
                slot[1] = os.getpid()
    return slot[0]  # type: ignore[no-any-return]


def syncer() -> ThreadPoolExecutor:
    """A thread syncing files in the background (made afresh in a forked child)."""
    return _single("sync")


def hasher() -> ThreadPoolExecutor:
    """A thread computing a large payload's digest while its chunks are
    written (blake2b releases the GIL); made afresh in a forked child."""
    return _single("hash")


def writer() -> ThreadPoolExecutor:
    """A thread writing a bulk add's blocks while their rows are hashed (see
    :mod:`.writer_rows`); made afresh in a forked child."""
    return _single("write")


def reader() -> ThreadPoolExecutor:
    """A thread reading and checking the back half of a large in-place read
    while the caller's thread does the front (see :mod:`.gather`); made afresh
    in a forked child."""
    return _single("read")


__all__ = ["WORKERS", "hasher", "parallel_map", "reader", "run_parallel", "syncer", "writer"]
