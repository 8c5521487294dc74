"""make_numpy_loader: selection, batching, shuffling, checks, handles."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

from hangar_git import MissingPayloadError, make_numpy_loader
from hangar_git.arrayset import ArraysetDataReader
from hangar_git.checkout import PayloadAccess
from hangar_git.records.view import CommitView

N = 50


def image(i: int) -> np.ndarray:
    """A unique 4x3 uint8 image per key (unique payloads: no dedup)."""
    return (np.arange(12, dtype=np.uint8).reshape(4, 3) + i) % 251


def label(i: int) -> np.ndarray:
    return np.array(i * 10, dtype=np.int64)  # rank 0


def build(repo, n: int = N) -> str:
    """Commit arraysets 'images' (4x3 uint8) and 'labels' (scalar int64), int keys."""
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("images", shape=(4, 3), dtype=np.uint8)
    lab = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
    with img, lab:
        for i in range(n):
            img[i] = image(i)
            lab[i] = label(i)
    sha = co.commit("data")
    co.close()
    return sha


@pytest.fixture
def data_repo(repo):
    build(repo)
    return repo


@pytest.fixture
def rco(data_repo):
    co = data_repo.checkout()
    yield co
    co.close()


def both(co):
    return [co.arraysets["images"], co.arraysets["labels"]]


# ---- batching --------------------------------------------------------------
def test_batches_are_stacked_and_zipped_by_key(rco):
    loader = make_numpy_loader(both(rco), batch_size=16)
    assert len(loader) == 4 and loader.num_samples == N
    assert loader.keys == list(range(N))
    batches = list(loader)
    assert [len(b.images) for b in batches] == [16, 16, 16, 2]
    images = np.concatenate([b.images for b in batches])
    labels = np.concatenate([b.labels for b in batches])
    assert images.dtype == np.uint8 and images.shape == (N, 4, 3)
    assert labels.dtype == np.int64 and labels.shape == (N,)
    np.testing.assert_array_equal(images, np.stack([image(i) for i in range(N)]))
    np.testing.assert_array_equal(labels, np.arange(N) * 10)
    imgs, labs = batches[0]  # a namedtuple unpacks like a tuple
    assert imgs.flags.writeable and labs.flags.writeable
    loader.close()


def test_drop_last(rco):
    loader = make_numpy_loader(both(rco), batch_size=16, drop_last=True)
    assert len(loader) == 3
    assert [len(b.labels) for b in loader] == [16, 16, 16]
    exact = make_numpy_loader(both(rco), batch_size=10, drop_last=True)
    assert len(exact) == 5 and sum(len(b.labels) for b in exact) == N


def test_single_arrayset(rco):
    loader = make_numpy_loader(rco.arraysets["labels"], batch_size=N)
    (batch,) = list(loader)
    assert batch._fields == ("labels",)
    np.testing.assert_array_equal(batch.labels, np.arange(N) * 10)


def test_every_epoch_rereads(rco):
    loader = make_numpy_loader(both(rco), batch_size=7)
    first = [b.labels.tolist() for b in loader]
    assert [b.labels.tolist() for b in loader] == first


def test_reads_go_through_the_batch_path_without_record_lookups(rco, monkeypatch):
    calls = []
    orig = PayloadAccess.read_batch

    def spy(self, aset, digests, encs=None):
        calls.append((aset, list(digests)))
        return orig(self, aset, digests, encs)

    loader = make_numpy_loader(both(rco), batch_size=20)
    monkeypatch.setattr(PayloadAccess, "read_batch", spy)

    def no_lookups(*args, **kwargs):
        raise AssertionError("a record look-up on the hot path")

    # digests were resolved when the loader was made: an epoch encodes no key and
    # looks up no record, it hands each batch's digests to the batch read
    monkeypatch.setattr(CommitView, "get_many", no_lookups)
    monkeypatch.setattr(ArraysetDataReader, "get_batch", no_lookups)
    monkeypatch.setattr(ArraysetDataReader, "get", no_lookups)
    assert len(list(loader)) == 3
    monkeypatch.undo()
    expect = [
        (name, rco.view.get_many(name, [f"i:{k}" for k in range(lo, min(lo + 20, N))]))
        for lo in (0, 20, 40)
        for name in ("images", "labels")
    ]
    assert calls == expect


# ---- selection --------------------------------------------------------------
def test_keys_select_and_order(rco):
    keys = [7, 3, 3, 42]
    loader = make_numpy_loader(both(rco), keys=keys, batch_size=3, index_range=slice(0, 1))
    assert loader.keys == keys  # keys win over index_range
    labels = np.concatenate([b.labels for b in loader])
    np.testing.assert_array_equal(labels, np.array(keys) * 10)


def test_index_range_slices_sorted_keys(rco):
    loader = make_numpy_loader(both(rco), index_range=slice(10, 40, 3), batch_size=100)
    (batch,) = list(loader)
    assert loader.keys == list(range(10, 40, 3))
    np.testing.assert_array_equal(batch.labels, np.arange(10, 40, 3) * 10)
    np.testing.assert_array_equal(batch.images[0], image(10))


def test_key_order_is_ints_then_strs_sorted(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(1,), dtype=np.int32)
    with a:
        for k in ["b", 10, "a", 2, "10", 0]:
            a[k] = np.array([hash(str(k) + type(k).__name__) % 1000], np.int32)
    co.commit("mixed keys")
    co.close()
    rc = repo.checkout()
    loader = make_numpy_loader(rc.arraysets["a"], batch_size=2)
    assert loader.keys == [0, 2, 10, "10", "a", "b"]
    got = np.concatenate([b.a for b in loader])
    np.testing.assert_array_equal(got, np.stack([rc.arraysets["a"][k] for k in loader.keys]))
    rc.close()


def test_numpy_integer_keys_are_int_keys(rco):
    loader = make_numpy_loader(both(rco), keys=np.arange(5, 8), batch_size=10)
    assert loader.keys == [5, 6, 7] and all(type(k) is int for k in loader.keys)
    (batch,) = list(loader)
    np.testing.assert_array_equal(batch.labels, [50, 60, 70])


@pytest.mark.parametrize("bad", [True, -1, "", "a/b", 1.0, None])
def test_invalid_keys_raise_valueerror(rco, bad):
    with pytest.raises(ValueError, match="key"):
        make_numpy_loader(both(rco), keys=[0, bad])


def test_missing_key_raises_keyerror(rco):
    with pytest.raises(KeyError, match="not in arrayset 'images'"):
        make_numpy_loader(both(rco), keys=[1, 2, "1", 999])


def test_bad_selection_arguments(rco):
    with pytest.raises(TypeError, match="single key"):
        make_numpy_loader(both(rco), keys="abc")
    with pytest.raises(TypeError, match="index_range must be a slice"):
        make_numpy_loader(both(rco), index_range=(0, 10))
    with pytest.raises(TypeError, match="index_range must be a slice"):
        make_numpy_loader(both(rco), keys=[1], index_range=3)
    with pytest.raises(ValueError, match="no samples selected"):
        make_numpy_loader(both(rco), index_range=slice(40, 10))
    with pytest.raises(ValueError, match="no samples selected"):
        make_numpy_loader(both(rco), keys=[])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"shuffle": 1}, "shuffle"),
        ({"drop_last": "yes"}, "drop_last"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"ragged": "stack"}, "ragged"),
        ({"field_names": ["x"]}, "1 field_names given for 2"),
        ({"field_names": ["x", "not valid"]}, "identifiers"),
        ({"field_names": "xy"}, "list or tuple"),
    ],
)
def test_bad_arguments_raise_valueerror(rco, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_numpy_loader(both(rco), **kwargs)


def test_bad_arraysets_argument(rco):
    with pytest.raises(TypeError, match="arrayset"):
        make_numpy_loader({"images": rco.arraysets["images"]})
    with pytest.raises(TypeError, match="expected an arrayset"):
        make_numpy_loader([rco.arraysets["images"], np.zeros(3)])
    with pytest.raises(ValueError, match="no arraysets"):
        make_numpy_loader([])


def test_arraysets_with_different_keys_use_common_keys(data_repo):
    co = data_repo.checkout(write=True)
    extra = co.arraysets.init_arrayset("extra", shape=(2,), dtype=np.float32)
    with extra:
        for i in range(5, 15):
            extra[i] = np.full(2, i, np.float32)
    co.commit("partial arrayset")
    co.close()
    rc = data_repo.checkout()
    with pytest.warns(UserWarning, match="only the 10 keys present in all"):
        loader = make_numpy_loader([rc.arraysets["labels"], rc.arraysets["extra"]], batch_size=100)
    (batch,) = list(loader)
    np.testing.assert_array_equal(batch.labels, np.arange(5, 15) * 10)
    np.testing.assert_array_equal(batch.extra[:, 0], np.arange(5, 15))
    rc.close()


def test_field_names(rco):
    loader = make_numpy_loader(both(rco), field_names=("x", "y"), batch_size=N)
    (batch,) = list(loader)
    assert batch._fields == ("x", "y")
    np.testing.assert_array_equal(batch.y, np.arange(N) * 10)


def test_arrayset_names_that_are_not_identifiers(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("my-images", shape=(2,), dtype=np.uint8)
    b = co.arraysets.init_arrayset("class", shape=(2,), dtype=np.uint8)
    a[1] = np.ones(2, np.uint8)
    b[1] = np.zeros(2, np.uint8)
    co.commit("names")
    co.close()
    rc = repo.checkout()
    (batch,) = list(make_numpy_loader([rc.arraysets["my-images"], rc.arraysets["class"]]))
    assert batch._fields == ("_0", "_1")
    np.testing.assert_array_equal(batch[0], [[1, 1]])
    rc.close()


# ---- shuffling ----------------------------------------------------------------
def test_shuffle_covers_every_sample_once_per_epoch(rco):
    loader = make_numpy_loader(both(rco), batch_size=8, shuffle=True, seed=3)
    epochs = []
    for _ in range(3):
        batches = list(loader)
        labels = np.concatenate([b.labels for b in batches])
        images = np.concatenate([b.images for b in batches])
        assert sorted(labels.tolist()) == list(range(0, 10 * N, 10))
        for lab, img in zip(labels, images, strict=True):  # still zipped by key
            np.testing.assert_array_equal(img, image(int(lab) // 10))
        epochs.append(labels.tolist())
    assert epochs[0] != epochs[1] != epochs[2]
    assert epochs[0] != list(range(0, 10 * N, 10))


def test_shuffle_seed_is_reproducible(rco):
    def run(seed):
        loader = make_numpy_loader(both(rco), batch_size=8, shuffle=True, seed=seed)
        return [np.concatenate([b.labels for b in loader]).tolist() for _ in range(2)]

    assert run(11) == run(11)
    assert run(11) != run(12)
    unseeded = make_numpy_loader(both(rco), batch_size=8, shuffle=True)
    assert len(list(unseeded)) == 7


# ---- commits and checkouts -----------------------------------------------------
def test_reads_the_checkout_commit_not_the_branch_head(data_repo):
    old = data_repo.checkout()
    first = old.commit_hash
    co = data_repo.checkout(write=True)
    co.arraysets["labels"][3] = np.array(-1, np.int64)
    del co.arraysets["labels"][4]
    co.commit("relabel")
    co.close()
    loader_old = make_numpy_loader(old.arraysets["labels"], batch_size=N)
    (batch,) = list(loader_old)
    np.testing.assert_array_equal(batch.labels, np.arange(N) * 10)
    new = data_repo.checkout()
    (batch,) = list(make_numpy_loader(new.arraysets["labels"], batch_size=N))
    assert batch.labels[3] == -1 and len(batch.labels) == N - 1
    at_first = data_repo.checkout(commit=first)
    (batch,) = list(make_numpy_loader(at_first.arraysets["labels"], batch_size=N))
    np.testing.assert_array_equal(batch.labels, np.arange(N) * 10)
    for c in (old, new, at_first):
        c.close()


def test_write_checkout_is_refused(data_repo):
    co = data_repo.checkout(write=True)
    with pytest.raises(TypeError, match="write-enabled checkout"):
        make_numpy_loader(co.arraysets["labels"])
    with pytest.raises(TypeError, match="write-enabled checkout"):
        make_numpy_loader(co.arraysets["labels"], keys=[1, 2])
    # nothing changed: the writer still works and holds nothing staged
    assert co.diff.status() == "CLEAN"
    co.arraysets["labels"][1000] = np.array(1, np.int64)
    co.commit("still writable")
    co.close()


def test_closed_checkout_is_refused(data_repo):
    co = data_repo.checkout()
    aset = co.arraysets["labels"]
    co.close()
    from hangar_git import ClosedError

    with pytest.raises(ClosedError):
        make_numpy_loader(aset)


def test_arraysets_of_different_commits_are_refused(data_repo):
    first = data_repo.checkout()
    co = data_repo.checkout(write=True)
    co.arraysets["labels"][3] = np.array(-1, np.int64)
    co.commit("second")
    co.close()
    second = data_repo.checkout()
    with pytest.raises(ValueError, match="same repository and commit"):
        make_numpy_loader([first.arraysets["images"], second.arraysets["labels"]])
    first.close()
    second.close()


def test_loader_outlives_the_users_checkout(data_repo):
    co = data_repo.checkout()
    loader = make_numpy_loader(both(co), batch_size=N)
    co.close()  # the loader opened its own handles
    (batch,) = list(loader)
    np.testing.assert_array_equal(batch.labels, np.arange(N) * 10)
    loader.close()
    (batch,) = list(loader)  # reopens after close
    assert len(batch.labels) == N
    with loader as same:
        assert same is loader


# ---- variable shapes ----------------------------------------------------------
@pytest.fixture
def ragged_repo(repo):
    co = repo.checkout(write=True)
    seq = co.arraysets.init_arrayset("seq", shape=(6, 3), dtype=np.float32, variable_shape=True)
    lab = co.arraysets.init_arrayset("lab", shape=(1,), dtype=np.int64)
    with seq, lab:
        for i in range(9):
            seq[i] = np.full((1 + i % 6, 1 + i % 3), i, np.float32)
            lab[i] = np.array([i], np.int64)
    co.commit("ragged")
    co.close()
    return repo


def test_variable_shape_as_lists(ragged_repo):
    rc = ragged_repo.checkout()
    loader = make_numpy_loader([rc.arraysets["seq"], rc.arraysets["lab"]], batch_size=4)
    batches = list(loader)
    assert [len(b.seq) for b in batches] == [4, 4, 1]
    for b in batches:
        assert isinstance(b.seq, list) and isinstance(b.lab, np.ndarray)
        for arr, (i,) in zip(b.seq, b.lab, strict=True):
            assert arr.shape == (1 + i % 6, 1 + i % 3) and (arr == i).all()
    rc.close()


def test_variable_shape_padded(ragged_repo):
    rc = ragged_repo.checkout()
    loader = make_numpy_loader(
        [rc.arraysets["seq"], rc.arraysets["lab"]], batch_size=4, ragged="pad", pad_value=-1
    )
    first = next(iter(loader))
    assert first.seq.shape == (4, 4, 3)  # max over samples 0..3: (4, 3)
    for j in range(4):
        r, c = 1 + j % 6, 1 + j % 3
        assert (first.seq[j, :r, :c] == j).all()
        assert (first.seq[j, r:, :] == -1).all() and (first.seq[j, :, c:] == -1).all()
    last = list(loader)[-1]
    assert last.seq.shape == (1, 3, 3)  # sample 8 alone: (3, 3), stacked as is
    rc.close()


# ---- remote references ------------------------------------------------------------
def test_remote_references_are_reported_before_reading(data_repo, tmp_path, records_only_copy):
    local = {
        "images": {i: image(i) for i in range(N) if i != 5},
        "labels": {i: label(i) for i in range(N) if i not in (7, 9)},
    }
    clone = records_only_copy(data_repo, tmp_path / "clone", local)
    rc = clone.checkout()
    assert sorted(rc.arraysets["labels"].remote_reference_sample_keys) == [7, 9]
    with pytest.raises(MissingPayloadError) as info:
        make_numpy_loader(both(rc))
    msg = str(info.value)
    assert "3 selected samples are remote references" in msg
    assert "'images': 5" in msg and "'labels': 7, 9" in msg
    assert info.value.remote_keys == {"images": [5], "labels": [7, 9]}
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MissingPayloadError, match="'labels': 7"):
        make_numpy_loader(rc.arraysets["labels"], keys=[1, 7])
    with pytest.raises(MissingPayloadError):
        make_numpy_loader(rc.arraysets["labels"], index_range=slice(5, 10))
    # samples that are all local still load
    loader = make_numpy_loader(both(rc), keys=[0, 1, 2, 8], batch_size=10)
    (batch,) = list(loader)
    np.testing.assert_array_equal(batch.labels, [0, 10, 20, 80])
    (batch,) = list(make_numpy_loader(both(rc), index_range=slice(10, 20), batch_size=10))
    np.testing.assert_array_equal(batch.labels, np.arange(10, 20) * 10)
    rc.close()


# ---- processes and threads --------------------------------------------------------
def test_loader_pickles_and_reads_in_a_new_process(rco, tmp_path):
    loader = make_numpy_loader(both(rco), batch_size=16, shuffle=True, seed=5)
    list(loader)  # opened handles in this process: they must not be pickled
    blob = pickle.dumps(loader)
    again = pickle.loads(blob)
    expect = [b.labels.tolist() for b in again]
    out = tmp_path / "blob.pkl"
    out.write_bytes(blob)
    code = (
        "import pickle, sys\n"
        f"loader = pickle.loads(open({str(out)!r}, 'rb').read())\n"
        "print([b.labels.tolist() for b in loader])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(expect)


def test_loader_reads_in_a_forked_child(rco):
    loader = make_numpy_loader(both(rco), batch_size=16)
    expect = [b.labels.tolist() for b in loader]  # handles open in the parent
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            got = [b.labels.tolist() for b in loader]
            os.write(w, pickle.dumps(got))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    assert pickle.loads(data) == expect
    assert [b.labels.tolist() for b in loader] == expect  # parent's handles still fine


def test_checkouts_are_reused_lent_one_at_a_time_and_closed(rco):
    loader = make_numpy_loader(both(rco), batch_size=16)
    pool = loader.source._pool
    for _ in range(3):
        list(loader)
    assert len(pool.opened) == 1  # sequential epochs share one checkout
    first, second = iter(loader), iter(loader)
    next(first)
    next(second)  # two epochs at once: each has its own checkout
    assert len(pool.opened) == 2
    assert pool.opened[0].co is not pool.opened[1].co
    first.close()
    second.close()
    checkouts = [h.co for h in pool.opened]
    loader.close()
    assert all(co.closed for co in checkouts)
    assert int(rco.arraysets["labels"][2]) == 20  # the user's checkout is untouched
    assert len(list(loader)) == len(loader)  # reopens
    assert len(pool.opened) == 1


def test_concurrent_epochs_in_threads(rco):
    loader = make_numpy_loader(both(rco), batch_size=5)
    expect = np.arange(N) * 10
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(3):
                got = np.concatenate([b.labels for b in loader])
                np.testing.assert_array_equal(got, expect)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    loader.close()


# ---- optional frameworks ---------------------------------------------------------------
def test_importing_hangar_git_imports_no_framework():
    code = (
        "import sys, hangar_git\n"
        "from hangar_git import make_torch_dataset, make_tf_dataset, make_numpy_loader\n"
        "import hangar_git.dataloaders\n"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("func", "module", "extra"),
    [
        ("make_torch_dataset", "torch", "hangar-git[torch]"),
        ("make_tf_dataset", "tensorflow", "hangar-git[tensorflow]"),
    ],
)
def test_missing_framework_gives_install_hint(rco, monkeypatch, func, module, extra):
    import hangar_git

    monkeypatch.setitem(sys.modules, module, None)  # import of it now fails
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        getattr(hangar_git, func)(rco.arraysets["labels"])


def test_closing_the_loader_mid_epoch_stops_that_epoch(rco):
    from hangar_git import ClosedError

    loader = make_numpy_loader(both(rco), batch_size=10)
    running = iter(loader)
    next(running)
    loader.close()  # closes the checkout the running epoch holds
    with pytest.raises(ClosedError):
        next(running)
    assert sum(len(b.labels) for b in loader) == N  # a new epoch reopens
