"""A long history of small commits: what each commit costs as history grows.

A training loop or a labelling tool commits often. Each commit writes its
git objects as one pack guarded from ``git gc`` (see
``hangar_git.records.objpack``), so a long history means many small packs
until ``git gc`` (or ``git hangar gc``) repacks them. This measures:

- the time of each of ``--commits`` commits of ``--changes`` samples on top
  of an arrayset of ``-n`` samples (first, median and last 10 % of commits);
- then, each in a fresh process (as ``git hangar`` runs): opening a read
  checkout of the head and reading 100 random keys; a diff between the first
  and the last commit; a diff of the last commit against its parent;
- the same three after ``git gc`` (one pack), for comparison;
- the number of pack files and loose objects in ``.git/objects``.

Run::

    python benchmarks/bench_commits.py                       # 300 commits
    python benchmarks/bench_commits.py --commits 1000 -n 100000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hangar_git import Repository

READ = """
import sys, time, numpy as np
t = time.perf_counter()
from hangar_git import Repository
t0 = time.perf_counter()
repo = Repository(sys.argv[1])
co = repo.checkout()
aset = co.arraysets["a"]
keys = np.random.default_rng(0).integers(0, int(sys.argv[2]), 100)
for k in keys:
    aset[int(k)]
t1 = time.perf_counter()
d = co.diff.commit(sys.argv[3])
t2 = time.perf_counter()
d = co.diff.commit(sys.argv[4])
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def git_objects(path: Path) -> tuple[int, int]:
    """(pack files, loose objects) in the repository's object database."""
    objects = path / ".git" / "objects"
    packs = len(list((objects / "pack").glob("*.pack")))
    loose = sum(1 for p in objects.glob("??/*") if p.is_file())
    return packs, loose


def fresh_reads(path: Path, n: int, first: str, parent: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", READ, str(path), str(n), first, parent],
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="samples in the arrayset")
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--changes", type=int, default=10, help="samples changed per commit")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r"
        path.mkdir()
        repo = Repository(path, exists=False)
        repo.init("bench", "bench@example.org")
        co = repo.checkout(write=True)
        aset = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.float32)
        aset.add_stacked(rng.random((args.n, 4), dtype=np.float32), list(range(args.n)))
        first = co.commit("initial")
        times, shas = [], [first]
        for c in range(args.commits):
            for k in rng.integers(0, args.n, args.changes):
                aset[int(k)] = rng.random(4, dtype=np.float32)
            t = time.perf_counter()
            shas.append(co.commit(f"commit {c}"))
            times.append(time.perf_counter() - t)
        parent = shas[-2]
        co.close()
        packs, loose = git_objects(path)
        tenth = max(1, len(times) // 10)
        print(f"{args.commits} commits of {args.changes} changes over {args.n:,} samples")
        print(
            f"  commit: first {statistics.median(times[:tenth]) * 1e3:.1f} ms, "
            f"median {statistics.median(times) * 1e3:.1f} ms, "
            f"last {statistics.median(times[-tenth:]) * 1e3:.1f} ms"
        )
        print(f"  .git/objects: {packs} packs, {loose} loose objects")
        for label in ("as written", "after git gc"):
            runs = [fresh_reads(path, args.n, first, parent) for _ in range(3)]
            read, dfirst, dlast = (min(r[i] for r in runs) for i in range(3))
            print(
                f"  {label}: open + 100 reads {read * 1e3:.1f} ms, diff to the first "
                f"commit {dfirst * 1e3:.1f} ms, diff to the parent {dlast * 1e3:.1f} ms"
            )
            subprocess.run(["git", "gc", "--quiet"], cwd=path, check=True)


if __name__ == "__main__":
    main()
