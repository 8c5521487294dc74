"""kill -9 tests: an acknowledged sample survives, a commit is all or nothing,
and a killed writer leaves a repository the next writer opens at once.

A child process writes and prints what it has been told is done (a key once
``add`` returned, keys once a ``with`` block exited, a commit hash once
``commit`` returned); the parent kills it with SIGKILL once it has read a
chosen number of those acknowledgements (the child is busy with its next
step by then) and checks the repository against what was acknowledged. No
kill waits on a clock, so a slow first write cannot leave a round with
nothing acknowledged.
"""

from __future__ import annotations

import inspect
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest


def sample(key: int) -> np.ndarray:
    """The array stored under ``key`` (children compute the same)."""
    rng = np.random.default_rng(int(key))
    if int(key) % 7 == 3:  # now and then a large payload (a block of its own)
        return rng.random(30_000).astype(np.float32)
    return rng.random(int(key) % 97 + 1).astype(np.float32)


SAMPLE_CODE = "import numpy as np\n\n" + inspect.getsource(sample)

ADDER = (
    SAMPLE_CODE
    + """
import sys, warnings
warnings.simplefilter("ignore")
from hangar_git import Repository

path, mode, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
repo = Repository(path, exists=False)
co = repo.checkout(write=True)
if "a" not in co.arraysets:
    co.arraysets.init_arrayset("a", shape=(30_000,), dtype=np.float32, variable_shape=True)
a = co.arraysets["a"]
print("ready", flush=True)
k = start
while True:
    if mode == "naked":
        a[k] = sample(k)
        print("A", k, flush=True)
        k += 1
    else:
        keys = list(range(k, k + 25))
        with a:
            for key in keys:
                a[key] = sample(key)
        print("A", *keys, flush=True)
        k += 25
    if k % 100 < (1 if mode == "naked" else 25):
        co.metadata["upto"] = str(k)
        sha = co.commit(f"up to {k}")
        print("C", sha, k, flush=True)
"""
)

COMMITTER = (
    SAMPLE_CODE
    + """
import sys, warnings
warnings.simplefilter("ignore")
from hangar_git import Repository

repo = Repository(sys.argv[1], exists=False)
co = repo.checkout(write=True)
a = co.arraysets["a"]
print("ready", flush=True)
while True:
    n = int(co.metadata["n"])
    a[n] = sample(n)
    co.metadata["n"] = str(n + 1)
    sha = co.commit(f"n={n + 1}")
    print("C", sha, n + 1, flush=True)
"""
)


def run_and_kill(code: str, args: list[str], acks: int) -> list[list[str]]:
    """Run ``code``; SIGKILL it once it printed ``acks`` lines after ``ready``;
    its complete lines."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = child.stdout.readline()
        assert first == b"ready\n", (first, child.stderr.read())
        seen = [child.stdout.readline() for _ in range(acks)]
        assert all(line.endswith(b"\n") for line in seen), (seen, child.stderr.read())
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err.decode()
    # a line cut by the kill has no newline: it was never acknowledged
    complete = (b"".join(seen) + out).split(b"\n")[:-1]
    return [line.decode().split() for line in complete]


def fsck(path: str) -> None:
    res = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


def check_acknowledged(
    repo, acked: set[int], commits: list[tuple[str, int, frozenset[int]]]
) -> None:
    t0 = time.monotonic()
    co = repo.checkout(write=True)  # no lock left behind: opens at once
    assert time.monotonic() - t0 < 5
    try:
        a = co.arraysets["a"]
        keys = set(a.keys())
        missing = acked - keys
        assert not missing, f"acknowledged samples lost: {sorted(missing)[:10]}"
        # everything present, acknowledged or not, is bit-exact
        arrays = a.get_batch(sorted(keys))
        for key, arr in zip(sorted(keys), arrays, strict=True):
            expect = sample(key)
            assert arr.dtype == expect.dtype and arr.shape == expect.shape, key
            assert arr.tobytes() == expect.tobytes(), key
        status = co.diff.status()
    finally:
        co.close()
    head = repo.log(return_contents=True)
    for sha, upto, before in commits:
        # an acknowledged commit is on the branch, whole: it holds every
        # sample acknowledged before it
        assert sha in head["order"]
        rc = repo.checkout(commit=sha)
        assert rc.metadata["upto"] == str(upto)
        assert set(rc.arraysets["a"].keys()) >= before
        rc.close()
    assert status in ("CLEAN", "DIRTY")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["naked", "batched"])
def test_acknowledged_samples_survive_sigkill(repo, mode):
    rng = random.Random(1234 if mode == "naked" else 4321)
    acked: set[int] = set()
    commits: list[tuple[str, int, frozenset[int]]] = []
    start = 0
    for _ in range(4):
        acks = rng.randint(1, 12 if mode == "batched" else 120)
        lines = run_and_kill(ADDER, [repo.path, mode, str(start)], acks)
        for parts in lines:
            if parts[0] == "A":
                acked.update(int(p) for p in parts[1:])
            elif parts[0] == "C":
                commits.append((parts[1], int(parts[2]), frozenset(acked)))
        check_acknowledged(repo, acked, commits)
        start = max(acked) + 1000  # fresh keys next round: nothing is overwritten
    # the repository is fully usable after the kills
    co = repo.checkout(write=True)
    co.metadata["upto"] = "final"
    final = co.commit("after the kills")
    co.close()
    rc = repo.checkout(commit=final)
    a = rc.arraysets["a"]
    assert set(a.keys()) >= acked
    for key in rng.sample(sorted(acked), min(50, len(acked))):
        assert a[key].tobytes() == sample(key).tobytes()
    rc.close()
    fsck(repo.path)


def _check_whole_commits(repo, checked: set[str]) -> int:
    """Every commit holds exactly samples 0..n-1 and metadata n; returns head n."""
    log = repo.log(return_contents=True)
    for sha in log["order"]:
        if sha in checked:
            continue
        checked.add(sha)
        rc = repo.checkout(commit=sha)
        n = int(rc.metadata["n"])
        a = rc.arraysets["a"]
        assert sorted(a.keys()) == list(range(n)), sha
        rc.close()
    rc = repo.checkout()
    n = int(rc.metadata["n"])
    a = rc.arraysets["a"]
    for key, arr in zip(range(n), a.get_batch(list(range(n))), strict=True):
        assert arr.tobytes() == sample(key).tobytes()
    rc.close()
    return n


@pytest.mark.slow
def test_commit_is_all_or_nothing_under_sigkill(repo):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(30_000,), dtype=np.float32, variable_shape=True)
    co.metadata["n"] = "0"
    co.commit("n=0")
    co.close()
    rng = random.Random(99)
    acked = 0
    checked: set[str] = set()
    for _ in range(4):
        lines = run_and_kill(COMMITTER, [repo.path], rng.randint(1, 8))
        for parts in lines:
            assert parts[0] == "C"
            acked = max(acked, int(parts[2]))
        n = _check_whole_commits(repo, checked)
        assert n >= acked  # an acknowledged commit is never lost
        # the staging area is consistent with the head: at most the one
        # interrupted step (sample n, then metadata n+1) is staged
        co = repo.checkout(write=True)
        assert co.commit_hash == repo.log(return_contents=True)["head"]
        a = co.arraysets["a"]
        staged = co.diff.staged()
        assert staged.aset.empty
        assert set(a.keys()) in (set(range(n)), set(range(n + 1)))
        assert co.metadata["n"] in (str(n), str(n + 1))
        if n in a:
            assert a[n].tobytes() == sample(n).tobytes()
        if co.diff.status() == "DIRTY":
            if n not in a:
                a[n] = sample(n)
            co.metadata["n"] = str(n + 1)
            co.commit(f"n={n + 1} (finished by the parent)")
        co.close()
        assert _check_whole_commits(repo, checked) >= n
    fsck(repo.path)


# --------------------------------------------------------------------------
# deterministic kills at each step of a commit
# --------------------------------------------------------------------------
FAULT = """
import os, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from hangar_git import Repository
import hangar_git.commits as commits_mod
import hangar_git.records.staging as staging_mod

