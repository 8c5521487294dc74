"""End-to-end smoke of the core: write, commit, read back, branch."""

import subprocess

import numpy as np


def test_write_commit_read(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("imgs", prototype=np.zeros(784, np.uint8))
    with a:
        for i in range(1500):
            a[i] = np.full(784, i % 251, np.uint8)
    sha = co.commit("first")
    co.close()
    rc = repo.checkout(commit=sha)
    assert len(rc.arraysets["imgs"]) == 1500
    assert (rc.arraysets["imgs"][1234] == 1234 % 251).all()
    rc.close()
    res = subprocess.run(["git", "fsck", "--full", "--strict"], cwd=repo.path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
