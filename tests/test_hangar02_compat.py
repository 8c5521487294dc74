"""Code written against Hangar 0.2 runs unchanged (issue #19).

Each part of the issue in turn: handles that go stale when their checkout
closes, the ``with`` forms of readers and metadata, diff results in the
reference's shape (with ``unchanged`` computed only when read), the smaller
behaviours, and the reference tutorial's three-way merge and conflict
sections with their exact structures.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

import hangar_git.gitutil as gitutil
import hangar_git.records.staging as staging
import hangar_git.records.validate as validate
from hangar_git import (
    ClosedError,
    ConflictRecords,
    HangarError,
    MetadataRecordKey,
    RawDataRecordKey,
    Repository,
)
from hangar_git.arrayset import ArraysetDataReader, ArraysetDataWriter
from hangar_git.records.snapshot import clear_leaf_cache
from hangar_git.records.view import CommitView
from hangar_git.schema import ArraysetSchema
from hangar_git.store import PackReader, payload_from_array

NO_CONFLICT = ConflictRecords((), (), (), (), False)


def digest(arr: np.ndarray) -> str:
    return payload_from_array(np.ascontiguousarray(arr)).digest.hex()


def d(additions=None, removals=None, mutations=None, unchanged=None) -> dict:
    """A ``D`` of the reference's shape."""
    return {
        "additions": additions or {},
        "removals": removals or {},
        "mutations": mutations or {},
        "unchanged": unchanged or {},
    }


# --------------------------------------------------------------------------
# 1. stale handles
# --------------------------------------------------------------------------
def test_closed_error_is_caught_as_reference_and_permission_error():
    for cls in (ReferenceError, PermissionError, HangarError, ClosedError):
        with pytest.raises(cls):
            raise ClosedError("closed")


@pytest.mark.parametrize("write", [False, True])
def test_every_use_of_a_stale_handle_raises_reference_error(written_repo, write):
    co = written_repo.checkout(write=write)
    asets, aset, meta, diff = co.arraysets, co.arraysets["aset"], co.metadata, co.diff
    get = aset.get  # a bound method taken while open
    assert aset.name == "aset" and get("1").shape == (5, 7)
    co.close()
    uses = {
        "aset.name": lambda: aset.name,
        "aset.dtype": lambda: aset.dtype,
        "aset.get": lambda: aset.get,
        "aset[k]": lambda: aset["1"],
        "len(aset)": lambda: len(aset),
        "k in aset": lambda: "1" in aset,
        "with aset": lambda: aset.__enter__(),
        "bound get": lambda: get("1"),
        "asets.iswriteable": lambda: asets.iswriteable,
        "asets.keys": lambda: asets.keys(),
        "asets[name]": lambda: asets["aset"],
        "iter(asets)": lambda: iter(asets),
        "meta.get": lambda: meta.get,
        "meta[k]": lambda: meta["about"],
        "len(meta)": lambda: len(meta),
        "diff.branch": lambda: diff.branch,
        "co.arraysets": lambda: co.arraysets,
        "co.metadata": lambda: co.metadata,
        "pickle": lambda: pickle.dumps(aset),
    }
    for what, use in uses.items():
        with pytest.raises(ReferenceError):
            use()
            pytest.fail(what)
    # still printable (tracebacks), still the same class for isinstance checks
    assert "closed" in repr(aset) and "closed" in repr(asets)
    assert isinstance(aset, ArraysetDataWriter if write else ArraysetDataReader)
    assert type(aset).__name__ == ("ArraysetDataWriter" if write else "ArraysetDataReader")


def test_a_closed_writer_refuses_commit_and_its_handles_as_the_reference_does(written_repo):
    co = written_repo.checkout(write=True)
    co.metadata["k"] = "v"
    co.close()
    for use in (lambda: co.arraysets, lambda: co.metadata, lambda: co.commit("no")):
        with pytest.raises(PermissionError):
            use()
        with pytest.raises(ReferenceError):
            use()


def test_reset_staging_area_closes_the_checkout_and_its_handles(written_repo):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    aset["new"] = np.zeros((5, 7), np.float32)
    co.reset_staging_area()  # closes, as the reference's text says
    with pytest.raises(ReferenceError):
        aset.name  # noqa: B018
    with pytest.raises(PermissionError):
        co.arraysets  # noqa: B018


