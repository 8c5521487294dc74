"""Cost of the history tools at 1,000,000 samples with 10 changes.

The repository of ``bench_diff_merge.py``: a base commit of N samples and
branches ``a`` and ``b`` off it, each one commit of 10 changes (5 mutated,
3 added, 2 removed). Each operation is timed in a fresh process (imports
done, the repository opened there, libgit2's caches empty; the OS file
cache is warm):

- ``cherry-pick``: ``repo.cherry_pick(<b's commit>, branch="a")``;
- ``revert``: ``repo.revert(<a's commit>, branch="a")``;
- ``diff --key``: ``repo.compare_sample("a", "b", "big", k)`` for a key
  both changed (three reads at three commits);
- ``show``: one sample read at ``b`` (a read checkout and one read);
- ``schema``: ``repo.change_arrayset("big", variable_shape=True, shape=(4,))``
  on ``a`` (records only: a few trees, a commit);
- ``merge, schema``: ``repo.merge(..., "a", "b")`` after ``a`` widened the
  schema (above) and ``b`` made its 10 changes under the old one: a merge
  that keeps the wider schema and b's samples (no conflict);
- ``purge``: ``repo.purge("big", [k])`` of one sample every commit holds
  (rewriting every commit), once, on a copy of the repository; the rewrite
  alone is timed as ``purge(..., dry_run=True)`` (the same work, in memory);
  the rest is the clean-up of the store and of git's objects (gc of the
  whole 1M-sample history, ``git repack`` and ``git prune``).

The bar of issue 17: each under 0.1 s at 1M samples, except purge (bounded
by the commits it rewrites). Branch ``a`` is put back between runs.

Each row also gives the wall time of the same operation as a whole
``git hangar`` command (a fresh process: interpreter start, imports, the
repository opened, the work, the output), next to ``git hangar --version``
(start and imports alone). ``--dtype`` adds one run of
``git hangar schema big --dtype uint16`` (every sample cast: its cost is that
of the samples, not of a change).

Run::

    python benchmarks/bench_history.py            # 1M samples
    python benchmarks/bench_history.py -n 100000

Not a test: figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pygit2

from hangar_git import Repository

BAR_SECONDS = 0.1
REPS = 3
OPS = ("cherry-pick", "revert", "diff --key", "show", "schema", "merge, schema")


def _open(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path)


def child(op: str, path: Path, key: int) -> dict[str, float]:
    """Run ``op`` once in this (fresh) process; its seconds (imports not counted)."""
    for name in ("apply", "inspect", "purge", "remote_purge", "schema_change"):
        importlib.import_module(f"hangar_git.history_tools.{name}")  # before the clock
    importlib.import_module("hangar_git.checkout")

    repo = _open(path)
    git = repo.git_repository()
    a = str(git.references["refs/hangar/heads/a"].target)
    b = str(git.references["refs/hangar/heads/b"].target)
    t = time.perf_counter()
    if op == "cherry-pick":
        new = repo.cherry_pick(b, branch="a")
        assert new != a
    elif op == "revert":
        new = repo.revert(a, branch="a")
        assert new != a
    elif op == "diff --key":
        cmp = repo.compare_sample("a", "b", "big", key)
        assert cmp.base is not None and cmp.base.array is not None
    elif op == "schema":
        new = repo.change_arrayset("big", branch="a", variable_shape=True, shape=(4,))
        assert new != a
    elif op == "merge, schema":
        new = repo.merge("merge b", "a", "b")
        assert new != a
    elif op == "show":
        with repo.checkout(branch="b") as co:
            co.arraysets["big"][key]
    elif op in ("purge", "purge --dry-run"):
        report = repo.purge("big", [key], dry_run=op != "purge")
        assert len(report.commits) >= 3, report.commits
    else:
        raise ValueError(op)
    return {"total": time.perf_counter() - t}


def run_child(op: str, path: Path, key: int) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, __file__, "--child", op, str(path), "--key", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{op} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def reset_a(path: Path, head: str) -> None:
    repo = _open(path)
    repo.git_repository().references.create("refs/hangar/heads/a", head, force=True)


def cli_args(op: str, a: str, b: str, key: int) -> list[str]:
    """The ``git hangar`` command doing ``op`` (the writer is on branch ``a``)."""
    return {
        "cherry-pick": ["cherry-pick", b],
        "revert": ["revert", a],
        "diff --key": ["diff", "a", "b", "--key", f"big/i:{key}"],
        "show": ["show", f"b:big/{key}"],
        "schema": ["schema", "big", "--variable-shape", "--max-shape", "4"],
        "merge, schema": ["merge", "b", "-m", "merge b"],
        "--version": ["--version"],
        "dtype": ["schema", "big", "--dtype", "uint16"],
    }[op]


def run_cli(op: str, path: Path, a: str, b: str, key: int) -> float:
    """Wall seconds of ``git hangar`` doing ``op`` in ``path``, in a fresh process."""
    exe = str(Path(sys.executable).with_name("git-hangar"))
    t = time.perf_counter()
    res = subprocess.run(
        [exe, *cli_args(op, a, b, key)], cwd=path, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"git hangar {op} failed:\n{res.stderr}")
    return wall


def imports_wall() -> float:
    """Wall seconds of a fresh interpreter importing numpy and pygit2 (what
    any command reading data imports)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, pygit2"], check=True)
    return time.perf_counter() - t


