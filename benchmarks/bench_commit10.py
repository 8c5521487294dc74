"""A commit of 10 changes at 1M small samples, each in a fresh process.

Issue 18's bar: with 1,000,000 samples of (4,) float32 committed, opening a
write checkout, setting 10 keys (``aset[k] = row``, outside a ``with`` block:
each set durable when it returns), committing and closing takes under 0.1 s
in a fresh process. ``bench_scale.py`` times the same steps inside the
process that imported the data; here each run is a new interpreter, its
imports done before the clock starts (as ``bench_peers.py`` does), on a
repository an earlier process wrote.

Each run changes 10 random keys to fresh random values (so no payload is
stored already; both trees get the same keys and values in a round).
``--base DIR`` times another source tree (a copy of main, say) on a
repository of its own, its runs interleaved with this tree's so that both
see the same load. Prints, per tree, the best and the spread of
the runs, and the phases of the best run: open (``Repository`` +
``checkout(write=True)``), the 10 sets, ``commit`` and ``close``.

Not a test: figures vary with the machine's load (printed).

Run::

    python benchmarks/bench_commit10.py                       # 1,000,000, best of 5
    python benchmarks/bench_commit10.py -n 100000 --repeat 9 --base /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _common import tree_child

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
BAR = 0.1  # seconds, issue 18, at 1,000,000 samples
CHANGES = 10


def _imports() -> None:
    import hangar_git
    import hangar_git.checkout

    for name in hangar_git.__all__:
        getattr(hangar_git, name)


def build(path: Path, n: int) -> None:
    """A repository at ``path`` with one commit of ``n`` samples of (4,) float32."""
    import numpy as np

    from hangar_git import Repository

    path.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(str(path), exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    aset.add_stacked(np.random.default_rng(0).random((n, 4), dtype=np.float32), range(n))
    co.commit(f"{n} samples")
    co.close()


def run(path: Path, n: int, seed: int) -> dict[str, float]:
    """One timed commit of :data:`CHANGES` changes (imports done before)."""
    import numpy as np

    from hangar_git import Repository

    rng = np.random.default_rng(seed)
    keys = [int(k) for k in rng.choice(n, size=CHANGES, replace=False)]
    rows = rng.random((CHANGES, 4), dtype=np.float32)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(str(path))
    co = repo.checkout(write=True)
    aset = co.arraysets["x"]
    t1 = time.perf_counter()
    for k, row in zip(keys, rows, strict=True):
        aset[k] = row
    t2 = time.perf_counter()
    co.commit(f"{CHANGES} changes")
    t3 = time.perf_counter()
    co.close()
    t4 = time.perf_counter()
    return {"all": t4 - t0, "open": t1 - t0, "set": t2 - t1, "commit": t3 - t2, "close": t4 - t3}


def _child(tree: Path, *args: str) -> str:
    return tree_child(HERE, tree, *args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="samples committed first")
    ap.add_argument("--repeat", type=int, default=5, help="fresh-process runs per tree")
    ap.add_argument("--base", help="another source tree, timed interleaved")
    ap.add_argument("--dir", help="work here (kept; its repositories reused)")
    ap.add_argument("--child", nargs=3, metavar=("WHAT", "PATH", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        what, path, seed = args.child
        _imports()
        if what == "build":
            build(Path(path), args.n)
        else:
            print(json.dumps(run(Path(path), args.n, int(seed))))
        return 0
    trees = {"this tree": ROOT}
    if args.base:
        trees["base"] = Path(args.base).resolve()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hangar-commit10-"))
    repos = {label: work / f"repo-{i}-{args.n}" for i, label in enumerate(trees)}
    for label, tree in trees.items():
        if not repos[label].exists():
            _child(tree, "-n", str(args.n), "--child", "build", str(repos[label]), "0")
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    for _ in range(max(1, args.repeat)):
        seed = str(secrets.randbits(48))  # new values (a reused --dir holds the old ones)
        for label, tree in trees.items():
            got = _child(tree, "-n", str(args.n), "--child", "run", str(repos[label]), seed)
            runs[label].append(json.loads(got))
    print(
        f"commit of {CHANGES} changes at {args.n:,} samples, each run a fresh process "
        f"(imports excluded); load average {os.getloadavg()[0]:.2f}; {args.repeat} runs per tree"
    )
    print(f"{'tree':<12}{'best s':>9}{'spread s':>20}   phases of the best run (s)")
    for label, rs in runs.items():
        alls = sorted(r["all"] for r in rs)
        best = min(rs, key=lambda r: r["all"])
        phases = "  ".join(f"{k} {best[k]:.4f}" for k in ("open", "set", "commit", "close"))
        print(f"{label:<12}{alls[0]:9.4f}{alls[0]:10.4f}-{alls[-1]:.4f}   {phases}")
    best = min(r["all"] for r in runs["this tree"])
    print(f"  [{'ok' if best < BAR else 'FAIL'}] commit of {CHANGES} changes < {BAR} s")
    return 0 if best < BAR else 1


if __name__ == "__main__":
    sys.exit(main())