def test_handles_stay_valid_across_commits(written_repo):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    aset["n"] = np.ones((5, 7), np.float32)
    co.commit("one")
    assert aset.name == "aset" and "n" in aset and co.arraysets["aset"] is aset
    co.close()


# --------------------------------------------------------------------------
# 2. the context manager forms
# --------------------------------------------------------------------------
def _count_lookups(monkeypatch) -> list[int]:
    """Count the reader's index look-ups (of a list of digests, or joined:
    ``lookup_joined`` is a ``lookup_placed``; or at the places kept for them,
    ``places_at``)."""
    calls = [0]
    for name in ("lookup", "lookup_placed", "places_at"):
        real = getattr(PackReader, name)

        def counting(self, digests, *args, real=real):
            calls[0] += 1
            return real(self, digests, *args)

        monkeypatch.setattr(PackReader, name, counting)
    return calls


def test_with_reader_arrayset_resolves_the_whole_arrayset_once(repo, monkeypatch):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.int64)
    a.add_stacked(np.arange(9000, dtype=np.int64).reshape(3000, 3), range(3000))
    co.commit("3000 samples: a fanned-out samples tree")
    co.close()
    keys = list(range(0, 3000, 37))  # spread over many leaves
    calls = _count_lookups(monkeypatch)

    rc = repo.checkout()
    aset = rc.arraysets["a"]
    with aset:
        got = [aset.get(k) for k in keys]
    assert calls[0] == 1  # one vectorised look-up for the whole arrayset
    assert [g.tolist() for g in got] == [[3 * k, 3 * k + 1, 3 * k + 2] for k in keys]
    rc.close()

    calls[0] = 0
    rc = repo.checkout()
    aset = rc.arraysets["a"]
    assert [aset.get(k).tolist() for k in keys] == [g.tolist() for g in got]
    # the naked form looks up a leaf at a time; with the records cached here
    # (the commit kept them), only until its third read
    assert calls[0] == 3
    rc.close()

    for f in (Path(repo.path) / ".git" / "hangar" / "keys").iterdir():
        f.unlink()  # records committed elsewhere: not cached here
    clear_leaf_cache()
    calls[0] = 0
    rc = repo.checkout()
    aset = rc.arraysets["a"]
    assert [aset.get(k).tolist() for k in keys] == [g.tolist() for g in got]
    assert calls[0] > 10  # a leaf at a time
    rc.close()


def _count_fsyncs(monkeypatch) -> list[int]:
    calls = [0]
    real = staging.fsync_fd

    def counting(fd):
        calls[0] += 1
        return real(fd)

    monkeypatch.setattr(staging, "fsync_fd", counting)
    return calls


def test_with_metadata_batches_writes_and_combines_with_an_arrayset(written_repo, monkeypatch):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    calls = _count_fsyncs(monkeypatch)
    for i in range(20):
        co.metadata[f"naked{i}"] = str(i)
    assert calls[0] == 20  # one durable write per add
    calls[0] = 0
    with co.metadata:
        for i in range(20):
            co.metadata[f"alone{i}"] = str(i)
    assert calls[0] == 1  # the block: one durable write
    calls[0] = 0
    with aset, co.metadata:
        for i in range(20):
            co.metadata[f"k{i}"] = str(i)
            aset[f"s{i}"] = np.full((5, 7), i, np.float32)
        assert co.metadata["k3"] == "3" and aset["s3"][0, 0] == 3
    assert calls[0] == 1  # the whole block: one durable write
    co.close()
    rc = written_repo.checkout(branch="master")
    assert "k0" not in rc.metadata  # nothing committed yet: staged only
    rc.close()
    co = written_repo.checkout(write=True)
    assert co.metadata["k19"] == "19" and co.arraysets["aset"]["s19"][0, 0] == 19
    co.close()


def test_with_on_read_metadata_and_read_arrayset(written_repo):
    rc = written_repo.checkout()
    aset = rc.arraysets["aset"]
    with aset, rc.metadata as meta:
        assert meta is rc.metadata and meta["about"] == "fixture"
        assert aset["3"][0, 0] == 3
    with rc.arraysets as asets:
        assert asets["aset"] is aset
    rc.close()


# --------------------------------------------------------------------------
# 3. diffs in the reference's shape
# --------------------------------------------------------------------------
def _v(x: int) -> np.ndarray:
    return np.array([x, -x], dtype=np.int64)


