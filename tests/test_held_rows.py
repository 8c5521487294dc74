"""Samples held inside a ``with aset:`` block (:mod:`hangar_git.held_rows`).

Small fixed-shape samples set in a block are copied and held, then staged
together through the bulk path. What must not change: the digests and
records (those of the per-sample form), what reads inside the block see
(every sample set so far, in order), the copy taken when a sample is set,
and durability (a block whose samples could not be stored fails as a whole
and stages nothing; samples are durable once the block has exited).
"""

from __future__ import annotations

import errno
import warnings

import numpy as np
import pytest

from hangar_git import Repository, held_rows
from hangar_git.store import array_digest
from hangar_git.store.writer import PackWriter

N = held_rows.STACK_MIN + 88  # staged through the bulk path


def _reopen(repo: Repository):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(repo.path).checkout(write=True)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((28, 28), np.uint8), ((4,), np.float32), ((1,), np.int64), ((3, 2), np.bool_)],
)
@pytest.mark.parametrize("n", [N, 7])  # stacked, and one by one
def test_held_samples_get_the_per_sample_digests(repo, shape, dtype, n):
    rng = np.random.default_rng(3)
    data = (rng.random((n, *shape)) * 200).astype(dtype)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=shape, dtype=dtype)
    with aset:
        for i in range(n):
            aset[i] = data[i]
        assert co.holds_samples  # nothing read yet: all held
    assert not co.holds_samples
    for i in range(n):
        assert co.view.get("x", f"i:{i}") == array_digest(data[i])
    co.commit("held")
    co.close()
    co = _reopen(repo)
    assert np.array_equal(np.stack(co.arraysets["x"].get_batch(range(n))), data)
    co.close()


def test_reads_inside_a_block_see_every_sample_set_so_far(repo):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    buf = np.zeros(4, np.float32)
    with aset:
        for i in range(N):
            buf[:] = i
            aset[i] = buf  # the caller refills its array: the sample is a copy
        assert len(aset) == N
        assert np.array_equal(aset[5], np.full(4, 5, np.float32))
        aset[5] = np.full(4, -1, np.float32)
        del aset[6]  # held samples are staged before the removal
        assert 6 not in aset and 5 in aset
        aset[6] = np.full(4, -6, np.float32)  # set again after its removal
        aset["s"] = np.full(4, 9, np.float32)
        assert sorted(aset.get_batch([5, 6, "s"]), key=lambda a: float(a[0]))[0][0] == -6
    assert len(aset) == N + 1
    co.close()
    co = _reopen(repo)  # durable once the block exited
    aset = co.arraysets["x"]
    assert len(aset) == N + 1
    assert aset[5][0] == -1 and aset[6][0] == -6 and aset["s"][0] == 9
    assert aset[N - 1][0] == N - 1
    co.close()


def test_a_block_whose_held_samples_cannot_be_stored_stages_nothing(repo, monkeypatch):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    aset[0] = np.zeros(4, np.float32)
    co.commit("one")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PackWriter, "add_stacked", full)
    with pytest.raises(OSError) as err, aset:
        for i in range(1, N):
            aset[i] = np.full(4, i, np.float32)
        try:
            len(aset)  # the held samples are staged here, and fail
        except OSError:
            pass  # caught by the caller: the block must still fail
        aset["after"] = np.ones(4, np.float32)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert len(aset) == 1 and co.diff.status() == "CLEAN"
    co.close()
    co = _reopen(repo)
    assert len(co.arraysets["x"]) == 1
    co.close()


def test_large_variable_and_scalar_samples_are_not_held(repo):
    co = repo.checkout(write=True)
    var = co.arraysets.init_arrayset("v", shape=(8,), dtype=np.int32, variable_shape=True)
    big = co.arraysets.init_arrayset("b", shape=(300, 300), dtype=np.float64)  # > a block
    with var, big:
        var[0] = np.arange(3, dtype=np.int32)
        big[0] = np.ones((300, 300))
        assert not co.holds_samples
    assert np.array_equal(var[0], np.arange(3, dtype=np.int32))
    co.close()


def test_bad_samples_and_keys_in_a_block_raise_as_outside_it(repo):
    co = repo.checkout(write=True)
    named = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    unnamed = co.arraysets.init_arrayset("u", shape=(4,), dtype=np.float32, named_samples=False)
    good = np.zeros(4, np.float32)
    with named, unnamed:
        named[0] = good
        unnamed.add(good)  # its schema's first look-up stages what was held
        named[1] = good
        assert co.holding("x") is not None and co.holding("u") is not None
        for bad in (np.zeros(4, np.float64), np.zeros(5, np.float32), np.zeros(8, np.float32)[::2]):
            with pytest.raises(ValueError):
                named[2] = bad
        for key in ("bad key/", -1, 1.5):
            with pytest.raises(ValueError):
                named[key] = good
        with pytest.raises(ValueError):
            unnamed[3] = good  # an unnamed arrayset takes no key
        named["k"] = good
    assert sorted(named.keys(), key=str) == [0, 1, "k"] and len(unnamed) == 1
    co.close()


