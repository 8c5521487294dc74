"""A schema change against sample changes on the other side: merge, cherry-pick, revert.

One side widening an arrayset's schema (a raised maximum shape, a fixed
shape made variable) while the other adds or changes samples under the old
schema merges cleanly: the other side's samples fit the new schema. A new
dtype, a schema that does not hold the old one's samples, or two different
schema changes stay an arrayset conflict (t3) that no strategy resolves.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git import MergeConflictError

try:
    from .test_history_tools import commit_on, head
except ImportError:
    from test_history_tools import commit_on, head  # type: ignore[no-redef]


def ones(shape: tuple[int, ...], value: int = 1) -> np.ndarray:
    return np.full(shape, value, np.int16)


@pytest.fixture
def two(repo):
    """master and dev from a base of arrayset 'img' (fixed (2, 3) int16, keys 0..4)."""

    def fill(co):
        a = co.arraysets.init_arrayset("img", shape=(2, 3), dtype=np.int16)
        for i in range(5):
            a[i] = ones((2, 3), i)

    repo.base = commit_on(repo, "master", fill, "images")
    repo.create_branch("dev")
    return repo


def read(repo, commit: str) -> tuple[tuple, bool, dict]:
    with repo.checkout(commit=commit) as co:
        a = co.arraysets["img"]
        return a.shape, a.variable_shape, {k: a[k].tolist() for k in a}


def add(key: int, array: np.ndarray):
    return lambda co: co.arraysets["img"].__setitem__(key, array)


@pytest.mark.parametrize("widened_on", ["master", "dev"])
def test_a_widened_schema_merges_with_samples_added_on_the_other_side(two, widened_on):
    repo = two
    other = "dev" if widened_on == "master" else "master"
    repo.change_arrayset("img", branch=widened_on, variable_shape=True, shape=(4, 3))
    commit_on(repo, widened_on, add(9, ones((4, 1), 9)), "a sample only the new schema holds")
    commit_on(repo, other, add(7, ones((2, 3), 7)), "added under the old schema")
    commit_on(repo, other, add(1, ones((2, 3), -1)), "changed under the old schema")
    with repo.checkout(write=True, branch="master") as co:
        diff, conflicts = co.diff.branch("dev")
    assert not conflicts["conflict_found"]
    if widened_on == "dev":  # the merge brings dev's schema to master
        assert diff.incoming.aset.mutations == ("img",)
    merged = repo.merge("merge", "master", "dev")
    shape, variable, samples = read(repo, merged)
    assert (shape, variable) == ((4, 3), True)
    assert samples[7] == ones((2, 3), 7).tolist() and samples[1] == ones((2, 3), -1).tolist()
    assert samples[9] == ones((4, 1), 9).tolist() and samples[4] == ones((2, 3), 4).tolist()
    assert read(repo, repo.base)[:2] == ((2, 3), False)  # older commits keep their schema
    assert repo.verify().ok


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"dtype": np.float32}, "a new dtype: the other side's int16 samples do not fit"),
        ({"rename": "pictures"}, "the arrayset is gone under its name: t21, not t3"),
    ],
)
def test_a_schema_change_the_added_samples_do_not_fit_conflicts(two, change, why):
    repo = two
    repo.change_arrayset("img", branch="master", **change)
    commit_on(repo, "dev", add(7, ones((2, 3), 7)))
    before = head(repo)
    for strategy in (None, "ours", "theirs"):  # no strategy resolves it
        with pytest.raises(MergeConflictError) as err:
            repo.merge("merge", "master", "dev", strategy=strategy)
        assert err.value.conflicts["aset"].conflict, why
    assert head(repo) == before


def test_two_different_schema_changes_conflict(two):
    repo = two
    repo.change_arrayset("img", branch="master", variable_shape=True, shape=(4, 3))
    repo.change_arrayset("img", branch="dev", variable_shape=True, shape=(2, 8))
    commit_on(repo, "dev", add(7, ones((2, 8), 7)))
    with pytest.raises(MergeConflictError) as err:
        repo.merge("merge", "master", "dev")
    assert err.value.conflicts["aset"].t3 == ("img",)


def test_cherry_pick_and_revert_of_a_widening_with_samples_added_since(two):
    repo = two
    widening = repo.change_arrayset("img", branch="dev", variable_shape=True, shape=(4, 3))
    commit_on(repo, "master", add(7, ones((2, 3), 7)), "added on master")
    picked = repo.cherry_pick(widening, branch="master")
    shape, variable, samples = read(repo, picked)
    assert (shape, variable) == ((4, 3), True) and samples[7] == ones((2, 3), 7).tolist()
    # undoing the widening after samples came under it: they may not fit the
    # old schema, so it is a conflict, not a silent no-op
    commit_on(repo, "master", add(9, ones((4, 1), 9)), "a sample only the new schema holds")
    before = head(repo)
    with pytest.raises(MergeConflictError) as err:
        repo.revert(picked, branch="master")
    assert err.value.conflicts["aset"].t3 == ("img",) and head(repo) == before
    # with no sample change since, the revert puts the old schema back
    fresh = repo.change_arrayset("img", branch="dev", shape=(8, 3))
    reverted = repo.revert(fresh, branch="dev")
    assert read(repo, reverted)[:2] == ((4, 3), True)


def test_a_dtype_change_holds_a_batch_of_samples_in_memory_not_the_arrayset(repo):
    import tracemalloc

    n, size = 48, 1 << 20  # 48 MiB of int8 samples: 96 MiB once cast to int16

    def fill(co):
        a = co.arraysets.init_arrayset("big", shape=(size,), dtype=np.int8)
        with a:
            for i in range(n):
                a[i] = np.full(size, i, np.int8)

    commit_on(repo, "master", fill, "big")
    tracemalloc.start()
    try:
        new = repo.change_arrayset("big", dtype=np.int16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"
    with repo.checkout(commit=new) as co:
        assert co.arraysets["big"][47].dtype == np.int16 and co.arraysets["big"][47][0] == 47
