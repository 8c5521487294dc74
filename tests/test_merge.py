"""Merging branches: fast-forward, three-way, conflicts, strategies, records only."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git import (
    MergeConflictError,
    MetadataRecordKey,
    MissingPayloadError,
    RawDataRecordKey,
    WriterLockError,
)
from hangar_git.diff import ConflictRecords
from hangar_git.gitutil import branch_head
from hangar_git.records.layout import leaf_path, serialize_links
from hangar_git.records.staging import Journal
from hangar_git.records.walk import _leaf_delta

NO_CONFLICT = ConflictRecords((), (), (), (), False)


def v(x: float, dtype: type = np.int64) -> np.ndarray:
    return np.array([x, x + 1, x + 2], dtype=dtype)


def commit_on(repo, branch: str, change, message: str = "change") -> str:
    """Open the writer on ``branch``, apply ``change(co)``, commit, close."""
    co = repo.checkout(write=True, branch=branch)
    try:
        change(co)
        return co.commit(message)
    finally:
        co.close()


@pytest.fixture
def base(repo):
    """master: arrayset 'x' (int keys 0..9), 'y' (str keys), metadata; branch 'dev'."""

    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        with x:
            for i in range(10):
                x[i] = v(i)
        y = co.arraysets.init_arrayset("y", shape=(2,), dtype=np.float32)
        y["a"] = np.ones(2, np.float32)
        co.metadata["m"] = "base"
        co.metadata["keep"] = "same"

    commit_on(repo, "master", fill, "base")
    repo.create_branch("dev")
    return repo


def heads(repo) -> dict[str, str | None]:
    git = repo._git_repo()
    return {b: branch_head(git, b) for b in repo.list_branches()}


def state(repo, commit: str) -> dict:
    """Every record of a commit, as plain values (arrays as tuples)."""
    co = repo.checkout(commit=commit)
    try:
        out: dict = {"meta": dict(co.metadata.items())}
        for name in co.arraysets:
            a = co.arraysets[name]
            out[name] = (a.dtype.str, {k: tuple(a[k].tolist()) for k in a})
        return out
    finally:
        co.close()


# --------------------------------------------------------------------------
# fast-forward and no-op merges
# --------------------------------------------------------------------------
def test_fast_forward_moves_ref_and_ignores_message(base):
    dev_head = commit_on(base, "dev", lambda co: co.arraysets["x"].add(v(100), 100))
    before = state(base, dev_head)
    co = base.checkout(write=True)
    n_commits = len(base.log(return_contents=True)["order"])
    sha = co.merge("this message is not used", "dev")
    assert sha == dev_head
    assert co.commit_hash == dev_head
    assert co.diff.status() == "CLEAN"
    assert (co.arraysets["x"][100] == v(100)).all()
    co.close()
    assert heads(base)["master"] == dev_head
    assert len(base.log(return_contents=True)["order"]) == n_commits + 1  # no merge commit
    assert state(base, sha) == before


def test_merge_of_an_ancestor_changes_nothing(base):
    master_head = commit_on(base, "master", lambda co: co.metadata.add("new", "x"))
    before = heads(base)
    assert base.merge("msg", "master", "dev") == master_head
    assert heads(base) == before


def test_repository_merge_opens_and_closes_the_writer(base):
    commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    commit_on(base, "master", lambda co: co.metadata.add("m2", "2"))
    sha = base.merge("merge dev", "master", "dev")
    assert not base.writer_lock_held
    assert heads(base)["master"] == sha
    assert state(base, sha)["meta"] == {"m": "base", "keep": "same", "d": "1", "m2": "2"}


def test_repository_merge_refused_while_a_writer_is_open(base):
    commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    co = base.checkout(write=True, branch="dev")
    try:
        with pytest.raises(WriterLockError):
            base.merge("m", "master", "dev")
    finally:
        co.close()


# --------------------------------------------------------------------------
# three-way merges
# --------------------------------------------------------------------------
def test_three_way_merge_records_both_parents(base):
    def dev_change(co):
        x = co.arraysets["x"]
        x[1] = v(-1)
        x[20] = v(20)
        del x[2]
        co.metadata["dev"] = "yes"
        del co.metadata["m"]

    def master_change(co):
        x = co.arraysets["x"]
        x[3] = v(-3)
        x[21] = v(21)
        co.arraysets["y"]["b"] = np.zeros(2, np.float32)
        co.metadata["master"] = "yes"

    dev_head = commit_on(base, "dev", dev_change)
    master_head = commit_on(base, "master", master_change)
    co = base.checkout(write=True)
    sha = co.merge("merge dev into master", "dev")
    assert co.commit_hash == sha and co.diff.status() == "CLEAN"
    co.close()
    git = base._git_repo()
    commit = git.get(sha)
    assert [str(p) for p in commit.parent_ids] == [master_head, dev_head]
    assert commit.message.startswith("merge dev into master\n")
    out = subprocess.run(
        ["git", "log", "-1", "--format=%P", "refs/hangar/heads/master"],
        cwd=base.path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [master_head, dev_head]
    got = state(base, sha)
    xs = got["x"][1]
    assert xs[1] == tuple(v(-1)) and xs[3] == tuple(v(-3))
    assert 2 not in xs and xs[20] == tuple(v(20)) and xs[21] == tuple(v(21))
    assert len(xs) == 11
    assert set(got["y"][1]) == {"a", "b"}
    assert got["meta"] == {"keep": "same", "dev": "yes", "master": "yes"}
    fsck = subprocess.run(
        ["git", "fsck", "--strict"], cwd=base.path, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


def test_three_way_merge_keeps_untouched_subtrees(base):
    commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    master_head = commit_on(base, "master", lambda co: co.metadata.add("e", "2"))
    sha = base.merge("m", "master", "dev")
    git = base._git_repo()
    old, new = git.get(master_head).tree, git.get(sha).tree
    assert (old / "arraysets").id == (new / "arraysets").id


def test_identical_changes_on_both_sides_are_not_conflicts(base):
    def same(co):
        x = co.arraysets["x"]
        x[0] = v(50)  # same mutation
        x[30] = v(30)  # same addition
        del x[4]  # same removal
        co.metadata["m"] = "both"
        co.metadata["new"] = "both"
        z = co.arraysets.init_arrayset("z", prototype=v(0, np.float64))
        z["k"] = v(1, np.float64)

    commit_on(base, "dev", lambda co: (same(co), co.metadata.add("only_dev", "1")))
    commit_on(base, "master", same)
    co = base.checkout()
    changes, conflicts = co.diff.branch("dev")
    co.close()
    assert not conflicts["conflict_found"]
    # an entry for every arrayset (as the reference gives them), none in conflict
    assert conflicts["sample"] == {"x": NO_CONFLICT, "y": NO_CONFLICT, "z": NO_CONFLICT}
    assert changes.incoming.meta.additions == ("only_dev",)
    assert changes.incoming.samples == {} and changes.incoming.aset.empty
    sha = base.merge("m", "master", "dev")
    got = state(base, sha)
    assert got["x"][1][0] == tuple(v(50)) and 4 not in got["x"][1]
    assert got["z"][1] == {"k": tuple(v(1, np.float64))}
    assert got["meta"]["only_dev"] == "1" and got["meta"]["new"] == "both"


def test_arrayset_added_on_both_sides_with_same_schema_merges_samples(base):
    def add(keys):
        def change(co):
            z = co.arraysets.init_arrayset("z", prototype=v(0))
            for k in keys:
                z[k] = v(k)

        return change

    commit_on(base, "dev", add([1, 2, 3]))
    commit_on(base, "master", add([3, 4]))
    sha = base.merge("m", "master", "dev")
    assert set(state(base, sha)["z"][1]) == {1, 2, 3, 4}


def test_arrayset_changes_from_one_side(base):
    def dev_change(co):
        co.arraysets.remove_aset("y")
        w = co.arraysets.init_arrayset("w", prototype=np.zeros(4, np.uint8))
        w[0] = np.arange(4, dtype=np.uint8)

    commit_on(base, "dev", dev_change)
    commit_on(base, "master", lambda co: co.arraysets["x"].add(v(9), 99))
    sha = base.merge("m", "master", "dev")
    got = state(base, sha)
    assert "y" not in got and got["w"][1] == {0: (0, 1, 2, 3)} and 99 in got["x"][1]


# --------------------------------------------------------------------------
# conflicts
# --------------------------------------------------------------------------
SAMPLE_CASES = {
    # kind: (change on master, change on dev)
    "t1": (lambda x: x.add(v(1), 77), lambda x: x.add(v(2), 77)),
    "t21": (lambda x: x.remove(5), lambda x: x.add(v(-5), 5)),
    "t22": (lambda x: x.add(v(-5), 5), lambda x: x.remove(5)),
    "t3": (lambda x: x.add(v(-5), 5), lambda x: x.add(v(-6), 5)),
}


def _assert_nothing_changed(repo, before_heads, co_before):
    assert heads(repo) == before_heads
    co = repo.checkout(write=True)
    assert co.commit_hash == co_before
    assert co.diff.status() == "CLEAN"
    co.close()


@pytest.mark.parametrize("kind", sorted(SAMPLE_CASES))
def test_sample_conflicts(base, kind):
    on_master, on_dev = SAMPLE_CASES[kind]
    commit_on(base, "dev", lambda co: on_dev(co.arraysets["x"]))
    commit_on(
        base, "master", lambda co: (on_master(co.arraysets["x"]), co.metadata.add("unrelated", "1"))
    )
    before = heads(base)
    co = base.checkout(write=True)
    changes, conflicts = co.diff.branch("dev")
    key = 77 if kind == "t1" else 5
    expected = ConflictRecords(
        **{k: ((key,) if k == kind else ()) for k in ("t1", "t21", "t22", "t3")}, conflict=True
    )
    keyed = ConflictRecords(
        *(tuple(RawDataRecordKey("x", k) for k in t) for t in expected[:4]), True
    )
    assert conflicts["sample"]["x"] == keyed
    assert conflicts["aset"] == NO_CONFLICT and conflicts["meta"] == NO_CONFLICT
    assert conflicts["conflict_found"] is True
    assert changes.incoming.samples == {}  # the only dev change conflicts
    with pytest.raises(MergeConflictError) as err:
        co.merge("must not happen", "dev")
    assert isinstance(err.value, ValueError)
    assert err.value.conflicts == conflicts
    assert kind in str(err.value) and "'x'" in str(err.value)
    assert co.diff.status() == "CLEAN"
    sha_before = co.commit_hash
    co.close()
    _assert_nothing_changed(base, before, sha_before)


META_CASES = {
    "t1": (lambda m: m.add("new", "a"), lambda m: m.add("new", "b")),
    "t21": (lambda m: m.remove("m"), lambda m: m.add("m", "dev")),
    "t22": (lambda m: m.add("m", "master"), lambda m: m.remove("m")),
    "t3": (lambda m: m.add("m", "master"), lambda m: m.add("m", "dev")),
}


@pytest.mark.parametrize("kind", sorted(META_CASES))
def test_metadata_conflicts(base, kind):
    on_master, on_dev = META_CASES[kind]
    commit_on(base, "dev", lambda co: on_dev(co.metadata))
    commit_on(base, "master", lambda co: on_master(co.metadata))
    before = heads(base)
    co = base.checkout()
    _, conflicts = co.diff.branch("dev")
    sha_before = co.commit_hash
    co.close()
    key = "new" if kind == "t1" else "m"
    assert getattr(conflicts["meta"], kind) == (MetadataRecordKey(key),)
    assert conflicts["meta"].conflict and conflicts["conflict_found"]
    assert conflicts["aset"] == NO_CONFLICT
    assert not any(c.conflict for c in conflicts["sample"].values())
    with pytest.raises(MergeConflictError):
        base.merge("no", "master", "dev")
    _assert_nothing_changed(base, before, sha_before)


def _recreate(name, dtype):
    def change(co):
        if name in co.arraysets:
            co.arraysets.remove_aset(name)
        a = co.arraysets.init_arrayset(name, prototype=v(0, dtype))
        a[0] = v(0, dtype)

    return change


SCHEMA_CASES = {
    "t1": (_recreate("z", np.int64), _recreate("z", np.float64)),
    "t21": (lambda co: co.arraysets.remove_aset("x"), lambda co: co.arraysets["x"].add(v(-7), 7)),
    "t22": (_recreate("x", np.float64), lambda co: co.arraysets.remove_aset("x")),
    "t3": (_recreate("x", np.float64), _recreate("x", np.int32)),
}


@pytest.mark.parametrize("strategy", [None, "ours", "theirs"])
@pytest.mark.parametrize("kind", sorted(SCHEMA_CASES))
def test_schema_conflicts_are_never_resolved(base, kind, strategy):
    on_master, on_dev = SCHEMA_CASES[kind]
    commit_on(base, "dev", on_dev)
    commit_on(base, "master", on_master)
    before = heads(base)
    co = base.checkout()
    _, conflicts = co.diff.branch("dev")
    sha_before = co.commit_hash
    co.close()
    name = "z" if kind == "t1" else "x"
    assert getattr(conflicts["aset"], kind) == (name,)
    assert conflicts["aset"].conflict and conflicts["conflict_found"]
    with pytest.raises(MergeConflictError, match="arraysets") as err:
        base.merge("no", "master", "dev", strategy=strategy)
    assert err.value.conflicts["aset"] == conflicts["aset"]
    _assert_nothing_changed(base, before, sha_before)


def test_schema_change_against_sample_changes_conflicts(base):
    # master changed x's schema; dev added a sample under the old schema
    commit_on(base, "master", _recreate("x", np.float64))
    commit_on(base, "dev", lambda co: co.arraysets["x"].add(v(3), 33))
    co = base.checkout()
    _, conflicts = co.diff.branch("dev")
    co.close()
    assert conflicts["aset"].t3 == ("x",)


def test_removed_arrayset_against_added_samples_conflicts(base):
    commit_on(base, "master", lambda co: co.arraysets.remove_aset("y"))
    commit_on(base, "dev", lambda co: co.arraysets["y"].add(np.zeros(2, np.float32), "new"))
    co = base.checkout()
    _, conflicts = co.diff.branch("dev")
    co.close()
    assert conflicts["aset"].t21 == ("y",)
    # no single key conflicts: the additions alone would be lost silently
    assert conflicts["sample"]["y"] == NO_CONFLICT


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------
def _all_conflicts(repo):
    """Commit one conflict of each kind on samples and metadata."""

    def on_master(co):
        x = co.arraysets["x"]
        x[70] = v(1)  # t1
        x.remove(1)  # t21
        x[2] = v(-2)  # t22
        x[3] = v(-3)  # t3
        x[9] = v(9000)  # master-only change
        co.metadata["new"] = "master"  # t1
        co.metadata["m"] = "master"  # t3

    def on_dev(co):
        x = co.arraysets["x"]
        x[70] = v(2)
        x[1] = v(-1)
        x.remove(2)
        x[3] = v(-33)
        x[8] = v(8000)  # dev-only change
        co.metadata["new"] = "dev"
        co.metadata["m"] = "dev"

    commit_on(repo, "dev", on_dev)
    commit_on(repo, "master", on_master)


@pytest.mark.parametrize("strategy", ["ours", "theirs"])
def test_strategies_resolve_sample_and_metadata_conflicts(base, strategy):
    _all_conflicts(base)
    co = base.checkout(write=True)
    _, conflicts = co.diff.branch("dev")
    k = RawDataRecordKey
    assert conflicts["sample"]["x"] == ConflictRecords(
        (k("x", 70),), (k("x", 1),), (k("x", 2),), (k("x", 3),), True
    )
    assert conflicts["meta"] == ConflictRecords(
        (MetadataRecordKey("new"),), (), (), (MetadataRecordKey("m"),), True
    )
    sha = co.merge(f"merge with {strategy}", "dev", strategy=strategy)
    co.close()
    got = state(base, sha)
    xs, meta = got["x"][1], got["meta"]
    assert xs[9] == tuple(v(9000)) and xs[8] == tuple(v(8000))  # both clean changes
    if strategy == "ours":
        assert xs[70] == tuple(v(1)) and 1 not in xs
        assert xs[2] == tuple(v(-2)) and xs[3] == tuple(v(-3))
        assert meta["new"] == "master" and meta["m"] == "master"
    else:
        assert xs[70] == tuple(v(2)) and xs[1] == tuple(v(-1))
        assert 2 not in xs and xs[3] == tuple(v(-33))
        assert meta["new"] == "dev" and meta["m"] == "dev"
    assert len(base._git_repo().get(sha).parent_ids) == 2


def test_unknown_strategy_is_refused_before_anything(base):
    _all_conflicts(base)
    before = heads(base)
    with pytest.raises(ValueError, match="strategy"):
        base.merge("m", "master", "dev", strategy="mine")
    assert heads(base) == before


def test_conflict_samples_side_by_side(base):
    _all_conflicts(base)
    co = base.checkout(write=True)
    mine, theirs = co.diff.conflict_samples("dev", "x", 3)
    assert (mine == v(-3)).all() and (theirs == v(-33)).all()
    mine, theirs = co.diff.conflict_samples("dev", "x", 1)  # t21: removed in master
    assert mine is None and (theirs == v(-1)).all()
    co.arraysets["x"][3] = v(12345)  # staged changes count on the master side
    mine, _ = co.diff.conflict_samples("dev", "x", 3)
    assert (mine == v(12345)).all()
    with pytest.raises(KeyError):
        co.diff.conflict_samples("dev", "x", 4444)
    with pytest.raises(ValueError):
        co.diff.conflict_samples("nope", "x", 3)
    co.close()


# --------------------------------------------------------------------------
# records only, errors, crash safety
# --------------------------------------------------------------------------
def test_merge_without_local_payloads(base):
    _all_conflicts(base)
    dev_head = commit_on(base, "dev", lambda co: co.arraysets["x"].add(v(4242), 4242))
    # as if dev had been fetched from a remote without its data: no payload here
    base._git_repo().references.create("refs/hangar/remotes/origin/dev", pygit2.Oid(hex=dev_head))
    shutil.rmtree(base._store.root)
    base._store.create()
    co = base.checkout(write=True)
    _, conflicts = co.diff.branch("dev")
    assert conflicts["conflict_found"]
    with pytest.raises(MissingPayloadError):
        co.diff.conflict_samples("dev", "x", 3)
    sha = co.merge("records only", "dev", strategy="theirs")
    assert 4242 in co.arraysets["x"]
    with pytest.raises(MissingPayloadError):
        co.arraysets["x"][4242]
    co.close()
    assert heads(base)["master"] == sha


def test_merge_refuses_bad_input(base):
    commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    co = base.checkout(write=True)
    for bad in ("master", "nope", "bad/name/x", 3):
        with pytest.raises(ValueError):
            co.merge("m", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        co.merge(None, "dev")  # type: ignore[arg-type]
    co.metadata["staged"] = "1"
    with pytest.raises(ValueError, match="uncommitted"):
        co.merge("m", "dev")
    assert co.diff.status() == "DIRTY"
    co.close()


def test_merge_from_a_remote_tracking_branch(base):
    dev_head = commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    commit_on(base, "master", lambda co: co.metadata.add("e", "1"))
    git = base._git_repo()
    git.references.create("refs/hangar/remotes/origin/dev", pygit2.Oid(hex=dev_head))
    sha = base.merge("from origin", "master", "origin/dev")
    assert str(git.get(sha).parent_ids[1]) == dev_head


def test_merge_interrupted_after_the_ref_moved_recovers(base, monkeypatch):
    commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    commit_on(base, "master", lambda co: co.metadata.add("e", "1"))
    co = base.checkout(write=True)

    def die(self, branch, sha):
        raise KeyboardInterrupt  # the process is stopped between the two steps

    monkeypatch.setattr(Journal, "reset", die)
    with pytest.raises(KeyboardInterrupt):
        co.merge("m", "dev")
    monkeypatch.undo()
    new_head = heads(base)["master"]
    co.close()
    co = base.checkout(write=True)
    assert co.commit_hash == new_head and co.diff.status() == "CLEAN"
    assert co.metadata["d"] == "1" and co.metadata["e"] == "1"
    co.close()


def test_failed_ref_move_changes_nothing(base, monkeypatch):
    commit_on(base, "dev", lambda co: co.metadata.add("d", "1"))
    commit_on(base, "master", lambda co: co.metadata.add("e", "1"))
    before = heads(base)
    co = base.checkout(write=True)
    sha_before = co.commit_hash
    import hangar_git.commits as commits_mod

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(commits_mod, "move_branch", fail)
    with pytest.raises(OSError):
        co.merge("m", "dev")
    monkeypatch.undo()
    co.close()
    _assert_nothing_changed(base, before, sha_before)


# --------------------------------------------------------------------------
# fan-out layouts
# --------------------------------------------------------------------------
def _keys_in_bucket(bucket: str, n: int, start: int = 10_000) -> list[int]:
    out, k = [], start
    while len(out) < n:
        if leaf_path(f"i:{k}", (2,))[0] == bucket:
            out.append(k)
        k += 1
    return out


@pytest.fixture
def big(repo):
    """master with 1,500 samples in 'x' (a 256-way fan-out), and branch 'dev'."""

    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        with x:
            for i in range(1500):
                x[i] = v(i)

    commit_on(repo, "master", fill)
    repo.create_branch("dev")
    return repo


def test_fanned_merge_changes_in_shared_and_separate_leaves(big):
    same_leaf = _keys_in_bucket("00", 4)
    other = _keys_in_bucket("ff", 1) + _keys_in_bucket("7a", 1)

    def dev_change(co):
        x = co.arraysets["x"]
        x[same_leaf[0]] = v(1)
        x[same_leaf[1]] = v(2)
        x[other[0]] = v(3)
        del x[10]

    def master_change(co):
        x = co.arraysets["x"]
        x[same_leaf[2]] = v(4)
        x[same_leaf[1]] = v(2)  # identical
        x[other[1]] = v(5)
        x[11] = v(-11)

    commit_on(big, "dev", dev_change)
    commit_on(big, "master", master_change)
    co = big.checkout()
    changes, conflicts = co.diff.branch("dev")
    co.close()
    assert not conflicts["conflict_found"]
    assert set(changes.incoming.samples["x"].additions) == {same_leaf[0], other[0]}
    assert changes.incoming.samples["x"].removals == (10,)
    sha = big.merge("m", "master", "dev")
    xs = state(big, sha)["x"][1]
    assert len(xs) == 1500 + 5 - 1
    assert xs[same_leaf[0]] == tuple(v(1)) and xs[same_leaf[2]] == tuple(v(4))
    assert xs[other[0]] == tuple(v(3)) and xs[other[1]] == tuple(v(5))
    assert 10 not in xs and xs[11] == tuple(v(-11))


def test_merge_across_different_fanouts(repo):
    # base and master flat (under 1,024 samples); dev grows past the threshold
    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        with x:
            for i in range(1000):
                x[i] = v(i)

    commit_on(repo, "master", fill)
    repo.create_branch("dev")

    def grow(co):
        x = co.arraysets["x"]
        with x:
            for i in range(1000, 1200):
                x[i] = v(i)
            x[5] = v(-5)

    commit_on(repo, "dev", grow)
    git = repo._git_repo()
    dev_tree = git.get(branch_head(git, "dev")).tree / "arraysets" / "x" / "samples"
    assert all(e.type_str == "tree" for e in dev_tree)  # dev is fanned out
    commit_on(
        repo,
        "master",
        lambda co: (co.arraysets["x"].add(v(-6), 6), co.arraysets["x"].add(v(-7), 5)),
    )
    co = repo.checkout()
    _, conflicts = co.diff.branch("dev")
    co.close()
    assert conflicts["sample"]["x"].t3 == (RawDataRecordKey("x", 5),)
    sha = repo.merge("m", "master", "dev", strategy="ours")
    xs = state(repo, sha)["x"][1]
    assert len(xs) == 1200
    assert xs[5] == tuple(v(-7)) and xs[6] == tuple(v(-6)) and xs[1100] == tuple(v(1100))


def test_fanned_merge_where_leaves_appear_and_disappear(repo):
    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        with x:
            for i in range(1100):
                x[i] = v(i)

    commit_on(repo, "master", fill)
    repo.create_branch("dev")
    buckets: dict[str, list[int]] = {}
    for i in range(1100):
        buckets.setdefault(leaf_path(f"i:{i}", (2,))[0], []).append(i)
    b_dev, b_both = sorted(buckets)[:2]

    def on_dev(co):
        x = co.arraysets["x"]
        for k in buckets[b_dev]:  # dev empties a leaf master did not touch
            del x[k]
        x[_keys_in_bucket(b_both, 1)[0]] = v(1)  # and adds to a leaf master empties

    def on_master(co):
        x = co.arraysets["x"]
        for k in buckets[b_both]:
            del x[k]

    commit_on(repo, "dev", on_dev)
    commit_on(repo, "master", on_master)
    sha = repo.merge("m", "master", "dev")
    xs = state(repo, sha)["x"][1]
    gone = set(buckets[b_dev]) | set(buckets[b_both])
    assert set(xs) == (set(range(1100)) - gone) | {_keys_in_bucket(b_both, 1)[0]}
    git = repo._git_repo()
    samples = git.get(sha).tree / "arraysets" / "x" / "samples"
    names = {e.name for e in samples}
    assert b_dev not in names and b_both in names


def test_leaf_parse_survives_a_digest_holding_the_gitlink_mode():
    from hangar_git.records.layout import parse_links, serialize_links
    from hangar_git.records.walk import _leaf_pieces

    evil = b"160000 " + bytes(range(13))
    links = {"i:1": bytes(20), "s:a": evil, "s:b": b"\x00" * 19 + b"\x01", "i:22": evil[::-1]}
    raw = serialize_links(links)
    pieces = _leaf_pieces(raw)
    assert {p[:-21].decode(): p[-20:] for p in pieces} == parse_links(raw) == links


def test_fan_node_refuses_trees_that_are_not_uniform():
    from hangar_git.records.layout import MODE_BLOB, MODE_TREE, serialize_tree
    from hangar_git.records.walk import _FanNode

    ok = serialize_tree({f"{i:02x}": (MODE_TREE, bytes([i]) * 20) for i in range(5)})
    node = _FanNode.load(ok)
    assert node is not None and node.index("03") == 3 and node.index("99") == -1
    mixed = serialize_tree({"aa": (MODE_TREE, bytes(20)), "bb": (MODE_BLOB, bytes(20))})
    assert _FanNode.load(mixed) is None
    widths = serialize_tree({"a": (MODE_TREE, bytes(20)), "bb": (MODE_TREE, bytes(20))})
    assert _FanNode.load(widths) is None


def test_cost_follows_the_change_not_the_dataset(big, monkeypatch):
    """Diff and merge read a few trees out of 256 leaves, and write only changed ones."""
    import hangar_git.merge as merge_mod
    import hangar_git.records.walk as walk_mod

    commit_on(big, "dev", lambda co: (co.arraysets["x"].add(v(1), 3), co.metadata.add("d", "1")))
    commit_on(big, "master", lambda co: co.arraysets["x"].add(v(2), 700))
    reads, writes = [], []
    real_read, real_write = walk_mod.read_raw, merge_mod.write_tree
    monkeypatch.setattr(walk_mod, "read_raw", lambda r, o: reads.append(o) or real_read(r, o))
    for mod in (merge_mod, walk_mod):
        monkeypatch.setattr(mod, "write_tree", lambda r, d: writes.append(d) or real_write(r, d))
    co = big.checkout()
    changes, _ = co.diff.branch("dev")
    co.close()
    assert changes.incoming.samples["x"] == ((), (), (3,))
    # 3 roots, arraysets, arrayset and metadata trees, 3 fan-out tops, 2 x 2 leaves
    assert len(reads) <= 19, len(reads)
    reads.clear()
    big.merge("m", "master", "dev")
    # merging reads no leaf (each changed leaf is taken whole from the side that
    # changed it); the merge's change log reads master's and the merged version
    # of the one leaf dev changed
    assert len(reads) <= 17, len(reads)
    # the samples top, the arrayset, arraysets and root trees (+ metadata)
    assert len(writes) == 5, len(writes)


# --------------------------------------------------------------------------
# leaf deltas: only the span where two leaves differ is parsed
# --------------------------------------------------------------------------

_digests = st.binary(min_size=20, max_size=20)
_keys = st.one_of(
    st.integers(0, 10**6).map(lambda i: f"i:{i}"),
    st.text("ab 160", min_size=1, max_size=6).map(lambda s: f"s:{s}"),
)


def _expected(a: dict[str, bytes], b: dict[str, bytes]) -> tuple[dict, dict]:
    return (
        {k: v for k, v in a.items() if b.get(k) != v},
        {k: v for k, v in b.items() if a.get(k) != v},
    )


@settings(max_examples=300, deadline=None)
@given(
    base=st.dictionaries(_keys, _digests, max_size=40),
    changes=st.dictionaries(_keys, st.one_of(st.none(), _digests), max_size=6),
)
def test_leaf_delta_matches_full_comparison(base, changes):
    """Adds, removals and mutations anywhere in a leaf, incl. its first and last entries."""
    other = dict(base)
    for k, v in changes.items():
        if v is None:
            other.pop(k, None)
        else:
            other[k] = v
    ra, rb = serialize_links(base), serialize_links(other)
    assert _leaf_delta(ra, rb) == _expected(base, other)
    assert _leaf_delta(rb, ra) == _expected(other, base)


def test_leaf_delta_digest_holding_the_entry_mark():
    """A digest holding the gitlink mode bytes cannot mislead the span cut."""
    trap = b"\x00" * 6 + b"160000 i:1\x00" + b"\x01\x02\x03"
    assert len(trap) == 20
    base = {f"i:{i}": bytes([i]) * 20 for i in range(10, 30)}
    base["i:20"] = trap
    for k, v in (("i:21", b"\x07" * 20), ("i:20", b"\x08" * 20), ("i:195", b"\x09" * 20)):
        other = dict(base)
        other[k] = v
        ra, rb = serialize_links(base), serialize_links(other)
        assert _leaf_delta(ra, rb) == _expected(base, other)
