"""Cherry-pick, revert, purge and the look at one sample, through the API."""

from __future__ import annotations

import subprocess

import numpy as np
import pygit2
import pytest

from hangar_git import MergeConflictError, RawDataRecordKey, WriterLockError
from hangar_git.gitutil import branch_head


def v(x: float) -> np.ndarray:
    return np.array([x, x + 1, x + 2], dtype=np.int64)


def commit_on(repo, branch: str, change, message: str = "change") -> str:
    co = repo.checkout(write=True, branch=branch)
    try:
        change(co)
        return co.commit(message)
    finally:
        co.close()


def records(repo, commit: str) -> dict:
    """Every sample (as a tuple) and metadata value at ``commit``."""
    out: dict = {}
    with repo.checkout(commit=commit) as co:
        for name in co.arraysets:
            aset = co.arraysets[name]
            out[name] = {k: tuple(np.asarray(aset[k]).tolist()) for k in aset}
        out["meta"] = {k: co.metadata[k] for k in co.metadata}
    return out


def head(repo, branch: str = "master") -> str:
    return branch_head(repo.git_repository(), branch)


@pytest.fixture
def base(repo):
    """master: arrayset 'x' (int keys 0..9) and metadata 'm'; branch 'dev'."""

    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        with x:
            for i in range(10):
                x[i] = v(i)
        co.metadata["m"] = "base"

    commit_on(repo, "master", fill, "base")
    repo.create_branch("dev")
    return repo


# ---- cherry-pick ------------------------------------------------------------------
def test_cherry_pick_applies_only_that_commits_change(base):
    repo = base

    def first(co):
        co.arraysets["x"][100] = v(100)

    def second(co):
        co.arraysets["x"][3] = v(-3)
        del co.arraysets["x"][4]
        co.metadata["m"] = "dev"

    commit_on(repo, "dev", first, "add 100")
    picked = commit_on(repo, "dev", second, "change 3, drop 4")
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(7, v(70)), "master 7")
    before = head(repo)
    new = repo.cherry_pick(picked)
    assert new != before and head(repo) == new
    commit = repo.git_repository()[new]
    assert [str(p) for p in commit.parent_ids] == [before]
    assert f"(cherry picked from commit {picked})" in commit.message
    got = records(repo, new)
    assert got["x"][3] == (-3, -2, -1) and 4 not in got["x"]
    assert 100 not in got["x"]  # the earlier dev commit is not brought along
    assert got["x"][7] == (70, 71, 72) and got["meta"]["m"] == "dev"
    # the staging area follows: a new commit builds on the pick
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(8, v(80)))
    assert records(repo, head(repo))["x"][3] == (-3, -2, -1)
    assert repo.verify().ok


def test_cherry_pick_conflict_changes_nothing_and_strategies_resolve(base):
    repo = base
    picked = commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(2, v(20)))
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(2, v(-20)))
    before = head(repo)
    refs = {
        r: str(repo.git_repository().references[r].target) for r in repo.git_repository().references
    }
    with pytest.raises(MergeConflictError) as err:
        repo.cherry_pick(picked)
    assert err.value.conflicts["sample"]["x"].t3 == (RawDataRecordKey("x", 2),)
    assert head(repo) == before
    git = repo.git_repository()
    assert {r: str(git.references[r].target) for r in git.references} == refs
    assert repo.cherry_pick(picked, strategy="ours") == before  # ours: nothing changes
    theirs = repo.cherry_pick(picked, strategy="theirs")
    assert records(repo, theirs)["x"][2] == (20, 21, 22)


def test_cherry_pick_refuses_staged_changes_and_open_writer(base):
    repo = base
    picked = commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(50, v(50)))
    co = repo.checkout(write=True, branch="master")
    co.arraysets["x"][60] = v(60)
    with pytest.raises(WriterLockError):
        repo.cherry_pick(picked)
    co.close()
    with pytest.raises(ValueError, match="uncommitted changes"):
        repo.cherry_pick(picked)
    co = repo.checkout(write=True)
    assert co.arraysets["x"][60].tolist() == [60, 61, 62]  # the staged change is kept
    co.reset_staging_area()
    assert 50 in records(repo, repo.cherry_pick(picked))["x"]


