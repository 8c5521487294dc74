"""Diffs: the staging area, and three-way diffs against branches and commits."""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git import ClosedError, RawDataRecordKey
from hangar_git.diff import BranchDiff, Changes, ConflictRecords, DiffRecords
from hangar_git.diffref import DiffChanges

EMPTY = Changes((), (), ())
NO_CONFLICT = ConflictRecords((), (), (), (), False)


def v(x: int) -> np.ndarray:
    return np.array([x, -x], dtype=np.int64)


def commit_on(repo, branch, change, message="change"):
    co = repo.checkout(write=True, branch=branch)
    try:
        change(co)
        return co.commit(message)
    finally:
        co.close()


@pytest.fixture
def base(repo):
    def fill(co):
        x = co.arraysets.init_arrayset("x", prototype=v(0))
        with x:
            for i in range(6):
                x[i] = v(i)
        y = co.arraysets.init_arrayset("y", prototype=v(0))
        y["s"] = v(1)
        co.metadata["m"] = "base"

    commit_on(repo, "master", fill, "base")
    repo.create_branch("dev")
    return repo


# --------------------------------------------------------------------------
# staged diff and status
# --------------------------------------------------------------------------
def test_staged_diff_and_status(base):
    co = base.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    assert co.diff.staged().empty
    x = co.arraysets["x"]
    x[0] = v(100)  # mutation
    x[10] = v(10)  # addition
    del x[1]  # removal
    x[2] = v(2)  # same value: no change
    co.metadata["m"] = "new"
    co.metadata["k"] = "added"
    co.arraysets.remove_aset("y")
    z = co.arraysets.init_arrayset("z", prototype=v(0))
    z[7] = v(7)
    d = co.diff.staged()
    assert co.diff.status() == "DIRTY"
    assert d.aset == Changes(("z",), ("y",), ())
    assert d.meta == Changes(("k",), (), ("m",))
    assert d.samples["x"] == Changes((10,), (1,), (0,))
    assert d.samples["y"] == Changes((), ("s",), ())
    assert d.samples["z"] == Changes((7,), (), ())
    co.close()


def test_staged_schema_mutation(base):
    co = base.checkout(write=True)
    co.arraysets.remove_aset("y")
    co.arraysets.init_arrayset("y", prototype=np.zeros(3, np.float32))
    assert co.diff.staged().aset == Changes((), (), ("y",))
    co.close()


def test_changes_that_cancel_out_are_clean(base):
    co = base.checkout(write=True)
    co.arraysets["x"][99] = v(99)
    del co.arraysets["x"][99]
    co.metadata["tmp"] = "1"
    del co.metadata["tmp"]
    assert co.diff.status() == "CLEAN"
    co.close()


# --------------------------------------------------------------------------
# branch and commit diffs
# --------------------------------------------------------------------------
def _diverge(repo):
    def on_dev(co):
        x = co.arraysets["x"]
        x[0] = v(-100)
        x[20] = v(20)
        del x[3]
        co.metadata["d"] = "dev"
        w = co.arraysets.init_arrayset("w", prototype=v(0))
        w[1] = v(1)

    def on_master(co):
        co.arraysets["x"][1] = v(-1)
        co.metadata["m"] = "master"
        co.arraysets.remove_aset("y")

    dev = commit_on(repo, "dev", on_dev)
    master = commit_on(repo, "master", on_master)
    return master, dev


def test_branch_diff_has_both_sides_incoming_and_conflicts(base):
    base_sha = base.log(return_contents=True)["head"]
    _, dev = _diverge(base)
    co = base.checkout()
    result = co.diff.branch("dev")
    assert isinstance(result, tuple) and len(result) == 2
    changes, conflicts = result
    # the reference's dict (see test_hangar02_compat), with the plain view kept
    assert isinstance(changes, DiffChanges) and isinstance(changes.records, BranchDiff)
    assert changes.base == base_sha and changes.master is changes.records.master
    assert changes.master == DiffRecords(
        Changes((), ("y",), ()),
        Changes((), (), ("m",)),
        {"x": Changes((), (), (1,)), "y": Changes((), ("s",), ())},
    )
    assert changes.dev == DiffRecords(
        Changes(("w",), (), ()),
        Changes(("d",), (), ()),
        {"x": Changes((20,), (3,), (0,)), "w": Changes((1,), (), ())},
    )
    assert changes.incoming == changes.dev  # dev's changes touch nothing master changed
    assert conflicts == {
        "aset": NO_CONFLICT,
        "meta": NO_CONFLICT,
        "sample": {"w": NO_CONFLICT, "x": NO_CONFLICT, "y": NO_CONFLICT},  # every arrayset
        "conflict_found": False,
    }
    # the same through a commit hash (or a unique prefix of it)
    assert co.diff.commit(dev[:10]) == result
    co.close()


