"""A sample set to a payload already stored (found by the segment probe, its
bytes checked, nothing written again) survives a killed process once the set
has returned, as every acknowledged sample does."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from forked import run_forked

from hangar_git import Repository

N = 300


def _open(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path)


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(3).random((N, 4), dtype=np.float32)


def _sets(data: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """What the child sets, in order: stored values, and a new one between them."""
    fresh = np.full(4, -1.5, np.float32)
    return [("a", data[7]), ("b", data[150]), ("c", fresh), ("d", data[7]), ("e", data[299])]


def _killed_after(path: Path, data: np.ndarray, acks: int) -> int:
    """Fork a child that sets :func:`_sets` outside a ``with`` block, acknowledging
    each once it returned, and SIGKILLs itself right after the ``acks``-th;
    returns how many sets it acknowledged."""

    def child(wfd: int) -> None:
        co = _open(path).checkout(write=True)
        aset = co.arraysets["x"]
        for i, (key, value) in enumerate(_sets(data)):
            aset[key] = value
            os.write(wfd, b"+")
            if i + 1 == acks:
                os.kill(os.getpid(), signal.SIGKILL)

    out, status = run_forked(child)
    assert os.WIFSIGNALED(status), status
    return len(out)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("acks", [1, 2, 3, 4, 5])
def test_sets_of_stored_payloads_survive_a_kill(repo, data, acks):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32).add_stacked(data, range(N))
    co.commit("stored")
    co.close()
    path = Path(repo.path)
    assert _killed_after(path, data, acks) == acks
    co = _open(path).checkout(write=True)  # recovers the journal the child left
    aset = co.arraysets["x"]
    for key, value in _sets(data)[:acks]:
        np.testing.assert_array_equal(aset[key], value)
    for key, _ in _sets(data)[acks:]:
        assert key not in aset
    co.commit(f"{acks} sets")
    co.close()
    rc = _open(path).checkout()
    for key, value in _sets(data)[:acks]:
        np.testing.assert_array_equal(rc.arraysets["x"][key], value)
    rc.close()
