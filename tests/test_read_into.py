"""``aset.read_into(keys, out)``: bulk reads straight into a preallocated array.

It must give exactly what ``np.stack(aset.get_batch(keys))`` gives, whatever
path the store takes (streamed raw blocks, cached or compressed blocks, large
payloads, samples staged but not yet flushed), refuse a mismatched ``out``
with a ValueError before reading, and leave ``out`` untouched on a missing key.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

N = 3000


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, (N, 28, 28), dtype=np.uint8)


def _committed(repo, stack: np.ndarray, keys: list, name: str = "x") -> None:
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset(name, shape=stack.shape[1:], dtype=stack.dtype)
    aset.add_stacked(stack, keys)
    co.commit("data")
    co.close()


@pytest.mark.parametrize("keys", ["range", "shuffled", "strings"])
def test_read_into_equals_get_batch(repo, images, keys):
    names: list = list(range(N)) if keys != "strings" else [f"s{i}" for i in range(N)]
    _committed(repo, images, names)
    want = names
    if keys == "shuffled":
        want = np.random.default_rng(0).permutation(N).tolist()
    co = repo.checkout()
    aset = co.arraysets["x"]
    arg = range(N) if keys == "range" else want
    out = np.empty((N, 28, 28), np.uint8)
    assert aset.read_into(arg, out) is out  # the first read streams raw blocks
    expected = np.stack([images[names.index(k)] for k in want]) if keys != "range" else images
    np.testing.assert_array_equal(out, expected)
    again = np.zeros_like(out)
    aset.read_into(arg, again)  # now from the block cache
    np.testing.assert_array_equal(again, np.stack(aset.get_batch(arg)))
    co.close()


def test_repeated_and_partial_keys(repo, images):
    _committed(repo, images, list(range(N)))
    co = repo.checkout()
    keys = [5, 5, 2999, 0, 5]
    out = co.arraysets["x"].read_into(keys, np.empty((5, 28, 28), np.uint8))
    np.testing.assert_array_equal(out, images[keys])
    co.close()


def test_compressed_blocks_and_scalar_samples(repo):
    zeros = np.zeros((N, 16), np.int64)
    zeros[::7, 3] = 9
    _committed(repo, zeros, list(range(N)), "z")
    scal = np.arange(N, dtype=np.float64)
    _committed(repo, scal, list(range(N)), "s")
    co = repo.checkout()
    out = co.arraysets["z"].read_into(range(N), np.empty((N, 16), np.int64))
    np.testing.assert_array_equal(out, zeros)
    out = co.arraysets["s"].read_into(list(range(N))[::-1], np.empty(N, np.float64))
    np.testing.assert_array_equal(out, scal[::-1])
    co.close()


def test_large_payloads_and_non_contiguous_out(repo):
    big = np.random.default_rng(1).random((3, 600, 600), dtype=np.float32)  # > 1 MiB each
    _committed(repo, big, [0, 1, 2])
    co = repo.checkout()
    out = np.empty((3, 600, 600), np.float32)
    co.arraysets["x"].read_into([2, 0, 1], out)
    np.testing.assert_array_equal(out, big[[2, 0, 1]])
    co.close()
    small = np.random.default_rng(2).random((50, 3), dtype=np.float32)
    _committed(repo, small, list(range(50)), "y")
    co = repo.checkout()
    fortran = np.asfortranarray(np.empty((50, 3), np.float32))
    co.arraysets["y"].read_into(range(50), fortran)
    np.testing.assert_array_equal(fortran, small)
    co.close()


def test_staged_samples_of_a_write_checkout(repo, images):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(28, 28), dtype=np.uint8)
    aset.add_stacked(images[:100], list(range(100)))
    with aset:
        aset[7] = images[500]
    out = aset.read_into(range(100), np.empty((100, 28, 28), np.uint8))
    want = images[:100].copy()
    want[7] = images[500]
    np.testing.assert_array_equal(out, want)
    co.close()


def test_bad_out_and_missing_keys(repo, images):
    _committed(repo, images[:10], list(range(10)))
    co = repo.checkout()
    aset = co.arraysets["x"]
    with pytest.raises(ValueError, match="rows"):
        aset.read_into(range(10), np.empty((9, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="samples of"):
        aset.read_into(range(10), np.empty((10, 28, 28), np.int16))
    with pytest.raises(ValueError, match="samples of"):
        aset.read_into(range(10), np.empty((10, 28, 27), np.uint8))
    ro = np.empty((10, 28, 28), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        aset.read_into(range(10), ro)
    with pytest.raises(TypeError):
        aset.read_into("abc", np.empty((3, 28, 28), np.uint8))
    with pytest.raises(TypeError):
        aset.read_into(range(10), [[0]] * 10)
    out = np.full((3, 28, 28), 42, np.uint8)
    with pytest.raises(KeyError):
        aset.read_into([0, 99, 1], out)
    assert (out == 42).all()
    co.close()


def test_variable_shape_rows_must_match_out(repo):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("v", shape=(4, 4), dtype=np.int32, variable_shape=True)
    with aset:
        aset[0] = np.ones((2, 3), np.int32)
        aset[1] = np.full((2, 3), 2, np.int32)
        aset[2] = np.ones((4, 4), np.int32)
    co.commit("v")
    co.close()
    co = repo.checkout()
    v = co.arraysets["v"]
    out = v.read_into([1, 0], np.empty((2, 2, 3), np.int32))
    np.testing.assert_array_equal(out, [np.full((2, 3), 2), np.ones((2, 3))])
    with pytest.raises(ValueError, match="a row of out"):
        v.read_into([0, 2], np.empty((2, 2, 3), np.int32))
    co.close()


def test_whole_raw_blocks_are_read_in_place(repo, images, monkeypatch):
    """``read_into`` of the keys of whole blocks, in order, reads each block
    straight into the rows of ``out`` (no window buffer in between), checks
    its checksum there, and a damaged block is an IntegrityError."""
    from hangar_git.errors import IntegrityError
    from hangar_git.store import gather

    _committed(repo, images, list(range(N)))

    def no_window(*args, **kwargs):
        raise AssertionError("streamed through a window buffer")

    monkeypatch.setattr(gather, "_stream_window", no_window)
    co = repo.checkout()
    out = co.arraysets["x"].read_into(range(N), np.empty((N, 28, 28), np.uint8))
    np.testing.assert_array_equal(out, images)
    monkeypatch.undo()
    reader = co.payloads.reader
    _, e = reader.lookup([co.view.get("x", f"i:{k}") for k in range(N)])
    b = [np.flatnonzero(e["block"] == bid).tolist() for bid in np.unique(e["block"])[:4]]
    # a whole block in order to every other row of out, beside one reversed
    mixed = [k for pair in zip(b[0], b[1][::-1], strict=True) for k in pair] + b[2] + b[3]
    out = co.arraysets["x"].read_into(mixed, np.empty((len(mixed), 28, 28), np.uint8))
    np.testing.assert_array_equal(out, images[mixed])
    _, e = reader.lookup([co.view.get("x", "i:2000")])
    pack, boff, blen = reader.block_row(int(e["block"][0]))
    co.close()
    path = reader.pack_path(pack)
    data = bytearray(path.read_bytes())
    data[boff + blen - 5] ^= 0x01  # a byte of the block's body
    path.write_bytes(bytes(data))
    co = repo.checkout()
    with pytest.raises(IntegrityError, match=r"x\[2000\]|checksum"):
        co.arraysets["x"].read_into(range(N), np.empty((N, 28, 28), np.uint8))
    evens = co.arraysets["x"].read_into(range(0, 1000, 2), np.empty((500, 28, 28), np.uint8))
    np.testing.assert_array_equal(evens, images[:1000:2])  # blocks left whole
    co.close()


@pytest.mark.parametrize("damage", ["magic", "codec", "raw length", "short pack"])
def test_a_block_with_a_damaged_header_or_past_its_pack_is_refused(repo, images, damage):
    """Blocks read in place are checked as the careful path checks them: a
    damaged header (its magic, codec or raw length) or a pack cut short
    inside a block is an IntegrityError, never rows read from the bytes."""
    from hangar_git.errors import IntegrityError

    _committed(repo, images, list(range(N)))
    co = repo.checkout()
    reader = co.payloads.reader
    _, e = reader.lookup([co.view.get("x", f"i:{k}") for k in (1500, N - 1)])
    pack, boff, _ = reader.block_row(int(e["block"][0]))
    last = reader.block_row(int(e["block"][1]))
    co.close()
    path = reader.pack_path(pack)
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[boff] ^= 0x01
    elif damage == "codec":
        data[boff + 4] = 7
    elif damage == "raw length":
        data[boff + 8] ^= 0x01
    else:
        assert last[0] == pack
        data = data[: last[1] + last[2] - 3]
    path.write_bytes(bytes(data))
    co = repo.checkout()
    with pytest.raises(IntegrityError):
        co.arraysets["x"].read_into(range(N), np.empty((N, 28, 28), np.uint8))
    co.close()


def test_the_block_header_layout_read_in_place_is_the_stored_one():
    """Headers of blocks read in place are parsed as one array: its layout
    is the one :mod:`hangar_git.store.block_format` writes."""
    from hangar_git.store import block_format, gather

    raw = block_format.HEADER.pack(block_format.BLOCK_MAGIC, 3, 123456789) + block_format.CRC.pack(
        0xDEADBEEF
    )
    h = np.frombuffer(raw, gather._HEAD)[0]
    assert gather._HEAD.itemsize == block_format.HEADER_SIZE == len(raw)
    assert (h["magic"], h["codec"], h["rawlen"], h["crc"]) == (b"HGB1", 3, 123456789, 0xDEADBEEF)


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_the_whole_blocks_of_items_in_order_are_those_whose_rows_count_up_from_0(dtype):
    """Of items in block order going to consecutive rows, a block is read in
    place only when its items' rows in it are 0, 1, 2, ... in turn: a
    repeated, skipped, swapped or wrapped row, or a first row past 0, keeps
    it out (checked against the definition), the rows as index entries keep
    them (unsigned 32-bit) or as int64."""
    from hangar_git.store import gather

    rng = np.random.default_rng(4)
    for _ in range(300):
        counts = rng.integers(1, 6, rng.integers(1, 12))
        rows = np.concatenate([np.arange(c) for c in counts]).astype(np.int64)
        for _ in range(rng.integers(0, 3)):  # some damage
            i = int(rng.integers(0, len(rows)))
            rows[i] = rng.choice(
                [rows[i] + 1, rows[i] - 1, 0, 2**32 - 1 if dtype is np.uint32 else 7]
            )
        rows = rows.astype(dtype)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        want = [
            rows[lo:hi].astype(np.int64).tolist() == list(range(hi - lo))
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]
        assert gather._whole_blocks_in_order(rows, bounds).tolist() == want
    assert gather._item_rows(np.array([0, 8, 24], np.uint32), 8)[1].tolist() == [0, 1, 3]
    assert gather._item_rows(np.array([0, 8, 20], np.uint32), 8)[1] is None  # off its row


def _read_parts_spy(monkeypatch, gather):
    """Record which thread reads each part (thread name, blocks); each thread
    waits at its first part for the other to be at its own, so that of two
    parts each reads one, whatever the scheduler does (neither can take a
    second part before the other has taken one)."""
    import threading

    threads: list[tuple[str, int]] = []
    meet = threading.Barrier(2, timeout=30)
    met: set[str] = set()
    real = gather._read_checked

    def spy(fds, body, packs, *rest):
        name = threading.current_thread().name.split("_")[0]
        if name not in met:
            met.add(name)
            meet.wait()
        threads.append((name, len(packs)))
        return real(fds, body, packs, *rest)

    monkeypatch.setattr(gather, "_read_checked", spy)
    return threads


@pytest.mark.parametrize("damage", [None, "front part", "back part"])
def test_a_large_read_in_place_is_read_in_parts_on_two_threads(repo, images, monkeypatch, damage):
    """From :data:`gather.PARALLEL_BYTES` of blocks on, a second thread reads
    and checks parts from the back while the caller's thread does from the
    front: the rows are the same, and a block damaged in either thread's
    part is an IntegrityError, raised once both are done."""
    from hangar_git.errors import IntegrityError
    from hangar_git.store import gather

    _committed(repo, images, list(range(N)))
    monkeypatch.setattr(gather, "PARALLEL_BYTES", 1)
    monkeypatch.setattr(gather, "PART_BYTES", N * 28 * 28 // 2)  # two parts
    monkeypatch.setattr(gather.threads, "WORKERS", 2)
    threads = _read_parts_spy(monkeypatch, gather)
    co = repo.checkout()
    reader = co.payloads.reader
    _, e = reader.lookup([co.view.get("x", f"i:{k}") for k in (10, N - 10)])
    (pack, b1, l1), (_, b2, l2) = (reader.block_row(int(b)) for b in e["block"])
    if damage is None:
        out = co.arraysets["x"].read_into(range(N), np.empty((N, 28, 28), np.uint8))
        np.testing.assert_array_equal(out, images)
        assert sorted(name for name, _ in threads) == ["MainThread", "hangar-read"]
        assert min(k for _, k in threads) > 1
    co.close()
    if damage is None:
        return
    path = reader.pack_path(pack)
    data = bytearray(path.read_bytes())
    at = b1 + l1 - 5 if damage == "front part" else b2 + l2 - 5  # a byte of a block's body
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    co = repo.checkout()
    with pytest.raises(IntegrityError):
        co.arraysets["x"].read_into(range(N), np.empty((N, 28, 28), np.uint8))
    co.close()
    assert {name for name, _ in threads} == {"MainThread", "hangar-read"}


def test_parts_the_second_thread_has_not_taken_are_read_by_the_caller(repo, images, monkeypatch):
    """When the second thread does not run before the caller's has read every
    part (a busy machine), the read is whole all the same, and the second
    thread, when it runs later, reads nothing (the rows are the caller's)."""
    from hangar_git.store import gather

    _committed(repo, images, list(range(N)))
    monkeypatch.setattr(gather, "PARALLEL_BYTES", 1)
    monkeypatch.setattr(gather, "PART_BYTES", N * 28 * 28 // 4)  # four parts
    monkeypatch.setattr(gather.threads, "WORKERS", 2)
    late: list = []

    class Idle:  # a pool whose thread gets no processor until the read is over
        def submit(self, fn, *args):
            late.append(fn)

    monkeypatch.setattr(gather.threads, "reader", Idle)
    reads: list[int] = []
    real = gather._read_checked
    monkeypatch.setattr(
        gather, "_read_checked", lambda f, b, p, *r: reads.append(len(p)) or real(f, b, p, *r)
    )
    co = repo.checkout()
    out = co.arraysets["x"].read_into(range(N), np.empty((N, 28, 28), np.uint8))
    np.testing.assert_array_equal(out, images)
    co.close()
    assert len(reads) == 4 and len(late) == 1
    late[0]()  # the second thread runs at last: nothing is left to it
    assert len(reads) == 4
