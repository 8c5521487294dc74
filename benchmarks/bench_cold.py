"""Cold start of ``git hangar``: wall time of short commands in fresh processes.

Issue 18 asks for ``git hangar --version`` and ``git hangar status`` in a
repository with a few commits under 0.25 s each, in a fresh process: the
payload codec and the heavy imports only where they are used. Each row runs
its command ``--repeat`` times in a new process (after one untimed run that
writes the bytecode, as an installed package has it) and keeps the best
time, as hyperfine's ``min`` would.

Rows: ``git hangar --version``, ``git hangar status``, ``git hangar log -n
3`` and ``git hangar diff dev master`` through git (``git`` finds the
``git-hangar`` script of this checkout on ``PATH``, as a user's shell does;
git's own start is part of the figure),
the same ``status`` through the console script of the environment when one is
installed, and ``python -c "import hangar_git"``; the bars are those of
``--version`` and ``status`` (``[ok]``/``[FAIL]`` lines, as
``run_all.py`` collects them). ``--base DIR`` adds a column
for another source tree (a copy of main, say), run interleaved with this one
so that both see the same load.

Not a test: figures vary with the machine's load (printed); the verdicts
compare with the 0.25 s bar.

Run::

    python benchmarks/bench_cold.py                  # best of 5
    python benchmarks/bench_cold.py --repeat 9 --base /tmp/base
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAR = 0.25  # seconds, issue 18
COMMITS = 3

#: row label -> the command after ``git hangar`` (None: the import row)
ROWS: dict[str, list[str] | None] = {
    "git hangar --version": ["--version"],
    "git hangar status": ["status"],
    "git hangar log -n 3": ["log", "-n", "3"],
    "git hangar diff dev master": ["diff", "dev", "master"],
    'python -c "import hangar_git"': None,
}
CONSOLE_ROW = "git-hangar status (console script)"
#: the rows issue 18 sets the bar for (the others are printed for reference)
BAR_ROWS = ("git hangar --version", "git hangar status")


def child_env(tree: Path) -> dict[str, str]:
    """The environment of a timed process: ``tree`` first on ``PATH`` (its
    ``git-hangar`` script) and ``PYTHONPATH``, this interpreter's directory next
    (the script's ``python3``), bytecode written as on a user's machine."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = os.pathsep.join([str(tree), str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = str(tree)
    return env


def command(tree: Path, row: str) -> list[str]:
    """The command line of ``row`` for the source tree ``tree``."""
    if row == CONSOLE_ROW:
        return [str(Path(sys.executable).parent / "git-hangar"), "status"]
    args = ROWS[row]
    if args is None:
        return [sys.executable, "-c", "import hangar_git"]
    return ["git", "hangar", *args]


def make_repo(where: Path, tree: Path) -> None:
    """A git repository with hangar data: an arrayset of 10 samples, and
    :data:`COMMITS` commits (made in a child process, with ``tree``'s code),
    branch ``dev`` at the first (``diff dev master``: the later commits' changes)."""
    code = (
        "import sys, numpy as np\n"
        "from hangar_git import Repository\n"
        "repo = Repository(sys.argv[1], exists=False)\n"
        "repo.init(user_name='bench', user_email='bench@example.com')\n"
        f"for i in range({COMMITS}):\n"
        "    with repo.checkout(write=True) as co:\n"
        "        if i == 0:\n"
        "            co.arraysets.init_arrayset('a', shape=(4,), dtype=np.float32)\n"
        "        co.arraysets['a'].update({k: np.full(4, i, np.float32) for k in range(10)})\n"
        "        co.commit(f'commit {i}')\n"
        "    if i == 0:\n"
        "        repo.create_branch('dev')\n"
    )
    where.mkdir()
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    subprocess.run([sys.executable, "-c", code, str(where)], check=True, env=child_env(tree))


def run_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one run of ``cmd`` (which must succeed)."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return secs


def measure(trees: dict[str, Path], rows: list[str], repeat: int, repo: Path) -> dict:
    """Best seconds per row and tree, the trees' runs interleaved."""
    best: dict[str, dict[str, float]] = {r: {} for r in rows}
    envs = {name: child_env(tree) for name, tree in trees.items()}
    for row in rows:
        for name, tree in trees.items():  # untimed: bytecode written, caches warm
            run_once(command(tree, row), repo, envs[name])
        for _ in range(repeat):
            for name, tree in trees.items():
                secs = run_once(command(tree, row), repo, envs[name])
                best[row][name] = min(best[row].get(name, secs), secs)
    return best


def report(best: dict[str, dict[str, float]], names: list[str], repeat: int) -> None:
    print(f"load average: {os.getloadavg()[0]:.2f}; best of {repeat} fresh processes, seconds")
    head = f"{'command':<40}" + "".join(f"{n:>10}" for n in names) + f"{'bar':>8}  verdict"
    print(head)
    print("-" * len(head))
    for row, figures in best.items():
        ours = figures[names[0]]
        cells = "".join(f"{figures[n]:>10.3f}" for n in names)
        verdict = "ok" if ours <= BAR else "MISSED"
        print(f"{row:<40}{cells}{BAR:>8.2f}  {verdict}")
    for row in BAR_ROWS:  # the verdicts benchmarks/run_all.py collects
        ours = best[row][names[0]]
        print(f"[{'ok' if ours <= BAR else 'FAIL'}] {row}: {ours:.3f} s (bar {BAR} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per row; the best is kept")
    ap.add_argument("--base", type=Path, help="another source tree to time beside this one")
    args = ap.parse_args()
    if shutil.which("git") is None:
        raise SystemExit("git is not on PATH")
    trees = {"this": ROOT}
    if args.base is not None:
        trees["base"] = args.base.resolve()
    rows = list(ROWS)
    if (Path(sys.executable).parent / "git-hangar").exists():
        rows.insert(2, CONSOLE_ROW)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    try:
        make_repo(tmp / "repo", ROOT)
        best = measure(trees, rows, args.repeat, tmp / "repo")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(best, list(trees), args.repeat)


if __name__ == "__main__":
    main()
