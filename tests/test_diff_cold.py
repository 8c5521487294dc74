"""``git hangar diff A B`` in a fresh process imports only what a diff of
record trees uses: no writer lock (filelock), no payload store, no numpy,
no key cache with its checksum threads (issue 18: a cold diff costs its
imports; ``benchmarks/bench_peers.py --only diff`` times the diff itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: runs ``argv[2:]`` as a script, then writes the names of the imported modules to ``argv[1]``
PROBE = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write('\\n'.join(sys.modules)))\n"
    "del sys.argv[0]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_a_diff_of_two_commits_imports_no_lock_store_or_key_cache(repo, tmp_path):
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", prototype=np.zeros(2, np.int64))
    with x:
        for i in range(5):
            x[i] = np.full(2, i, np.int64)
    co.commit("base")
    co.close()
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["x"][1] = np.full(2, 9, np.int64)
    co.commit("change")
    co.close()
    out = tmp_path / "modules.txt"
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), str(ROOT / "git-hangar"), "diff", "master", "dev"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 mutated" in run.stdout  # the diff ran, from its change log
    mods = set(out.read_text().split())
    assert "hangar_git.diffref" in mods
    never = {
        "filelock",
        "numpy",
        "concurrent.futures",
        "hangar_git.records.key_cache",
        "hangar_git.store.checksum",
        "hangar_git.store.packs",
        "hangar_git.checkout",
    }
    assert not never & mods, never & mods
