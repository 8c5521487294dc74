"""Properties of the history tools over random histories.

- cherry-picking every commit of a branch, in order, onto its base gives the
  branch's records;
- reverting a commit and then the revert gives back the records before;
  reverting the head gives its parent's records;
- a purge leaves every other key's history unchanged: each commit, mapped
  to its rewritten self, holds the same records but the purged key;
- a schema widened on one side merges with any sample changes of the other
  side: the wider schema and the three-way merge of the samples.

Change sets are those of the merge property (samples, metadata, arrayset
removal, re-creation with another schema, creation).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import warnings
from pathlib import Path

import pygit2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git import MergeConflictError, Repository

try:
    from .test_merge_property import I8, apply_checkout, arr, change_sets, read_model
except ImportError:
    from test_merge_property import (  # type: ignore[no-redef]
        I8,
        apply_checkout,
        arr,
        change_sets,
        read_model,
    )

KEYS = list(range(12))
SETTINGS = settings(
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def new_repo(path: Path) -> tuple[Repository, str]:
    """A repository whose master holds arraysets x (keys 0..11 but every 4th),
    y (0, 1) and metadata m0, m1; returns it and the base commit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Prop", user_email="prop@example.org")
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", prototype=arr(I8, 0))
    with x:
        for k in KEYS:
            if k % 4 != 3:
                x[k] = arr(I8, k % 3)
    y = co.arraysets.init_arrayset("y", prototype=arr(I8, 0))
    y[0], y[1] = arr(I8, 0), arr(I8, 1)
    co.metadata["m0"], co.metadata["m1"] = "a", "b"
    base = co.commit("base")
    co.close()
    return repo, base


def commit_changes(repo: Repository, branch: str, changes: list[dict]) -> list[str]:
    """Commit each change set on ``branch``; the commits made (empty ones, and
    ones that do not apply after the earlier ones, skipped)."""
    made = []
    for ch in changes:
        co = repo.checkout(write=True, branch=branch)
        try:
            try:
                apply_checkout(co, ch)
            except (LookupError, ValueError):  # e.g. creating 'z' again: a change set
                with contextlib.suppress(RuntimeError):  # made for the base,
                    co.reset_staging_area()  # skipped here
                continue
            if co.diff.status() == "DIRTY":
                made.append(co.commit("c"))
            else:
                with contextlib.suppress(RuntimeError):
                    co.reset_staging_area()
        finally:
            co.close()
    return made


def history_changes(max_size: int) -> st.SearchStrategy:
    return st.lists(change_sets(KEYS), min_size=1, max_size=max_size)


def test_cherry_picking_a_branch_in_order_gives_its_records(tmp_path):
    repo, base = new_repo(tmp_path)
    counter = itertools.count()

    @settings(SETTINGS, max_examples=30)
    @given(changes=history_changes(4))
    def check(changes: list[dict]) -> None:
        i = next(counter)
        repo.create_branch(f"b{i}", base_commit=base)
        commits = commit_changes(repo, f"b{i}", changes)
        repo.create_branch(f"p{i}", base_commit=base)
        head = base
        for c in commits:
            head = repo.cherry_pick(c, branch=f"p{i}")
        assert read_model(repo, head) == read_model(repo, repo.branch_commit(f"b{i}"))

    check()


def test_revert_of_a_revert_gives_the_records_back(tmp_path):
    repo, base = new_repo(tmp_path)
    counter = itertools.count()

    @settings(SETTINGS, max_examples=30)
    @given(changes=history_changes(3), pick=st.integers(0, 2))
    def check(changes: list[dict], pick: int) -> None:
        i = next(counter)
        branch = f"b{i}"
        repo.create_branch(branch, base_commit=base)
        commits = commit_changes(repo, branch, changes)
        if not commits:
            return
        head = repo.branch_commit(branch)
        parent = str(repo.git_repository()[head].parent_ids[0])
        undone = repo.revert(head, branch=branch)  # the head: never a conflict
        assert read_model(repo, undone) == read_model(repo, parent)
        assert read_model(repo, repo.revert(undone, branch=branch)) == read_model(repo, head)
        before = repo.branch_commit(branch)
        try:
            reverted = repo.revert(commits[pick % len(commits)], branch=branch)
        except MergeConflictError:
            assert repo.branch_commit(branch) == before
            return
        if reverted == before:  # its change is undone already: no commit, nothing to revert
            return
        again = repo.revert(reverted, branch=branch)
        assert read_model(repo, again) == read_model(repo, before)

    check()