def test_diff_branch_has_the_reference_shape(repo):
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", prototype=_v(0))
    for i in range(4):
        x[i] = _v(i)
    co.metadata["m"] = "base"
    co.commit("base")
    repo.create_branch("dev")
    x[0] = _v(100)  # master mutates 0, removes 1, adds 9
    del x[1]
    x[9] = _v(9)
    co.metadata["m"] = "master"
    co.commit("master")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["x"][2] = _v(200)  # dev mutates 2, adds arrayset y
    y = co.arraysets.init_arrayset("y", prototype=_v(0))
    y["a"] = _v(5)
    co.metadata["d"] = "dev"
    co.commit("dev")
    co.close()

    rc = repo.checkout()
    changes, conflicts = rc.diff.branch("dev")
    schema = ArraysetSchema(np.dtype(np.int64), (2,), False, True)
    k = RawDataRecordKey
    m = MetadataRecordKey
    assert changes == {
        "metadata": {
            "master": d(mutations={m("m"): "master"}),
            "dev": d(additions={m("d"): "dev"}, unchanged={m("m"): "base"}),
        },
        "arraysets": {
            "master": d(unchanged={"x": schema}),
            "dev": d(additions={"y": schema}, unchanged={"x": schema}),
        },
        "samples": {
            "master": {
                "x": d(
                    additions={k("x", 9): digest(_v(9))},
                    removals={k("x", 1): digest(_v(1))},
                    mutations={k("x", 0): digest(_v(100))},
                    unchanged={k("x", 2): digest(_v(2)), k("x", 3): digest(_v(3))},
                )
            },
            "dev": {
                "x": d(
                    mutations={k("x", 2): digest(_v(200))},
                    unchanged={k("x", i): digest(_v(i)) for i in (0, 1, 3)},
                ),
                "y": d(additions={k("y", "a"): digest(_v(5))}),
            },
        },
    }
    assert conflicts == {
        "aset": NO_CONFLICT,
        "meta": NO_CONFLICT,
        "sample": {"x": NO_CONFLICT, "y": NO_CONFLICT},
        "conflict_found": False,
    }
    # the plainer view is kept
    assert changes.records.dev.samples["x"].mutations == (2,)
    assert changes.incoming.meta.additions == ("d",)
    unchanged = changes["samples"]["master"]["x"]["unchanged"]
    assert isinstance(unchanged, Mapping)
    with pytest.raises(TypeError):
        unchanged[k("x", 2)] = "no"  # read-only
    rc.close()


def test_fast_forward_diff_and_diff_commit_have_the_reference_shape(written_repo):
    """A linear history: the merge base is this side, so 'master' holds no
    change and 'dev' all of them (as Hangar 0.2.0 diffed a fast-forward);
    ``diff.commit`` gives what ``diff.branch`` gives for the same head."""
    written_repo.create_branch("dev")
    co = written_repo.checkout(write=True, branch="dev")
    co.arraysets["aset"]["new"] = np.ones((5, 7), np.float32)
    del co.arraysets["aset"]["0"]
    co.metadata["about"] = "dev"
    dev_head = co.commit("dev")
    co.close()
    k = RawDataRecordKey
    rc = written_repo.checkout()
    changes, conflicts = rc.diff.branch("dev")
    assert set(changes) == {"metadata", "arraysets", "samples"}
    assert changes["samples"]["master"]["aset"] == d(
        unchanged={k("aset", str(i)): digest(np.full((5, 7), i, np.float32)) for i in range(10)}
    )
    assert changes["metadata"]["master"] == d(unchanged={MetadataRecordKey("about"): "fixture"})
    assert changes["samples"]["dev"]["aset"] == d(
        additions={k("aset", "new"): digest(np.ones((5, 7), np.float32))},
        removals={k("aset", "0"): digest(np.zeros((5, 7), np.float32))},
        unchanged={k("aset", str(i)): digest(np.full((5, 7), i, np.float32)) for i in range(1, 10)},
    )
    assert changes["metadata"]["dev"] == d(mutations={MetadataRecordKey("about"): "dev"})
    assert conflicts == {
        "aset": NO_CONFLICT,
        "meta": NO_CONFLICT,
        "sample": {"aset": NO_CONFLICT},
        "conflict_found": False,
    }
    assert rc.diff.commit(dev_head) == (changes, conflicts)
    assert rc.diff.commit(dev_head[:10]) == (changes, conflicts)  # a unique prefix
    for bad in (lambda: rc.diff.branch("nope"), lambda: rc.diff.commit("0" * 40)):
        with pytest.raises(ValueError):
            bad()
    rc.close()
    # a write checkout diffs its staging area: staged changes are on 'master'
    co = written_repo.checkout(write=True, branch="master")
    co.arraysets["aset"]["1"] = np.full((5, 7), 100, np.float32)
    changes, _ = co.diff.branch("dev")
    assert changes["samples"]["master"]["aset"]["mutations"] == {
        k("aset", "1"): digest(np.full((5, 7), 100, np.float32))
    }
    co.close()