def test_revert_of_a_change_undone_already_makes_no_commit(base):
    # Hypothesis found it: add x[30], remove it, then revert the add: nothing is
    # left to undo, so the head stays (and reverting "the result" would revert
    # the removal instead, which is why a caller must compare with the old head)
    repo = base
    added = commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(30, v(30)))
    removed = commit_on(repo, "master", lambda co: co.arraysets["x"].remove(30))
    before = records(repo, removed)
    assert repo.revert(added) == removed == head(repo)
    assert records(repo, head(repo)) == before


def test_cherry_pick_of_a_change_already_there_makes_no_commit(base):
    repo = base
    picked = commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(50, v(50)))
    # the staging area's branch is dev now: the change is there already
    assert repo.writer_branch == "dev" and repo.cherry_pick(picked) == picked
    first = repo.cherry_pick(picked, branch="master")
    assert first != picked and repo.writer_branch == "master"
    assert repo.cherry_pick(picked) == first == head(repo)
    with pytest.raises(LookupError):
        repo.cherry_pick("no-such-branch")
    with pytest.raises(ValueError, match="no branch named 'typo'"):
        repo.cherry_pick(picked, branch="typo")
    assert repo.writer_branch == "master"  # the staging area did not move
    with pytest.raises(ValueError, match="strategy"):
        repo.cherry_pick(picked, strategy="mine")


def test_cherry_pick_onto_another_branch(base):
    repo = base
    picked = commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(9, v(90)))
    new = repo.cherry_pick(picked, branch="dev")
    assert head(repo, "dev") == new and head(repo) == picked
    assert records(repo, new)["x"][9] == (90, 91, 92)


# ---- revert -----------------------------------------------------------------------
def test_revert_undoes_a_commit_keeping_later_changes(base):
    repo = base
    start = records(repo, head(repo))

    def change(co):
        co.arraysets["x"][1] = v(10)
        co.arraysets["x"][42] = v(42)
        del co.arraysets["x"][5]
        co.metadata["m"] = "changed"

    bad = commit_on(repo, "master", change, "bad")
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(8, v(80)), "later")
    new = repo.revert(bad)
    got = records(repo, new)
    assert got["x"][1] == start["x"][1] and 42 not in got["x"] and got["x"][5] == start["x"][5]
    assert got["meta"]["m"] == "base" and got["x"][8] == (80, 81, 82)
    assert repo.git_repository()[new].message.startswith('Revert "bad"')
    # a revert of the revert gives back the commit's records (with the later one)
    again = repo.revert(new)
    assert records(repo, again)["x"] == {**records(repo, bad)["x"], 8: (80, 81, 82)}


def test_revert_conflicts_where_a_later_commit_changed_the_key(base):
    repo = base
    bad = commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(1, v(10)))
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(1, v(11)))
    before = head(repo)
    with pytest.raises(MergeConflictError) as err:
        repo.revert(bad)
    assert err.value.conflicts["sample"]["x"].t3 == (RawDataRecordKey("x", 1),)
    assert head(repo) == before
    kept = repo.revert(bad, strategy="ours")
    assert kept == before
    undone = repo.revert(bad, strategy="theirs")
    assert records(repo, undone)["x"][1] == (1, 2, 3)


# ---- seeing a conflict ------------------------------------------------------------
def test_compare_sample_shows_both_sides_and_the_base(base):
    repo = base
    commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(2, np.array([2, 3, 9])))
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(2, np.array([0, 3, 4])))
    cmp = repo.compare_sample("master", "dev", "x", "2")
    assert cmp.key == 2 and cmp.base is not None
    assert cmp.base.array.tolist() == [2, 3, 4]
    assert cmp.a.array.tolist() == [0, 3, 4] and cmp.b.array.tolist() == [2, 3, 9]
    diff = cmp.between()
    assert (diff.differing, diff.size, diff.max_abs, diff.equal) == (2, 3, 5.0, False)
    text = "\n".join(cmp.lines())
    assert "master vs dev: 2 of 3 elements differ, max abs diff 5" in text
    assert "vs merge base: 1 of 3 elements differ, max abs diff 2" in text
    assert "shape (3,), dtype int64" in text
    with pytest.raises(LookupError):
        repo.compare_sample("master", "dev", "x", "nope")


