"""Large arrays: write + commit, read, partial reads and peak memory.

Writes 100 arrays of 512x512x3 float32 (315 MB; random values, the worst
case for compression) and commits them through the batch paths
(``aset.update({...})`` and ``aset.add_stacked``), reads them back
(``get_batch``, ``values()``), reads the corner ``[i, 0:64, 0:64, :]`` of
each of the 100 on a fresh read checkout, and measures the peak memory of
writing and of reading one 300 MB array (tracemalloc: every numpy and Python
allocation). A plain-numpy baseline runs in the same process on the same
data: ``np.save`` of the stack (with and without ``fsync``), ``np.load``, and
the corners read through ``np.load(mmap_mode="r")``.

Payloads of at least 1 MiB are stored chunked (``hangar_git/store/chunked.py``)
and synced to disk before they are indexed; the write is measured both ways
(``chunked.SYNC``), as the sync is bound by the disk, not by hangar-git.

Run::

    python benchmarks/bench_large.py              # the issue-8 workload
    python benchmarks/bench_large.py -n 20        # quicker (bars are rates)
    python benchmarks/bench_large.py --no-memory  # skip the 300 MB array
    python benchmarks/bench_large.py --data image # compressible arrays

Not a test: figures vary with the machine and its load (the load average is
printed). Every phase runs ``--repeat`` times and the best run is shown.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hangar_git import Repository
from hangar_git.store import chunked

SHAPE = (512, 512, 3)
CORNER = (slice(0, 64), slice(0, 64), slice(None))
#: bars of issue 8
BAR_WRITE_MBS = 400.0
BAR_READ_MBS = 1000.0
BAR_CORNERS_S = 0.05
BAR_MEMORY_X = 2.0


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs of ``fn``, and the last result."""
    out: object = None
    t_best = float("inf")
    for _ in range(max(1, repeat)):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t0)
    return t_best, out


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_repo(path: Path) -> Repository:
    path.mkdir(parents=True)
    repo = Repository(path, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    return repo


def numpy_baseline(stack: np.ndarray, work: Path, repeat: int) -> dict[str, float]:
    """What plain numpy does with the same data on the same disk."""
    f = work / "stack.npy"
    out: dict[str, float] = {}

    def save(sync: bool) -> float:
        f.unlink(missing_ok=True)
        os.sync()  # no dirty pages of an earlier phase to flush meanwhile
        t0 = time.perf_counter()
        np.save(f, stack)
        if sync:
            fsync_file(f)
        return time.perf_counter() - t0

    out["save"] = min(save(False) for _ in range(max(1, repeat)))
    out["save_sync"] = min(save(True) for _ in range(max(1, repeat)))
    out["load"], got = best(lambda: np.load(f), repeat)
    assert np.array_equal(got, stack)  # type: ignore[arg-type]
    del got

    def corners() -> list[np.ndarray]:
        m = np.load(f, mmap_mode="r")
        return [np.array(m[(i, *CORNER)]) for i in range(len(stack))]

    out["corners"], _ = best(corners, repeat)
    f.unlink()
    return out


def write_phase(
    stack: np.ndarray, work: Path, repeat: int, method: str, sync: bool
) -> tuple[float, Repository, str]:
    """Best time of writing + committing ``stack`` into a fresh repository."""
    chunked.SYNC = sync
    times = []
    repo, sha = None, ""
    for r in range(max(1, repeat)):
        if repo is not None:  # only the last one is kept (for the read phases)
            shutil.rmtree(repo.path)
        repo = new_repo(work / f"repo-{method}-{int(sync)}-{r}")
        co = repo.checkout(write=True)
        aset = co.arraysets.init_arrayset("x", shape=SHAPE, dtype=np.float32)
        gc.collect()
        os.sync()  # no dirty pages of an earlier phase to flush meanwhile
        t0 = time.perf_counter()
        if method == "update":
            aset.update({i: stack[i] for i in range(len(stack))})
        else:
            aset.add_stacked(stack, range(len(stack)))
        sha = co.commit(f"{len(stack)} arrays")
        times.append(time.perf_counter() - t0)
        co.close()
    chunked.SYNC = True
    assert repo is not None
    return min(times), repo, sha


def read_phases(repo: Repository, sha: str, stack: np.ndarray, repeat: int) -> dict[str, float]:
    n = len(stack)
    out: dict[str, float] = {}

    def batch() -> list[np.ndarray]:
        with repo.checkout(commit=sha) as co:
            return co.arraysets["x"].get_batch(range(n))

    out["get_batch"], got = best(batch, repeat)
    assert all(np.array_equal(a, stack[i]) for i, a in enumerate(got))  # type: ignore[arg-type]
    del got

    def values() -> list[np.ndarray]:
        with repo.checkout(commit=sha) as co:
            return list(co.arraysets["x"].values())

    out["values"], got = best(values, repeat)
    with repo.checkout(commit=sha) as co:
        keys = list(co.arraysets["x"].keys())  # values() come in record order
    assert all(np.array_equal(a, stack[k]) for k, a in zip(keys, got, strict=True))  # type: ignore[arg-type]
    del got

    def corners() -> list[np.ndarray]:
        with repo.checkout(commit=sha) as co:
            aset = co.arraysets["x"]
            return [aset[(i, *CORNER)] for i in range(n)]

    out["corners"], got = best(corners, repeat)
    assert all(np.array_equal(a, stack[(i, *CORNER)]) for i, a in enumerate(got))  # type: ignore[arg-type]
    return out


def memory_phase(work: Path, mb: int) -> dict[str, float]:
    """Peak traced memory (bytes) of writing + committing, then reading, one
    array of ``mb`` MB, and the array's size."""
    side = int((mb * 1e6 / 12) ** 0.5)
    arr = np.random.default_rng(1).random((side, side, 3), dtype=np.float32)
    repo = new_repo(work / "repo-memory")
    out = {"nbytes": float(arr.nbytes)}
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("big", prototype=arr)
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    aset["a"] = arr
    co.commit("one big array")
    out["write_s"] = time.perf_counter() - t0
    out["write_peak"] = float(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    co.close()
    co = repo.checkout()
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    got = co.arraysets["big"]["a"]
    out["read_s"] = time.perf_counter() - t0
    out["read_peak"] = float(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    co.close()
    assert np.array_equal(got, arr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100, help="number of 512x512x3 float32 arrays")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each phase (best shown)")
    ap.add_argument("--memory-mb", type=int, default=300, help="size of the one big array")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak memory phase")
    ap.add_argument("--dir", help="work in this (empty) directory and keep it")
    ap.add_argument(
        "--data",
        choices=["random", "image"],
        default="random",
        help="random floats (incompressible, stored raw) or 8-bit images as float32 (compressed)",
    )
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)
    n = args.n
    rng = np.random.default_rng(0)
    if args.data == "random":
        stack = rng.random((n, *SHAPE), dtype=np.float32)
    else:
        stack = (rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8) / np.float32(255)).astype(
            np.float32
        )
    mb = stack.nbytes / 1e6
    tmpctx = None
    if args.dir:
        work = Path(args.dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmpctx = tempfile.TemporaryDirectory(prefix="hangar-bench-large-")
        work = Path(tmpctx.name)
    try:
        load = os.getloadavg()
        print(
            f"{n} arrays of 512x512x3 float32 ({mb:.0f} MB, {args.data}), "
            f"load average {load[0]:.2f}"
        )
        base = numpy_baseline(stack, work, args.repeat)
        w_nosync, old, _ = write_phase(stack, work, args.repeat, "update", False)
        shutil.rmtree(old.path)
        w_stk, old, _ = write_phase(stack, work, args.repeat, "add_stacked", True)
        shutil.rmtree(old.path)
        w_upd, repo, sha = write_phase(stack, work, args.repeat, "update", True)
        reads = read_phases(repo, sha, stack, args.repeat)
        mem = None if args.no_memory else memory_phase(work, args.memory_mb)
    finally:
        if tmpctx is not None:
            tmpctx.cleanup()

    rows: list[tuple[str, str, str, str]] = []

    def rate(t: float) -> float:
        return mb / t

    def row(name: str, ours: float, numpy: float, unit: str) -> None:
        fmt = "{:.3f}" if unit == "s" else "{:.0f}"
        rows.append(
            (
                name,
                f"{fmt.format(ours)} {unit}",
                f"{fmt.format(numpy)} {unit}",
                f"{ours / numpy:.2f}",
            )
        )

    row("write+commit, update (fsync)", rate(w_upd), rate(base["save_sync"]), "MB/s")
    row("write+commit, add_stacked (fsync)", rate(w_stk), rate(base["save_sync"]), "MB/s")
    row("write+commit, update (no fsync)", rate(w_nosync), rate(base["save"]), "MB/s")
    row("read, get_batch", rate(reads["get_batch"]), rate(base["load"]), "MB/s")
    row("read, values()", rate(reads["values"]), rate(base["load"]), "MB/s")
    row(f"{n} corners [0:64, 0:64, :]", reads["corners"], base["corners"], "s")
    best_write = rate(min(w_upd, w_stk))
    best_read = rate(min(reads["get_batch"], reads["values"]))
    corners_100 = reads["corners"] * 100 / n
    checks = [
        (
            f"write+commit > {BAR_WRITE_MBS:.0f} MB/s, synced (best of update, add_stacked): "
            f"{best_write:.0f} MB/s",
            best_write > BAR_WRITE_MBS,
        ),
        (
            f"read > {BAR_READ_MBS:.0f} MB/s (best of get_batch, values()): {best_read:.0f} MB/s",
            best_read > BAR_READ_MBS,
        ),
        (
            f"100 corners < {BAR_CORNERS_S} s: {corners_100:.3f} s"
            + ("" if n == 100 else f" (scaled from {n})"),
            corners_100 < BAR_CORNERS_S,
        ),
    ]
    if mem is not None:
        size = mem["nbytes"]
        # writing needs the caller's array plus what the write allocates;
        # reading allocates the array returned plus its working memory
        w_x = (size + mem["write_peak"]) / size
        r_x = mem["read_peak"] / size
        rows.append((f"write {size / 1e6:.0f} MB array", f"{mem['write_s']:.2f} s", "", ""))
        rows.append((f"read {size / 1e6:.0f} MB array", f"{mem['read_s']:.2f} s", "", ""))
        checks.append(
            (
                f"peak memory of writing a {size / 1e6:.0f} MB array <= {BAR_MEMORY_X:.0f}x "
                f"its size: {w_x:.2f}x (its array + {mem['write_peak'] / 1e6:.1f} MB)",
                w_x <= BAR_MEMORY_X,
            )
        )
        checks.append(
            (
                f"peak memory of reading it <= {BAR_MEMORY_X:.0f}x its size: {r_x:.2f}x",
                r_x <= BAR_MEMORY_X,
            )
        )
    head = ("phase", "hangar-git", "numpy", "ratio")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(
        "numpy: np.save of the stack (fsync'd for the fsync rows), np.load, corners "
        "through np.load(mmap_mode='r'); ratio = hangar-git / numpy (rates: higher is "
        "better; seconds: lower is better); peak memory by tracemalloc"
    )
    print("bars (issue 8):")
    for label, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