def test_arraysets_part_holds_schema_changes_only(repo, monkeypatch):
    """In ``'arraysets'`` a mutation is a changed schema (the reference: an
    arrayset removed and made again with another dtype/shape in one commit);
    changed samples, or the same schema made again, leave it unchanged, and
    cost no schema read."""
    co = repo.checkout(write=True)
    for name in ("a", "b", "c"):
        aset = co.arraysets.init_arrayset(name, shape=(2,), dtype=np.int64)
        aset[0] = _v(0)
    base = co.commit("base")
    repo.create_branch("dev")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    co.arraysets.remove_aset("a")  # made again with another dtype: a mutation
    co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int32)[0] = _v(0).astype(np.int32)
    co.arraysets.remove_aset("b")  # made again with the same schema: unchanged
    co.arraysets.init_arrayset("b", shape=(2,), dtype=np.int64)[0] = _v(1)
    co.arraysets["c"][0] = _v(2)  # samples only
    staged = co.diff.staged()[0]["arraysets"]["master"]
    co.commit("dev")
    co.close()
    int32 = ArraysetSchema(np.dtype(np.int32), (2,), False, True)
    int64 = ArraysetSchema(np.dtype(np.int64), (2,), False, True)
    expected = d(mutations={"a": int32}, unchanged={"b": int64, "c": int64})
    assert staged == expected
    rc = repo.checkout()
    changes, conflicts = rc.diff.branch("dev")
    assert changes["arraysets"]["dev"] == expected
    assert conflicts["aset"] == NO_CONFLICT
    rc.close()

    # samples alone changed on both sides: no schema is read
    repo.create_branch("other", base_commit=base)
    co = repo.checkout(write=True, branch="master")
    co.arraysets["c"][0] = _v(3)
    co.commit("samples on master")
    co.close()
    co = repo.checkout(write=True, branch="other")
    co.arraysets["b"][1] = _v(4)
    co.commit("samples on other")
    co.close()
    reads = [0]
    real = CommitView.schema

    def counting(self, name):
        reads[0] += 1
        return real(self, name)

    monkeypatch.setattr(CommitView, "schema", counting)
    rc = repo.checkout(branch="other")
    changes, _ = rc.diff.branch("master")
    samples = changes["samples"]
    assert samples["dev"]["c"]["mutations"] == {RawDataRecordKey("c", 0): digest(_v(3))}
    assert samples["master"]["b"]["additions"] == {RawDataRecordKey("b", 1): digest(_v(4))}
    assert changes["arraysets"]["master"]["mutations"] == {}
    assert reads[0] == 0
    rc.close()


def test_staged_returns_changes_and_conflicts_of_the_master_side(written_repo):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    aset["1"] = np.full((5, 7), 100, np.float32)
    del aset["2"]
    co.metadata["new"] = "n"
    changes, conflicts = co.diff.staged()
    assert set(changes) == {"metadata", "arraysets", "samples"}
    assert all(set(part) == {"master"} for part in changes.values())
    samples = changes["samples"]["master"]["aset"]
    k = RawDataRecordKey
    assert samples["mutations"] == {k("aset", "1"): digest(np.full((5, 7), 100, np.float32))}
    assert samples["removals"] == {k("aset", "2"): digest(np.full((5, 7), 2, np.float32))}
    assert samples["additions"] == {}
    assert set(samples["unchanged"]) == {k("aset", str(i)) for i in range(10) if i not in (1, 2)}
    meta = changes["metadata"]["master"]
    assert meta["additions"] == {MetadataRecordKey("new"): "n"}
    assert dict(meta["unchanged"]) == {MetadataRecordKey("about"): "fixture"}
    assert conflicts == {
        "aset": NO_CONFLICT,
        "meta": NO_CONFLICT,
        "sample": {"aset": NO_CONFLICT},
        "conflict_found": False,
    }
    co.close()


