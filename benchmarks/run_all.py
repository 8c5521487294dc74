"""Run every benchmark of hangar-git with one command and print one summary.

Each benchmark script runs in its own process (so one cannot warm the caches
of the next) and prints its own table, with a plain-numpy (or plain-files)
baseline measured in the same run; this script collects the ``[ok]`` /
``[FAIL]`` verdicts of every bar at the end.

Run::

    python benchmarks/run_all.py            # full sizes (several minutes)
    python benchmarks/run_all.py --quick    # scaled-down sizes, a smoke run
    python benchmarks/run_all.py mnist large  # a subset, by short name

Not a test: figures depend on the machine and its load. Compare the ratios to
the baselines rather than the seconds, and run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: short name -> (script, arguments for a full run, arguments for --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "mnist": ("bench_mnist.py", [], ["-n", "10000", "--random", "2000"]),
    "scale": ("bench_scale.py", [], ["-n", "300000", "--no-loop"]),
    "large": ("bench_large.py", [], ["-n", "20"]),
    "diff-merge": ("bench_diff_merge.py", [], ["-n", "100000"]),
    "loaders": ("bench_loaders.py", [], ["--n", "10000"]),
    "cold": ("bench_cold.py", [], ["--repeat", "3"]),
    "peers": ("bench_peers.py", [], ["-n", "10000", "--small", "50000", "--repeat", "1"]),
    "transfer": ("bench_transfer.py", [], ["-n", "10000", "--repeat", "1", "--no-s3"]),
    "history": ("bench_history.py", [], ["-n", "100000"]),
    "commit10": ("bench_commit10.py", [], ["-n", "100000", "--repeat", "3"]),
}

_VERDICT = re.compile(r"^\s*\[(ok|FAIL)\]\s*(.*)$")


def run_one(name: str, quick: bool) -> tuple[int, float, list[tuple[bool, str]]]:
    script, full, small = BENCHMARKS[name]
    cmd = [sys.executable, str(HERE / script), *(small if quick else full)]
    print(f"\n==== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent
    )
    verdicts: list[tuple[bool, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        m = _VERDICT.match(line)
        if m:
            verdicts.append((m.group(1) == "ok", m.group(2).strip()))
    rc = proc.wait()
    return rc, time.perf_counter() - t0, verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (of {', '.join(BENCHMARKS)})")
    ap.add_argument("--quick", action="store_true", help="scaled-down sizes")
    args = ap.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    load = os.getloadavg()[0]
    results = {n: run_one(n, args.quick) for n in names}
    print(f"\n==== summary ({os.cpu_count()} cpus, load average at start {load:.2f})")
    print(f"{'benchmark':<12}{'exit':>5}{'s':>8}  bars")
    failed = False
    for n, (rc, took, verdicts) in results.items():
        ok = sum(v for v, _ in verdicts)
        print(f"{n:<12}{rc:>5}{took:>8.1f}  {ok}/{len(verdicts)} met")
        for v, label in verdicts:
            if not v:
                print(f"{'':<25}FAIL {label}")
        failed |= (rc != 0 and not verdicts) or any(not v for v, _ in verdicts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