def test_compare_sample_absent_side_and_shape_change(repo):
    def fill(co):
        a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.float32, variable_shape=True)
        a["k"] = np.zeros(4, np.float32)

    commit_on(repo, "master", fill)
    repo.create_branch("dev")
    commit_on(repo, "dev", lambda co: co.arraysets["a"].__setitem__("k", np.zeros(2, np.float32)))
    commit_on(repo, "master", lambda co: co.arraysets["a"].__delitem__("k"))
    cmp = repo.compare_sample("master", "dev", "a", "k")
    assert cmp.a.array is None and cmp.between() is None
    lines = "\n".join(cmp.lines())
    assert "absent" in lines and "vs merge base: removed" in lines
    assert "vs merge base: shapes differ" in lines


# ---- purge ------------------------------------------------------------------------
@pytest.fixture
def history(base):
    """master and dev with several commits touching the sample to purge."""
    repo = base

    def secret(co):
        co.arraysets["x"]["alice"] = np.array([7, 7, 7])
        co.metadata["alice-email"] = "a@example.org"

    commit_on(repo, "dev", secret, "alice joins")
    commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__("alice", v(777)), "alice 2")
    commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(3, v(33)), "dev 3")
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(4, v(44)), "master 4")
    repo.merge("merge dev", "master", "dev")
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(5, v(55)), "after")
    return repo


def _all_commits(repo) -> list[str]:
    git = repo.git_repository()
    walker = git.walk(None, pygit2.enums.SortMode.TOPOLOGICAL)
    for r in git.references:
        if r.startswith("refs/hangar/"):
            walker.push(git.references[r].target)
    return [str(c.id) for c in walker]


def test_purge_removes_the_key_from_all_history(history):
    repo = history
    git = repo.git_repository()
    old_commits = _all_commits(repo)
    before = {c: records(repo, c) for c in old_commits}
    with repo.checkout(commit=head(repo, "dev")) as co:
        secret_arr = co.arraysets["x"]["alice"]
    reader = repo.payload_store.reader()
    digests = {d for d, _ in reader.all_locations()}
    reader.close()
    dry = repo.purge("x", ["alice"], meta_keys=["alice-email"], dry_run=True)
    assert (
        dry.dry_run
        and dry.commits
        and set(dry.refs)
        == {
            "refs/hangar/heads/master",
            "refs/hangar/heads/dev",
        }
    )
    assert _all_commits(repo) == old_commits  # a dry run changes nothing
    report = repo.purge("x", ["alice"], meta_keys=["alice-email"])
    assert report.commits == dry.commits  # the dry run names the exact new ids
    assert head(repo) == report.refs["refs/hangar/heads/master"][1]
    new_commits = _all_commits(repo)
    assert len(new_commits) == len(old_commits)
    for old in old_commits:
        want = before[old]
        want["x"].pop("alice", None)
        want["meta"].pop("alice-email", None)
        assert records(repo, report.commits.get(old, old)) == want
    for c in new_commits:
        got = records(repo, c)
        assert "alice" not in got["x"] and "alice-email" not in got["meta"]
    # the commits before alice keep their ids; her payloads and old commits are gone
    base_commit = old_commits[-1]
    assert base_commit in new_commits and base_commit not in report.commits
    assert len(report.payloads) == 2 and not report.payloads_kept
    reader = repo.payload_store.reader()
    left = {d for d, _ in reader.all_locations()}
    reader.close()
    assert left == digests - report.payloads
    fresh = pygit2.Repository(git.path)
    for old in report.commits:
        assert fresh.get(old) is None, "an old commit is still in the object database"
    res = subprocess.run(
        ["git", "--git-dir", str(repo.git_repository().path), "reflog", "show", "--all"],
        capture_output=True,
        text=True,
    )
    assert not any(old[:7] in res.stdout for old in report.commits)
    assert repo.verify(full=True).ok
    assert secret_arr.tolist() == [777, 778, 779]
    text = report.summary()
    assert "refs/hangar/heads/master:" in text and "git push <remote>" in text


