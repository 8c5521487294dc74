"""MNIST-shaped benchmark of the core: write + commit, then the read paths.

Writes and commits 60,000 random 784-byte images plus 60,000 int64 labels of
10 distinct values (the ``with images, labels:`` form, keys 0..59999), then
reads them all back key by key (``aset[k]``), through the bulk paths
(``get_batch(keys)``, ``values()``, ``items()``), and 10,000 random keys
(image + label each), key by key and through ``get_batch``. Each read
phase opens a fresh read checkout and runs twice: *cold*, with the
process-wide cache of parsed record trees emptied first (as in a new
process; the OS page cache stays warm), then *warm*.
Prints wall and CPU seconds, samples/s, bytes on disk (the whole ``.git``
after every checkout is closed, split into git objects, payload packs and
the index), a plain-numpy baseline measured in the same run, and the bars of
issue 2, judged on the cold runs. A "sample" is one image plus its label.

Run::

    python benchmarks/bench_mnist.py            # 60,000 samples
    python benchmarks/bench_mnist.py -n 10000   # quicker (bars scaled)
    python benchmarks/bench_mnist.py --profile write   # cProfile of one phase

Not a test: figures vary with the machine and its load (the load average is
printed; on a shared machine compare the CPU column and the numpy ratios).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import timed

from hangar_git import Repository
from hangar_git.records.snapshot import clear_leaf_cache
from hangar_git.store import PackStore

#: bars of issue 2 for 60,000 samples on the 2-core machine
BAR_WRITE_S = 2.0
BAR_READ_KEYS_S = 1.5
BAR_BATCH_PER_S = 500_000
BAR_RANDOM_S = 0.2
BAR_DISK_RATIO = 1.15


def tree_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file below ``path``."""
    size = alloc = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            size += st.st_size
            alloc += st.st_blocks * 512
    return size, alloc


class Timer:
    """Runs phases, optionally under cProfile, and keeps their times."""

    def __init__(self, profile: str | None, repeat: int = 1) -> None:
        self.profile = profile
        self.repeat = repeat
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], object], warm: bool = True) -> object:
        """Time ``fn`` with cold process caches of records, then (``warm``) again;
        each :attr:`repeat` times, keeping the best.

        Cold: the process-wide cache of parsed record trees is emptied first,
        so the phase parses every tree it needs, as a new process would (the
        OS page cache stays warm). Each run opens its own checkout, so the
        payload block cache is always cold.
        """
        out = None
        for i in range(self.repeat if warm else 1):
            clear_leaf_cache()
            got = self._run(name, fn)
            out = got if i == 0 else out
        if warm:
            for _ in range(self.repeat):
                self._run(name + "_warm", fn)
        return out

    def _run(self, name: str, fn: Callable[[], object]) -> object:
        out, wall, cpu = timed(fn, profile=self.profile == name)
        if self.profile == name:
            self.profile = None  # once
        if name not in self.times or wall < self.times[name]:
            self.times[name], self.cpu[name] = wall, cpu
        return out