def widen_a(path: Path) -> str:
    """Widen the schema of 'big' on branch 'a' (the start of the merge row); its new head."""
    return _open(path).change_arrayset("big", branch="a", variable_shape=True, shape=(4,))


def time_op(op: str, path: Path, key: int, a_head: str, b: str) -> tuple[list[float], list[float]]:
    """``REPS`` API timings and ``REPS`` whole-command timings of ``op``, branch
    ``a`` put back (and widened first for the merge row) before each run."""
    api, cli = [], []
    for runner in ("api", "cli"):
        for _ in range(REPS):
            reset_a(path, a_head)
            start = widen_a(path) if op == "merge, schema" else a_head
            if runner == "api":
                api.append(run_child(op, path, key)["total"])
            else:
                cli.append(run_cli(op, path, start, b, key))
    reset_a(path, a_head)
    return api, cli


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="samples (default 1M)")
    ap.add_argument("--dtype", action="store_true", help="also time one dtype change")
    ap.add_argument("--child", nargs=2, metavar=("OP", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--key", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.key)))
        return
    from bench_diff_merge import build

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "repo"
        path.mkdir()
        repo, setup = build(path, args.n)
        git = repo.git_repository()
        a_head = str(git.references["refs/hangar/heads/a"].target)
        b_head = git[str(git.references["refs/hangar/heads/b"].target)]
        assert isinstance(b_head, pygit2.Commit)
        base = str(b_head.parent_ids[0])
        changes, _ = repo.checkout(commit=base).diff.commit(str(b_head.id))
        key = changes.dev.samples["big"].mutations[0]
        repo.checkout(write=True, branch="a").close()  # the CLI's writer branch
        del repo, git
        b = str(b_head.id)
        print(f"{args.n:,} samples, 10 changes per branch: setup {setup:.1f} s")
        print(f"best (median) of {REPS} runs, each in a fresh process")
        startup = min(run_cli("--version", path, a_head, b, key) for _ in range(REPS))
        floor = min(imports_wall() for _ in range(REPS))
        print(
            f"  {'':<14} {'API':>8} {'':>8}   git hangar (whole command; --version: "
            f"{startup * 1e3:.0f} ms, python importing numpy and pygit2: {floor * 1e3:.0f} ms)"
        )
        verdicts = []
        for op in OPS:
            api, cli = time_op(op, path, key, a_head, b)
            best = min(api)
            verdicts.append((best < BAR_SECONDS, f"{op}: {best * 1e3:.1f} ms"))
            print(
                f"  {op:<14} {best * 1e3:7.1f} ms ({statistics.median(api) * 1e3:.1f})"
                f"  {min(cli) * 1e3:7.0f} ms ({statistics.median(cli) * 1e3:.0f})"
            )
        copy = Path(tmp) / "copy"
        shutil.copytree(path, copy, symlinks=True)
        dry = min(run_child("purge --dry-run", copy, 300)["total"] for _ in range(REPS))
        total = run_child("purge", copy, 300)["total"]
        print(
            f"  {'purge':<14} {total:7.2f} s; its rewrite of 3 commits alone (--dry-run) "
            f"{dry * 1e3:.1f} ms, the rest is the payload gc of the whole history and "
            "git repack/prune"
        )
        if args.dtype:
            wall = run_cli("dtype", path, a_head, b, key)
            print(f"  {'dtype':<14} {wall:7.1f} s (one run: every one of {args.n:,} samples cast)")
    # one line per bar, as benchmarks/run_all.py reads them
    for good, text in verdicts:
        print(f"  [{'ok' if good else 'FAIL'}] {text} (bar: {BAR_SECONDS * 1e3:.0f} ms, API)")
    sys.exit(0 if all(good for good, _ in verdicts) else 1)


if __name__ == "__main__":
    main()
