"""Property: merging two branches equals applying both change sets to their base.

For random pairs of change sets on two branches off one base (sample changes,
metadata changes, arrayset removal, re-creation with another schema, and
creation), a model computes the three-way result and whether the sides
conflict. The repository must report a conflict exactly when the model does
(with or without a strategy), and otherwise produce exactly the model's
records; ``incoming`` must name exactly the keys the merge changes.

Two layouts: a flat base (a dozen samples) and a fanned-out base (1,500
samples, 256-way) whose changed keys all fall in two fan-out leaves, so both
sides often change the same leaves.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import numpy as np
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git import MergeConflictError, Repository
from hangar_git.records.layout import leaf_path

VALUES = st.integers(0, 2)  # few values: identical changes on both sides are common
META_KEYS = ["m0", "m1", "m2", "m3"]
META_VALUES = st.sampled_from([None, "a", "b"])
# arrayset operations: (op on 'y', dtype of a new arrayset 'z')
Y_OPS = st.sampled_from(["keep", "keep", "remove", "float64", "int32"])
Z_OPS = st.sampled_from([None, None, "int64", "float64"])

#: {"asets": {name: (dtype, {key: (dtype, value)})}, "meta": {key: value}}
Model = dict
I8 = np.dtype(np.int64).str


def arr(dtype: str, value: int) -> np.ndarray:
    return np.array([value, 7], dtype=dtype)


def change_sets(keys: list[int]) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            "x": st.dictionaries(st.sampled_from(keys), st.one_of(st.none(), VALUES), max_size=5),
            "y": st.dictionaries(
                st.sampled_from([0, 1, 2]), st.one_of(st.none(), VALUES), max_size=2
            ),
            "meta": st.dictionaries(st.sampled_from(META_KEYS), META_VALUES, max_size=3),
            "y_op": Y_OPS,
            "z_op": Z_OPS,
            "z_val": VALUES,
        }
    )


def apply_model(base: Model, ch: dict) -> Model:
    asets = {n: (dt, dict(s)) for n, (dt, s) in base["asets"].items()}
    for k, val in ch["x"].items():
        if val is None:
            if asets["x"][1].keys() - {k}:  # the last sample stays (see apply_checkout)
                asets["x"][1].pop(k, None)
        else:
            asets["x"][1][k] = (I8, val)
    if ch["y_op"] == "remove":
        del asets["y"]
    elif ch["y_op"] != "keep":
        dt = np.dtype(ch["y_op"]).str
        asets["y"] = (dt, {0: (dt, ch["z_val"])})
    else:
        for k, val in ch["y"].items():
            if val is None:
                if asets["y"][1].keys() - {k}:
                    asets["y"][1].pop(k, None)
            else:
                asets["y"][1][k] = (I8, val)
    if ch["z_op"] is not None:
        dt = np.dtype(ch["z_op"]).str
        asets["z"] = (dt, {0: (dt, ch["z_val"])})
    meta = dict(base["meta"])
    for k, val in ch["meta"].items():
        if val is None:
            meta.pop(k, None)
        else:
            meta[k] = val
    return {"asets": asets, "meta": meta}


def apply_checkout(co, ch: dict) -> None:
    x = co.arraysets["x"]
    for k, val in ch["x"].items():
        if val is None:
            # removing the last sample would remove the arrayset (as in Hangar
            # 0.2): the model keeps arrayset removal to y_op
            if k in x and len(x) > 1:
                del x[k]
        else:
            x[k] = arr("<i8", val)
    if ch["y_op"] == "remove":
        co.arraysets.remove_aset("y")
    elif ch["y_op"] != "keep":
        co.arraysets.remove_aset("y")
        y = co.arraysets.init_arrayset("y", prototype=arr(ch["y_op"], 0))
        y[0] = arr(ch["y_op"], ch["z_val"])
    else:
        y = co.arraysets["y"]
        for k, val in ch["y"].items():
            if val is None:
                if k in y and len(y) > 1:
                    del y[k]
            else:
                y[k] = arr("<i8", val)
    if ch["z_op"] is not None:
        z = co.arraysets.init_arrayset("z", prototype=arr(ch["z_op"], 0))
        z[0] = arr(ch["z_op"], ch["z_val"])
    for k, val in ch["meta"].items():
        if val is None:
            if k in co.metadata:
                del co.metadata[k]
        else:
            co.metadata[k] = val


def merge3(a: dict, m: dict, d: dict, strategy: str | None) -> tuple[dict, bool]:
    """Three-way merge of key -> value maps; (result, any conflict)."""
    out, conflict = {}, False
    for k in a.keys() | m.keys() | d.keys():
        va, vm, vd = a.get(k), m.get(k), d.get(k)
        if vm == va:
            new = vd
        elif vd in (va, vm):
            new = vm
        else:
            conflict = True
            new = vd if strategy == "theirs" else vm
        if new is not None:
            out[k] = new
    return out, conflict


def model_merge(a: Model, m: Model, d: Model, strategy: str | None) -> tuple[Model | None, bool]:
    """(merged model or None when the merge must fail, conflict reported by diff)."""
    conflict = aset_conflict = False
    asets = {}
    for name in a["asets"].keys() | m["asets"].keys() | d["asets"].keys():
        sa, sm, sd = (x["asets"].get(name) for x in (a, m, d))
        samples_conflict = merge3(
            sa[1] if sa else {}, sm[1] if sm else {}, sd[1] if sd else {}, None
        )[1]
        if sm == sa:
            new = sd
        elif sd in (sa, sm):
            new = sm
        elif sm is None or sd is None or sm[0] != sd[0]:
            aset_conflict = True
            new = None
        else:
            merged, _ = merge3(sa[1] if sa else {}, sm[1], sd[1], strategy)
            new = (sm[0], merged)
        conflict |= samples_conflict
        if new is not None:
            asets[name] = new
    meta, meta_conflict = merge3(a["meta"], m["meta"], d["meta"], strategy)
    conflict |= meta_conflict or aset_conflict
    if aset_conflict or (conflict and strategy is None):
        return None, conflict
    return {"asets": asets, "meta": meta}, conflict


def read_model(repo: Repository, commit: str) -> Model:
    co = repo.checkout(commit=commit)
    try:
        asets = {}
        for name in co.arraysets:
            a = co.arraysets[name]
            asets[name] = (a.dtype.str, {k: (a.dtype.str, int(a[k][0])) for k in a})
        return {"asets": asets, "meta": dict(co.metadata.items())}
    finally:
        co.close()


def keys_in_buckets(buckets: tuple[str, ...], n: int) -> list[int]:
    out, k = [], 0
    while len(out) < n:
        if leaf_path(f"i:{k}", (2,))[0] in buckets:
            out.append(k)
        k += 1
    return out


def run_property(path, n_base: int, keys: list[int], max_examples: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Prop", user_email="prop@example.org")
    base_x = {k: (I8, k % 3) for k in range(n_base) if k % 4 != 3}
    base_x.update({k: (I8, k % 3) for k in keys if k % 4 != 3})
    base: Model = {
        "asets": {"x": (I8, base_x), "y": (I8, {0: (I8, 0), 1: (I8, 1)})},
        "meta": {"m0": "a", "m1": "b"},
    }
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", prototype=arr("<i8", 0))
    with x:
        for k, (_, val) in base_x.items():
            x[k] = arr("<i8", val)
    y = co.arraysets.init_arrayset("y", prototype=arr("<i8", 0))
    y[0], y[1] = arr("<i8", 0), arr("<i8", 1)
    co.metadata["m0"], co.metadata["m1"] = "a", "b"
    base_sha = co.commit("base")
    co.close()
    assert read_model(repo, base_sha) == base
    counter = itertools.count()

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        ch_m=change_sets(keys),
        ch_d=change_sets(keys),
        strategy=st.sampled_from([None, None, "ours", "theirs"]),
    )
    def check(ch_m: dict, ch_d: dict, strategy: str | None) -> None:
        i = next(counter)
        master, dev = f"m{i}", f"d{i}"
        heads = {}
        for branch, ch in ((master, ch_m), (dev, ch_d)):
            repo.create_branch(branch, base_commit=base_sha)
            co = repo.checkout(write=True, branch=branch)
            try:
                apply_checkout(co, ch)
                heads[branch] = co.commit("c") if co.diff.status() == "DIRTY" else base_sha
                if heads[branch] == base_sha:  # changes that cancel out stay logged
                    with contextlib.suppress(RuntimeError):
                        co.reset_staging_area()
            finally:
                co.close()
        m_model = apply_model(base, ch_m)
        d_model = apply_model(base, ch_d)
        assert read_model(repo, heads[master]) == m_model
        expected, conflict = model_merge(base, m_model, d_model, strategy)

        rco = repo.checkout(branch=master)
        changes, conflicts = rco.diff.branch(dev)
        rco.close()
        assert conflicts["conflict_found"] is conflict
        if expected is None:
            with pytest.raises(MergeConflictError) as err:
                repo.merge("merge", master, dev, strategy=strategy)
            assert err.value.conflicts == conflicts
            ref = repo._git_repo().references[f"refs/hangar/heads/{master}"]
            assert str(ref.target) == heads[master]
            return
        sha = repo.merge("merge", master, dev, strategy=strategy)
        got = read_model(repo, sha)
        assert got == expected
        if base_sha != heads[master] != heads[dev] != base_sha:
            parents = [str(p) for p in repo._git_repo().get(sha).parent_ids]
            assert parents == [heads[master], heads[dev]]
        if not conflict:
            # incoming names exactly what the merge changed on master
            inc = changes.incoming
            assert set(inc.meta.additions + inc.meta.removals + inc.meta.mutations) == {
                k
                for k in got["meta"].keys() | m_model["meta"].keys()
                if got["meta"].get(k) != m_model["meta"].get(k)
            }
            for name in got["asets"].keys() & m_model["asets"].keys():
                ch = inc.samples.get(name)
                touched = set(ch.additions + ch.removals + ch.mutations) if ch else set()
                gs, ms = got["asets"][name][1], m_model["asets"][name][1]
                assert touched == {k for k in gs.keys() | ms.keys() if gs.get(k) != ms.get(k)}

    check()


def test_merge_equals_both_change_sets_flat(tmp_path):
    run_property(tmp_path, 12, list(range(12)), max_examples=60)


def test_merge_equals_both_change_sets_fanned(tmp_path):
    keys = keys_in_buckets(("3c", "a1"), 8)
    run_property(tmp_path, 1500, keys, max_examples=40)


def test_merge_equals_both_change_sets_two_levels(tmp_path, monkeypatch):
    """A 256 x 16 layout (as 1M samples get): the 16-way middle level is
    compared row by row, leaves over the span where they differ."""
    from hangar_git.records import layout

    monkeypatch.setattr(layout, "_FANOUT_STEPS", ((16, ()), (64, (2,)), (1 << 62, (2, 1))))
    keys = keys_in_buckets(("3c", "a1"), 8)
    run_property(tmp_path, 1500, keys, max_examples=30)
    git = pygit2.Repository(str(tmp_path))
    tip = git.references["refs/hangar/heads/master"].peel(pygit2.Commit)
    samples = tip.tree["arraysets"]["x"]["samples"]
    mid = git[samples["3c"].id]
    assert all(len(e.name) == 1 for e in mid)  # the layout under test: a 16-way level