def numpy_baseline(
    images: np.ndarray, labels: np.ndarray, tmp: Path, rand_keys: np.ndarray
) -> dict[str, float]:
    """Plain numpy figures for the same data: what the hardware gives for free."""
    out: dict[str, float] = {}
    f_img, f_lab = tmp / "images.npy", tmp / "labels.npy"
    t0 = time.perf_counter()
    np.save(f_img, images)
    np.save(f_lab, labels)
    for f in (f_img, f_lab):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    out["save"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    a, b = np.load(f_img), np.load(f_lab)
    out["load"] = time.perf_counter() - t0
    assert a.shape == images.shape and b.shape == labels.shape
    t0 = time.perf_counter()
    for i in range(len(a)):
        a[i]
        b[i]
    out["loop"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(len(a)):
        a[i].copy()
        b[i].copy()
    out["loop_copy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in rand_keys:
        a[k].copy()
        b[k].copy()
    out["random_copy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    a[rand_keys], b[rand_keys]
    out["random_fancy"] = time.perf_counter() - t0
    f_img.unlink()
    f_lab.unlink()
    return out


def index_rows(store: Path) -> tuple[int, int, int]:
    """(payload entries, block rows, segment rows) of the store's index.

    Entries are counted twice: from the SQL row counts of the segments, and
    by the store's own reader after loading and checking every segment.
    """
    con = sqlite3.connect(f"file:{store / 'index.sqlite'}?mode=ro", uri=True)
    try:
        entries = con.execute("SELECT COALESCE(SUM(n), 0) FROM segments").fetchone()[0]
        blocks = con.execute("SELECT count(*) FROM blocks").fetchone()[0]
        segments = con.execute("SELECT count(*) FROM segments").fetchone()[0]
    finally:
        con.close()
    reader = PackStore(store).reader()
    try:
        assert reader.count() == entries, (reader.count(), entries)
    finally:
        reader.close()
    return entries, blocks, segments


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="number of samples")
    ap.add_argument("--random", type=int, default=10_000, help="random reads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each read phase, cold and warm (the best is shown)",
    )
    ap.add_argument("--dir", help="work in this (empty) directory and keep it")
    ap.add_argument(
        "--profile",
        choices=["write", "keys", "batch", "values", "items", "random"],
        help="print a cProfile of one phase",
    )
    args = ap.parse_args(argv)
    n = args.n
    warnings.simplefilter("ignore", UserWarning)

    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n, 1)).astype(np.int64)
    rand_keys = rng.integers(0, n, size=args.random)
    raw_bytes = images.nbytes + labels.nbytes

    tmpctx = None
    if args.dir:
        work = Path(args.dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmpctx = tempfile.TemporaryDirectory(prefix="hangar-bench-")
        work = Path(tmpctx.name)
    repo_dir = work / "repo"
    repo_dir.mkdir()

    base = numpy_baseline(images, labels, work, rand_keys)

    repo = Repository(repo_dir, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    timer = Timer(args.profile, max(1, args.repeat))

    # ---- write + commit ------------------------------------------------------
    def write() -> str:
        co = repo.checkout(write=True)
        a_img = co.arraysets.init_arrayset("images", prototype=images[0])
        a_lab = co.arraysets.init_arrayset("labels", prototype=labels[0])
        with a_img, a_lab:
            for i in range(n):
                a_img[i] = images[i]
                a_lab[i] = labels[i]
        sha = co.commit("mnist-shaped samples")
        co.close()
        return sha

    sha = timer.run("write", write, warm=False)

    # ---- read all, key by key ------------------------------------------------
    def read_keys() -> tuple[list[np.ndarray], list[np.ndarray]]:
        co = repo.checkout(commit=sha)
        a_img, a_lab = co.arraysets["images"], co.arraysets["labels"]
        out_i = [a_img[k] for k in range(n)]
        out_l = [a_lab[k] for k in range(n)]
        co.close()
        return out_i, out_l

    got_i, got_l = timer.run("keys", read_keys)  # type: ignore[misc]
    assert np.array_equal(np.stack(got_i), images), "images read back differ"
    assert np.array_equal(np.stack(got_l), labels), "labels read back differ"
    del got_i, got_l

    # ---- read all, batch path ------------------------------------------------
    def read_batch() -> tuple[list[np.ndarray], list[np.ndarray]]:
        co = repo.checkout(commit=sha)
        keys = list(range(n))
        out_i = co.arraysets["images"].get_batch(keys)
        out_l = co.arraysets["labels"].get_batch(keys)
        co.close()
        return out_i, out_l

    got_i, got_l = timer.run("batch", read_batch)  # type: ignore[misc]
    assert np.array_equal(np.stack(got_i), images), "images (batch) differ"
    assert np.array_equal(np.stack(got_l), labels), "labels (batch) differ"
    del got_i, got_l

    # ---- read all, iteration path (values(), and items() with the keys) ----
    def read_values() -> tuple[list[np.ndarray], list[np.ndarray]]:
        co = repo.checkout(commit=sha)
        out_i = list(co.arraysets["images"].values())
        out_l = list(co.arraysets["labels"].values())
        co.close()
        return out_i, out_l

    got_i, got_l = timer.run("values", read_values)  # type: ignore[misc]
    assert len(got_i) == len(got_l) == n
    del got_i, got_l

    def read_items() -> int:
        co = repo.checkout(commit=sha)
        a_img, a_lab = co.arraysets["images"], co.arraysets["labels"]
        cnt = 0
        for k, v in a_img.items():
            cnt += 1
            if k % 9973 == 0:
                assert np.array_equal(v, images[k])
        for k, v in a_lab.items():
            cnt += 1
            if k % 9973 == 0:
                assert np.array_equal(v, labels[k])
        co.close()
        return cnt

    cnt = timer.run("items", read_items)
    assert cnt == 2 * n

    # ---- 10,000 random keys --------------------------------------------------
    keys_list = [int(k) for k in rand_keys]

    def read_random() -> list[tuple[np.ndarray, np.ndarray]]:
        co = repo.checkout(commit=sha)
        a_img, a_lab = co.arraysets["images"], co.arraysets["labels"]
        out = [(a_img[k], a_lab[k]) for k in keys_list]
        co.close()
        return out

    got = timer.run("random", read_random)
    for k, (im, lb) in zip(keys_list[:500], got[:500], strict=False):  # type: ignore[arg-type]
        assert np.array_equal(im, images[k]) and np.array_equal(lb, labels[k])

    def read_random_batch() -> list[tuple[np.ndarray, np.ndarray]]:
        co = repo.checkout(commit=sha)
        a_img, a_lab = co.arraysets["images"], co.arraysets["labels"]
        out = list(zip(a_img.get_batch(keys_list), a_lab.get_batch(keys_list), strict=True))
        co.close()
        return out

    got = timer.run("random_batch", read_random_batch)
    for k, (im, lb) in zip(keys_list[:500], got[:500], strict=False):  # type: ignore[arg-type]
        assert np.array_equal(im, images[k]) and np.array_equal(lb, labels[k])
    del got

    # ---- bytes on disk (writer closed, readers closed) -----------------------
    gitdir = repo_dir / ".git"
    store = gitdir / "hangar" / "store"
    total, total_alloc = tree_bytes(gitdir)
    objs, objs_alloc = tree_bytes(gitdir / "objects")
    packs, _ = tree_bytes(store / "packs")
    idx = sum(f.stat().st_size for f in store.glob("index.sqlite*"))
    rows, n_blocks, n_segments = index_rows(store)

    # ---- report --------------------------------------------------------------
    t, c = timer.times, timer.cpu
    scale = n / 60_000
    load = os.getloadavg()
    print(
        f"hangar-git MNIST-shaped benchmark: {n} images (784 uint8) + {n} labels "
        f"((1,) int64, 10 values); {os.cpu_count()} cpus, load average {load[0]:.2f}"
    )
    print(
        "a sample = one image + its label; each read phase opens a fresh read checkout;"
        f" read phases: best of {timer.repeat}"
    )
    print("cold: record trees parsed afresh; warm: again, with the process's parsed-tree cache")
    print(
        f"{'phase':<27}{'wall s':>7}{'cpu s':>7}{'samples/s':>11}{'warm s':>8}"
        "   numpy baseline (same run)"
    )

    def row(label: str, key: str, count: int, base_label: str, base_s: float) -> None:
        warm = f"{t[key + '_warm']:8.3f}" if key + "_warm" in t else " " * 8
        print(
            f"{label:<27}{t[key]:7.3f}{c[key]:7.3f}{count / t[key]:11,.0f}{warm}"
            f"   {base_label} {base_s:.3f} s (x{t[key] / base_s:.1f})"
        )

    row("write + commit", "write", n, "np.save+fsync", base["save"])
    row("read all, key by key", "keys", n, "loop a[i].copy()", base["loop_copy"])
    row("read all, get_batch(keys)", "batch", n, "np.load", base["load"])
    row("read all, values()", "values", n, "np.load", base["load"])
    row("read all, items()", "items", n, "np.load", base["load"])
    row(
        f"{args.random} random keys", "random", args.random, "loop a[k].copy()", base["random_copy"]
    )
    row(
        f"{args.random} random, get_batch",
        "random_batch",
        args.random,
        "a[keys] (fancy index)",
        base["random_fancy"],
    )
    print(f"raw bytes              {raw_bytes:>12,}")
    print(
        f"on disk, whole .git    {total:>12,}  ({total / raw_bytes:.3f}x raw; "
        f"allocated {total_alloc:,} = {total_alloc / raw_bytes:.3f}x)"
    )
    print(f"  git objects          {objs:>12,}  (allocated {objs_alloc:,})")
    print(f"  store packs          {packs:>12,}")
    print(
        f"  store index.sqlite*  {idx:>12,}  ({rows} payload entries in {n_segments} "
        f"segment rows, {n_blocks} block rows)"
    )
    print(f"  other                {total - objs - packs - idx:>12,}")

    label_rows = rows - n  # images are distinct random arrays: one entry each
    bulk = min(t["batch"], t["values"])
    checks = [
        (f"write + commit < {BAR_WRITE_S * scale:.1f} s", t["write"] < BAR_WRITE_S * scale),
        (f"read key by key < {BAR_READ_KEYS_S * scale:.2f} s", t["keys"] < BAR_READ_KEYS_S * scale),
        (
            f"batch/iteration path > {BAR_BATCH_PER_S} samples/s (best of get_batch, values())",
            n / bulk > BAR_BATCH_PER_S,
        ),
        (
            f"random image+label < {BAR_RANDOM_S * args.random / 10_000:.2f} s "
            "(best of key by key, get_batch)",
            min(t["random"], t["random_batch"]) < BAR_RANDOM_S * args.random / 10_000,
        ),
        (f"disk < {BAR_DISK_RATIO:.2f}x raw", total < BAR_DISK_RATIO * raw_bytes),
        ("labels stored as 10 payloads", label_rows == 10),
    ]
    for label, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {label}")
    assert label_rows == len(np.unique(labels)) == 10, f"{label_rows} label payloads"
    if tmpctx is not None:
        tmpctx.cleanup()
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
