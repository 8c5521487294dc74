"""make_tf_dataset: elements, shuffling, variable shapes, checks."""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("HANGAR_REQUIRE_FRAMEWORKS"):
    import tensorflow as tf  # .ci/run installs it and sets this: never skipped there
else:
    tf = pytest.importorskip("tensorflow", reason="pip install tensorflow-cpu to run these")

from hangar_git import MissingPayloadError, make_tf_dataset
from hangar_git.dataloaders import tf_loader

N = 40


def image(i: int) -> np.ndarray:
    return (np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * i).astype(np.float32)


def seq(i: int) -> np.ndarray:
    return np.full((1 + i % 4, 1 + i % 3), i, dtype=np.int16)


@pytest.fixture
def data_repo(repo):
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("images", shape=(2, 3), dtype=np.float32)
    lab = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    sq = co.arraysets.init_arrayset("seq", shape=(4, 3), dtype=np.int16, variable_shape=True)
    with img, lab, sq:
        for i in range(N):
            img[i] = image(i)
            lab[i] = np.array([i], np.int64)
            sq[i] = seq(i)
    co.commit("data")
    co.close()
    return repo


@pytest.fixture
def rco(data_repo):
    co = data_repo.checkout()
    yield co
    co.close()


def pair(co):
    return [co.arraysets["images"], co.arraysets["labels"]]


def labels_of(ds) -> list[int]:
    return [int(lab[0]) for _, lab in ds.as_numpy_iterator()]


def test_elements_are_tuples_zipped_by_key(rco):
    ds = make_tf_dataset(pair(rco), shuffle=False)
    assert isinstance(ds, tf.data.Dataset)
    assert len(ds) == N
    spec = ds.element_spec
    assert spec[0].shape == (2, 3) and spec[0].dtype == tf.float32
    assert spec[1].shape == (1,) and spec[1].dtype == tf.int64
    elems = list(ds.as_numpy_iterator())
    assert len(elems) == N
    for i, (img, lab) in enumerate(elems):
        np.testing.assert_array_equal(img, image(i))
        assert lab.tolist() == [i]


def test_batching_after_the_fact(rco):
    ds = make_tf_dataset(pair(rco), shuffle=False).batch(16)
    shapes = [(tuple(x.shape), tuple(y.shape)) for x, y in ds]
    assert shapes == [((16, 2, 3), (16, 1))] * 2 + [((8, 2, 3), (8, 1))]


def test_chunks_do_not_change_the_samples(rco):
    from hangar_git.dataloaders.common import SampleSource

    src = SampleSource.from_arraysets(pair(rco))
    ds = tf_loader.dataset_from_source(src, shuffle=False, seed=None, chunk=7)
    assert labels_of(ds) == list(range(N))


def test_shuffle_is_global_and_new_each_epoch(rco):
    ds = make_tf_dataset(pair(rco), seed=1)  # shuffle=True is the default
    first, second = labels_of(ds), labels_of(ds)
    assert sorted(first) == sorted(second) == list(range(N))
    assert first != second and first != list(range(N))
    for img, lab in ds.as_numpy_iterator():  # still zipped by key
        np.testing.assert_array_equal(img, image(int(lab[0])))
    again = make_tf_dataset(pair(rco), seed=1)
    assert [labels_of(again), labels_of(again)] == [first, second]


def test_keys_and_index_range(rco):
    ds = make_tf_dataset(pair(rco), keys=[5, 1, 33], shuffle=False, index_range=slice(0, 2))
    assert labels_of(ds) == [5, 1, 33]
    ds = make_tf_dataset(pair(rco), index_range=slice(30, None), shuffle=False)
    assert labels_of(ds) == list(range(30, N))
    with pytest.raises(KeyError):
        make_tf_dataset(pair(rco), keys=[1, "1"])
    with pytest.raises(TypeError, match="slice"):
        make_tf_dataset(pair(rco), index_range=[1, 2])
    with pytest.raises(ValueError, match="shuffle"):
        make_tf_dataset(pair(rco), shuffle="yes")


def test_variable_shape_padded_and_ragged(rco):
    ds = make_tf_dataset([rco.arraysets["seq"], rco.arraysets["labels"]], shuffle=False)
    assert ds.element_spec[0].shape.as_list() == [None, None]
    assert ds.element_spec[0].dtype == tf.int16
    assert len(ds) == N
    for i, (s, lab) in enumerate(ds.as_numpy_iterator()):
        np.testing.assert_array_equal(s, seq(i))
        assert lab.tolist() == [i]
    padded = next(iter(ds.padded_batch(4)))[0].numpy()
    assert padded.shape == (4, 4, 3)
    for j in range(4):
        r, c = seq(j).shape
        assert (padded[j, :r, :c] == j).all() and padded[j, r:].sum() == 0
        assert padded[j, :, c:].sum() == 0
    ragged = next(iter(ds.ragged_batch(3)))[0]
    assert isinstance(ragged, tf.RaggedTensor)
    for j in range(3):
        np.testing.assert_array_equal(ragged[j].numpy(), seq(j))


def test_write_checkout_is_refused(data_repo):
    co = data_repo.checkout(write=True)
    with pytest.raises(TypeError, match="write-enabled"):
        make_tf_dataset(pair(co))
    assert co.diff.status() == "CLEAN"
    co.close()


def test_remote_references_are_reported_before_reading(data_repo, tmp_path, records_only_copy):
    local = {
        "images": {i: image(i) for i in range(N) if i != 3},
        "labels": {i: np.array([i], np.int64) for i in range(N)},
    }
    rc = records_only_copy(data_repo, tmp_path / "clone", local).checkout()
    with pytest.raises(MissingPayloadError, match=r"'images': 3\b"):
        make_tf_dataset(pair(rc))
    ds = make_tf_dataset(pair(rc), keys=[0, 1, 2], shuffle=False)
    assert labels_of(ds) == [0, 1, 2]
    rc.close()


def test_reads_the_checkout_commit_not_the_branch_head(data_repo):
    old = data_repo.checkout()
    first = old.commit_hash
    ds = make_tf_dataset(pair(old), shuffle=False)
    co = data_repo.checkout(write=True)
    co.arraysets["labels"][3] = np.array([-3], np.int64)
    co.commit("relabel")
    co.close()
    assert labels_of(ds) == list(range(N))
    old.close()
    at_first = data_repo.checkout(commit=first)
    assert labels_of(make_tf_dataset(pair(at_first), shuffle=False))[3] == 3
    at_first.close()
    head = data_repo.checkout()
    assert labels_of(make_tf_dataset(pair(head), shuffle=False))[3] == -3
    head.close()


@pytest.mark.parametrize("asets", [("images", "labels"), ("seq", "labels")])
def test_reads_are_chunks_through_the_batch_path(rco, monkeypatch, asets):
    from hangar_git.checkout import PayloadAccess
    from hangar_git.dataloaders.common import SampleSource

    orig = PayloadAccess.read_batch
    calls: list[tuple[str, int]] = []

    def spy(self, aset, digests, encs=None):
        calls.append((aset, len(digests)))
        return orig(self, aset, digests, encs)

    monkeypatch.setattr(PayloadAccess, "read_batch", spy)
    src = SampleSource.from_arraysets([rco.arraysets[a] for a in asets])
    ds = tf_loader.dataset_from_source(src, shuffle=True, seed=0, chunk=16)
    assert sorted(int(lab[0]) for _, lab in ds.as_numpy_iterator()) == list(range(N))
    assert calls == [(name, n) for n in (16, 16, 8) for name in asets]
