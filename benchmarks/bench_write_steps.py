"""The MNIST write steps of ``bench_peers.py``, phase by phase, in CPU and wall time.

Issue 18 times the MNIST set (``-n`` images of 28x28 uint8 and int64
labels) written and committed in bulk (``add_stacked``) and key by key in
``with`` blocks, each in a fresh process. On a machine other work shares,
wall times swing; the CPU time of a step (user + system, any child
process's included) moves far less. This script runs both steps in fresh
processes (imports before the clock, as ``bench_peers.py``), for this tree and, with ``--base DIR``,
another source tree (a copy of main, say) interleaved run by run, and
prints for each the best wall and CPU time of the whole step and the CPU
time of its phases in the run of least CPU time (with its page faults).

Not a test: figures vary with the machine's load (printed).

Run::

    python benchmarks/bench_write_steps.py --base /tmp/base --repeat 5
    python benchmarks/bench_write_steps.py -n 10000 --only keys
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _common import tree_child

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
STEPS = ("bulk", "keys")


def _mnist(n: int):  # the data of bench_peers.py
    import numpy as np

    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 255, (n, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, (n, 1)).astype(np.int64),
    )


def _clock() -> tuple[float, float, int]:
    """Wall, CPU (this process and its waited-for children) and page faults."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return time.perf_counter(), cpu, me.ru_minflt + kids.ru_minflt


def run(step: str, path: Path, n: int) -> dict[str, list[float]]:
    """One timed step in this (fresh) process: phase -> [wall, cpu, faults]."""
    import numpy as np

    import hangar_git
    import hangar_git.checkout
    from hangar_git import Repository

    for name in hangar_git.__all__:  # imports before the clock (bench_peers.py)
        getattr(hangar_git, name)
    images, labels = _mnist(n)
    marks = [("start", *_clock())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(str(path), exists=False)
    repo.init(user_name="bench", user_email="bench@example.com")
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
    b = co.arraysets.init_arrayset("labels", prototype=labels[0])
    marks.append(("open", *_clock()))
    if step == "bulk":
        a.add_stacked(images, list(range(n)))
        marks.append(("images", *_clock()))
        b.add_stacked(labels, list(range(n)))
        marks.append(("labels", *_clock()))
    else:
        with a, b:
            for i in range(n):
                a[i] = images[i]
                b[i] = labels[i]
            marks.append(("sets", *_clock()))
        marks.append(("block end", *_clock()))
    co.commit("mnist")
    marks.append(("commit", *_clock()))
    co.close()
    marks.append(("close", *_clock()))
    out = {m[0]: [m[1] - p[1], m[2] - p[2], m[3] - p[3]] for p, m in itertools.pairwise(marks)}
    out["all"] = [marks[-1][1] - marks[0][1], marks[-1][2] - marks[0][2], 0.0]
    return out


def _child(tree: Path, *args: str) -> dict[str, list[float]]:
    return json.loads(tree_child(HERE, tree, *args))  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="MNIST samples")
    ap.add_argument("--repeat", type=int, default=5, help="fresh-process runs per tree and step")
    ap.add_argument("--base", help="another source tree, timed interleaved")
    ap.add_argument("--only", choices=STEPS, action="append", help="this step only; repeatable")
    ap.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run(args.child[0], Path(args.child[1]), args.n)))
        return 0
    trees = {"this tree": ROOT}
    if args.base:
        trees["base"] = Path(args.base).resolve()
    steps = args.only or list(STEPS)
    work = Path(tempfile.mkdtemp(prefix="hangar-write-steps-"))
    runs: dict[tuple[str, str], list[dict[str, list[float]]]] = {}
    try:
        for r in range(max(1, args.repeat)):
            for step in steps:
                for label, tree in trees.items():
                    path = work / f"{step}-{r}-{label.replace(' ', '-')}"
                    path.mkdir()
                    got = _child(tree, "-n", str(args.n), "--child", step, str(path))
                    runs.setdefault((step, label), []).append(got)
                    shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"MNIST {args.n:,} write + commit, each run a fresh process (imports excluded); "
        f"load average {os.getloadavg()[0]:.2f}; {args.repeat} runs per tree and step"
    )
    for step in steps:
        print(f"\n{step}: best wall / best CPU (s); CPU (ms) and page faults of the phases")
        for label in trees:
            rs = runs[(step, label)]
            wall = min(x["all"][0] for x in rs)
            least = min(rs, key=lambda x: x["all"][1])
            phases = "  ".join(
                f"{k} {v[1] * 1000:.0f} ({v[2]:.0f})" for k, v in least.items() if k != "all"
            )
            print(f"  {label:<10} {wall:.3f} / {least['all'][1]:.3f}   {phases}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
