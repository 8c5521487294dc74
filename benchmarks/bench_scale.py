"""Millions of small samples: bulk import, small commits, diff, lazy reads.

One arrayset of ``n`` samples of shape (4,) float32 (keys ``0..n-1``, random
values; 1,000,000 by default) is imported into a new repository and
committed three ways, each in a repository of its own:

- ``add_stacked``: ``aset.add_stacked(stack, keys)``, one call;
- ``update``: ``aset.update({key: row})``, one call with a dict of arrays;
- ``with-loop``: ``with aset: for k: aset[k] = row`` (the per-sample form,
  for comparison; ``--no-loop`` skips it).

The three must give the same records tree. On top of the ``add_stacked``
commit, then:

- a commit changing 10 samples (timed with and without opening and closing
  the write checkout);
- the diff between the two commits: ``co.diff.commit(sha)`` of a read
  checkout, and ``co.diff.branch(name)`` against a branch at the first one;
- opening a read checkout of the 1M commit (a fresh ``Repository`` object
  and an empty cache of parsed record trees, as in a new process), then
  ``len(aset)``, ``key in aset`` and ``aset[k]`` for a few keys;
- memory of that read checkout (tracemalloc, and RSS from ``/proc``, in two
  separate passes) after opening, after reading 100 and then 1,000 random
  keys, and, for scale, after asking for every key (``list(aset.keys())``);
  tracemalloc's blocks stand for Python objects, and allocations of 1 MiB
  or more (the payload index: ~40 bytes per stored payload, in numpy
  arrays) are shown apart;
- reading all samples back through ``values()`` and ``get_batch(keys)``.

A plain-numpy baseline runs in the same process on the same data:
``np.save`` (+fsync) and ``np.load`` of the stacked array, and building and
reading a dict of ``n`` arrays. Ratios against it are printed next to each
figure, since the machine is shared and noisy.

Run::

    python benchmarks/bench_scale.py               # 1,000,000 samples
    python benchmarks/bench_scale.py -n 100000     # quicker (bars scaled)
    python benchmarks/bench_scale.py --profile import   # cProfile of one phase

Bars (issue 8, for 1,000,000 samples on the 2-core machine; import bars
scale with ``n``): import + commit < 15 s; a 10-sample commit < 0.1 s; the
diff < 0.05 s; opening a read checkout < 0.5 s; ``len``, ``in`` and ``[]``
without parsing every record leaf (``len`` + 6 ``in`` < 0.01 s, 5 ``[]``
< 0.1 s including the first load of the payload index); after opening and
100 random reads, fewer than a tenth of the Python objects (tracemalloc
blocks) that holding every key takes.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import timed

from hangar_git import Repository
from hangar_git.records.snapshot import clear_leaf_cache

#: bars of issue 8 at 1,000,000 samples
BAR_IMPORT_S = 15.0
BAR_COMMIT10_S = 0.1
BAR_DIFF_S = 0.05
BAR_OPEN_S = 0.5
#: len and a few ``in``: far below parsing every leaf
BAR_LOOKUP_S = 0.01
#: a few ``aset[k]``, the first of which loads the payload index
BAR_GET_S = 0.1
#: memory after opening + 100 random reads, as a fraction of holding all keys
BAR_MEM_RATIO = 0.1
PHASES = ("import", "update", "loop", "commit10", "diff", "open", "values", "batch")


def rss_bytes() -> int:
    """Resident set size of this process (0 where /proc is absent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Timer:
    """Times phases (best of ``repeat`` where asked), optionally under cProfile."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any], repeat: int = 1) -> Any:
        out = None
        for i in range(repeat):
            got, wall, cpu = timed(fn, profile=self.profile == name)
            if self.profile == name:
                self.profile = None  # once
            if name not in self.times or wall < self.times[name]:
                self.times[name], self.cpu[name] = wall, cpu
            out = got if i == 0 else out
        return out


def new_repo(path: Path) -> Repository:
    path.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    return repo


def open_repo(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path)


def numpy_baseline(data: np.ndarray, tmp: Path) -> dict[str, float]:
    """Plain numpy on the same data: what the machine gives for free."""
    out: dict[str, float] = {}
    f = tmp / "stack.npy"
    t0 = time.perf_counter()
    np.save(f, data)
    with open(f, "rb") as fh:
        os.fsync(fh.fileno())
    out["save"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = np.load(f)
    out["load"] = time.perf_counter() - t0
    assert np.array_equal(back, data)
    del back
    f.unlink()
    gc.collect()
    t0 = time.perf_counter()
    d = {k: row.copy() for k, row in enumerate(data)}
    out["dict_build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = [d[k] for k in range(len(data))]
    out["dict_read"] = time.perf_counter() - t0
    del got, d
    gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="number of samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the short phases (best kept)")
    ap.add_argument("--no-loop", action="store_true", help="skip the `with aset:` loop import")
    ap.add_argument("--dir", help="work in this (empty) directory and keep it")
    ap.add_argument("--profile", choices=PHASES, help="print a cProfile of one phase")
    args = ap.parse_args(argv)
    n = args.n
    reps = max(1, args.repeat)
    rng = np.random.default_rng(args.seed)
    data = rng.random((n, 4), dtype=np.float32)
    keys = list(range(n))
    changed = [int(k) for k in rng.choice(n, size=min(10, n), replace=False)]
    probe = [int(k) for k in rng.choice(n, size=min(5, n), replace=False)]
    rand1000 = [int(k) for k in rng.choice(n, size=min(1000, n), replace=False)]

    tmpctx = None
    if args.dir:
        work = Path(args.dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmpctx = tempfile.TemporaryDirectory(prefix="hangar-scale-")
        work = Path(tmpctx.name)
    base = numpy_baseline(data, work)
    timer = Timer(args.profile)
    t, c = timer.times, timer.cpu
    extra: dict[str, float] = {}

    # ---- import + commit, three ways ------------------------------------------
    def importer(repo: Repository, how: str) -> Callable[[], str]:
        def run() -> str:
            co = repo.checkout(write=True)
            aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
            t0 = time.perf_counter()
            if how == "stacked":
                aset.add_stacked(data, keys)
            elif how == "update":
                aset.update(dict(zip(keys, data, strict=True)))
            else:
                with aset:
                    for k in keys:
                        aset[k] = data[k]
            t1 = time.perf_counter()
            sha = co.commit(f"{n} samples ({how})")
            extra[f"{how}_add"], extra[f"{how}_commit"] = t1 - t0, time.perf_counter() - t1
            co.close()
            return sha

        return run

    repo = new_repo(work / "stacked")
    sha1 = timer.run("import", importer(repo, "stacked"))
    shas = {"stacked": sha1}
    upd_repo = new_repo(work / "update")
    shas["update"] = timer.run("update", importer(upd_repo, "update"))
    if not args.no_loop:
        loop_repo = new_repo(work / "loop")
        shas["loop"] = timer.run("loop", importer(loop_repo, "loop"))
    trees = {how: _tree_of(p, s) for how, (p, s) in _where(work, shas).items()}
    assert len(set(trees.values())) == 1, f"the import forms gave different records: {trees}"

    # ---- a commit changing 10 samples ------------------------------------------
    new_rows = rng.random((len(changed), 4), dtype=np.float32)
    sha2 = ""

    def commit10(rows: np.ndarray) -> Callable[[], str]:
        def run() -> str:
            t0 = time.perf_counter()
            co = repo.checkout(write=True)
            t1 = time.perf_counter()
            aset = co.arraysets["x"]
            for k, row in zip(changed, rows, strict=True):
                aset[k] = row
            t2 = time.perf_counter()
            sha = co.commit("10 changed samples")
            t3 = time.perf_counter()
            co.close()
            t4 = time.perf_counter()
            extra.setdefault("commit10_only", t3 - t2)
            extra["commit10_only"] = min(extra["commit10_only"], t3 - t2)
            extra.setdefault("commit10_all", t4 - t0)
            extra["commit10_all"] = min(extra["commit10_all"], t4 - t0)
            extra.setdefault("writer_open", t1 - t0)
            extra["writer_open"] = min(extra["writer_open"], t1 - t0)
            return sha

        return run

    # each repeat changes the same 10 keys to fresh values, on top of the last
    for i in range(reps):
        rows = new_rows if i == reps - 1 else rng.random((len(changed), 4), dtype=np.float32)
        clear_leaf_cache()
        repo = open_repo(work / "stacked")
        sha2 = timer.run("commit10", commit10(rows))
    repo.create_branch("base", base_commit=sha1)

    # ---- diff between the two commits -------------------------------------------
    def diff_commit() -> Any:
        clear_leaf_cache()
        r = open_repo(work / "stacked")
        co = r.checkout(commit=sha2)
        t0 = time.perf_counter()
        changes, conflicts = co.diff.commit(sha1)
        extra.setdefault("diff_commit", 1e9)
        extra["diff_commit"] = min(extra["diff_commit"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        changes_b, _ = co.diff.branch("base")
        extra.setdefault("diff_branch", 1e9)
        extra["diff_branch"] = min(extra["diff_branch"], time.perf_counter() - t0)
        co.close()
        assert changes == changes_b
        return changes, conflicts

    changes, conflicts = timer.run("diff", diff_commit, reps)
    # sha1 is the merge base: the master side (sha2) holds the 10 mutations
    got = sorted(changes.master.samples["x"].mutations)
    assert got == sorted(changed), (got, changed)
    assert not conflicts["conflict_found"]

    # ---- open a read checkout, look a few keys up -----------------------------
    opened: dict[str, float] = {}

    def open_read() -> Any:
        clear_leaf_cache()
        r = open_repo(work / "stacked")
        t0 = time.perf_counter()
        co = r.checkout(commit=sha2)
        aset = co.arraysets["x"]
        t1 = time.perf_counter()
        count = len(aset)
        t2 = time.perf_counter()
        hits = [k in aset for k in probe] + [(n + 7) in aset]
        t3 = time.perf_counter()
        arrays = [aset[probe[0]]]
        t4 = time.perf_counter()
        arrays += [aset[k] for k in probe[1:]]
        t5 = time.perf_counter()
        for name, v in (
            ("open", t1 - t0),
            ("len", t2 - t1),
            ("in", t3 - t2),
            ("get1", t4 - t3),
            ("get", t5 - t4),
        ):
            opened[name] = min(opened.get(name, 1e9), v)
        co.close()
        return count, hits, arrays

    count, hits, arrays = timer.run("open", open_read, reps)
    assert count == n, count
    assert hits == [True] * len(probe) + [False]
    for k, a in zip(probe, arrays, strict=True):
        want = new_rows[changed.index(k)] if k in changed else data[k]
        assert np.array_equal(a, want)

    # ---- memory of a read checkout --------------------------------------------
    mem = measure_memory(work / "stacked", sha2, rand1000)

    # ---- read everything back ---------------------------------------------------
    def read_values() -> list[np.ndarray]:
        clear_leaf_cache()
        co = open_repo(work / "stacked").checkout(commit=sha1)
        out = list(co.arraysets["x"].values())
        co.close()
        return out

    got_v = timer.run("values", read_values, reps)
    assert len(got_v) == n
    assert np.array_equal(np.sort(np.stack(got_v), axis=0), np.sort(data, axis=0))
    del got_v
    gc.collect()

    def read_batch() -> list[np.ndarray]:
        clear_leaf_cache()
        co = open_repo(work / "stacked").checkout(commit=sha1)
        out = co.arraysets["x"].get_batch(keys)
        co.close()
        return out

    got_b = timer.run("batch", read_batch, reps)
    assert np.array_equal(np.stack(got_b), data)
    del got_b
    gc.collect()

    # ---- report ------------------------------------------------------------------
    scale = n / 1_000_000
    load = os.getloadavg()
    print(
        f"hangar-git scale benchmark: {n:,} samples of (4,) float32; "
        f"{os.cpu_count()} cpus, load average {load[0]:.2f}; short phases: best of {reps}"
    )
    print(f"{'phase':<40}{'wall s':>9}{'cpu s':>8}{'samples/s':>12}   numpy baseline (same run)")

    def row(label: str, wall: float, cpu: float | None, count: int | None, base_txt: str) -> None:
        cpu_txt = f"{cpu:8.3f}" if cpu is not None else " " * 8
        rate = f"{count / wall:12,.0f}" if count else " " * 12
        print(f"{label:<40}{wall:9.4f}{cpu_txt}{rate}   {base_txt}")

    def vs(label: str, wall: float, ref: float) -> str:
        return f"{label} {ref:.3f} s (x{wall / ref:.1f})"

    save, load_s = base["save"], base["load"]
    row(
        "import add_stacked + commit",
        t["import"],
        c["import"],
        n,
        vs("np.save+fsync", t["import"], save),
    )
    print(f"  {'add_stacked':<38}{extra['stacked_add']:9.4f}")
    print(f"  {'commit':<38}{extra['stacked_commit']:9.4f}")
    row(
        "import update(dict) + commit",
        t["update"],
        c["update"],
        n,
        vs("dict of arrays", t["update"], base["dict_build"]),
    )
    print(f"  {'update':<38}{extra['update_add']:9.4f}")
    print(f"  {'commit':<38}{extra['update_commit']:9.4f}")
    if "loop" in t:
        row(
            "import `with aset:` loop + commit",
            t["loop"],
            c["loop"],
            n,
            vs("dict of arrays", t["loop"], base["dict_build"]),
        )
        print(f"  {'loop of aset[k] = row':<38}{extra['loop_add']:9.4f}")
        print(f"  {'commit':<38}{extra['loop_commit']:9.4f}")
    row("commit of 10 changes (commit() only)", extra["commit10_only"], None, None, "")
    row("  + open writer, 10 sets, close", extra["commit10_all"], None, None, "")
    row("  of which opening the writer", extra["writer_open"], None, None, "")
    row("diff.commit(first) of a read checkout", extra["diff_commit"], None, None, "")
    row("diff.branch(name)", extra["diff_branch"], None, None, "")
    row("open read checkout (new Repository)", opened["open"], None, None, "")
    row("len(aset)", opened["len"], None, None, "")
    row(f"{len(probe) + 1} x `key in aset`", opened["in"], None, None, "")
    row("first aset[k] (loads the payload index)", opened["get1"], None, None, "")
    row(f"{len(probe) - 1} more x aset[k]", opened["get"], None, None, "")
    row("read all, values()", t["values"], c["values"], n, vs("np.load", t["values"], load_s))
    row(
        "read all, get_batch(keys)",
        t["batch"],
        c["batch"],
        n,
        vs("dict reads", t["batch"], base["dict_read"]),
    )
    print(
        "memory of a read checkout, growth from before opening (tracemalloc: Python "
        "allocations, small ones and those of >= 1 MiB apart; RSS from /proc):"
    )
    for label, key in (
        ("after opening", "open"),
        ("after 100 random aset[k]", "read100"),
        (f"after {len(rand1000)} random aset[k]", "read1000"),
        ("after list(aset.keys()) (asked)", "keys"),
    ):
        m = mem[key]
        print(
            f"  {label:<34}{m.blocks:>10,} blocks {m.small / 2**20:8.2f} MiB"
            f" + {m.large / 2**20:6.2f} MiB in {m.n_large} large   RSS {m.rss / 2**20:8.2f} MiB"
        )

    checks = [
        (
            f"import (add_stacked) + commit < {BAR_IMPORT_S * scale:.2f} s",
            t["import"] < BAR_IMPORT_S * scale,
        ),
        (
            f"import (update) + commit < {BAR_IMPORT_S * scale:.2f} s",
            t["update"] < BAR_IMPORT_S * scale,
        ),
        (f"10-sample commit < {BAR_COMMIT10_S} s", extra["commit10_only"] < BAR_COMMIT10_S),
        (
            f"diff < {BAR_DIFF_S} s (commit and branch)",
            max(extra["diff_commit"], extra["diff_branch"]) < BAR_DIFF_S,
        ),
        (f"open read checkout < {BAR_OPEN_S} s", opened["open"] < BAR_OPEN_S),
        (
            f"len + {len(probe) + 1} x in < {BAR_LOOKUP_S} s",
            opened["len"] + opened["in"] < BAR_LOOKUP_S,
        ),
        (
            f"{len(probe)} x aset[k], the first loading the payload index, < {BAR_GET_S} s",
            opened["get1"] + opened["get"] < BAR_GET_S,
        ),
        (
            f"open + 100 reads: < {BAR_MEM_RATIO}x the Python objects (blocks) of all keys",
            mem["read100"].blocks < BAR_MEM_RATIO * mem["keys"].blocks,
        ),
    ]
    for label, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {label}")
    if tmpctx is not None:
        tmpctx.cleanup()
    return 0 if all(ok for _, ok in checks) else 1


def _where(work: Path, shas: dict[str, str]) -> dict[str, tuple[Path, str]]:
    return {how: (work / how, sha) for how, sha in shas.items()}


def _tree_of(path: Path, sha: str) -> str:
    """Id of the arrayset's records tree in commit ``sha``."""
    git = open_repo(path)._git_repo()
    return str(git.get(sha).tree["arraysets/x"].id)


class Mem(NamedTuple):
    """Memory growth: tracemalloc blocks, bytes in small and large blocks, RSS."""

    blocks: int
    small: int
    large: int
    n_large: int
    rss: int


def _mem_since(base: tracemalloc.Snapshot) -> tuple[int, int, int, int]:
    snap = tracemalloc.take_snapshot()
    blocks = small = large = n_large = 0
    for st in snap.compare_to(base, "traceback"):
        blocks += st.count_diff
        if st.count and st.size / st.count >= 1 << 20:
            large += st.size_diff
            n_large += max(0, st.count_diff)
        else:
            small += st.size_diff
    return blocks, small, large, n_large


def _memory_pass(path: Path, sha: str, rand_keys: list[int], tracing: bool) -> dict[str, Any]:
    """Growth after opening, 100 and 1,000 reads and all keys: RSS, or traced
    allocations."""
    clear_leaf_cache()
    gc.collect()
    r = open_repo(path)
    out: dict[str, Any] = {}
    rss0 = rss_bytes()
    base = None
    if tracing:
        tracemalloc.start()
        base = tracemalloc.take_snapshot()

    def note(key: str) -> None:
        gc.collect()
        out[key] = _mem_since(base) if base is not None else rss_bytes() - rss0

    co = r.checkout(commit=sha)
    aset = co.arraysets["x"]
    note("open")
    for k in rand_keys[:100]:
        aset[k]
    note("read100")
    for k in rand_keys[100:]:
        aset[k]
    note("read1000")
    all_keys = list(aset.keys())
    note("keys")
    assert len(all_keys) == len(aset)
    del all_keys, aset
    co.close()
    if tracing:
        tracemalloc.stop()
    return out


def measure_memory(path: Path, sha: str, rand_keys: list[int]) -> dict[str, Mem]:
    """Memory growth of a read checkout: opened, after 100 and 1,000 reads, all keys.

    Two passes over a fresh ``Repository`` with empty caches: one reads RSS
    (tracemalloc's own bookkeeping would inflate it), one traces allocations.
    """
    rss = _memory_pass(path, sha, rand_keys, tracing=False)
    traced = _memory_pass(path, sha, rand_keys, tracing=True)
    return {k: Mem(*traced[k], rss[k]) for k in traced}


if __name__ == "__main__":
    sys.exit(main())
