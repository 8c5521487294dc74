"""The first reads of a fresh process: a read checkout opened, a few samples
read key by key, closed, all inside the clock (imports outside it).

What the row-table heuristics of :mod:`hangar_git.payloads` trade against
each other: building an arrayset's table early speeds a loop of reads and
slows a process that reads one sample. For an MNIST-like set of ``-n``
samples (28x28 uint8 images, (1,) int64 labels) it times, each in a fresh
process: one image; one image and one label; 10,000 random image+label
reads. ``--base DIR`` times another source tree on the same repository
(written by this tree), its runs interleaved with this tree's. Prints per
step and tree the best and median CPU (user + system) and wall time, and
the page faults of the best run: on a shared machine the CPU figure is the
steadier one.

Not a test: figures vary with the machine's load (printed).

Run::

    python benchmarks/bench_first_reads.py                  # 60,000 samples
    python benchmarks/bench_first_reads.py -n 5000 --repeat 11 --base /tmp/base
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
RANDOM_READS = 10_000
#: (row, step)
STEPS = [
    ("one image", "one"),
    ("one image, one label", "two"),
    ("10,000 random image+label reads", "random"),
]


def _write(repo: Path, n: int) -> None:
    import numpy as np

    from hangar_git import Repository

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n, 1)).astype(np.int64)
    repo.mkdir()
    r = Repository(str(repo), exists=False)
    r.init(user_name="bench", user_email="bench@example.com")
    co = r.checkout(write=True)
    co.arraysets.init_arrayset("images", prototype=images[0]).add_stacked(images, list(range(n)))
    co.arraysets.init_arrayset("labels", prototype=labels[0]).add_stacked(labels, list(range(n)))
    co.commit("mnist")
    co.close()


def child(step: str, repo: Path, n: int, tree: Path) -> None:
    """Time ``step`` in this fresh process (``hangar_git`` from ``tree``) and
    print its wall and CPU seconds and page faults as JSON."""
    import numpy as np

    import hangar_git
    import hangar_git.checkout

    assert Path(hangar_git.__file__).resolve().is_relative_to(tree.resolve())
    for name in hangar_git.__all__:
        getattr(hangar_git, name)
    keys = np.random.default_rng(1).integers(0, n, RANDOM_READS).tolist()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, c0 = time.perf_counter(), time.process_time()
    co = hangar_git.Repository(str(repo)).checkout()
    images, labels = co.arraysets["images"], co.arraysets["labels"]
    if step == "random":
        for k in keys:
            images[k]
            labels[k]
    else:
        images[keys[0]]
        if step == "two":
            labels[keys[0]]
    co.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    print(json.dumps({"wall": wall, "cpu": cpu, "faults": faults}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="samples")
    ap.add_argument("--repeat", type=int, default=9, help="runs of each step")
    ap.add_argument("--base", type=Path, help="another source tree, timed beside this one")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.repo, args.n, args.tree)
        return
    trees = {"this": ROOT}
    if args.base is not None:
        trees["base"] = args.base.resolve()
    root = Path(tempfile.mkdtemp(prefix="bench-first-reads-"))
    try:
        sys.path.insert(0, str(ROOT))
        _write(root / "repo", args.n)  # its key tables and places kept, as a commit keeps them
        got: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for row, step in STEPS:
                for name, tree in trees.items():
                    a = ("--child", step, "--repo", str(root / "repo"), "-n", str(args.n))
                    out = tree_child(HERE, tree, *a, "--tree", str(tree))
                    got.setdefault((row, name), []).append(json.loads(out))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average: {os.getloadavg()[0]:.2f}; n={args.n}, {args.repeat} runs, milliseconds")
    head = f"{'step':<34}{'tool':<6}{'cpu best':>10}{'median':>8}{'wall best':>10}{'median':>8}"
    print(head + f"{'faults':>8}")
    print("-" * (len(head) + 8))
    for row, _step in STEPS:
        for name in trees:
            runs = got[(row, name)]
            best = min(runs, key=lambda r: r["cpu"])
            cpu = statistics.median(r["cpu"] for r in runs)
            cells = f"{best['cpu'] * 1e3:10.2f}{cpu * 1e3:8.2f}"
            cells += f"{min(r['wall'] for r in runs) * 1e3:10.2f}"
            cells += f"{statistics.median(r['wall'] for r in runs) * 1e3:8.2f}"
            print(f"{row:<34}{name:<6}{cells}{best['faults']:8d}")


if __name__ == "__main__":
    main()