def test_a_long_block_holds_at_most_hold_bytes(repo, monkeypatch):
    from hangar_git import arrayset as arrayset_mod

    limit = 16 * 100  # samples of 16 bytes: staged every 100
    monkeypatch.setattr(held_rows, "HOLD_BYTES", limit)
    monkeypatch.setattr(arrayset_mod, "HOLD_BYTES", limit)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    most = 0
    with aset:
        for i in range(N):
            aset[i] = np.full(4, i, np.float32)
            held = co.holding("x")
            most = max(most, held.nbytes if held is not None else 0)
    assert 0 < most < limit
    assert [int(a[0]) for a in aset.get_batch(range(N))] == list(range(N))
    co.close()


def test_a_block_failing_at_its_end_leaves_the_next_block_unharmed(repo, monkeypatch):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PackWriter, "add_stacked", full)
    with pytest.raises(OSError), aset:
        for i in range(N):
            aset[i] = np.full(4, i, np.float32)  # staged (and failing) at the block's end
    monkeypatch.undo()
    assert len(aset) == 0
    with aset:
        for i in range(N):
            aset[i] = np.full(4, -i, np.float32)
    assert len(aset) == N and aset[N - 1][0] == -(N - 1)
    co.close()


@pytest.mark.parametrize("n", [N, 7])  # stacked, and one by one
def test_a_block_flushes_the_store_at_its_end_not_per_sample(repo, monkeypatch, n):
    # the held samples are staged while the batch is still open: one flush at its
    # end, not one (with its fsyncs) per sample -- 200 changes once cost 0.5 s
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    aset.update({i: np.full(4, i, np.float32) for i in range(n)})
    flushes = []
    real = PackWriter.flush

    def counted(self, *a, **kw):
        flushes.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(PackWriter, "flush", counted)
    with aset:
        for i in range(n):
            aset[i] = np.full(4, -i, np.float32)  # replacements
    assert len(flushes) <= 2, len(flushes)  # the bulk path's own, and the block's end
    assert aset[n - 1].tolist() == [-(n - 1)] * 4
    co.commit("changed")
    co.close()


def test_held_samples_stack_as_a_read_only_view_of_the_bytes_held():
    """The held bytes are staged where they lie (no joined copy of them), and
    can neither be written through the stacked rows nor grow once stacked."""
    rows = np.arange(6 * 5, dtype=np.int16).reshape(6, 5)
    held = held_rows.HeldRows(rows.dtype, (5,))
    for i, r in enumerate(rows):
        held.encs.append(i)
        held.buf += r.tobytes()
    assert held.nbytes == rows.nbytes
    got = held.stacked()
    assert np.array_equal(got, rows)
    assert np.shares_memory(got, np.frombuffer(held.buf, np.uint8))
    assert not got.flags.writeable
    with pytest.raises(BufferError):
        held.buf += rows[0].tobytes()


def test_a_block_setting_several_arraysets_holds_each_ones_first_sample_too(repo):
    """The first set of an arrayset looks its schema up without staging what
    the block holds for the others: every sample goes to the bulk path."""
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.float32)
    b = co.arraysets.init_arrayset("b", shape=(1,), dtype=np.int64)
    with a, b:
        for i in range(N):
            a[i] = np.full(4, i, np.float32)
            b[i] = np.array([i])
            if i == 0:
                assert co.holding("a").nbytes == 16 and co.holding("b").nbytes == 8
        assert len(co.holding("a").encs) == N and len(co.holding("b").encs) == N
    assert [int(x[0]) for x in b.get_batch(range(N))] == list(range(N))
    co.close()


def test_a_block_commits_the_payloads_of_all_its_arraysets_at_once(repo, monkeypatch):
    """The held samples of every arrayset are written, then synced and indexed
    together: one index commit for the block, not one per arrayset."""
    from hangar_git.store.packs import PackStore

    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.float32)
    b = co.arraysets.init_arrayset("b", shape=(1,), dtype=np.int64)
    commits = []
    real = PackStore.commit_segments

    def counted(self, *args, **kwargs):
        commits.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PackStore, "commit_segments", counted)
    with a, b:
        for i in range(N):
            a[i] = np.full(4, i, np.float32)
            b[i] = np.array([-i])
    assert len(commits) == 1
    monkeypatch.undo()
    co.close()
    co = _reopen(repo)
    assert [int(x[0]) for x in co.arraysets["a"].get_batch(range(N))] == list(range(N))
    assert [int(x[0]) for x in co.arraysets["b"].get_batch(range(N))] == [-i for i in range(N)]
    co.close()