def test_purge_rewrites_tags_expires_reflogs_and_prints_their_force_push(history):
    repo = history
    git = repo.git_repository()
    tagged = str(git[repo.branch_commit("dev")].id)  # "dev 3": holds alice
    repo.create_tag("with-alice", tagged)
    plain = str(git[_all_commits(repo)[-1]].id)  # the first commit: no alice
    repo.create_tag("v0", plain)
    report = repo.purge("x", ["alice"], meta_keys=["alice-email"])
    moved = report.refs["refs/hangar/tags/with-alice"]
    assert moved[0] == tagged and moved[1] == report.commits[tagged]
    assert "refs/hangar/tags/v0" not in report.refs  # nothing to rewrite there
    assert repo.list_tags()["v0"] == plain
    got = records(repo, repo.list_tags()["with-alice"])
    assert "alice" not in got["x"] and "alice-email" not in got["meta"]
    assert got["x"][3] == (33, 34, 35)
    # git refuses to expire a ref with no reflog (a tag): the others still are
    assert any(line.startswith("expired the reflogs of") for line in report.git), report.git
    res = subprocess.run(
        ["git", "--git-dir", str(git.path), "reflog", "show", "--all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert not any(old[:7] in res.stdout for old in report.commits)
    fresh = pygit2.Repository(git.path)
    assert all(fresh.get(old) is None for old in report.commits)
    (push,) = report.push_commands()
    assert "+refs/hangar/tags/with-alice:refs/hangar/tags/with-alice" in push
    assert "+refs/hangar/heads/dev:refs/hangar/heads/dev" in push and "v0" not in push
    assert repo.verify(full=True).ok


def test_purge_follows_renames_of_the_arrayset_through_history(history):
    repo = history

    def unrelated(co):  # another arrayset, its own sample named alice: not purged
        y = co.arraysets.init_arrayset("y", prototype=v(0))
        y["alice"] = v(900)

    commit_on(repo, "master", unrelated, "y")
    repo.change_arrayset("x", branch="master", rename="people")
    commit_on(repo, "master", lambda co: co.arraysets["people"].__setitem__(6, v(66)), "six")
    # dev still calls it x, and gets a commit of its own
    commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(7, v(77)), "dev 7")
    old_commits = _all_commits(repo)
    report = repo.purge("people", ["alice"])
    assert report.renamed == ["x"]
    assert "purged under its names in history too: 'x'" in report.summary()
    for c in _all_commits(repo):
        got = records(repo, c)
        assert "alice" not in got.get("x", {}) and "alice" not in got.get("people", {}), c
    assert records(repo, head(repo))["y"]["alice"] == tuple(v(900).tolist())
    assert records(repo, head(repo, "dev"))["x"][7] == tuple(v(77).tolist())
    assert len(report.payloads) == 2 and not report.payloads_kept  # both of her values
    reader = repo.payload_store.reader()
    try:
        assert not any(reader.contains(d) for d in report.payloads)
    finally:
        reader.close()
    assert set(report.commits) < set(old_commits) and repo.verify(full=True).ok


def test_purge_does_not_follow_an_arrayset_replaced_by_another(history):
    repo = history

    def replace(co):  # x removed and z made in one commit: other samples, not a rename
        co.arraysets.remove_aset("x")
        z = co.arraysets.init_arrayset("z", prototype=v(0))
        z["alice"] = v(500)

    commit_on(repo, "master", replace, "replace")
    before = records(repo, head(repo, "dev"))
    report = repo.purge("z", ["alice"])
    assert report.renamed == [] and len(report.payloads) == 1
    assert "alice" not in records(repo, head(repo)).get("z", {})
    assert records(repo, head(repo, "dev")) == before  # x's alice is another sample


def test_purge_dry_run_lists_the_commits_and_payloads(history):
    repo = history
    before = _all_commits(repo)
    dry = repo.purge("x", ["alice"], dry_run=True)
    text = dry.summary()
    assert len(dry.commits) >= 4 and len(dry.payloads) == 2
    for old, new in dry.commits.items():
        assert f"  {old} -> {new}" in text
    for digest in dry.payloads:
        assert f"  payload {digest.hex()}" in text
    assert _all_commits(repo) == before
    done = repo.purge("x", ["alice"]).summary()
    assert " -> " in done and not any(d.hex() in done for d in dry.payloads)  # refs only


def test_purge_of_metadata_alone(base):
    repo = base
    commit_on(repo, "master", lambda co: co.metadata.__setitem__("secret", "s"), "secret")
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__(5, v(50)), "after")
    report = repo.purge(None, meta_keys=["secret"])
    assert len(report.commits) == 2 and not report.payloads
    got = records(repo, repo.branch_commit("master"))
    assert "secret" not in got["meta"] and got["x"][5] == (50, 51, 52)


