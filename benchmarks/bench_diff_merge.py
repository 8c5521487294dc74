"""Diff and three-way merge cost: 1,000,000 samples against 10,000.

For each size, a base commit holds one arrayset of N samples (shape (1,)
uint8, 256 distinct values), and two branches off it each change 10 samples
(5 mutated, 3 added, 2 removed) through the public API. Timed:

- ``diff``: ``co.diff.branch(other)`` on a read checkout of one branch
  (merge base, three-way walk, change lists and conflicts);
- ``merge``: ``co.merge(message, other)`` on the write checkout of the other
  branch, a three-way merge commit (merge base, walk, writing the changed
  trees, the merge's change log, the commit, the ref move and the staging
  reset).

Each figure is the best (and median) of several runs, each on a freshly
opened repository, so libgit2's object cache starts empty (the OS file cache
is warm); the branch is put back between merge runs. A tiny repository is
diffed and merged first so imports and first calls are not counted. The bars of issue 3: each
under 0.1 s at 1M samples, and under 2x its figure at 10k.

The base commit's records are written directly (``build_root`` over a staged
arrayset whose 1M entries point at 256 stored payloads) rather than by 1M
``aset[k] = v`` calls, to keep the setup short; its time is reported.

Run::

    python benchmarks/bench_diff_merge.py             # 1M and 10k
    python benchmarks/bench_diff_merge.py -n 200000   # another large size

A diff of branches a few commits from their merge base is composed from
the commits' change logs; ``--walk`` ignores the logs and walks the record
trees instead (what a diff costs across a merge commit or a long history).

Two more switches measure what the record layer costs: ``--no-strict-hash`` turns
off libgit2's SHA-1 check of every object read, ``--two-level`` lays 1M
samples out 256 x 256 (leaves of ~15) instead of 4096-way (leaves of ~244,
under a 120 KiB top tree that every diff reads three times and every merge
rewrites).

Not a test: figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hangar_git import Repository
from hangar_git.commits import commit_on_branch
from hangar_git.records.build import build_root
from hangar_git.records.snapshot import TreeRecords, commit_tree
from hangar_git.records.staging import StagedAset
from hangar_git.schema import ArraysetSchema
from hangar_git.store import array_digest

BAR_SECONDS = 0.1
BAR_RATIO = 2.0
REPS = 7


def build(path: Path, n: int, seed: int = 0) -> tuple[Repository, float]:
    """A repository with an n-sample base and branches 'a' and 'b' (10 changes each)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    values = [np.array([v], np.uint8) for v in range(256)]
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("big", prototype=values[0])
    with aset:
        for v in range(256):  # store the 256 payloads
            aset[v] = values[v]
    co.commit("payloads")
    co.close()
    git = repo._git_repo()
    head = str(git.references["refs/hangar/heads/master"].target)
    digests = [array_digest(v) for v in values]
    records = {f"i:{k}": digests[k % 256] for k in range(n)}
    schema = ArraysetSchema(np.dtype(np.uint8), (1,)).to_json()
    staged = {"big": StagedAset(created=True, schema=schema, samples=records)}
    base = TreeRecords(git, commit_tree(git, head))
    sha = commit_on_branch(
        git,
        "master",
        head,
        lambda: build_root(git, base, staged, {}),
        f"{n} samples",
        (),
        ("Bench", "bench@example.org"),
    )
    rng = random.Random(seed)
    keys = rng.sample(range(n), 14)
    for branch, ks in (("a", keys[:7]), ("b", keys[7:])):
        repo.create_branch(branch, base_commit=sha)
        co = repo.checkout(write=True, branch=branch)
        x = co.arraysets["big"]
        with x:
            for k in ks[:5]:
                x[k] = values[(k + 1) % 256]  # 5 mutations
            for j in range(3):
                x[n + j + (0 if branch == "a" else 10)] = values[j]  # 3 additions
            for k in ks[5:7]:
                del x[k]  # 2 removals
        co.commit(f"10 changes on {branch}")
        co.close()
    return repo, time.perf_counter() - t0


def _open(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path)