def test_a_purge_leaves_every_other_keys_history_unchanged():
    @settings(SETTINGS, max_examples=12)
    @given(
        main=history_changes(3),
        side=history_changes(2),
        key=st.sampled_from(KEYS),
        merge=st.booleans(),
    )
    def check(main: list[dict], side: list[dict], key: int, merge: bool) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            repo, base = new_repo(Path(tmp))
            repo.create_branch("side", base_commit=base)
            commit_changes(repo, "side", side)
            commit_changes(repo, "master", main)
            if merge:
                with contextlib.suppress(MergeConflictError):
                    repo.merge("merge", "master", "side", strategy="ours")
            git = repo.git_repository()
            walker = git.walk(None, pygit2.enums.SortMode.TOPOLOGICAL)
            for b in ("master", "side"):
                walker.push(pygit2.Oid(hex=repo.branch_commit(b)))
            before = {str(c.id): read_model(repo, str(c.id)) for c in walker}
            report = repo.purge("x", [key])
            for old, model in before.items():
                want = {"asets": dict(model["asets"]), "meta": model["meta"]}
                if "x" in want["asets"]:
                    dt, samples = want["asets"]["x"]
                    want["asets"]["x"] = (dt, {k: v for k, v in samples.items() if k != key})
                assert read_model(repo, report.commits.get(old, old)) == want
                if report.commits.get(old, old) == old:
                    assert key not in model["asets"].get("x", (None, {}))[1]
            assert repo.verify().ok

    check()


def test_a_widened_schema_merges_with_any_sample_changes_of_the_other_side(tmp_path):
    """One side widens the schema (fixed (2,) made variable up to (m,)) and may
    add longer samples; the other adds, changes and removes samples under
    the old schema. The merge never conflicts on the arrayset: it holds the
    wider schema and the three-way merge of both sides' samples."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(tmp_path, exists=False)
    repo.init(user_name="Prop", user_email="prop@example.org")
    co = repo.checkout(write=True)
    w = co.arraysets.init_arrayset("w", shape=(2,), dtype=np.int8)
    for k in range(6):
        w[k] = np.full(2, k, np.int8)
    base = co.commit("base")
    co.close()
    counter = itertools.count()
    ops = st.dictionaries(st.integers(0, 9), st.one_of(st.none(), st.integers(-50, 50)), max_size=6)

    @settings(SETTINGS, max_examples=25)
    @given(
        on_old=ops,
        on_new=st.dictionaries(st.integers(10, 14), st.integers(1, 5), max_size=3),
        widest=st.integers(5, 9),
        widen_dev=st.booleans(),
    )
    def check(on_old: dict, on_new: dict, widest: int, widen_dev: bool) -> None:
        i = next(counter)
        wide, old = (f"d{i}", f"m{i}") if widen_dev else (f"m{i}", f"d{i}")
        for b in (wide, old):
            repo.create_branch(b, base_commit=base)
        repo.change_arrayset("w", branch=wide, variable_shape=True, shape=(widest,))
        want = {k: [k, k] for k in range(6)}
        co = repo.checkout(write=True, branch=old)
        for k, val in on_old.items():
            if val is None:
                if k in co.arraysets["w"]:
                    del co.arraysets["w"][k]
                want.pop(k, None)
            else:
                co.arraysets["w"][k] = np.full(2, val, np.int8)
                want[k] = [val, val]
        if co.diff.status() == "DIRTY":
            co.commit("old schema")
        co.close()
        co = repo.checkout(write=True, branch=wide)
        for k, n in on_new.items():  # keys the other side never touches
            co.arraysets["w"][k] = np.full(n, k, np.int8)
            want[k] = [k] * n
        if on_new:
            co.commit("new schema")
        co.close()
        merged = repo.merge("merge", f"m{i}", f"d{i}")
        with repo.checkout(commit=merged) as rc:
            a = rc.arraysets["w"]
            assert (a.variable_shape, a.shape) == (True, (widest,))
            assert {k: a[k].tolist() for k in a} == want

    check()