def test_purge_keeps_a_payload_other_samples_hold(base):
    repo = base
    commit_on(repo, "master", lambda co: co.arraysets["x"].__setitem__("copy", v(3)))
    report = repo.purge("x", ["copy"])
    assert report.payloads and report.payloads == report.payloads_kept
    assert records(repo, head(repo))["x"][3] == (3, 4, 5)


def test_purge_refuses_staged_changes_and_bad_input(history):
    repo = history
    co = repo.checkout(write=True)
    co.arraysets["x"][99] = v(99)
    with pytest.raises(WriterLockError):  # an open write checkout: its journal is not touched
        repo.purge("x", ["alice"])
    co.close()
    before = _all_commits(repo)
    with pytest.raises(ValueError, match="uncommitted changes"):
        repo.purge("x", ["alice"])
    co = repo.checkout(write=True)
    co.reset_staging_area()
    with pytest.raises(ValueError, match="nothing to purge"):
        repo.purge("x", [])
    with pytest.raises(ValueError, match="list"):
        repo.purge("x", "alice")
    with pytest.raises(ValueError):
        repo.purge("x", ["no/slash"])
    with pytest.raises(ValueError, match="arrayset"):
        repo.purge(None, ["alice"])
    assert _all_commits(repo) == before
    nothing = repo.purge("x", ["nobody"])
    assert not nothing.commits and not nothing.refs and _all_commits(repo) == before


def test_compare_sample_reads_through_a_checkout_when_a_payload_is_not_here(base):
    from hangar_git import IntegrityError
    from hangar_git.store import array_digest

    repo = base
    commit_on(repo, "dev", lambda co: co.arraysets["x"].__setitem__(2, np.array([5, 5, 5])))
    writer = repo.payload_store.writer()
    try:
        writer.remove([array_digest(np.array([5, 5, 5]))])
    finally:
        writer.close()
    # the checkout says why it cannot be read, rather than "absent"
    with pytest.raises(IntegrityError, match="missing"):
        repo.compare_sample("master", "dev", "x", 2)


def test_purge_removes_the_payloads_from_a_data_remote(history, tmp_path):
    import warnings

    from hangar_git import Repository

    repo = history
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    data = tmp_path / "data"
    repo.remote.add("origin", str(bare), data=str(data))
    repo.remote.push("origin", "master")
    remote = repo.remote.fetcher("origin").remote
    on_remote = {d for idx in remote.refresh().values() for d in idx.digests}
    with pytest.raises(ValueError, match="no remote"):
        repo.purge("x", ["alice"], data_remote="nowhere")  # refused before any change
    dry = repo.purge("x", ["alice"], data_remote="origin", dry_run=True)
    assert dry.data_remote.removed == 2 and dry.payloads <= on_remote
    report = repo.purge("x", ["alice"], data_remote="origin")
    assert report.data_remote.removed == 2 and len(report.data_remote.packs) == 1
    assert "data remote 'origin': removed 2 payloads" in report.summary()
    left = {
        d for idx in repo.remote.fetcher("origin").remote.refresh().values() for d in idx.digests
    }
    assert left == on_remote - report.payloads
    # the force-push the report prints rewrites the records; a clone reads every
    # other sample from the rewritten data remote
    for cmd in report.push_commands():
        subprocess.run(cmd.split(), cwd=repo.path, check=True, capture_output=True)
    other = tmp_path / "other"
    other.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clone = Repository(other, exists=False)
    clone.clone("B", "b@example.org", str(bare), data=str(data))
    clone.remote.fetch_data("origin", branch="master")
    assert records(clone, head(clone)) == records(repo, head(repo))
    assert "alice" not in records(clone, head(clone))["x"]


# ---- schema evolution -------------------------------------------------------------
@pytest.fixture
def images(repo):
    def fill(co):
        a = co.arraysets.init_arrayset("img", shape=(2, 3), dtype=np.int16)
        for i in range(5):
            a[i] = np.full((2, 3), i, np.int16)

    first = commit_on(repo, "master", fill, "images")
    repo.first = first
    return repo


