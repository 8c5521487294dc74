"""Cherry-pick and revert: every kind of conflict, and arrayset changes.

Each conflict kind of a merge (t1 added on both sides differently, t21
removed on the branch and changed by the commit, t22 the other way round,
t3 changed on both sides) stops a cherry-pick with nothing changed, and
``strategy`` resolves it; a commit that adds or removes a whole arrayset is
picked and reverted like any change. The look at a conflicting sample
compares one key on every side.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git import MergeConflictError, MetadataRecordKey, RawDataRecordKey

try:
    from .test_history_tools import commit_on, head, records, v
except ImportError:
    from test_history_tools import commit_on, head, records, v  # type: ignore[no-redef]


@pytest.fixture
def two(repo):
    """master: arrayset 'x' (int keys 0..4), metadata 'm'; branch 'dev' from it."""

    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        for i in range(5):
            x[i] = v(i)
        co.metadata["m"] = "base"

    commit_on(repo, "master", fill, "base")
    repo.create_branch("dev")
    return repo


def setitem(key, value):
    return lambda co: co.arraysets["x"].__setitem__(key, value)


def delitem(key):
    return lambda co: co.arraysets["x"].__delitem__(key)


@pytest.mark.parametrize(
    ("on_master", "picked", "kind", "key", "theirs"),
    [
        (setitem(9, v(90)), setitem(9, v(-90)), "t1", 9, (-90, -89, -88)),
        (delitem(2), setitem(2, v(20)), "t21", 2, (20, 21, 22)),
        (setitem(2, v(-20)), delitem(2), "t22", 2, None),
        (setitem(2, v(-20)), setitem(2, v(20)), "t3", 2, (20, 21, 22)),
    ],
)
def test_each_conflict_kind_stops_a_cherry_pick_and_strategies_resolve_it(
    two, on_master, picked, kind, key, theirs
):
    repo = two
    commit = commit_on(repo, "dev", picked, "dev's change")
    commit_on(repo, "master", on_master, "master's change")
    before, want_ours = head(repo), records(repo, head(repo))
    with pytest.raises(MergeConflictError) as err:
        repo.cherry_pick(commit)
    assert getattr(err.value.conflicts["sample"]["x"], kind) == (RawDataRecordKey("x", key),)
    assert head(repo) == before
    assert records(repo, repo.cherry_pick(commit, strategy="ours")) == want_ours
    got = records(repo, repo.cherry_pick(commit, strategy="theirs"))["x"]
    assert got.get(key) == theirs


def test_metadata_conflict_of_a_revert(two):
    repo = two
    changed = commit_on(repo, "master", lambda co: co.metadata.__setitem__("m", "one"), "one")
    commit_on(repo, "master", lambda co: co.metadata.__setitem__("m", "two"), "two")
    before = head(repo)
    with pytest.raises(MergeConflictError) as err:
        repo.revert(changed)
    assert err.value.conflicts["meta"].t3 == (MetadataRecordKey("m"),) and head(repo) == before
    assert records(repo, repo.revert(changed, strategy="theirs"))["meta"]["m"] == "base"


def test_arrayset_added_and_removed_are_picked_and_reverted(two):
    repo = two

    def add_y(co):
        y = co.arraysets.init_arrayset("y", shape=(2,), dtype=np.float32)
        y["a"] = np.ones(2, np.float32)

    added = commit_on(repo, "dev", add_y, "add y")
    removed = commit_on(repo, "dev", lambda co: co.arraysets.remove_aset("x"), "drop x")
    new = repo.cherry_pick(added, branch="master")
    assert records(repo, new)["y"] == {"a": (1.0, 1.0)} and "x" in records(repo, new)
    assert "x" not in records(repo, repo.cherry_pick(removed, branch="master"))
    back = records(repo, repo.revert(removed, branch="master"))
    assert back["x"] == {i: tuple(v(i).tolist()) for i in range(5)}
    assert "y" not in records(repo, repo.revert(added, branch="master"))


def test_an_arrayset_removed_on_the_branch_and_changed_by_the_commit(two):
    repo = two
    picked = commit_on(repo, "dev", setitem(1, v(10)), "dev changes x")
    commit_on(repo, "master", lambda co: co.arraysets.remove_aset("x"), "master drops x")
    before = head(repo)
    for strategy in (None, "ours", "theirs"):  # an arrayset conflict: never resolved
        with pytest.raises(MergeConflictError) as err:
            repo.cherry_pick(picked, strategy=strategy)
        assert err.value.conflicts["aset"].t21 == ("x",)
    assert head(repo) == before


def test_compare_sample_reads_the_same_key_on_every_side(two):
    """A digit string names the str key wherever some side holds it: a side
    holding only the int key of those digits is not compared with it."""
    repo = two
    commit_on(repo, "master", setitem("3", v(300)), "a str key '3'")
    cmp = repo.compare_sample("master", "dev", "x", "3")
    assert cmp.key == "3" and cmp.a.array.tolist() == [300, 301, 302]
    assert cmp.b.array is None and cmp.base is not None and cmp.base.array is None
    assert repo.compare_sample("master", "dev", "x", "i:3").b.array.tolist() == [3, 4, 5]
