"""The large-array write of ``bench_peers.py`` beside ``np.save``, interleaved run by run.

Issue 18 times 100 arrays of 512x512x3 float32 (3 MB each) set one by one in
a ``with`` block and committed, against ``np.save`` of each with ``fsync``
(bar: 1.25x). Both depend on the disk and on free cores (the digest of a
large array is computed on a second thread while its chunks are written), so
on a shared machine one ``bench_peers.py`` run swings by half. This script
runs, round after round, hangar-git from this tree, from ``--base DIR`` if
given, and ``np.save``, each in a fresh process (imports and the repository
made before the clock), and prints the best and median wall and CPU time
(user + system, every thread) of each, and the ratios to ``np.save``.

Not a test: figures vary with the machine's load (printed).

Run::

    python benchmarks/bench_large_write.py --base /tmp/base --repeat 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _common import tree_child

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
SHAPE = (512, 512, 3)
COUNT = 100


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def run(what: str, path: Path) -> dict[str, float]:
    """One timed write in this (fresh) process: wall and CPU seconds."""
    import numpy as np

    rng = np.random.default_rng(2)  # the arrays of bench_peers.py
    arrays = [rng.random(SHAPE, dtype=np.float32) for _ in range(COUNT)]
    if what == "numpy":
        out = path / "npy"
        out.mkdir()
        t0, c0 = time.perf_counter(), _cpu()
        for i, a in enumerate(arrays):
            np.save(out / f"{i}.npy", a)
        for name in [*os.listdir(out), "."]:
            fd = os.open(out / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return {"wall": time.perf_counter() - t0, "cpu": _cpu() - c0}
    import hangar_git
    import hangar_git.checkout
    from hangar_git import Repository

    for name in hangar_git.__all__:  # imports before the clock (bench_peers.py)
        getattr(hangar_git, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(str(path), exists=False)
    repo.init(user_name="bench", user_email="bench@example.com")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(1,), dtype=np.uint8)
    co.commit("start")
    co.close()
    t0, c0 = time.perf_counter(), _cpu()
    co = repo.checkout(write=True, branch="master")
    arr = co.arraysets.init_arrayset("large", shape=SHAPE, dtype=np.float32)
    with arr:
        for i, a in enumerate(arrays):
            arr[i] = a
    co.commit("large")
    co.close()
    return {"wall": time.perf_counter() - t0, "cpu": _cpu() - c0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="rounds (a fresh process each)")
    ap.add_argument("--base", help="another source tree, timed interleaved")
    ap.add_argument("--child", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run(args.child[0], Path(args.child[1]))))
        return 0
    runs = {"this tree": ROOT, **({"base": Path(args.base).resolve()} if args.base else {})}
    runs["numpy"] = ROOT
    work = Path(tempfile.mkdtemp(prefix="hangar-large-write-"))
    got: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
    try:
        for r in range(max(1, args.repeat)):
            for label, tree in runs.items():
                path = work / f"{r}-{label.replace(' ', '-')}"
                path.mkdir()
                what = "numpy" if label == "numpy" else "hangar"
                got[label].append(json.loads(tree_child(HERE, tree, "--child", what, str(path))))
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{COUNT} x {'x'.join(map(str, SHAPE))} float32 written (with fsync), fresh processes; "
        f"load average {os.getloadavg()[0]:.2f}; {args.repeat} rounds"
    )
    np_best = min(x["wall"] for x in got["numpy"])
    np_median = statistics.median(x["wall"] for x in got["numpy"])
    for label, rs in got.items():
        walls, cpus = [x["wall"] for x in rs], [x["cpu"] for x in rs]
        best, median = min(walls), statistics.median(walls)
        print(
            f"  {label:<10} wall best {best:.3f} median {median:.3f} "
            f"({best / np_best:.2f}x / {median / np_median:.2f}x numpy)  "
            f"CPU best {min(cpus):.3f} median {statistics.median(cpus):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