path, point, batched = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
armed = False

# Die at one step of commits.commit_staged: after the commit's objects
# reached git, after the journal's commit marker, or after the branch ref moved.
if point == "object":
    orig_publish = commits_mod.publish
    def publish(*a, **k):
        orig_publish(*a, **k)
        if armed:
            os._exit(9)
    commits_mod.publish = publish
elif point == "marker":
    orig_record = staging_mod.Journal.record
    def record(self, *fields):
        orig_record(self, *fields)
        if armed and fields[0] == "C":
            os._exit(9)
    staging_mod.Journal.record = record
elif point == "ref":
    orig_reset = staging_mod.Journal.reset
    def reset(self, *a, **k):
        if armed:
            os._exit(9)
        return orig_reset(self, *a, **k)
    staging_mod.Journal.reset = reset

repo = Repository(path, exists=False)
co = repo.checkout(write=True)
a = co.arraysets["a"]
if batched:
    a.__enter__()
a["new"] = np.arange(5, dtype=np.int64) * 7
co.metadata["state"] = "second"
armed = True
co.commit("second")
print("survived", flush=True)
"""


@pytest.mark.parametrize("batched", [False, True], ids=["plain", "inside-with"])
@pytest.mark.parametrize("point", ["object", "marker", "ref"])
def test_kill_at_each_commit_step(repo, point, batched):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(5,), dtype=np.int64)["old"] = np.arange(5)
    co.metadata["state"] = "first"
    first = co.commit("first")
    co.close()

    res = subprocess.run(
        [sys.executable, "-c", FAULT, repo.path, point, str(int(batched))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 9, res.stderr
    assert "survived" not in res.stdout

    head = repo.log(return_contents=True)["head"]
    co = repo.checkout(write=True)
    try:
        a = co.arraysets["a"]
        # the staging area shows the changes (staged or committed), never a mix
        assert sorted(a.keys()) == ["new", "old"]
        assert a["new"].tolist() == [0, 7, 14, 21, 28]
        assert co.metadata["state"] == "second"
        assert co.commit_hash == head
        if head == first:
            # not committed: the branch did not move, the changes are still staged
            assert point in ("object", "marker")
            assert co.diff.status() == "DIRTY"
            second = co.commit("second, retried")
        else:
            # committed: the branch moved with all records, staging is clean
            assert repo.log(return_contents=True)["ancestors"][head] == [first]
            assert co.diff.status() == "CLEAN"
            second = head
    finally:
        co.close()
    rc = repo.checkout(commit=second)
    assert sorted(rc.arraysets["a"].keys()) == ["new", "old"]
    assert rc.metadata["state"] == "second"
    rc.close()
    rc = repo.checkout(commit=first)
    assert list(rc.arraysets["a"].keys()) == ["old"] and rc.metadata["state"] == "first"
    rc.close()
    fsck(repo.path)
