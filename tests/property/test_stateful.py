"""A Hypothesis state machine: random sequences of arrayset, sample and
metadata changes, commits, branches, writer switches, resets and reads,
checked step by step against an in-memory model of the repository."""

from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from hangar_git import Repository
from hangar_git.records import changelog

SCHEMAS = {
    "img": {"shape": (3, 4), "dtype": np.uint8, "variable_shape": False},
    "vec": {"shape": (6,), "dtype": np.float32, "variable_shape": True},
    "lbl": {"shape": (2,), "dtype": np.int64, "variable_shape": False},
}
ASET_NAMES = st.sampled_from(["a", "b", "c"])
KEYS = st.one_of(st.integers(0, 12), st.sampled_from(["0", "1", "x", "y.z", "k-1"]))
SEEDS = st.integers(0, 6)  # few seeds: identical arrays are common
META_KEYS = st.one_of(st.integers(0, 3), st.sampled_from(["0", "note", "n"]))
META_VALUES = st.sampled_from(["", "v1", "v2", "a longer value\nwith a newline"])
BRANCHES = st.sampled_from(["master", "dev", "feat", "x1"])


def make_array(schema: str, seed: int) -> np.ndarray:
    spec = SCHEMAS[schema]
    rng = np.random.default_rng(seed)
    shape = spec["shape"]
    if spec["variable_shape"]:
        shape = tuple(int(rng.integers(1, m + 1)) for m in shape)
    return rng.integers(0, 100, shape).astype(spec["dtype"])


@dataclass
class State:
    """What a commit (or the staging area) holds."""

    asets: dict[str, tuple[str, dict]] = field(default_factory=dict)  # name -> (schema, samples)
    meta: dict = field(default_factory=dict)

    def same_as(self, other: State) -> bool:
        if self.meta != other.meta or self.asets.keys() != other.asets.keys():
            return False
        for name, (schema, samples) in self.asets.items():
            oschema, osamples = other.asets[name]
            if schema != oschema or samples.keys() != osamples.keys():
                return False
            for k, arr in samples.items():
                o = osamples[k]
                if arr.shape != o.shape or arr.tobytes() != o.tobytes():
                    return False
        return True


def assert_matches(co, state: State) -> None:
    """The checkout ``co`` holds exactly ``state``."""
    assert sorted(co.arraysets.keys()) == sorted(state.asets)
    for name, (schema, samples) in state.asets.items():
        aset = co.arraysets[name]
        spec = SCHEMAS[schema]
        assert aset.shape == spec["shape"]
        assert aset.dtype == np.dtype(spec["dtype"])
        assert aset.variable_shape == spec["variable_shape"]
        keys = list(aset.keys())
        assert sorted(keys, key=repr) == sorted(samples, key=repr)
        assert len(aset) == len(samples)
        got = aset.get_batch(keys)
        for k, arr in zip(keys, got, strict=True):
            expect = samples[k]
            assert arr.dtype == expect.dtype and arr.shape == expect.shape, (name, k)
            assert arr.tobytes() == expect.tobytes(), (name, k)
        for k in list(samples)[:2]:
            assert aset[k].tobytes() == samples[k].tobytes()
    assert dict(co.metadata.items()) == state.meta
    assert len(co.metadata) == len(state.meta)


class RepoMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="hangar-stateful-")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.repo = Repository(self.tmp, exists=False)
        self.repo.init(user_name="Model", user_email="model@example.org")
        self.commits: dict[str, State] = {}
        self.parents: dict[str, list[str]] = {}
        self.heads: dict[str, str | None] = {"master": None}
        self.branch = "master"
        self.staged = State()
        self.co = self.repo.checkout(write=True)

    # ---- helpers --------------------------------------------------------
    def base(self) -> State:
        head = self.heads[self.branch]
        return self.commits[head] if head else State()

    def dirty(self) -> bool:
        return not self.staged.same_as(self.base())

    def reopen(self, branch: str) -> None:
        self.co = self.repo.checkout(write=True, branch=branch)

    def teardown(self) -> None:
        try:
            if self.co is not None:
                self.co.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- arraysets ------------------------------------------------------
    @initialize(name=ASET_NAMES, schema=st.sampled_from(sorted(SCHEMAS)))
    def first_aset(self, name: str, schema: str) -> None:
        self.init_aset(name, schema)

    @rule(name=ASET_NAMES, schema=st.sampled_from(sorted(SCHEMAS)))
    def init_aset(self, name: str, schema: str) -> None:
        spec = SCHEMAS[schema]
        if name in self.staged.asets:
            with pytest.raises(LookupError):
                self.co.arraysets.init_arrayset(name, **spec)
            return
        self.co.arraysets.init_arrayset(name, **spec)
        self.staged.asets[name] = (schema, {})

    @rule(name=ASET_NAMES)
    def remove_aset(self, name: str) -> None:
        if name not in self.staged.asets:
            with pytest.raises(KeyError):
                self.co.arraysets.remove_aset(name)
            return
        assert self.co.arraysets.remove_aset(name) == name
        del self.staged.asets[name]

    # ---- samples --------------------------------------------------------
    @rule(name=ASET_NAMES, key=KEYS, seed=SEEDS)
    def add(self, name: str, key, seed: int) -> None:
        if name not in self.staged.asets:
            with pytest.raises(KeyError):
                self.co.arraysets[name]
            return
        schema, samples = self.staged.asets[name]
        arr = make_array(schema, seed)
        self.co.arraysets[name][key] = arr
        samples[key] = arr

    @rule(name=ASET_NAMES, items=st.lists(st.tuples(KEYS, SEEDS), min_size=1, max_size=8))
    def add_batch(self, name: str, items) -> None:
        if name not in self.staged.asets:
            return
        schema, samples = self.staged.asets[name]
        aset = self.co.arraysets[name]
        with aset:
            for key, seed in items:
                arr = make_array(schema, seed)
                aset.add(arr, key)
                samples[key] = arr

    @rule(name=ASET_NAMES, key=KEYS, seed=SEEDS)
    def add_wrong_schema(self, name: str, key, seed: int) -> None:
        if name not in self.staged.asets:
            return
        schema, _ = self.staged.asets[name]
        wrong = next(s for s in sorted(SCHEMAS) if s != schema)
        with pytest.raises(ValueError):
            self.co.arraysets[name][key] = make_array(wrong, seed)

    @rule(name=ASET_NAMES, key=KEYS)
    def remove_sample(self, name: str, key) -> None:
        if name not in self.staged.asets:
            return
        _, samples = self.staged.asets[name]
        aset = self.co.arraysets[name]
        if key not in samples:
            with pytest.raises(KeyError):
                aset.remove(key)
            return
        del aset[key]
        del samples[key]
        if not samples:  # removing the last sample removes the arrayset (Hangar 0.2)
            del self.staged.asets[name]
            assert name not in self.co.arraysets

    # ---- metadata -------------------------------------------------------
    @rule(key=META_KEYS, value=META_VALUES)
    def set_meta(self, key, value: str) -> None:
        self.co.metadata[key] = value
        self.staged.meta[key] = value

    @rule(key=META_KEYS)
    def del_meta(self, key) -> None:
        if key not in self.staged.meta:
            with pytest.raises(KeyError):
                del self.co.metadata[key]
            return
        del self.co.metadata[key]
        del self.staged.meta[key]

    # ---- history --------------------------------------------------------
    @rule(msg=st.sampled_from(["c", "another commit", "with\nbody"]))
    def commit(self, msg: str) -> None:
        assert self.co.diff.status() == ("DIRTY" if self.dirty() else "CLEAN")
        if not self.dirty():
            with pytest.raises(RuntimeError):
                self.co.commit(msg)
            return
        parent = self.heads[self.branch]
        sha = self.co.commit(msg)
        assert sha not in self.commits
        self.commits[sha] = copy.deepcopy(self.staged)
        self.parents[sha] = [parent] if parent else []
        self.heads[self.branch] = sha
        assert self.co.commit_hash == sha
        assert self.co.diff.status() == "CLEAN"
        git = self.repo._git_repo()
        assert changelog.verify(git, git.get(sha)) == []  # the log matches the records

    @rule(name=BRANCHES)
    def create_branch(self, name: str) -> None:
        head = self.heads[self.branch]
        if self.heads.get(name) is not None or (head is not None and name in self.heads):
            with pytest.raises(ValueError):  # the branch exists
                self.repo.create_branch(name)
            return
        if head is None:
            with pytest.raises(RuntimeError):  # nothing to branch from, as in the reference
                self.repo.create_branch(name)
            return
        assert self.repo.create_branch(name) == name
        self.heads[name] = head
        assert self.repo.list_branches() == sorted(self.heads)

    @rule(name=BRANCHES)
    def switch_writer(self, name: str) -> None:
        if name == self.branch:
            return
        self.co.close()
        self.co = None
        if name not in self.heads:
            # an unknown branch is refused; before the first commit only
            # master exists
            with pytest.raises(ValueError):
                self.repo.checkout(write=True, branch=name)
            self.reopen(self.branch)
            return
        if self.dirty():
            with pytest.raises(ValueError):
                self.repo.checkout(write=True, branch=name)
            assert not self.repo.writer_lock_held
            self.reopen(self.branch)
            return
        self.reopen(name)
        self.branch = name
        self.staged = copy.deepcopy(self.base())
        assert self.co.branch_name == name

    @rule()
    def reopen_same_branch(self) -> None:
        # the staging area is durable: closing and reopening changes nothing
        self.co.close()
        self.reopen(self.branch)

    @rule()
    def reset(self) -> None:
        head = self.heads[self.branch] or ""
        if self.dirty():
            assert self.co.reset_staging_area() == head
        else:
            try:
                assert self.co.reset_staging_area() == head
            except RuntimeError:  # nothing was staged at all
                return
        self.reopen(self.branch)
        self.staged = copy.deepcopy(self.base())

    # ---- reads ----------------------------------------------------------
    @precondition(lambda self: bool(self.commits))
    @rule(data=st.data())
    def read_commit(self, data) -> None:
        sha = data.draw(st.sampled_from(sorted(self.commits)))
        rc = self.repo.checkout(commit=sha)
        try:
            assert rc.commit_hash == sha
            assert_matches(rc, self.commits[sha])
        finally:
            rc.close()
        log = self.repo.log(commit=sha, return_contents=True)
        assert log["ancestors"][sha] == self.parents[sha]

    @precondition(lambda self: len(self.commits) >= 2)
    @rule(data=st.data())
    def diff_commits(self, data) -> None:
        """A diff composed from change logs equals one from walking the trees."""
        one = data.draw(st.sampled_from(sorted(self.commits)))
        two = data.draw(st.sampled_from(sorted(self.commits)))
        rc = self.repo.checkout(commit=one)
        try:
            got = rc.diff.commit(two)
            with mock.patch.object(changelog, "USE_LOGS", False):  # walk the trees
                want = rc.diff.commit(two)
        finally:
            rc.close()
        assert got == want

    @precondition(lambda self: any(self.heads.values()))
    @rule(data=st.data())
    def read_branch(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(b for b, h in self.heads.items() if h)))
        rc = self.repo.checkout(branch=name)
        try:
            assert rc.commit_hash == self.heads[name]
            assert_matches(rc, self.commits[self.heads[name]])
        finally:
            rc.close()

    @rule()
    def read_staging(self) -> None:
        assert_matches(self.co, self.staged)

    @invariant()
    def writer_view_shape(self) -> None:
        if self.co is None:
            return
        assert sorted(self.co.arraysets.keys()) == sorted(self.staged.asets)
        for name, (_, samples) in self.staged.asets.items():
            assert len(self.co.arraysets[name]) == len(samples)


def test_repository_matches_model():
    run_state_machine_as_test(
        RepoMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
