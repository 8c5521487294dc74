"""The 300,000 small-sample bulk write + commit, CPU and wall, each run in a fresh process.

``bench_peers.py``'s row "small samples: bulk write + commit" (an arrayset of
(4,) float32 added with ``add_stacked`` and committed, in a repository that
holds the MNIST set already) measures wall time, which on a shared machine
swings with the load more than the work does. Here the same step runs in a
new interpreter per run (its imports done before the clock starts), on a copy
of a repository written once per tree, and prints for each tree the best and
the median of both the wall time and the CPU time (user + system, all
threads: ``time.process_time``) of the step, and the CPU of its parts in the
best run: the commit's index segment write (``commit_segments``), its merge
(``plan_commit``), the key names (``int_key_names``, ``names_crc32``), the
records (``write_sample_run``), their pack (``write_pack``) and the entry
hints (``keep_committed``).

``--base DIR`` times another source tree (a copy of main, say) the same
way, its runs interleaved with this tree's so that both see the same load.

Not a test: figures vary with the machine's load (printed).

Run::

    python benchmarks/bench_small_bulk.py                         # best of 7
    python benchmarks/bench_small_bulk.py --repeat 9 --base /tmp/base
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import tree_child

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
MNIST, SMALL = 60_000, 300_000
#: (module, attribute) of the parts timed in the child
PARTS = [
    ("hangar_git.records.keynames", "int_key_names"),
    ("hangar_git.records.keynames", "names_crc32"),
    ("hangar_git.records.build", "write_sample_run"),
    ("hangar_git.records.objpack", "write_pack"),
    ("hangar_git.records.entry_hints", "keep_committed"),
    ("hangar_git.store.segment_plan", "plan_commit"),
    ("hangar_git.store.packs", "PackStore.commit_segments"),
]


def _timed(acc: dict[str, float], name: str, f: Any) -> Any:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        c0 = time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            acc[name] = acc.get(name, 0.0) + time.process_time() - c0

    return wrapper


def _wrap_parts(acc: dict[str, float]) -> None:
    """Time each of :data:`PARTS` wherever the package holds it by name."""
    for modname, attr in PARTS:
        *owners, last = attr.split(".")
        owner: Any = importlib.import_module(modname)
        for o in owners:
            owner = getattr(owner, o)
        f = getattr(owner, last)
        w = _timed(acc, last, f)
        setattr(owner, last, w)
        if not owners:  # modules that imported the function by name
            for m in list(sys.modules.values()):
                if getattr(m, "__name__", "").startswith("hangar_git") and (
                    getattr(m, last, None) is f
                ):
                    setattr(m, last, w)


def child(tree: Path, step: str, d: Path) -> None:
    """Run ``step`` of ``tree``'s ``bench_peers.py`` (which puts ``tree``
    first on the path) on ``d`` in this process; print its wall and CPU
    seconds and those of its parts as JSON."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_peers", tree / "benchmarks/bench_peers.py")
    assert spec is not None and spec.loader is not None
    bench_peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_peers)
    import hangar_git
    import hangar_git.checkout

    for name in hangar_git.__all__:
        getattr(hangar_git, name)
    fn = getattr(bench_peers, step)(d, MNIST, SMALL)
    acc: dict[str, float] = {}
    if step == "hg_small_write":
        _wrap_parts(acc)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    c1, t1 = time.process_time(), time.perf_counter()
    print(json.dumps({"wall": t1 - t0, "cpu": c1 - c0, "parts": acc}))


def _run(tree: Path, step: str, d: Path) -> dict[str, Any]:
    args = ("--child", step, "--tree", str(tree), "--dir", str(d))
    return json.loads(tree_child(HERE, tree, *args))  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per tree")
    ap.add_argument("--base", help="another source tree, timed interleaved")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(Path(args.tree), args.child, Path(args.dir))
        return 0
    trees = {"this": ROOT}
    if args.base:
        trees["base"] = Path(args.base).resolve()
    root = Path(tempfile.mkdtemp(prefix="bench-small-bulk-"))
    try:
        for name, tree in trees.items():  # the MNIST set, once per tree
            (root / name).mkdir()
            _run(tree, "hg_write", root / name)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _ in range(args.repeat):
            for name, tree in trees.items():
                d = root / f"{name}-run"
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(root / name, d, symlinks=True)
                runs[name].append(_run(tree, "hg_small_write", d))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average: {os.getloadavg()[0]:.2f}; {args.repeat} runs per tree, ms")
    for name, rs in runs.items():
        wall = [r["wall"] * 1e3 for r in rs]
        cpu = [r["cpu"] * 1e3 for r in rs]
        print(
            f"{name:5s} wall best {min(wall):6.1f} median {statistics.median(wall):6.1f}"
            f" | CPU best {min(cpu):6.1f} median {statistics.median(cpu):6.1f}"
        )
        best = min(rs, key=lambda r: r["cpu"])
        parts = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in best["parts"].items())
        print(f"      parts (CPU, best run): {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