def test_unchanged_read_later_is_the_diffs_not_the_live_staging_areas(written_repo):
    """``unchanged`` is computed when read, but from the moment of the diff: a
    change staged (or the checkout closed) in between does not alter it."""
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    aset["1"] = np.full((5, 7), 100, np.float32)
    changes, _ = co.diff.staged()
    unchanged = changes["samples"]["master"]["aset"]["unchanged"]
    co.arraysets.remove_aset("aset")  # staged after the diff
    co.close()
    assert not unchanged.computed
    k = RawDataRecordKey
    assert dict(unchanged) == {
        k("aset", str(i)): digest(np.full((5, 7), i, np.float32)) for i in range(10) if i != 1
    }


def test_diff_results_pickle_and_copy_like_plain_dicts(written_repo):
    """Hangar 0.2 returned plain dicts: code may pickle a diff (save it, send
    it between processes) or deep-copy it. ``unchanged`` is computed then."""
    written_repo.create_branch("dev")
    co = written_repo.checkout(write=True, branch="dev")
    co.arraysets["aset"]["1"] = np.full((5, 7), 100, np.float32)
    co.commit("dev")
    co.arraysets["aset"]["2"] = np.full((5, 7), 200, np.float32)
    results = {"branch": co.diff.branch("master"), "staged": co.diff.staged()}
    co.close()
    for what, result in results.items():
        for copied in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
            assert type(copied) is type(result), what
            assert copied == result, what
            changes = copied[0]
            assert changes.records == result[0].records, what
            assert changes["samples"]["master"]["aset"]["unchanged"].computed, what
    staged = pickle.loads(pickle.dumps(results["staged"]))
    assert staged.samples["aset"].mutations == ("2",)
    assert len(staged[0]["samples"]["master"]["aset"]["unchanged"]) == 9


def _count_object_reads(monkeypatch) -> list[int]:
    calls = [0]
    real = gitutil.odb_read

    def counting(repo, oid):
        calls[0] += 1
        return real(repo, oid)

    monkeypatch.setattr(gitutil, "odb_read", counting)
    monkeypatch.setattr(validate, "odb_read", counting)
    return calls


def test_unchanged_is_computed_only_when_read(repo, monkeypatch):
    n = 100_000
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", shape=(2,), dtype=np.int64)
    x.add_stacked(np.arange(2 * n, dtype=np.int64).reshape(n, 2), range(n))
    co.commit("100k samples")
    repo.create_branch("dev")
    for i in (5, 50_000, 99_999):
        x[i] = _v(-i)
    co.commit("three on master")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["x"][7] = _v(-7)
    co.commit("one on dev")
    co.close()

    clear_leaf_cache()
    reads = _count_object_reads(monkeypatch)
    rc = repo.checkout()
    changes, _ = rc.diff.branch("dev")
    cost = reads[0]
    unchanged = changes["samples"]["master"]["x"]["unchanged"]
    assert len(changes["samples"]["master"]["x"]["mutations"]) == 3
    assert not unchanged.computed
    assert reads[0] == cost  # looking at the changes read nothing more
    # the diff read a few trees: not the samples tree's 256 leaves
    assert cost < 40, cost
    assert len(unchanged) == n - 3 and unchanged.computed
    assert reads[0] - cost >= 256  # reading unchanged walked the merge base's leaves
    assert RawDataRecordKey("x", 7) in unchanged  # unchanged on master (dev changed it)
    assert RawDataRecordKey("x", 5) not in unchanged
    plain = unchanged.copy()  # as dict.copy(): a plain, writable dict
    assert type(plain) is dict and plain == unchanged
    plain.clear()
    assert len(unchanged) == n - 3
    rc.close()


# --------------------------------------------------------------------------
# 4. the smaller ones
# --------------------------------------------------------------------------
def test_read_only_arraysets_have_no_init_remove_or_multi_add(written_repo):
    rc = written_repo.checkout()
    asets = rc.arraysets
    assert asets.init_arrayset is None and asets.remove_aset is None
    assert asets.multi_add is None  # the reference is silent: as Hangar 0.2.0
    for call in (
        lambda: asets.init_arrayset("z", shape=(1,), dtype=np.uint8),
        lambda: asets.remove_aset("aset"),
        lambda: asets.multi_add({"aset": np.zeros((5, 7), np.float32)}),
    ):
        with pytest.raises(TypeError):
            call()
    with pytest.raises(PermissionError):  # the reference's text for __delitem__
        del asets["aset"]
    rc.close()
    co = written_repo.checkout(write=True)
    assert all(
        callable(f)
        for f in (co.arraysets.init_arrayset, co.arraysets.remove_aset, co.arraysets.multi_add)
    )
    co.close()


