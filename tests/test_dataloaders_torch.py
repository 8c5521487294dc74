"""make_torch_dataset: DataLoader batches, worker processes, collates, checks."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

if os.environ.get("HANGAR_REQUIRE_FRAMEWORKS"):
    import torch  # .ci/run installs torch and sets this: never skipped there
else:
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0 to run these")

from torch.utils.data import DataLoader, Dataset, default_collate

from hangar_git import MissingPayloadError, make_torch_dataset
from hangar_git.dataloaders.torch_loader import (
    HangarTorchDataset,
    PadCollate,
    list_collate,
)

N = 40


def image(i: int) -> np.ndarray:
    return ((np.arange(6, dtype=np.int32).reshape(2, 3) + 7 * i) % 1000).astype(np.int32)


def label(i: int) -> np.ndarray:
    return np.array(i, dtype=np.int64)


def seq(i: int) -> np.ndarray:
    return np.full((1 + i % 5, 2), i, dtype=np.float32)


@pytest.fixture
def data_repo(repo):
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("images", shape=(2, 3), dtype=np.int32)
    lab = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
    sq = co.arraysets.init_arrayset("seq", shape=(5, 2), dtype=np.float32, variable_shape=True)
    with img, lab, sq:
        for i in range(N):
            img[i] = image(i)
            lab[i] = label(i)
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


def gather_log(monkeypatch, tmp_path):
    """A log of the store's batch reads (``PackReader.gather_into``), one line
    ``pid arrayset rows`` each (the arrayset told by the dtype of its rows);
    forked workers inherit the spy and append to it too."""
    from hangar_git.store.reader import PackReader

    orig = PackReader.gather_into
    log = tmp_path / "calls.log"
    names = {np.dtype(np.int32): "images", np.dtype(np.int64): "labels"}

    def spy(self, entries, out):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {names[out.dtype]} {len(out)}\n")
        return orig(self, entries, out)

    monkeypatch.setattr(PackReader, "gather_into", spy)
    return log


def epoch(loader) -> list[tuple[list, list]]:
    return [(b.images.tolist(), b.labels.tolist()) for b in loader]


def test_dataset_is_a_torch_dataset_of_namedtuples(rco):
    dset = make_torch_dataset(pair(rco))
    assert isinstance(dset, Dataset) and isinstance(dset, HangarTorchDataset)
    assert len(dset) == N and dset.keys == list(range(N))
    sample = dset[3]
    assert sample._fields == ("images", "labels")
    np.testing.assert_array_equal(sample.images, image(3))
    assert sample.labels == 3 and sample.labels.shape == ()
    np.testing.assert_array_equal(dset[-1].images, image(N - 1))
    with pytest.raises(IndexError):
        dset[N]
    with pytest.raises(TypeError, match="ints"):
        dset["3"]
    with pytest.raises(TypeError, match="ints"):
        dset[True]
    assert int(dset[np.int64(4)].labels) == int(dset[torch.tensor(4)].labels) == 4


def test_default_collate_gives_stacked_tensors(rco):
    loader = DataLoader(make_torch_dataset(pair(rco)), batch_size=16)
    batches = list(loader)
    assert len(batches) == 3
    first = batches[0]
    assert type(first).__name__ == "BatchTuple" and first._fields == ("images", "labels")
    assert first.images.dtype == torch.int32 and first.images.shape == (16, 2, 3)
    assert first.labels.dtype == torch.int64 and first.labels.shape == (16,)
    images = torch.cat([b.images for b in batches]).numpy()
    np.testing.assert_array_equal(images, np.stack([image(i) for i in range(N)]))
    assert torch.cat([b.labels for b in batches]).tolist() == list(range(N))


def test_keys_index_range_field_names(rco):
    dset = make_torch_dataset(pair(rco), keys=[9, 2, 30], index_range=slice(0, 1))
    assert [int(s.labels) for s in (dset[0], dset[1], dset[2])] == [9, 2, 30]
    dset = make_torch_dataset(pair(rco), index_range=slice(5, 25, 5), field_names=["x", "y"])
    (batch,) = list(DataLoader(dset, batch_size=10))
    assert batch._fields == ("x", "y") and batch.y.tolist() == [5, 10, 15, 20]
    with pytest.raises(ValueError, match="field_names"):
        make_torch_dataset(pair(rco), field_names=["only-one"])
    with pytest.raises(KeyError):
        make_torch_dataset(pair(rco), keys=[1, N + 5])


def test_dataloader_shuffle_keeps_fields_zipped(rco):
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(make_torch_dataset(pair(rco)), batch_size=8, shuffle=True, generator=gen)
    labels = []
    for b in loader:
        for img, lab in zip(b.images.numpy(), b.labels.tolist(), strict=True):
            np.testing.assert_array_equal(img, image(lab))
            labels.append(lab)
    assert sorted(labels) == list(range(N)) and labels != list(range(N))


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_yield_exactly_the_samples_of_num_workers_0(rco, start):
    dset = make_torch_dataset(pair(rco), index_range=slice(1, N))

    def run(workers, shuffle, **kw):
        loader = DataLoader(
            dset,
            batch_size=6,
            num_workers=workers,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(7),
            **kw,
        )
        return epoch(loader)

    plain = run(0, False)  # opens handles in this process before the workers start
    shuffled = run(0, True)
    assert shuffled != plain
    # the order comes from the sampler in this process: same seed, same epoch
    assert run(2, True, multiprocessing_context=start) == shuffled
    if start == "fork":  # cheap: also unshuffled
        assert run(2, False, multiprocessing_context=start) == plain


def test_persistent_workers_over_two_epochs(rco):
    dset = make_torch_dataset(pair(rco))
    loader = DataLoader(
        dset, batch_size=10, num_workers=2, persistent_workers=True, multiprocessing_context="fork"
    )
    expect = epoch(DataLoader(dset, batch_size=10))
    assert epoch(loader) == expect
    assert epoch(loader) == expect


def test_dataset_pickles_without_handles(rco):
    dset = make_torch_dataset(pair(rco), field_names=("a", "b"))
    dset[0]  # opens a checkout in this process
    again = pickle.loads(pickle.dumps(dset))
    assert again.source.digests == dset.source.digests and again.source.keys == dset.keys
    assert again[5].b == 5 and again[5]._fields == ("a", "b")
    copy = pickle.loads(pickle.dumps(again[5]))  # samples pickle too
    assert type(copy) is type(again[5]) and copy.b == 5
    np.testing.assert_array_equal(copy.a, image(5))
    again.close()
    dset.close()


def test_dataset_outlives_the_users_checkout(data_repo):
    co = data_repo.checkout()
    dset = make_torch_dataset(pair(co))
    co.close()
    assert int(dset[7].labels) == 7


def test_a_batch_is_read_into_the_tensors_default_collate_returns(rco):
    dset = make_torch_dataset(pair(rco))
    batch = dset.__getitems__([3, 1, 4])
    assert all(isinstance(x, dset.sample_type) for x in batch)
    assert [int(x.labels) for x in batch] == [3, 1, 4]
    assert all(type(f) is np.ndarray for x in batch for f in x)  # 0-d labels too
    got = default_collate(batch)
    assert type(got) is dset.sample_type
    # the batch's own tensors: no per-sample conversion, no second stack
    assert all(
        t.data_ptr() == np.asarray(x).__array_interface__["data"][0]
        for t, x in zip(got, batch[0], strict=True)
    )
    np.testing.assert_array_equal(got.images.numpy(), np.stack([image(i) for i in (3, 1, 4)]))
    assert got.labels.dtype == torch.int64 and got.labels.tolist() == [3, 1, 4]
    # a stacked sample pickles as a plain one
    assert type(pickle.loads(pickle.dumps(batch[0]))) is dset.sample_type


def test_a_batch_changed_on_its_way_collates_as_changed(rco):
    dset = make_torch_dataset(pair(rco))
    batch = dset.__getitems__([0, 1, 2])
    batch[1] = dset[9]  # a transform replaced a sample
    assert default_collate(batch).labels.tolist() == [0, 9, 2]
    batch = dset.__getitems__([0, 1, 2])
    batch[2].images[:] = -1  # changed in place: a view of the batch tensor
    assert (default_collate(batch).images[2] == -1).all()
    batch = dset.__getitems__([5, 6])
    assert default_collate([*batch, dset[7]]).labels.tolist() == [5, 6, 7]
    assert default_collate(batch[:1]).labels.tolist() == [5]


def test_workers_send_stacked_batches(rco):
    dset = make_torch_dataset(pair(rco))
    loader = DataLoader(dset, batch_size=7, num_workers=2, multiprocessing_context="fork")
    assert epoch(loader) == epoch(DataLoader(dset, batch_size=7))


# ---- variable shapes ------------------------------------------------------------------
def test_variable_shape_needs_a_collate(rco):
    dset = make_torch_dataset([rco.arraysets["seq"], rco.arraysets["labels"]])
    with pytest.raises(RuntimeError):  # torch.stack of unequal shapes
        list(DataLoader(dset, batch_size=5))


@pytest.mark.parametrize("workers", [0, 2])
def test_pad_collate(rco, workers):
    dset = make_torch_dataset([rco.arraysets["seq"], rco.arraysets["labels"]])
    kw = {"multiprocessing_context": "fork"} if workers else {}
    loader = DataLoader(
        dset,
        batch_size=5,
        num_workers=workers,
        collate_fn=PadCollate(pad_value=-1.0, with_shapes=True),
        **kw,
    )
    seen = []
    for batch, shapes in loader:
        assert batch.seq.shape == (5, 5, 2) and batch.seq.dtype == torch.float32
        assert shapes.labels.shape == (5, 0)
        for row, shape, lab in zip(
            batch.seq, shapes.seq.tolist(), batch.labels.tolist(), strict=True
        ):
            assert shape == list(seq(lab).shape)
            assert (row[: shape[0]] == lab).all() and (row[shape[0] :] == -1).all()
            seen.append(lab)
    assert seen == list(range(N))
    collate = pickle.loads(pickle.dumps(PadCollate()))  # spawned workers get a copy
    plain = next(iter(DataLoader(dset, batch_size=3, collate_fn=collate)))
    assert plain.seq.shape == (3, 3, 2) and plain.seq[0, 1:].abs().sum() == 0


def test_list_collate(rco):
    dset = make_torch_dataset([rco.arraysets["seq"], rco.arraysets["labels"]])
    batch = next(iter(DataLoader(dset, batch_size=4, collate_fn=list_collate)))
    assert isinstance(batch.seq, list) and len(batch.seq) == 4
    for i, t in enumerate(batch.seq):
        assert isinstance(t, torch.Tensor) and tuple(t.shape) == seq(i).shape
    assert [int(t) for t in batch.labels] == [0, 1, 2, 3]


# ---- refusals ------------------------------------------------------------------------
def test_write_checkout_is_refused(data_repo):
    co = data_repo.checkout(write=True)
    with pytest.raises(TypeError, match="write-enabled"):
        make_torch_dataset(pair(co))
    assert co.diff.status() == "CLEAN"
    co.close()


def test_remote_references_are_reported_before_reading(data_repo, tmp_path, records_only_copy):
    local = {
        "images": {i: image(i) for i in range(N) if i != 12},
        "labels": {i: label(i) for i in range(N)},
    }
    rc = records_only_copy(data_repo, tmp_path / "clone", local).checkout()
    with pytest.raises(MissingPayloadError, match=r"'images': 12\b"):
        make_torch_dataset(pair(rc))
    dset = make_torch_dataset(pair(rc), keys=[11, 13])
    assert [int(s.labels) for s in (dset[0], dset[1])] == [11, 13]
    rc.close()


# ---- commits, batch path ---------------------------------------------------------------
def test_workers_read_the_datasets_commit_while_the_branch_moves_on(data_repo):
    """Spawned workers open the dataset's commit, not the branch head, and read
    while a writer holds the repository."""
    old = data_repo.checkout()
    dset = make_torch_dataset(pair(old))
    old.close()
    writer = data_repo.checkout(write=True)
    writer.arraysets["labels"][3] = np.array(-3, np.int64)
    del writer.arraysets["images"][4]
    writer.commit("relabel")  # the writer stays open (holds the writer lock)
    kw = {"batch_size": 8, "num_workers": 2, "multiprocessing_context": "spawn"}
    got = epoch(DataLoader(dset, **kw))
    assert got == epoch(DataLoader(dset, batch_size=8))
    labels = [lab for _, labs in got for lab in labs]
    assert labels == list(range(N))
    writer.close()
    new = data_repo.checkout()
    (batch,) = list(DataLoader(make_torch_dataset(pair(new), keys=[2, 3, 5]), batch_size=3))
    assert batch.labels.tolist() == [2, -3, 5]
    new.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_is_one_batch_read_per_arrayset(rco, monkeypatch, tmp_path, workers):
    from hangar_git.dataloaders import common, row_cache

    monkeypatch.setattr(common, "COLUMN_LIMIT", 0)  # no arrayset read whole
    monkeypatch.setattr(row_cache, "CACHE_LIMIT", 0)  # nor cached (see test_row_cache_*)
    # stacked batches are read straight into one array per arrayset
    log = gather_log(monkeypatch, tmp_path)
    kw = {"num_workers": workers, "multiprocessing_context": "fork"} if workers else {}
    loader = DataLoader(make_torch_dataset(pair(rco)), batch_size=16, **kw)
    assert epoch(loader) == epoch(DataLoader(make_torch_dataset(pair(rco)), batch_size=16))
    calls = [line.split(maxsplit=1)[1] for line in log.read_text().split("\n")[:-1]]
    expect = [f"{name} {n}" for n in (16, 16, 8) for name in ("images", "labels")]
    assert sorted(calls) == sorted(expect * 2)


@pytest.mark.parametrize("workers", [0, 2])
def test_small_arraysets_are_read_whole_once_per_process(rco, monkeypatch, tmp_path, workers):
    from hangar_git.dataloaders import common, row_cache

    # the labels (8 bytes a sample) are read whole, the images batch by batch
    monkeypatch.setattr(common, "COLUMN_LIMIT", 8 * (N - 1))
    monkeypatch.setattr(row_cache, "CACHE_LIMIT", 0)  # (see test_row_cache_*)
    log = gather_log(monkeypatch, tmp_path)
    kw = {"num_workers": workers, "multiprocessing_context": "fork"} if workers else {}
    dset = make_torch_dataset(pair(rco), index_range=slice(1, N))
    loader = DataLoader(dset, batch_size=8, shuffle=True, **kw)
    got = epoch(loader)
    assert sorted(lab for _, labs in got for lab in labs) == list(range(1, N))
    for imgs, labs in got:
        assert imgs == [image(lab).tolist() for lab in labs]
    calls = [line.split() for line in log.read_text().split("\n")[:-1]]
    # the labels once, whole, when the dataset was made (forked workers inherit
    # them); the images one read per batch, in the process reading the batch
    assert [c for c in calls if c[1] == "labels"] == [[str(os.getpid()), "labels", str(N - 1)]]
    readers = {pid for pid, aset, _ in calls if aset == "images"}
    assert len(readers) == max(workers, 1) and (str(os.getpid()) in readers) == (not workers)
    image_reads = sorted(int(n) for _, aset, n in calls if aset == "images")
    assert image_reads == [7, *[8] * 4]
    # after close(), a process reads them again, once
    dset.close()
    log.unlink()
    assert len(epoch(DataLoader(dset, batch_size=8))) == 5
    calls = [line.split()[1:] for line in log.read_text().split("\n")[:-1]]
    assert calls.count(["labels", str(N - 1)]) == 1 and len(calls) == 6


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_look_up_no_digest(rco, monkeypatch, tmp_path, workers):
    """The store's index entries of the selected samples are found once, when
    the dataset is made; forked workers inherit them: a batch is read
    straight from them, with no digest looked up in the store's index."""
    from hangar_git.dataloaders import common
    from hangar_git.store.reader import PackReader

    monkeypatch.setattr(common, "COLUMN_LIMIT", 0)  # no arrayset read whole
    orig = PackReader.lookup
    log = tmp_path / "lookups.log"

    def spy(self, digests):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {len(digests)}\n")
        return orig(self, digests)

    monkeypatch.setattr(PackReader, "lookup", spy)
    dset = make_torch_dataset(pair(rco), index_range=slice(1, N))
    # by this process, the dataset made (none when the places kept for the
    # key tables gave the entries)
    made = log.read_text().split("\n")[:-1] if log.exists() else []
    kw = {"num_workers": workers, "multiprocessing_context": "fork"} if workers else {}
    got = epoch(DataLoader(dset, batch_size=8, shuffle=True, **kw))
    assert sorted(lab for _, labs in got for lab in labs) == list(range(1, N))
    for imgs, labs in got:
        assert imgs == [image(lab).tolist() for lab in labs]
    assert (log.read_text().split("\n")[:-1] if log.exists() else []) == made