def test_diff_from_the_other_side(base):
    _diverge(base)
    co = base.checkout(branch="dev")
    changes, conflicts = co.diff.branch("master")
    co.close()
    assert changes.incoming.aset == Changes((), ("y",), ())
    assert changes.incoming.samples == {"x": Changes((), (), (1,)), "y": Changes((), ("s",), ())}
    assert not conflicts["conflict_found"]


def test_incoming_leaves_out_what_master_already_has_and_conflicts(base):
    def on_dev(co):
        x = co.arraysets["x"]
        x[0] = v(7)  # also done on master
        x[1] = v(8)  # conflicts with master
        x[2] = v(9)  # dev only
        co.metadata["m"] = "dev"

    def on_master(co):
        x = co.arraysets["x"]
        x[0] = v(7)
        x[1] = v(6)
        co.metadata["m"] = "dev"

    commit_on(base, "dev", on_dev)
    commit_on(base, "master", on_master)
    co = base.checkout()
    changes, conflicts = co.diff.branch("dev")
    co.close()
    assert changes.dev.samples["x"] == Changes((), (), (0, 1, 2))
    assert changes.incoming.samples["x"] == Changes((), (), (2,))
    assert changes.incoming.meta == EMPTY
    assert conflicts["sample"]["x"] == ConflictRecords(
        (), (), (), (RawDataRecordKey("x", 1),), True
    )
    assert conflicts["meta"] == NO_CONFLICT


def test_fast_forward_diff(base):
    commit_on(base, "dev", lambda co: co.arraysets["x"].add(v(50), 50))
    co = base.checkout()
    changes, conflicts = co.diff.branch("dev")
    assert changes.base == co.commit_hash
    co.close()
    assert changes.master == DiffRecords(EMPTY, EMPTY, {})
    assert changes.incoming.samples == {"x": Changes((50,), (), ())}
    assert conflicts["sample"] == {"x": NO_CONFLICT, "y": NO_CONFLICT}
    assert not conflicts["conflict_found"]


def test_diff_against_an_ancestor_brings_nothing(base):
    commit_on(base, "master", lambda co: co.metadata.add("n", "1"))
    co = base.checkout()
    changes, _ = co.diff.branch("dev")
    co.close()
    assert changes.dev == DiffRecords(EMPTY, EMPTY, {})
    assert changes.incoming == DiffRecords(EMPTY, EMPTY, {})
    assert changes.master.meta == Changes(("n",), (), ())


def test_diff_errors(base):
    co = base.checkout()
    with pytest.raises(ValueError):
        co.diff.branch("no-such-branch")
    with pytest.raises(ValueError):
        co.diff.branch("bad name")
    with pytest.raises(ValueError):
        co.diff.commit("0123456789abcdef")
    with pytest.raises(ValueError):
        co.diff.commit("not-a-hash")
    d = co.diff
    co.close()
    with pytest.raises(ClosedError):
        d.branch("dev")


# --------------------------------------------------------------------------
# write checkouts: staged changes count on the master side
# --------------------------------------------------------------------------
def test_write_checkout_diff_includes_staged_changes(base):
    commit_on(
        base, "dev", lambda co: (co.arraysets["x"].add(v(-4), 4), co.metadata.add("m", "dev"))
    )
    co = base.checkout(write=True)
    head = co.commit_hash
    _, conflicts = co.diff.branch("dev")
    assert not conflicts["conflict_found"]
    co.arraysets["x"][4] = v(444)  # staged: conflicts with dev's change
    co.metadata["m"] = "dev"  # staged: the same as dev's change
    co.metadata["local"] = "1"
    changes, conflicts = co.diff.branch("dev")
    assert conflicts["sample"]["x"] == ConflictRecords(
        (), (), (), (RawDataRecordKey("x", 4),), True
    )
    assert conflicts["meta"] == NO_CONFLICT
    assert changes.master.samples["x"] == Changes((), (), (4,))
    assert changes.master.meta == Changes(("local",), (), ("m",))
    assert changes.incoming.meta == EMPTY and changes.incoming.samples == {}
    # the diff committed nothing and kept the staged changes
    assert co.commit_hash == head and co.diff.status() == "DIRTY"
    assert co.diff.staged().samples["x"] == Changes((), (), (4,))
    co.arraysets["x"][4] = v(-4)  # now the same as dev: no conflict
    _, conflicts = co.diff.branch("dev")
    assert not conflicts["conflict_found"]
    co.close()


def test_write_checkout_diff_with_staged_arrayset_changes(base):
    commit_on(base, "dev", lambda co: co.arraysets["y"].add(v(2), "t"))
    co = base.checkout(write=True)
    co.arraysets.remove_aset("y")
    changes, conflicts = co.diff.branch("dev")
    assert changes.master.aset == Changes((), ("y",), ())
    assert conflicts["aset"] == ConflictRecords((), ("y",), (), (), True)
    co.close()