def time_diff(path: Path) -> tuple[list[float], list[float]]:
    """(cold, warm) times of ``diff.branch``: cold on a freshly opened repository."""
    cold, warm = [], []
    for _ in range(REPS):
        co = _open(path).checkout(branch="a")
        t = time.perf_counter()
        changes, conflicts = co.diff.branch("b")
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        co.diff.branch("b")
        warm.append(time.perf_counter() - t)
        co.close()
    assert not conflicts["conflict_found"]
    assert len(changes.incoming.samples["big"].mutations) == 5, changes.incoming
    return cold, warm


def time_merge(path: Path) -> list[float]:
    """Times of a three-way ``co.merge`` on a freshly opened repository."""
    times = []
    for _ in range(REPS):
        repo = _open(path)
        git = repo._git_repo()
        ref = "refs/hangar/heads/a"
        before = git.references[ref].target
        co = repo.checkout(write=True, branch="a")
        t = time.perf_counter()
        sha = co.merge("merge b into a", "b")
        times.append(time.perf_counter() - t)
        assert len(git.get(sha).parent_ids) == 2
        co.close()
        git.references.create(ref, before, force=True)
    return times


def warm_up(path: Path) -> None:
    """Run every code path once on a tiny repository (imports, first calls)."""
    build(path, 100)
    time_diff(path)
    time_merge(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="large size (default 1M)")
    ap.add_argument("--small", type=int, default=10_000, help="small size (default 10k)")
    ap.add_argument(
        "--no-strict-hash",
        action="store_true",
        help="turn off libgit2's SHA-1 check of every object read (for comparison)",
    )
    ap.add_argument(
        "--two-level",
        action="store_true",
        help="experiment: lay out more than 262,144 samples 256 x 256 instead of 4096-way",
    )
    ap.add_argument(
        "--walk",
        action="store_true",
        help="diff by walking the record trees, ignoring the commits' change logs",
    )
    args = ap.parse_args()
    if args.walk:
        from hangar_git.records import changelog

        changelog.USE_LOGS = False
    if args.no_strict_hash:
        pygit2.option(pygit2.enums.Option.ENABLE_STRICT_HASH_VERIFICATION, 0)
    if args.two_level:
        from hangar_git.records import layout

        layout._FANOUT_STEPS = ((1_024, ()), (262_144, (2,)), (1 << 62, (2, 2)))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm_up(Path(tmp))
    print(
        f"best (median) of {REPS} runs, each on a freshly opened repository; "
        "'warm': a second diff on the same checkout"
    )
    for n in (args.small, args.n):
        with tempfile.TemporaryDirectory() as tmp:
            _, setup = build(Path(tmp), n)
            d_cold, d_warm = time_diff(Path(tmp))
            m_cold = time_merge(Path(tmp))
            d, m = min(d_cold), min(m_cold)
            results[n] = (d, m)
            print(
                f"{n:>9,} samples: setup {setup:6.2f} s | diff {d * 1e3:5.1f} ms "
                f"({statistics.median(d_cold) * 1e3:.1f}; warm {min(d_warm) * 1e3:.1f}) | "
                f"merge {m * 1e3:5.1f} ms ({statistics.median(m_cold) * 1e3:.1f})"
            )
    (ds, ms), (dl, ml) = results[args.small], results[args.n]
    ok = True
    for label, small, large in (("diff", ds, dl), ("merge", ms, ml)):
        ratio = large / small
        good = large < BAR_SECONDS and ratio < BAR_RATIO
        ok &= good
        print(
            f"{label:>5}: {large * 1e3:.1f} ms at {args.n:,} = {ratio:.2f}x the "
            f"{args.small:,} figure (bars: < {BAR_SECONDS * 1e3:.0f} ms, "
            f"< {BAR_RATIO:.0f}x) {'OK' if good else 'MISSED'}"
        )
        print(
            f"  [{'ok' if good else 'FAIL'}] {label} of a 10-sample change at {args.n:,} "
            f"samples < {BAR_SECONDS * 1e3:.0f} ms and < {BAR_RATIO:.0f}x the {args.small:,} figure"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
