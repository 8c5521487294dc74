"""The git side: payloads stay out of the object store, records are one
gitlink per sample, a commit writes only the changed trees, and git's own
tools (fsck, gc, log, ls-tree) are happy with what hangar writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

N = 2000
SIZE = 4096


def git(cwd: str | Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, (args, res.stderr)
    return res.stdout


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def objects(cwd: str | Path) -> dict[str, tuple[str, int]]:
    """Every object in the repository: id -> (type, size)."""
    out = git(cwd, "cat-file", "--batch-all-objects", "--batch-check")
    res = {}
    for line in out.splitlines():
        oid, kind, size = line.split()
        res[oid] = (kind, int(size))
    return res


@pytest.fixture
def big_repo(repo):
    rng = np.random.default_rng(7)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("payloads", shape=(SIZE,), dtype=np.uint8)
    with aset:
        for i in range(N):
            aset[i] = rng.integers(0, 256, SIZE, dtype=np.uint8)
    co.metadata["source"] = "random"
    sha = co.commit("2000 random samples")
    co.close()
    return repo, sha


def test_payloads_are_not_git_objects(big_repo):
    repo, _sha = big_repo
    root = Path(repo.path)
    payload_bytes = N * SIZE
    git_bytes = dir_bytes(root / ".git" / "objects")
    assert git_bytes < 0.1 * payload_bytes, (git_bytes, payload_bytes)
    objs = objects(root)
    blobs = [size for kind, size in objs.values() if kind == "blob"]
    assert len(blobs) < 10  # schema, hangar.json, metadata value
    assert max(blobs) < SIZE
    # the payloads live in hangar's store beside git
    store = dir_bytes(root / ".git" / "hangar" / "store")
    assert payload_bytes <= store < 1.15 * payload_bytes


def test_one_gitlink_per_sample_and_fsck_clean(big_repo):
    repo, _sha = big_repo
    root = Path(repo.path)
    listing = git(root, "ls-tree", "-r", "refs/hangar/heads/master").splitlines()
    links = [line for line in listing if line.startswith("160000 commit ")]
    assert len(links) == N
    names = {line.rsplit("/", 1)[-1] for line in links}
    assert names == {f"i:{i}" for i in range(N)}
    # hashed fan-out: leaves of a few hundred entries at most
    leaves = {line.split("\t")[1].rsplit("/", 1)[0] for line in links}
    assert all(p.startswith("arraysets/payloads/samples/") for p in leaves)
    assert len(leaves) > 1
    assert (
        max(sum(1 for ln in links if ln.split("\t")[1].startswith(p + "/")) for p in leaves) <= 1024
    )
    assert "hangar.json" in git(root, "ls-tree", "--name-only", "refs/hangar/heads/master")
    assert git(root, "log", "--format=%s", "refs/hangar/heads/master").strip() == (
        "2000 random samples"
    )
    res = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "error" not in res.stderr.lower() and "warning" not in res.stderr.lower()


def test_small_commit_writes_few_objects(big_repo):
    repo, _sha = big_repo
    root = Path(repo.path)
    before = set(objects(root))
    co = repo.checkout(write=True)
    aset = co.arraysets["payloads"]
    for i in range(10):
        aset[i] = np.full(SIZE, i, np.uint8)
    co.commit("ten changed")
    co.close()
    new = {oid: kind for oid, (kind, _) in objects(root).items() if oid not in before}
    kinds = sorted(new.values())
    assert kinds.count("commit") == 1
    # one blob, the commit's change log (ten lines), never a payload
    blobs = [oid for oid, kind in new.items() if kind == "blob"]
    assert len(blobs) == 1
    git = repo._git_repo()
    assert git.get(blobs[0]).data.count(b"\n") == 11
    # <= 10 changed leaves, samples/, the arrayset, arraysets/, the root
    assert kinds.count("tree") <= 10 + 4, kinds


def test_git_gc_keeps_hangar_history(big_repo):
    repo, sha = big_repo
    root = Path(repo.path)
    git(root, "gc", "--prune=now", "--quiet")
    rc = repo.checkout(commit=sha)
    a = rc.arraysets["payloads"]
    assert len(a) == N
    rng = np.random.default_rng(7)
    first = rng.integers(0, 256, SIZE, dtype=np.uint8)
    assert (a[0] == first).all()
    assert rc.metadata["source"] == "random"
    rc.close()
    res = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=root, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


def test_identical_samples_share_one_record_id(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(64,), dtype=np.float32)
    same = np.linspace(0, 1, 64, dtype=np.float32)
    a["x"] = same
    a["y"] = same.copy()
    a["z"] = same * 2
    co.commit("dupes")
    co.close()
    listing = git(repo.path, "ls-tree", "-r", "refs/hangar/heads/master", "arraysets/a/samples/")
    ids = {line.split("\t")[1].rsplit("/", 1)[-1]: line.split()[2] for line in listing.splitlines()}
    assert ids["s:x"] == ids["s:y"] != ids["s:z"]