def test_batches_read_after_gc_moved_the_payloads(repo, monkeypatch):
    """A dataset made before ``gc`` moved its payloads to a new pack reads them
    afresh from there (its index entries name blocks gone)."""
    from hangar_git.dataloaders import common
    from hangar_git.gc import gc

    monkeypatch.setattr(common, "COLUMN_LIMIT", 0)  # no arrayset read whole

    co = repo.checkout(write=True)
    with co.arraysets.init_arrayset("images", shape=(2, 3), dtype=np.int32) as img:
        for i in range(N):
            img[i] = image(i)
    co.commit("keep")
    co.close()
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["images"] as img:
        for i in range(N, 3 * N):
            img[i] = image(i)
    co.commit("dead")
    co.close()
    repo.checkout(write=True, branch="master").close()  # the writer's branch again
    rco = repo.checkout()
    dset = make_torch_dataset([rco.arraysets["images"]])
    repo.remove_branch("dev", force=True)
    assert gc(repo, threshold=0.0).packs_compacted
    for _ in range(2):  # the next epoch too
        got = [b.images.tolist() for b in DataLoader(dset, batch_size=16)]
        want = [image(i).tolist() for i in range(N)]
        assert got == [want[0:16], want[16:32], want[32:N]]
    dset.close()
    rco.close()


