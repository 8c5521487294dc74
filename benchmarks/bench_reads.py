"""The MNIST read rows of ``bench_peers.py``, CPU and wall, against another tree.

The three read rows of issue 18 (read all key by key, one bulk
``read_into`` of each arrayset, 10,000 random image+label reads), each run
in a fresh Python process as ``bench_peers.py`` runs them (its step
functions, imports done before the clock starts), with numpy's steps beside
them. ``--base DIR`` times another source tree (a copy of main, say) on a
repository it wrote itself, its runs interleaved with this tree's so that
both see the same load. Prints per step and tree the best (and median) wall
and CPU time (user + system) and the page faults of the best run: on a
shared machine the CPU figure is the steadier one.

Not a test: figures vary with the machine's load (printed).

Run::

    python benchmarks/bench_reads.py                        # 60,000 samples, best of 5
    python benchmarks/bench_reads.py --repeat 9 --base /tmp/base
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
from pathlib import Path

from _common import tree_child

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
#: (row, numpy step, hangar-git step), the steps of bench_peers.py
STEPS = [
    ("read all, key by key", "np_read_keys", "hg_read_keys"),
    ("read all, one bulk call", "np_read_bulk", "hg_read_bulk"),
    ("10,000 random image+label reads", "np_read_random", "hg_read_random"),
]


def child(step: str, d: Path, n: int, tree: Path) -> None:
    """Run one step of ``bench_peers.py`` in this (fresh) process, with
    ``hangar_git`` from ``tree``; print its wall and CPU seconds and page
    faults as JSON."""
    sys.path.insert(0, str(HERE.parent))
    import bench_peers  # inserts this tree's root: put ``tree`` before it

    sys.path.insert(0, str(tree))
    if step.startswith("hg_"):
        import hangar_git
        import hangar_git.checkout

        assert Path(hangar_git.__file__).resolve().is_relative_to(tree.resolve())
        for name in hangar_git.__all__:
            getattr(hangar_git, name)
    fn = getattr(bench_peers, step)(d, n, 1)  # inputs, untimed
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    print(json.dumps({"wall": wall, "cpu": cpu, "faults": faults}))


def run_child(step: str, d: Path, n: int, tree: Path) -> dict[str, float]:
    args = ("--child", step, "--dir", str(d), "-n", str(n), "--tree", str(tree))
    return json.loads(tree_child(HERE, tree, *args))  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="MNIST samples")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each step")
    ap.add_argument("--base", type=Path, help="another source tree, timed beside this one")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.dir), args.n, args.tree)
        return
    trees = {"this": ROOT}
    if args.base is not None:
        trees["base"] = args.base.resolve()
    root = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    try:
        dirs = {name: root / name for name in (*trees, "numpy")}
        for d in dirs.values():
            d.mkdir()
        run_child("np_write", dirs["numpy"], args.n, ROOT)
        for name, tree in trees.items():  # each tree writes its own repository
            run_child("hg_write", dirs[name], args.n, tree)
        got: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for row, np_step, hg_step in STEPS:
                got.setdefault((row, "numpy"), []).append(
                    run_child(np_step, dirs["numpy"], args.n, ROOT)
                )
                for name, tree in trees.items():
                    got.setdefault((row, name), []).append(
                        run_child(hg_step, dirs[name], args.n, tree)
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average: {os.getloadavg()[0]:.2f}; {args.repeat} runs per step, milliseconds")
    head = f"{'step':<34}{'tool':<8}{'wall best':>10}{'median':>8}{'cpu best':>10}{'median':>8}"
    print(head + f"{'faults':>8}{'x numpy (wall, cpu)':>22}")
    print("-" * (len(head) + 30))
    for row, _np, _hg in STEPS:
        ref = got[(row, "numpy")]
        for tool in ("numpy", *trees):
            runs = got[(row, tool)]
            best = min(runs, key=lambda r: r["cpu"])
            wall, cpu = min(r["wall"] for r in runs), best["cpu"]
            cells = f"{wall * 1e3:10.1f}{statistics.median(r['wall'] for r in runs) * 1e3:8.1f}"
            cells += f"{cpu * 1e3:10.1f}{statistics.median(r['cpu'] for r in runs) * 1e3:8.1f}"
            ratio = ""
            if tool != "numpy":
                rw = wall / min(r["wall"] for r in ref)
                rc = cpu / min(r["cpu"] for r in ref)
                ratio = f"{rw:.2f}x, {rc:.2f}x"
            print(f"{row[:33]:<34}{tool:<8}{cells}{best['faults']:8d}{ratio:>22}")


if __name__ == "__main__":
    main()
