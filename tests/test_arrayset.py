"""Arraysets and their samples: creation, schema rules, keys, reads, batching."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from hangar_git.arrayset import ArraysetDataReader, ArraysetDataWriter


def journal(repo) -> bytes:
    return (Path(repo._hdir) / "staging" / "journal").read_bytes()


@pytest.fixture
def co(repo):
    co = repo.checkout(write=True)
    yield co
    co.close()


# --------------------------------------------------------------------------
# creation
# --------------------------------------------------------------------------
def test_init_by_prototype(co):
    proto = np.zeros((28, 28), np.uint8)
    a = co.arraysets.init_arrayset("imgs", prototype=proto)
    assert isinstance(a, ArraysetDataWriter)
    assert a.name == "imgs"
    assert a.shape == (28, 28)
    assert a.dtype == np.uint8
    assert a.variable_shape is False
    assert a.named_samples is True
    assert a.iswriteable is True
    assert len(a) == 0
    assert "imgs" in co.arraysets


@pytest.mark.parametrize(
    "shape,expect", [(10, (10,)), ((3, 4), (3, 4)), ([2, 2, 2], (2, 2, 2)), (np.int64(5), (5,))]
)
def test_init_by_shape_and_dtype(co, shape, expect):
    a = co.arraysets.init_arrayset("a", shape=shape, dtype=np.float64)
    assert a.shape == expect
    assert a.dtype == np.float64


@pytest.mark.parametrize(
    "dtype",
    [
        np.bool_,
        np.int8,
        np.uint16,
        np.int32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
        "<i4",
    ],
)
def test_supported_dtypes_roundtrip(repo, dtype):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(3, 2), dtype=dtype)
    arr = (
        (np.arange(6).reshape(3, 2) % 2 == 1)
        if np.dtype(dtype) == np.bool_
        else np.arange(6).reshape(3, 2).astype(dtype)
    )
    a["x"] = arr
    sha = co.commit("c")
    co.close()
    rc = repo.checkout(commit=sha)
    got = rc.arraysets["a"]["x"]
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, arr)
    rc.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # nothing
        {"shape": (3,)},  # no dtype
        {"dtype": np.uint8},  # no shape
        {"prototype": np.zeros(3), "shape": (3,)},  # both
        {"prototype": np.zeros(3), "dtype": np.float64},  # both
        {"prototype": [1, 2, 3]},  # not an ndarray
        {"prototype": np.zeros((4, 4))[:, ::2]},  # not C-contiguous
        {"prototype": np.zeros((4, 4)).T},  # Fortran order
        {"shape": (1,) * 32, "dtype": np.uint8},  # rank 32 > 31
        {"shape": (3, 0), "dtype": np.uint8},  # zero-size dimension
        {"shape": (3, -1), "dtype": np.uint8},  # negative dimension
        {"prototype": np.zeros((0, 3))},  # zero-size prototype
        {"shape": (3,), "dtype": object},  # object
        {"shape": (3,), "dtype": "U5"},  # unicode string
        {"shape": (3,), "dtype": "S5"},  # bytes string
        {"shape": (3,), "dtype": [("a", "<i4"), ("b", "<f8")]},  # structured
        {"shape": (3,), "dtype": ">f8"},  # non-native byte order
        {"shape": (3,), "dtype": "datetime64[s]"},  # datetime
        {"shape": (3,), "dtype": "not-a-dtype"},  # garbage
        {"shape": (3,), "dtype": np.uint8, "backend": "lmdb"},  # unknown backend
        {"shape": (3,), "dtype": np.uint8, "variable_shape": 1},  # not a bool
        {"shape": (3,), "dtype": np.uint8, "named_samples": "y"},  # not a bool
        {"shape": "3", "dtype": np.uint8},  # not ints
        {"shape": (2.5,), "dtype": np.uint8},  # not ints
    ],
)
def test_init_arrayset_refuses_bad_schema(repo, co, kwargs):
    before = journal(repo)
    with pytest.raises(ValueError):
        co.arraysets.init_arrayset("bad", **kwargs)
    assert "bad" not in co.arraysets
    assert journal(repo) == before
    assert co.diff.status() == "CLEAN"


def test_rank_31_is_accepted(co):
    a = co.arraysets.init_arrayset("deep", shape=(1,) * 31, dtype=np.uint8)
    a["x"] = np.ones((1,) * 31, np.uint8)
    assert a["x"].shape == (1,) * 31


def test_duplicate_name_raises_lookup_error(repo, co):
    co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    before = journal(repo)
    with pytest.raises(LookupError):
        co.arraysets.init_arrayset("a", shape=(5,), dtype=np.float32)
    assert journal(repo) == before
    assert co.arraysets["a"].shape == (2,)
    co.arraysets["a"]["k"] = np.zeros(2, np.uint8)
    co.commit("c")
    with pytest.raises(LookupError):  # also when it exists in the base commit
        co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)


def test_arraysets_dict_interface(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    b = co.arraysets.init_arrayset("b", shape=(2,), dtype=np.uint8)
    a["x"] = np.zeros(2, np.uint8)
    b["x"] = np.ones(2, np.uint8)
    asets = co.arraysets
    assert asets.iswriteable
    assert len(asets) == 2
    assert sorted(asets.keys()) == ["a", "b"]
    assert sorted(asets) == ["a", "b"]
    assert [n for n, _ in asets.items()] == sorted(asets.keys())
    assert all(isinstance(v, ArraysetDataWriter) for v in asets.values())
    assert asets.get("a").name == "a"
    assert asets["b"]["x"].tolist() == [1, 1]
    assert "a" in asets and "zzz" not in asets and 3 not in asets
    with pytest.raises(KeyError):
        asets["zzz"]
    with pytest.raises(KeyError):
        asets.get("zzz")
    assert asets.contains_remote_references == {"a": False, "b": False}
    assert asets.remote_sample_keys == {"a": [], "b": []}
    r = repr(asets)
    assert "Hangar Arraysets" in r and "Writeable: True" in r
    assert "- a / False" in r and "- b / False" in r
    sha = co.commit("two")
    rc = repo.checkout(commit=sha)
    assert not rc.arraysets.iswriteable
    assert isinstance(rc.arraysets["a"], ArraysetDataReader)
    assert not isinstance(rc.arraysets["a"], ArraysetDataWriter)
    assert "Writeable: False" in repr(rc.arraysets)
    rc.close()


def test_setitem_on_arraysets_refused(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    before = journal(repo)
    with pytest.raises(PermissionError):
        co.arraysets["b"] = a
    with pytest.raises(PermissionError):
        co.arraysets["a"] = np.zeros(2, np.uint8)
    assert journal(repo) == before
    assert sorted(co.arraysets) == ["a"]


def test_remove_aset(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    a["x"] = np.zeros(2, np.uint8)
    co.arraysets.init_arrayset("keep", shape=(1,), dtype=np.uint8)["k"] = np.ones(1, np.uint8)
    c1 = co.commit("c1")
    assert co.arraysets.remove_aset("a") == "a"
    assert "a" not in co.arraysets
    with pytest.raises(KeyError):
        co.arraysets.remove_aset("a")
    with pytest.raises(KeyError):
        co.arraysets.remove_aset("never")
    # the stale accessor finds nothing and refuses writes
    with pytest.raises((KeyError, ReferenceError)):
        a["x"]
    with pytest.raises(ReferenceError):
        a["y"] = np.zeros(2, np.uint8)
    assert "a" not in co.arraysets
    c2 = co.commit("removed")
    # re-create with another schema under the same name, via del
    b = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.float32)
    b["y"] = np.ones(3, np.float32)
    del co.arraysets["keep"]
    c3 = co.commit("recreated")
    for sha, names in ((c1, ["a", "keep"]), (c2, ["keep"]), (c3, ["a"])):
        rc = repo.checkout(commit=sha)
        assert sorted(rc.arraysets) == names
        rc.close()
    rc = repo.checkout(commit=c3)
    assert list(rc.arraysets["a"].keys()) == ["y"]
    assert rc.arraysets["a"].dtype == np.float32
    rc.close()
    rc = repo.checkout(commit=c1)
    assert rc.arraysets["a"]["x"].tolist() == [0, 0]
    rc.close()


def test_remove_aset_created_in_staging(co):
    co.arraysets.init_arrayset("tmp", shape=(2,), dtype=np.uint8)["k"] = np.zeros(2, np.uint8)
    co.arraysets.remove_aset("tmp")
    assert "tmp" not in co.arraysets
    assert co.diff.status() == "CLEAN"


# --------------------------------------------------------------------------
# samples: add, validation
# --------------------------------------------------------------------------
def test_add_get_remove_and_dict_access(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int16)
    x = np.arange(4, dtype=np.int16)
    assert a.add(x, "0") == "0"
    assert a.add(data=x + 1, name="1") == "1"
    a["51"] = x + 51
    assert len(a) == 3
    assert "hi" not in a and "0" in a
    np.testing.assert_array_equal(a["51"], x + 51)
    np.testing.assert_array_equal(a.get("1"), x + 1)
    assert sorted(a.keys()) == ["0", "1", "51"]
    assert sorted(a) == ["0", "1", "51"]
    vals = {k: v for k, v in a.items()}
    assert sorted(vals) == ["0", "1", "51"]
    assert sum(int(v[0]) for v in a.values()) == 0 + 1 + 51
    # reading returns a copy: mutating it changes nothing stored
    got = a["0"]
    got[:] = 99
    assert a["0"].tolist() == [0, 1, 2, 3]
    # overwrite
    a["0"] = x * 10
    assert a["0"].tolist() == [0, 10, 20, 30]
    assert a.remove("51") == "51"
    del a["1"]
    assert list(a.keys()) == ["0"]
    with pytest.raises(KeyError):
        a["1"]
    with pytest.raises(KeyError):
        a.remove("1")
    with pytest.raises(KeyError):
        del a["never"]
    assert a.contains_remote_references is False
    assert a.remote_reference_sample_keys == []


def _bad_samples():
    good = np.zeros((3, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.asmatrix(good)
    return {
        "dtype mismatch": good.astype(np.float64),
        "int dtype": good.astype(np.int32),
        "wrong shape": np.zeros((4, 3), np.float32),
        "too small": np.zeros((3, 3), np.float32),
        "wrong rank": np.zeros((3, 4, 1), np.float32),
        "rank 1": np.zeros(12, np.float32),
        "non-contiguous": np.zeros((3, 8), np.float32)[:, ::2],
        "fortran": np.asfortranarray(np.zeros((3, 4), np.float32)),
        "list": [[0.0] * 4] * 3,
        "scalar": 1.0,
        "none": None,
        "matrix": matrix,
        "big-endian": good.astype(">f4"),
        "object": np.empty((3, 4), dtype=object),
    }


@pytest.mark.parametrize("case", sorted(_bad_samples()))
def test_add_refuses_data_not_fitting_fixed_schema(repo, co, case):
    a = co.arraysets.init_arrayset("a", shape=(3, 4), dtype=np.float32)
    a["ok"] = np.zeros((3, 4), np.float32)
    before = journal(repo)
    bad = _bad_samples()[case]
    with pytest.raises(ValueError):
        a["k"] = bad
    with pytest.raises(ValueError):
        a.add(bad, "k")
    with a, pytest.raises(ValueError):
        a["k"] = bad
    assert "k" not in a and len(a) == 1
    assert journal(repo) == before


def test_variable_shape(repo, co):
    a = co.arraysets.init_arrayset("v", shape=(10, 10), dtype=np.uint8, variable_shape=True)
    assert a.variable_shape is True and a.shape == (10, 10)
    shapes = [(10, 10), (1, 1), (3, 10), (10, 2), (7, 5)]
    for i, s in enumerate(shapes):
        a[i] = np.full(s, i, np.uint8)
    before = journal(repo)
    for bad in (
        np.zeros((11, 1), np.uint8),  # exceeds max in dim 0
        np.zeros((1, 11), np.uint8),  # exceeds max in dim 1
        np.zeros((5,), np.uint8),  # wrong rank
        np.zeros((2, 2, 2), np.uint8),  # wrong rank
        np.zeros((0, 3), np.uint8),  # zero-size dimension
        np.zeros((3, 3), np.int8),
    ):  # dtype
        with pytest.raises(ValueError):
            a["bad"] = bad
    assert journal(repo) == before
    sha = co.commit("var")
    rc = repo.checkout(commit=sha)
    for i, s in enumerate(shapes):
        got = rc.arraysets["v"][i]
        assert got.shape == s and (got == i).all()
    rc.close()


def test_unnamed_samples(repo, co):
    a = co.arraysets.init_arrayset("u", shape=(2,), dtype=np.int32, named_samples=False)
    assert a.named_samples is False
    k1 = a.add(np.array([1, 2], np.int32))
    k2 = a.add(np.array([3, 4], np.int32))
    assert isinstance(k1, str) and k1 != k2
    with pytest.raises(ValueError):
        a.add(np.array([5, 6], np.int32), "named")
    with pytest.raises(ValueError):
        a["named"] = np.array([5, 6], np.int32)
    assert a[k1].tolist() == [1, 2] and a[k2].tolist() == [3, 4]
    n = co.arraysets.init_arrayset("n", shape=(2,), dtype=np.int32)
    with pytest.raises(ValueError):
        n.add(np.array([1, 2], np.int32))  # named arrayset needs a name
    assert len(n) == 0
    sha = co.commit("unnamed")
    rc = repo.checkout(commit=sha)
    assert sorted(rc.arraysets["u"].keys()) == sorted([k1, k2])
    rc.close()


def test_multi_add(repo, co):
    img = co.arraysets.init_arrayset("img", shape=(2, 2), dtype=np.uint8, named_samples=False)
    lbl = co.arraysets.init_arrayset("lbl", shape=(1,), dtype=np.int64, named_samples=False)
    named = co.arraysets.init_arrayset("named", shape=(1,), dtype=np.int64)
    keys = [
        co.arraysets.multi_add(
            {"img": np.full((2, 2), i, np.uint8), "lbl": np.array([i], np.int64)}
        )
        for i in range(5)
    ]
    assert len(set(keys)) == 5
    for i, k in enumerate(keys):
        assert (img[k] == i).all() and lbl[k].tolist() == [i]
    before = journal(repo)
    with pytest.raises(KeyError):
        co.arraysets.multi_add({"img": np.zeros((2, 2), np.uint8), "missing": np.zeros(1)})
    with pytest.raises(ValueError):
        co.arraysets.multi_add({"named": np.zeros(1, np.int64)})
    with pytest.raises(ValueError):  # second array is bad: nothing is added
        co.arraysets.multi_add({"img": np.zeros((2, 2), np.uint8), "lbl": np.zeros(1, np.float32)})
    with pytest.raises(ValueError):
        co.arraysets.multi_add({})
    assert journal(repo) == before
    assert len(img) == len(lbl) == 5 and len(named) == 0
    sha = co.commit("multi")
    rc = repo.checkout(commit=sha)
    assert sorted(rc.arraysets["img"].keys()) == sorted(rc.arraysets["lbl"].keys())
    rc.close()


# --------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------
def test_str_and_int_keys_are_distinct(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(1,), dtype=np.int64)
    a["1"] = np.array([100], np.int64)
    a[1] = np.array([200], np.int64)
    a[0] = np.array([0], np.int64)
    a["01"] = np.array([1], np.int64)
    assert len(a) == 4
    assert a["1"].tolist() == [100] and a[1].tolist() == [200]
    assert 1 in a and "1" in a and "0" not in a and 0 in a
    del a["1"]
    assert 1 in a and "1" not in a
    sha = co.commit("keys")
    rc = repo.checkout(commit=sha)
    ra = rc.arraysets["a"]
    assert sorted(ra.keys(), key=repr) == sorted([0, 1, "01"], key=repr)
    assert {type(k) for k in ra} == {int, str}
    assert ra[1].tolist() == [200]
    with pytest.raises(KeyError):
        ra["1"]
    rc.close()


@pytest.mark.parametrize(
    "key", ["", "a b", "a/b", "é", "a\x00b", "k" * 201, -1, True, 1.5, None, b"bytes", ("t",)]
)
def test_invalid_sample_keys(repo, co, key):
    a = co.arraysets.init_arrayset("a", shape=(1,), dtype=np.int64)
    before = journal(repo)
    with pytest.raises(ValueError):
        a.add(np.zeros(1, np.int64), key)
    assert key not in a if not isinstance(key, tuple) else True
    assert len(a) == 0
    assert journal(repo) == before


def test_unusual_but_valid_keys(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(1,), dtype=np.int64)
    keys = ["..", ".", ".git", "-", "_", "a.b-c_d", "K" * 200, 0, 2**62]
    for i, k in enumerate(keys):
        a[k] = np.array([i], np.int64)
    sha = co.commit("odd keys")
    rc = repo.checkout(commit=sha)
    for i, k in enumerate(keys):
        assert rc.arraysets["a"][k].tolist() == [i]
    rc.close()


# --------------------------------------------------------------------------
# reads: get_batch, slicing
# --------------------------------------------------------------------------
def test_get_batch(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(8,), dtype=np.float32)
    with a:
        for i in range(300):
            a[i] = np.full(8, i, np.float32)
    names = [299, 0, 5, 5, 150]
    got = a.get_batch(names)
    assert [int(x[0]) for x in got] == names
    sha = co.commit("c")
    rc = repo.checkout(commit=sha)
    ra = rc.arraysets["a"]
    got = ra.get_batch(names, n_cpus=1)
    assert isinstance(got, list) and [int(x[0]) for x in got] == names
    assert ra.get_batch([]) == []
    with pytest.raises(KeyError):
        ra.get_batch([1, "missing"])
    with pytest.raises(ValueError):
        ra.get_batch([1], n_cpus=0)
    big = ra.get_batch(range(300))
    assert all((v == i).all() for i, v in enumerate(big))
    rc.close()


@pytest.mark.parametrize("n", [3, 2000])  # a few blocks' items, and many blocks'
def test_get_batch_of_0d_samples_gives_0d_arrays_as_reads_do(repo, co, n):
    a = co.arraysets.init_arrayset("s", prototype=np.array(0.5))
    with a:
        for i in range(n):
            a[i] = np.array(i + 0.5)
    keys = list(range(n))[::-1]

    def check(aset) -> None:
        got = aset.get_batch(keys)
        assert all(type(v) is np.ndarray and v.shape == () for v in got)
        assert [float(v) for v in got] == [k + 0.5 for k in keys]
        assert type(aset[keys[0]]) is np.ndarray
        got[0][()] = -1.0  # each the caller's own
        assert float(got[1]) == keys[1] + 0.5

    check(a)
    rc = repo.checkout(commit=co.commit("scalars"))
    check(rc.arraysets["s"])
    rc.close()


def test_subarray_slicing_is_read_only(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(20, 3), dtype=np.int32)
    full = np.arange(60, dtype=np.int32).reshape(20, 3)
    a["x"] = full
    sha = co.commit("c")
    for acc in (a, repo.checkout(commit=sha).arraysets["a"]):
        part = acc["x", 0:10]
        np.testing.assert_array_equal(part, full[0:10])
        assert not part.flags.writeable
        with pytest.raises(ValueError):
            part[0, 0] = 5
        np.testing.assert_array_equal(acc["x", 2:8:2, 1], full[2:8:2, 1])
        np.testing.assert_array_equal(acc["x", ..., 2], full[..., 2])
        assert acc["x", 3, 1] == full[3, 1]
        with pytest.raises(KeyError):
            acc["missing", 0:1]
        with pytest.raises(IndexError):
            acc["x", 25]
    assert a["x"].tolist() == full.tolist()  # stored data untouched


def test_reader_items_values_keys_consistent(written_repo):
    rc = written_repo.checkout()
    a = rc.arraysets["aset"]
    keys = list(a.keys())
    assert sorted(keys) == sorted(str(i) for i in range(10))
    items = list(a.items())
    assert [k for k, _ in items] == keys
    for k, v in items:
        assert (v == int(k)).all() and v.shape == (5, 7) and v.dtype == np.float32
    assert len(list(a.values())) == 10
    r = repr(a)
    for needle in (
        "Hangar ArraysetDataReader",
        "Arrayset Name            : aset",
        "Variable Shape           : False",
        "(max) Shape              : (5, 7)",
        "Datatype                 : <class 'numpy.float32'>",
        "Named Samples            : True",
        "Access Mode              : r",
        "Number of Samples        : 10",
        "Partial Remote Data Refs : False",
        "Schema Hash              : ",
    ):
        assert needle in r, needle
    rc.close()


def test_schema_hash_depends_on_schema_only(co):
    a = co.arraysets.init_arrayset("a", shape=(784,), dtype=np.uint8)
    b = co.arraysets.init_arrayset("b", prototype=np.zeros(784, np.uint8))
    c = co.arraysets.init_arrayset("c", shape=(784,), dtype=np.uint8, variable_shape=True)
    assert a.schema_hash == b.schema_hash != c.schema_hash
    assert len(a.schema_hash) == 12 and int(a.schema_hash, 16) >= 0


# --------------------------------------------------------------------------
# batching with `with`
# --------------------------------------------------------------------------
def test_with_block_batches_and_flushes(repo, co):
    a1 = co.arraysets.init_arrayset("a1", shape=(16,), dtype=np.uint8)
    a2 = co.arraysets.init_arrayset("a2", shape=(1,), dtype=np.int64)
    with a1, a2:
        for i in range(500):
            a1[i] = np.full(16, i % 256, np.uint8)
            a2[i] = np.array([i], np.int64)
            if i == 250:
                # reads inside the block see what the block wrote
                assert a1[i][0] == 250 and a2.get_batch([0, 250])[1].tolist() == [250]
    assert len(a1) == len(a2) == 500
    # the batch is durable: another writer session sees it
    co.close()
    co2 = repo.checkout(write=True)
    assert len(co2.arraysets["a1"]) == 500
    assert co2.arraysets["a2"][499].tolist() == [499]
    sha = co2.commit("batched")
    co2.close()
    rc = repo.checkout(commit=sha)
    assert [int(v[0]) for v in rc.arraysets["a2"].get_batch(range(500))] == list(range(500))
    rc.close()


def test_with_arraysets_container_batches(co):
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    with co.arraysets as asets:
        for i in range(50):
            asets["a"][i] = np.full(2, i, np.uint8)
    assert len(a) == 50


def test_error_inside_with_block_keeps_earlier_samples(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    with pytest.raises(ValueError), a:
        a["ok"] = np.zeros(2, np.uint8)
        a["bad"] = np.zeros(3, np.uint8)
    assert "ok" in a and "bad" not in a
    # the batch ended: the writer's state is durable and usable
    a["after"] = np.ones(2, np.uint8)
    co.commit("c")
    assert sorted(a.keys()) == ["after", "ok"]


def test_identical_arrays_stored_once(repo, co):
    a = co.arraysets.init_arrayset("a", shape=(1024,), dtype=np.float64)
    rng = np.random.default_rng(0)
    arr = rng.random(1024)
    with a:
        for i in range(200):
            a[i] = arr
    co.commit("dupes")
    store = Path(repo._hdir) / "store" / "packs"
    size = sum(p.stat().st_size for p in store.glob("*.pack"))
    assert size < 3 * arr.nbytes, size
    assert all((a[i] == arr).all() for i in (0, 199))


@pytest.mark.parametrize("variable", [False, True])
def test_a_buffer_refilled_inside_a_block_stores_each_sample(repo, co, variable):
    """Samples added in a ``with`` block wait for their block to be written:
    refilling the same array for each ``aset[k] = buf`` stores what the array
    held at each call, not what it holds when the block ends."""
    a = co.arraysets.init_arrayset("a", shape=(28, 28), dtype=np.uint8, variable_shape=variable)
    buf = np.zeros((28, 28), np.uint8)
    with a:
        for i in range(10):
            buf[:] = i
            a[i] = buf
    assert [int(a[i][0, 0]) for i in range(10)] == list(range(10))
    co.commit("refilled")
    assert [int(a[i].max()) for i in range(10)] == list(range(10))
    co.close()
    assert repo.verify().ok


@pytest.mark.parametrize("in_block", [False, True])
def test_an_int_key_longer_than_a_name_is_refused_and_the_branch_stays_readable(repo, in_block):
    # 10**250 has 251 digits: encode_key refuses it; the fast int paths once wrote it,
    # and the commit's records were then unreadable (CorruptRecordError)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", prototype=np.zeros(3, np.uint8))
    with aset if in_block else contextlib.nullcontext():
        for i in range(600):
            aset[i] = np.full(3, i % 256, np.uint8)
        with pytest.raises(ValueError, match="digits"):
            aset[10**250] = np.zeros(3, np.uint8)
        with pytest.raises(ValueError, match="digits"):
            aset.add(np.zeros(3, np.uint8), 10**250)
        with pytest.raises(ValueError, match="digits"):
            aset.update({10**250: np.zeros(3, np.uint8)})
    co.commit("600 samples")
    co.close()
    rc = repo.checkout()
    assert len(rc.arraysets["x"]) == 600
    assert rc.arraysets["x"][599].tolist() == [87, 87, 87]
    rc.close()
    assert repo.verify().ok
