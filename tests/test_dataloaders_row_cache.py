"""The decoded-sample cache of the dataloaders (hangar_git.dataloaders.row_cache).

A shuffled batch reads the whole blocks it touches once, into memory that
forked workers share; ordered batches read straight from the store.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from hangar_git.dataloaders import common, row_cache
from hangar_git.dataloaders.common import SampleSource
from hangar_git.dataloaders.row_cache import RowCache

N = 200  # 4 KiB samples of noise: about 16 to a 64 KiB block, so a dozen blocks


def image(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((32, 32)).astype(np.float32)


@pytest.fixture
def rco(repo):
    co = repo.checkout(write=True)
    with co.arraysets.init_arrayset("images", shape=(32, 32), dtype=np.float32) as img:
        for i in range(N):
            img[i] = image(i)
    co.commit("data")
    co.close()
    co = repo.checkout()
    yield co
    co.close()


@pytest.fixture
def no_columns(monkeypatch):
    monkeypatch.setattr(common, "COLUMN_LIMIT", 0)  # no arrayset read whole


def gather_log(monkeypatch, tmp_path):
    """A log of the store's batch reads: ``pid rows`` a line (forked workers too)."""
    from hangar_git.store.reader import PackReader

    orig = PackReader.gather_into
    log = tmp_path / "gathers.log"

    def spy(self, entries, out):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {len(out)}\n")
        return orig(self, entries, out)

    monkeypatch.setattr(PackReader, "gather_into", spy)
    return log


def gathered(log) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[1]) for line in log.read_text().split("\n")[:-1]]


def read(source: SampleSource, indices: list[int]) -> np.ndarray:
    out = np.empty((len(indices), 32, 32), np.float32)
    source.read_stacked(indices, [out])
    return out


def want(indices) -> np.ndarray:
    return np.stack([image(i) for i in indices])


def shuffled_batches(seed: int, size: int = 10) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(N).tolist()
    return [order[i : i + size] for i in range(0, N, size)]


def test_a_shuffled_epoch_reads_each_block_once(rco, no_columns, monkeypatch, tmp_path):
    log = gather_log(monkeypatch, tmp_path)
    source = SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    cache = source._pool.caches[0]
    assert cache is not None and cache.filled_blocks() == 0
    for batch in shuffled_batches(1):
        np.testing.assert_array_equal(read(source, batch), want(batch))
    # every selected sample read once (its whole block with the first batch
    # needing it), in fewer reads than batches
    assert sum(gathered(log)) == N and len(gathered(log)) < N // 10
    assert cache.filled_blocks() == len(np.unique(cache._block_pos)) > 5
    log.unlink()
    for batch in shuffled_batches(2):  # the next epoch: all from memory
        np.testing.assert_array_equal(read(source, batch), want(batch))
    assert gathered(log) == []
    source.close()
    assert source._pool.caches == {}


def test_ordered_batches_are_read_straight_from_the_store(rco, no_columns, monkeypatch, tmp_path):
    log = gather_log(monkeypatch, tmp_path)
    source = SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    for lo in range(0, N, 64):
        batch = list(range(lo, min(lo + 64, N)))
        np.testing.assert_array_equal(read(source, batch), want(batch))
    assert gathered(log) == [64, 64, 64, 8]  # the batches themselves
    assert source._pool.caches[0].filled_blocks() == 0
    # once cached (a shuffled batch took its blocks), an ordered batch is taken from memory
    read(source, [150, 3])
    log.unlink()
    first = source._pool.caches[0]._block_pos[3]
    run = [i for i in range(N) if source._pool.caches[0]._block_pos[i] == first]
    np.testing.assert_array_equal(read(source, run), want(run))
    assert gathered(log) == []
    source.close()


def test_forked_workers_share_the_cache_with_later_workers(rco, no_columns, monkeypatch, tmp_path):
    if not os.environ.get("HANGAR_REQUIRE_FRAMEWORKS"):  # .ci/run: torch installed, never skipped
        pytest.importorskip("torch", reason="pip install torch==2.13.0 to run these")
    from torch.utils.data import DataLoader

    from hangar_git import make_torch_dataset

    log = gather_log(monkeypatch, tmp_path)
    dset = make_torch_dataset(rco.arraysets["images"])

    def run() -> list[int]:
        loader = DataLoader(
            dset, batch_size=10, shuffle=True, num_workers=2, multiprocessing_context="fork"
        )
        return [which[row.tobytes()] for b in loader for row in b.images.numpy()]

    which = {image(i).tobytes(): i for i in range(N)}  # each sample told by its bytes
    got = run()
    assert sorted(got) == list(range(N)) and got != sorted(got)
    reads = [line.split() for line in log.read_text().split("\n")[:-1]]
    assert {pid for pid, _ in reads} - {str(os.getpid())}  # read by the workers
    # each block read by one worker, or at most by both at once: never more
    assert N <= sum(int(n) for _, n in reads) <= 2 * N
    log.unlink()
    # new workers (not persistent), forked from this process: all in memory
    again = run()
    assert sorted(again) == list(range(N)) and again != got
    assert gathered(log) == []
    dset.close()