# --------------------------------------------------------------------------
# Repository.diff: two commits, no checkout
# --------------------------------------------------------------------------
def test_repository_diff_is_the_checkout_diff_without_a_checkout(base, monkeypatch):
    from hangar_git import checkout as checkout_module
    from hangar_git.store import PackStore

    master, dev = _diverge(base)
    base.create_tag("v1", dev)
    co = base.checkout()
    want = co.diff.branch("dev")
    co.close()

    def refused(*args, **kwargs):
        raise AssertionError("a commit-to-commit diff opened a checkout or the payload store")

    monkeypatch.setattr(checkout_module.Checkout, "__init__", refused)
    monkeypatch.setattr(PackStore, "reader", refused)
    got = base.diff("master", "dev")
    assert got == want and got[0].records == want[0].records
    assert got[0].dev.samples["x"] == Changes((20,), (3,), (0,))
    # any STARTPOINT: a commit hash prefix, a tag
    assert base.diff(master[:10], "v1") == want
    changes, _ = base.diff("dev", "master")  # the other way round
    assert changes.master == want[0].dev and changes.dev == want[0].master


def test_repository_diff_errors(base):
    from hangar_git.refs import StartpointError

    with pytest.raises(StartpointError):
        base.diff("master", "no-such-branch")
    with pytest.raises(LookupError):
        base.diff("0123456789abcdef", "master")
    with pytest.raises(TypeError):
        base.diff("master", None)  # type: ignore[arg-type]


def test_diff_values_come_from_the_change_logs(base, monkeypatch):
    """The digests of the changes are those the change logs gave the diff: no
    record leaf is read for them, and they equal what the trees say."""
    from hangar_git.naming import encode_key
    from hangar_git.records import changelog
    from hangar_git.records.view import CommitView

    def on_dev(co):
        x = co.arraysets["x"]
        x[0], x[20] = v(-100), v(20)
        del x[3]

    commit_on(base, "dev", on_dev)
    commit_on(base, "master", lambda co: co.arraysets["x"].__setitem__(1, v(-1)))
    looked_up: list[str] = []
    real_get = CommitView.get

    def get(self, name, enc):
        looked_up.append(enc)
        return real_get(self, name, enc)

    monkeypatch.setattr(CommitView, "get", get)
    got = base.diff("master", "dev")
    assert looked_up == []
    monkeypatch.setattr(changelog, "USE_LOGS", False)  # walk the trees instead
    want = base.diff("master", "dev")
    assert sorted(looked_up) == sorted(encode_key(k) for k in (0, 1, 3, 20))
    assert got == want
    dev_x = got[0]["samples"]["dev"]["x"]
    assert set(dev_x["removals"]) == {RawDataRecordKey("x", 3)}
    mutated = dev_x["mutations"][RawDataRecordKey("x", 0)]
    assert isinstance(mutated, str) and len(bytes.fromhex(mutated)) > 0


def test_changes_and_conflicts_of_every_triple_follow_the_rules():
    # every (base, master, dev) of absent and three values: each side's change
    # kind, the conflict kind and what a merge brings, as the module states them
    import itertools

    from hangar_git.diff import _triple_changes, conflict_kind

    vals = (None, b"x", b"y", b"z")
    triples = {f"i:{n}": t for n, t in enumerate(itertools.product(vals, repeat=3))}
    for incoming in (True, False):
        on_master, on_dev, inc, conf = _triple_changes(triples, incoming=incoming)
        want: dict[str, list] = {}
        for n, (b, m, d) in enumerate(triples.values()):
            for side, new in (("m", m), ("d", d)):
                if new != b:
                    want.setdefault(
                        side + ("add" if b is None else "rem" if new is None else "mut"), []
                    ).append(n)
            kind = conflict_kind(b, m, d)
            if kind is not None:
                want.setdefault(kind, []).append(n)
            elif incoming and d != b and m != d:
                want.setdefault(
                    "i" + ("add" if m is None else "rem" if d is None else "mut"), []
                ).append(n)
        got = {}
        for prefix, ch in (("m", on_master), ("d", on_dev), ("i", inc)):
            for kind, keys in zip(("add", "rem", "mut"), ch, strict=True):
                if keys:
                    got[prefix + kind] = list(keys)
        got.update({k: sorted(v) for k, v in conf.items() if v})
        assert got == want


def test_keys_sort_ints_by_value_then_strs_and_huge_ints_as_before():
    from hangar_git.diff import key_order, sorted_keys

    for keys in (
        [3, "b", 10, "a", 0, "B"],
        [10**20, 99999999999999999999, 5, 10**25 + 1],
        ["z", "a"],
        [],
        [7, 1],
    ):
        assert sorted_keys(list(keys)) == tuple(sorted(keys, key=key_order))
