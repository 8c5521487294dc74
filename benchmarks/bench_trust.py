"""First use of a fresh clone: what checking other people's records costs.

Records fetched from elsewhere are untrusted until this machine has checked
them (``hangar_git/records/validate.py``; verdicts in ``records/trust.py``
and ``records/counts.py``). This measures that cost on a clone of a large
repository:

- a source repository with one arrayset of ``n`` samples of shape (4,)
  float32 (keys ``0..n-1``, 1,000,000 by default; imported with
  ``add_stacked``), committed on ``master``, and a branch ``ten`` off it
  changing 10 samples (5 mutated, 3 added, 2 removed);
- both branches pushed to a bare git repository and a local-directory data
  remote, then cloned by path (``Repository.clone``) into fresh
  directories, whose payloads are fetched (``fetch_data``) before timing;
- timed, each in a fresh process (imports not counted), on one clone:
  ``checkout()``, ``len(aset)``, one read ``aset[k]`` -- the first time
  (nothing checked yet on this machine) and the second time (in a new
  process again: what the first left behind);
- on a second clone, the same way: ``co.diff.branch("ten")`` (10 changes),
  first and second time;
- on the first clone, that diff after its first read (what the read's
  checks leave for the diff's);
- for comparison, the same on the source repository (records built there:
  trusted as written).

Run::

    python benchmarks/bench_trust.py              # 1,000,000 samples
    python benchmarks/bench_trust.py -n 100000    # quicker
    python benchmarks/bench_trust.py --profile    # cProfile of each first use
    python benchmarks/bench_trust.py --dir D      # keep the repositories in D
                                                  # (reused when already built)

Before each first use, the clone's verdicts (``<git dir>/hangar/trusted``
and ``counts``: all this machine keeps about records it checked) are
removed, so a rerun on kept repositories measures a first use again.

Not a test: figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hangar_git import Repository  # noqa: E402

#: first use of a fresh clone above this many seconds asks for a profile
BAR_FIRST_USE = 2.0
#: keys changed on branch ``ten``
MUTATED, ADDED, REMOVED = [11, 222, 3333, 44444, 5], [-1, -2, -3], [7, 77]


def _open(path: Path, exists: bool = True) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=exists)


def build_source(path: Path, n: int) -> tuple[Repository, float]:
    """The source repository: ``n`` samples on master, 10 changes on ``ten``."""
    t0 = time.perf_counter()
    path.mkdir(parents=True)
    repo = _open(path, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    data = np.random.default_rng(0).random((n, 4), dtype=np.float32)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    aset.add_stacked(data, range(n))
    sha = co.commit(f"{n} samples")
    co.close()
    repo.create_branch("ten", base_commit=sha)
    co = repo.checkout(write=True, branch="ten")
    aset = co.arraysets["x"]
    with aset:
        for k in MUTATED:
            aset[k % n] = np.full(4, -1, np.float32)
        for k in ADDED:
            aset[n - k] = np.full(4, k, np.float32)
        for k in REMOVED:
            del aset[k % n]
    co.commit("10 changes")
    co.close()
    return repo, time.perf_counter() - t0


def clone(path: Path, bare: Path, data: Path) -> tuple[Repository, float, float]:
    """A clone by path of ``bare``, with its master's payloads fetched:
    ``(repo, clone seconds, fetch-data seconds)``."""
    path.mkdir(parents=True)
    repo = _open(path, exists=False)
    t0 = time.perf_counter()
    repo.clone("Bench", "bench@example.org", str(bare), data=str(data))
    git = repo._git_repo()
    ten = str(git.references["refs/hangar/remotes/origin/ten"].target)
    repo.create_branch("ten", base_commit=ten)
    t1 = time.perf_counter()
    repo.remote.fetch_data("origin", "master")
    return repo, t1 - t0, time.perf_counter() - t1


# --------------------------------------------------------------------------
# timed in a fresh process
# --------------------------------------------------------------------------
def child(path: str, what: str, profile: bool) -> dict[str, Any]:
    """Run one first-use scenario in this (fresh) process; its timings."""
    import cProfile
    import pstats

    # imported before the clock starts: imports are not what is measured
    import hangar_git.diff
    import hangar_git.remotes  # noqa: F401

    out: dict[str, Any] = {}
    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof is not None:
        prof.enable()
    repo = _open(Path(path))
    out["open_repo"] = time.perf_counter() - t
    if what == "read":
        t0 = time.perf_counter()
        co = repo.checkout()
        t1 = time.perf_counter()
        aset = co.arraysets["x"]
        n = len(aset)
        t2 = time.perf_counter()
        arr = aset[12345 % n]
        t3 = time.perf_counter()
        assert arr.shape == (4,)
        co.close()
        out.update(checkout=t1 - t0, len=t2 - t1, read=t3 - t2, n=n)
    else:
        co = repo.checkout()
        t0 = time.perf_counter()
        changes, _ = co.diff.branch("ten")
        t1 = time.perf_counter()
        co.close()
        got = changes.dev.samples["x"]
        out.update(
            diff=t1 - t0,
            changes=[len(got.mutations), len(got.additions), len(got.removals)],
        )
    out["total"] = time.perf_counter() - t
    if prof is not None:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    return out


def forget_verdicts(path: Path) -> None:
    """Remove what the clone at ``path`` remembers of records it checked."""
    from hangar_git.records import counts, trust

    git = _open(path)._git_repo()
    for p in (trust.trust_path(git), counts.counts_path(git)):
        p.unlink(missing_ok=True)


def in_child(path: Path, what: str, profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", what, str(path)]
    if profile:
        cmd.append("--profile")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"child {what} on {path} failed:\n{res.stderr[-4000:]}")
    if profile:
        print(f"---- profile: first {what} on {path.name} ----")
        print(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _row(label: str, r: dict[str, Any]) -> str:
    if "diff" in r:
        parts = f"diff.branch {r['diff'] * 1e3:8.1f} ms  (changes m/a/r {r['changes']})"
    else:
        parts = (
            f"checkout {r['checkout'] * 1e3:7.1f} ms | len {r['len'] * 1e3:7.1f} ms | "
            f"one read {r['read'] * 1e3:7.1f} ms"
        )
    return f"  {label:<34}{parts} | all {r['total'] * 1e3:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="number of samples")
    ap.add_argument("--dir", help="work in this directory and keep it (reused when built)")
    ap.add_argument("--profile", action="store_true", help="cProfile each first use")
    ap.add_argument("--child", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[1], args.child[0], args.profile)))
        return 0

    tmpctx = None
    if args.dir:
        work = Path(args.dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmpctx = tempfile.TemporaryDirectory(prefix="hangar-trust-")
        work = Path(tmpctx.name)
    src, bare, data = work / "source", work / "origin.git", work / "data"
    if not (src / ".git").exists():
        _, secs = build_source(src, args.n)
        print(f"source: {args.n:,} samples + a 10-change branch built in {secs:.1f} s")
        repo = _open(src)
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        repo.remote.add("origin", str(bare), data=str(data))
        t = time.perf_counter()
        for b in ("master", "ten"):
            repo.remote.push("origin", b)
        print(f"pushed to {bare.name} + data remote in {time.perf_counter() - t:.1f} s")
    for name in ("clone_read", "clone_diff"):
        stamp = work / f"{name}.ready"
        if not stamp.exists():
            _, c, f = clone(work / name, bare, data)
            print(f"{name}: cloned in {c:.1f} s, payloads fetched in {f:.1f} s")
            stamp.write_text("")

    print(f"\neach line: a fresh process (imports not counted), {args.n:,} samples")
    results: dict[str, dict[str, Any]] = {}
    forget_verdicts(work / "clone_read")
    forget_verdicts(work / "clone_diff")
    for label, path, what in (
        ("source (trusted as built)", src, "read"),
        ("source (trusted as built)", src, "diff"),
        ("clone, first use", work / "clone_read", "read"),
        ("clone, second use", work / "clone_read", "read"),
        ("clone, first use", work / "clone_diff", "diff"),
        ("clone, second use", work / "clone_diff", "diff"),
        ("clone, after the first read", work / "clone_read", "diff"),
    ):
        prof = args.profile and label == "clone, first use"
        r = in_child(path, what, prof)
        results[f"{label} {what}"] = r
        print(_row(f"{label} [{what}]", r))
    first = max(
        results["clone, first use read"]["total"], results["clone, first use diff"]["total"]
    )
    print(
        f"\nfirst use of the clone: {first:.2f} s at most "
        f"({'under' if first <= BAR_FIRST_USE else 'OVER'} the {BAR_FIRST_USE:.0f} s mark)"
    )
    if tmpctx is not None:
        tmpctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