def test_item_assignment_and_deletion_return_the_key_as_documented(written_repo):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    assert aset.__setitem__("new", np.zeros((5, 7), np.float32)) == "new"
    assert aset.__setitem__(7, np.zeros((5, 7), np.float32)) == 7
    assert aset.__delitem__(7) == 7
    assert co.metadata.__setitem__("k", "v") == "k"
    assert co.metadata.__delitem__("k") == "k"
    other = co.arraysets.init_arrayset("other", shape=(1,), dtype=np.uint8)
    other[0] = np.zeros(1, np.uint8)
    assert co.arraysets.__delitem__("other") == "other"
    assert "other" not in co.arraysets and "new" in aset and "k" not in co.metadata
    co.close()


def test_create_branch_before_the_first_commit_is_a_runtime_error(repo):
    with pytest.raises(RuntimeError):
        repo.create_branch("dev")
    assert repo.list_branches() == ["master"]


def test_force_release_writer_lock_warns(repo):
    co = repo.checkout(write=True)
    with pytest.warns(ResourceWarning):
        assert repo.force_release_writer_lock() is True
    with pytest.raises(PermissionError):
        co.metadata  # noqa: B018
    repo.checkout(write=True).close()


def test_removing_the_last_sample_removes_the_arrayset(written_repo):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    for i in range(9):
        del aset[str(i)]
    assert "aset" in co.arraysets and len(aset) == 1
    aset.remove("9")
    assert "aset" not in co.arraysets
    assert co.diff.staged().aset.removals == ("aset",)
    co.commit("emptied")
    co.close()
    rc = written_repo.checkout()
    assert len(rc.arraysets) == 0
    rc.close()


def test_a_reader_get_goes_to_a_spawn_pool_and_metadata_get_does_not(written_repo):
    rc = written_repo.checkout()
    aset = rc.arraysets["aset"]
    copy = pickle.loads(pickle.dumps(aset))
    assert copy.name == "aset" and copy["4"][0, 0] == 4
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(aset.get, [str(i) for i in range(10)])
    assert [int(g[0, 0]) for g in got] == list(range(10))
    with pytest.raises(TypeError):
        pickle.dumps(rc.metadata.get)
    rc.close()
    co = written_repo.checkout(write=True)
    with pytest.raises(TypeError):
        pickle.dumps(co.arraysets["aset"].get)  # a writer's stays in its process
    co.close()


# --------------------------------------------------------------------------
# a whole script written for Hangar 0.2, run unchanged
# --------------------------------------------------------------------------
def test_a_hangar_02_training_data_script_runs_unchanged(tmp_path):
    """tests/fixtures/hangar02_script.py imports ``hangar`` only: a one-line
    module stands for it, and the script runs from import to merges, reads in
    a spawn pool, stale handles and housekeeping."""
    alias = tmp_path / "alias"
    alias.mkdir()
    (alias / "hangar.py").write_text(
        "import sys\nimport hangar_git\nsys.modules[__name__] = hangar_git\n"
    )
    script = Path(__file__).parent / "fixtures" / "hangar02_script.py"
    code = script.read_text()
    assert "import hangar_git" not in code and "from hangar_git" not in code
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(alias), *sys.path]))
    repo = tmp_path / "mnist"
    repo.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(repo)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all steps ran" in done.stdout