def test_a_cache_filled_before_gc_moved_the_payloads_is_still_right(repo, no_columns):
    """Batches of a dataset made before ``gc`` moved its payloads are right,
    from the cache or from the store."""
    from hangar_git.gc import gc

    co = repo.checkout(write=True)
    with co.arraysets.init_arrayset("images", shape=(32, 32), dtype=np.float32) as img:
        for i in range(N):
            img[i] = image(i)
    co.commit("keep")
    co.close()
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["images"] as img:
        for i in range(N, 2 * N):
            img[i] = image(i)
    co.commit("dead")
    co.close()
    repo.checkout(write=True, branch="master").close()
    rco = repo.checkout()
    source = SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    cache = source._pool.caches[0]
    np.testing.assert_array_equal(read(source, [7, 190]), want([7, 190]))  # two blocks cached
    repo.remove_branch("dev", force=True)
    assert gc(repo, threshold=0.0).packs_compacted
    for batch in shuffled_batches(4):  # from the cache, or from the new pack
        np.testing.assert_array_equal(read(source, batch), want(batch))
    assert cache.filled_blocks() >= 2
    source.close()
    rco.close()


def test_a_batch_the_store_cannot_gather_is_read_around_the_cache(rco, no_columns, monkeypatch):
    """When the store cannot give a batch's blocks from the entries found
    when the dataset was made (``gather_into`` False: moved, not local), the
    cache is not filled and the samples are read afresh."""
    from hangar_git.store.reader import PackReader

    source = SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    cache = source._pool.caches[0]
    monkeypatch.setattr(PackReader, "gather_into", lambda self, entries, out: False)
    batch = [5, 190, 77]
    np.testing.assert_array_equal(read(source, batch), want(batch))
    assert cache.filled_blocks() == 0 and source._pool.entries[0] is None
    np.testing.assert_array_equal(read(source, batch[::-1]), want(batch[::-1]))
    source.close()


def test_a_lock_not_obtained_reads_around_the_cache(rco, no_columns, monkeypatch):
    monkeypatch.setattr(row_cache, "LOCK_TIMEOUT", 0.01)
    source = SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    cache = source._pool.caches[0]
    assert cache._lock.acquire()  # held, as by a process killed holding it
    batch = [5, 190, 77]
    np.testing.assert_array_equal(read(source, batch), want(batch))
    assert not cache.usable
    np.testing.assert_array_equal(read(source, batch[::-1]), want(batch[::-1]))
    cache._lock.release()
    assert cache.filled_blocks() == 0
    source.close()


def test_only_selections_up_to_the_limit_are_cached(monkeypatch):
    blocks = np.repeat(np.arange(4), 10)
    assert RowCache.make(blocks, np.float32, (256,)) is not None  # 40 KiB
    monkeypatch.setattr(row_cache, "CACHE_LIMIT", 40 * 1024 - 1)
    assert RowCache.make(blocks, np.float32, (256,)) is None
    assert RowCache.make(blocks[:0], np.float32, (256,)) is None


def test_a_fill_that_fails_leaves_the_cache_empty():
    cache = RowCache(np.repeat(np.arange(3), 4), np.int64, ())
    out = np.empty(2, np.int64)

    def bad(rows: np.ndarray, got: np.ndarray) -> bool:
        got[:] = -1  # half-written, then found wrong
        return False

    assert not cache.take([5, 0], out, bad)
    assert cache.filled_blocks() == 0 and not cache.rows.any()

    def good(rows: np.ndarray, got: np.ndarray) -> bool:
        got[:] = rows * 10
        return True

    assert cache.take([5, 0], out, good)
    assert out.tolist() == [50, 0] and cache.filled_blocks() == 2
    assert cache.rows.tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 0, 0, 0, 0]
    cache.close()


def test_a_pickled_source_makes_its_own_cache(rco, no_columns):
    """As in a spawned worker: the cache is not pickled; the copy makes one
    of its own on first need, and reads the same samples."""
    import pickle

    source = SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    read(source, [3, 100])
    copy = pickle.loads(pickle.dumps(source))
    assert copy._pool.caches == {} and copy._pool.entries == {}
    for batch in shuffled_batches(5):
        np.testing.assert_array_equal(read(copy, batch), want(batch))
    mine = copy._pool.caches[0]
    assert mine is not None and mine is not source._pool.caches[0]
    assert mine.filled_blocks() == len(np.unique(mine._block_pos))
    assert source._pool.caches[0].filled_blocks() < mine.filled_blocks()
    copy.close()
    source.close()