def test_small_batches_come_from_workers_through_the_pipe(rco, monkeypatch):
    """A worker sends a small batch as bytes through its queue (not as a
    shared-memory tensor, whose file descriptor costs the main process about
    a millisecond to receive); a large one in shared memory."""
    from hangar_git.dataloaders import torch_loader

    dset = make_torch_dataset(pair(rco))
    kw = {"batch_size": 8, "num_workers": 2, "multiprocessing_context": "fork"}
    expect = epoch(DataLoader(dset, batch_size=8))
    for limit, shared in ((1 << 20, False), (0, True)):
        monkeypatch.setattr(torch_loader, "PIPE_LIMIT", limit)  # forked workers inherit it
        batches = list(DataLoader(dset, **kw))
        assert [(b.images.tolist(), b.labels.tolist()) for b in batches] == expect
        for b in batches:
            assert type(b) is dset.sample_type
            assert all(type(t) is torch.Tensor and t.is_shared() == shared for t in b)
            b.images[0] = -1  # writeable, in this process


def test_a_piped_batch_pickles_as_a_plain_batch(rco):
    from hangar_git.dataloaders.torch_loader import _piped_type

    dset = make_torch_dataset(pair(rco))
    kind = dset.sample_type
    piped = _piped_type(kind)(torch.arange(6).reshape(2, 3), torch.tensor([1, 2]))
    back = pickle.loads(pickle.dumps(piped))
    assert type(back) is kind and back.images.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert type(back.labels) is torch.Tensor and back.labels.tolist() == [1, 2]
    # fields changed on the way to what numpy cannot hold: pickled as usual
    odd = _piped_type(kind)(torch.ones(2, dtype=torch.bfloat16), torch.tensor([1, 2]))
    back = pickle.loads(pickle.dumps(odd))
    assert type(back) is kind and back.images.dtype == torch.bfloat16
    assert back.labels.tolist() == [1, 2]
    back = pickle.loads(pickle.dumps(_piped_type(kind)(torch.ones(2), "text")))
    assert type(back) is kind and back.labels == "text" and back.images.tolist() == [1, 1]


def test_getitems_gives_the_samples_of_getitem(rco):
    dset = make_torch_dataset(pair(rco))
    for rows in ([5, 3, 3, 0], [N - 1, -1, -N], range(N)):
        batch = dset.__getitems__(rows)
        assert len(batch) == len(rows)
        for got, i in zip(batch, rows, strict=True):
            one = dset[i]
            assert type(got) is not type(one) and isinstance(got, type(one))
            for a, b in zip(got, one, strict=True):
                assert type(a) is type(b) is np.ndarray
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexError):
        dset.__getitems__([0, N])
    with pytest.raises(TypeError):
        dset.__getitems__([0, 1.0])
    with pytest.raises(TypeError):
        dset.__getitems__([True])
