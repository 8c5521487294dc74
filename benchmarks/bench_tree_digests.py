"""The digests a samples tree's leaves name, read in one pass (``reachable.tree_digests``).

What fetch-data, push and gc do for each samples tree whose leaves they
read: MNIST-sized, ``-n`` int keys in the 256 leaves of a two-digit fan-out,
checked as a fresh clone checks them (``untrusted``: keys in order and in
their leaf) and as a tree of this machine (``trusted``). ``--base DIR`` times
another source tree (a copy of main, say) in a process of its own, its runs
interleaved with this tree's. Prints the best and median milliseconds.

Not a test: figures vary with the machine's load.

Run::

    python benchmarks/bench_tree_digests.py
    python benchmarks/bench_tree_digests.py --base /tmp/base --repeat 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def leaves(n: int) -> tuple[list[bytes], list[tuple[str, ...]]]:
    """``n`` int keys in the leaves of a two-digit fan-out, as their hash places them."""
    from hangar_git.records.layout import serialize_links

    by_leaf: dict[str, dict[str, bytes]] = {}
    for i in range(n):
        key = f"i:{i}"
        digest = hashlib.blake2b(str(i).encode(), digest_size=20).digest()
        by_leaf.setdefault(f"{zlib.crc32(key.encode()) >> 24:02x}", {})[key] = digest
    paths = sorted(by_leaf)
    return [serialize_links(dict(sorted(by_leaf[p].items()))) for p in paths], [(p,) for p in paths]


def child(n: int, repeat: int) -> None:
    """Time both checks ``repeat`` times in this process; print the seconds as JSON."""
    from hangar_git.records.reachable import tree_digests

    raws, paths = leaves(n)
    out: dict[str, list[float]] = {"untrusted": [], "trusted": []}
    for _ in range(repeat):
        for label, trusted in (("untrusted", False), ("trusted", True)):
            t0 = time.perf_counter()
            got = tree_digests(raws, paths, trusted)
            out[label].append(time.perf_counter() - t0)
            assert got is not None and len(got) == 20 * n
    print(json.dumps(out))


def run(code: Path, n: int, repeat: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(HERE), "--child", "-n", str(n), "--repeat", str(repeat)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="keys")
    ap.add_argument("--repeat", type=int, default=20, help="runs a side")
    ap.add_argument("--base", metavar="DIR", help="also time the sources in DIR, interleaved")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.n, args.repeat)
        return
    sides = {"this": ROOT} | ({"base": Path(args.base).resolve()} if args.base else {})
    got: dict[str, dict[str, list[float]]] = {s: {"untrusted": [], "trusted": []} for s in sides}
    rounds = 5
    for _ in range(rounds):
        for side, code in sides.items():
            for label, times in run(code, args.n, max(1, args.repeat // rounds)).items():
                got[side][label] += times
    print(f"tree_digests of {args.n:,} keys in 256 leaves (ms, best / median)")
    for side, labels in got.items():
        cells = "  ".join(
            f"{label} {min(t) * 1e3:6.2f} / {statistics.median(t) * 1e3:6.2f}"
            for label, t in labels.items()
        )
        print(f"{side:5s} {cells}")


if __name__ == "__main__":
    main()