def test_fixed_shape_made_variable_and_maximum_raised(images):
    repo = images
    new = repo.change_arrayset("img", variable_shape=True, shape=(4, 3))
    with repo.checkout(commit=new) as co:
        a = co.arraysets["img"]
        assert a.variable_shape and a.shape == (4, 3) and a.dtype == np.int16
        assert a[3].tolist() == [[3, 3, 3]] * 2
    # the old commit keeps reading with its own schema
    with repo.checkout(commit=repo.first) as co:
        assert not co.arraysets["img"].variable_shape and co.arraysets["img"].shape == (2, 3)
    commit_on(repo, "master", lambda co: co.arraysets["img"].__setitem__(9, np.ones((4, 1), "i2")))
    raised = repo.change_arrayset("img", shape=(8, 8))
    with repo.checkout(commit=raised) as co:
        assert co.arraysets["img"].shape == (8, 8) and co.arraysets["img"][9].shape == (4, 1)
    # a diff reports the schema change as a mutation of the arrayset
    with repo.checkout(commit=repo.first) as co:
        changes, _ = co.diff.commit(raised)
    assert "img" in changes.dev.aset.mutations
    assert repo.verify().ok


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"shape": (3, 3)}, "fixed-shape arrayset cannot change"),
        ({"variable_shape": True, "shape": (1, 3)}, "can only be raised"),
        ({"variable_shape": True, "shape": (4,)}, "rank"),
        ({}, "nothing to change"),
        ({"rename": "bad/name"}, "bad/name"),
    ],
)
def test_schema_changes_some_sample_could_not_fit_are_refused(images, change, match):
    repo = images
    before = head(repo)
    with pytest.raises(ValueError, match=match):
        repo.change_arrayset("img", **change)
    assert head(repo) == before
    with pytest.raises(KeyError):
        repo.change_arrayset("nope", variable_shape=True)


def test_variable_cannot_be_made_fixed(images):
    repo = images
    repo.change_arrayset("img", variable_shape=True)
    with pytest.raises(ValueError, match="cannot be made fixed"):
        repo.change_arrayset("img", variable_shape=False)


def test_rename_an_arrayset(images):
    repo = images
    commit_on(repo, "master", lambda co: co.arraysets.init_arrayset("other", prototype=v(0)))
    with pytest.raises(ValueError, match="exists already"):
        repo.change_arrayset("img", rename="other")
    new = repo.change_arrayset("img", rename="pictures")
    with repo.checkout(commit=new) as co:
        assert "img" not in co.arraysets and co.arraysets["pictures"][4].max() == 4
    with repo.checkout(commit=repo.first) as co:
        assert "img" in co.arraysets


def test_dtype_change_casts_safely_and_refuses_lossy_casts(images):
    repo = images
    before = head(repo)
    with pytest.raises(ValueError, match="can lose values"):
        repo.change_arrayset("img", dtype=np.int8)
    assert head(repo) == before and repo.staged_state().diff.empty
    with pytest.raises(ValueError, match="already"):
        repo.change_arrayset("img", dtype=np.int16)
    new = repo.change_arrayset("img", dtype=np.float64)
    with repo.checkout(commit=new) as co:
        a = co.arraysets["img"]
        assert a.dtype == np.float64 and a[2].dtype == np.float64 and a[2][0, 0] == 2.0
    with repo.checkout(commit=repo.first) as co:
        assert co.arraysets["img"][2].dtype == np.int16
    forced = repo.change_arrayset("img", dtype=np.uint8, force=True)
    with repo.checkout(commit=forced) as co:
        assert co.arraysets["img"][4].tolist() == [[4, 4, 4]] * 2
    assert repo.verify().ok


def test_merge_conflicts_when_a_schema_change_meets_added_samples(images):
    repo = images
    repo.create_branch("dev")
    repo.change_arrayset("img", dtype=np.float32, branch="master")
    commit_on(repo, "dev", lambda co: co.arraysets["img"].__setitem__(7, np.ones((2, 3), "i2")))
    before = head(repo)
    with pytest.raises(MergeConflictError) as err:
        repo.merge("merge", "master", "dev")
    assert err.value.conflicts["aset"].t3 == ("img",)
    with pytest.raises(MergeConflictError):  # a strategy never resolves it
        repo.merge("merge", "master", "dev", strategy="theirs")
    assert head(repo) == before