# --------------------------------------------------------------------------
# the reference tutorial: three-way merge, conflicts, their resolution
# --------------------------------------------------------------------------
def test_tutorial_three_way_merge_and_conflicts(tmp_path):
    path = tmp_path / "repo"
    path.mkdir()
    with pytest.warns(UserWarning):
        repo = Repository(path=path)
    repo.init(user_name="Test User", user_email="test@foo.com")
    co = repo.checkout(write=True)
    dummy = co.arraysets.init_arrayset(name="dummy_arrayset", shape=(10,), dtype=np.uint16)
    dummy["0"] = np.arange(10, dtype=np.uint16)
    initial = co.commit("first commit with a single sample added to a dummy arrayset")
    co.close()
    repo.create_branch(name="testbranch")
    repo.create_branch(name="new", base_commit=initial)
    co = repo.checkout(write=True, branch="new")
    co.arraysets["dummy_arrayset"]["1"] = np.arange(10, dtype=np.uint16) + 1
    co.commit("commit on `new` branch adding a sample to dummy_arrayset")
    co.close()
    # [24]-[26]: a fast-forward merge moves master to new's head, no merge commit
    new_head = repo.log(branch="new", return_contents=True)["head"]
    co = repo.checkout(write=True, branch="master")
    assert co.merge(message="message for commit (not used for FF merge)", dev_branch="new") == (
        new_head
    )
    assert co.commit_hash == new_head
    co.close()
    co = repo.checkout(write=True, branch="testbranch")
    dummy_aset = co.arraysets["dummy_arrayset"]
    dummy_aset["0"] = dummy_aset["0"] + 50
    co.commit("mutated sample `0` of `dummy_arrayset` to new value")
    co.metadata["hello"] = "world"
    co.commit("added hellow world metadata")
    co.close()

    # [44]-[52]: the three-way merge
    co = repo.checkout(write=True, branch="master")
    co.merge(message="merge of testbranch into master", dev_branch="testbranch")
    assert len(co.arraysets) == 1 and len(co.arraysets["dummy_arrayset"]) == 2
    assert co.arraysets["dummy_arrayset"]["0"].tolist() == list(range(50, 60))
    assert co.arraysets["dummy_arrayset"]["1"].tolist() == list(range(1, 11))
    assert len(co.metadata) == 1 and co.metadata["hello"] == "world"
    co.close()

    # [54]-[58]: a conflict halts the merge, changing nothing
    co = repo.checkout(write=True, branch="new")
    co.metadata["hello"] = "foo conflict... B00!"
    head = co.commit("commit on new branch to hello metadata key so we can demonstrate a conflict")
    with pytest.raises(ValueError) as err:
        co.merge(message="this merge should not happen", dev_branch="testbranch")
    assert co.commit_hash == head

    # [59]-[61]: the diff shows it first
    merge_results, conflicts_found = co.diff.branch("testbranch")
    assert conflicts_found == {
        "aset": ConflictRecords(t1=(), t21=(), t22=(), t3=(), conflict=False),
        "meta": ConflictRecords(
            t1=(MetadataRecordKey(meta_name="hello"),), t21=(), t22=(), t3=(), conflict=True
        ),
        "sample": {"dummy_arrayset": ConflictRecords(t1=(), t21=(), t22=(), t3=(), conflict=False)},
        "conflict_found": True,
    }
    assert conflicts_found["meta"] == ConflictRecords(
        t1=(MetadataRecordKey(meta_name="hello"),), t21=(), t22=(), t3=(), conflict=True
    )
    assert err.value.conflicts == conflicts_found  # the merge reports the same
    schema = ArraysetSchema(np.dtype(np.uint16), (10,), False, True)
    sample = RawDataRecordKey
    first = np.arange(10, dtype=np.uint16)
    assert merge_results == {
        "metadata": {
            "master": d(additions={MetadataRecordKey("hello"): "foo conflict... B00!"}),
            "dev": d(additions={MetadataRecordKey("hello"): "world"}),
        },
        "arraysets": {
            "master": d(unchanged={"dummy_arrayset": schema}),
            "dev": d(unchanged={"dummy_arrayset": schema}),
        },
        "samples": {
            "master": {
                "dummy_arrayset": d(
                    additions={sample("dummy_arrayset", "1"): digest(first + 1)},
                    unchanged={sample("dummy_arrayset", "0"): digest(first)},
                )
            },
            "dev": {
                "dummy_arrayset": d(
                    mutations={sample("dummy_arrayset", "0"): digest(first + 50)},
                )
            },
        },
    }

    # [62]-[63]: resolve by removing the key, then the merge succeeds
    del co.metadata["hello"]
    co.metadata["resolved"] = "conflict by removing hello key"
    co.commit("commit which removes conflicting metadata key")
    _, conflicts = co.diff.branch("testbranch")
    assert conflicts["conflict_found"] is False
    merged = co.merge(
        message="this merge succeeds as it no longer has a conflict", dev_branch="testbranch"
    )
    assert len(repo._git_repo().get(merged).parent_ids) == 2
    assert co.metadata["resolved"] == "conflict by removing hello key"
    assert co.metadata["hello"] == "world"  # dev's value: master no longer has one
    co.close()
