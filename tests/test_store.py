"""Unit tests of the payload store: digests, packs, the index, checksums."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hangar_git.errors import IntegrityError, MissingPayloadError
from hangar_git.store import PackStore, array_digest, payload_from_array


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


def put(store: PackStore, arrays: list[np.ndarray]) -> list[bytes]:
    w = store.writer()
    try:
        out = []
        for a in arrays:
            p = payload_from_array(a)
            w.add(p)
            out.append(p.digest)
        w.flush()
        return out
    finally:
        w.close()


def read_all(store: PackStore, digests: list[bytes]) -> list[np.ndarray]:
    r = store.reader()
    try:
        locs = r.locate_many(digests)
        return [r.read(locs[d], d) for d in digests]
    finally:
        r.close()


def pack_bytes(store: PackStore) -> int:
    return sum(p.stat().st_size for p in store.packs_dir.glob("*.pack"))


# --------------------------------------------------------------------------
# digests
# --------------------------------------------------------------------------
def test_digest_covers_dtype_shape_and_bytes():
    a = np.arange(12, dtype=np.uint8)
    d = array_digest(a)
    assert len(d) == 20
    assert array_digest(a.copy()) == d
    assert array_digest(a.reshape(3, 4)) != d  # same bytes, other shape
    assert array_digest(a.view(np.int8)) != d  # same bytes, other dtype
    b = a.copy()
    b[5] += 1
    assert array_digest(b) != d
    assert array_digest(np.array(3.0)) != array_digest(np.array([3.0]))  # rank 0 vs 1


# --------------------------------------------------------------------------
# write and read
# --------------------------------------------------------------------------
def test_roundtrip_many_kinds(store):
    rng = np.random.default_rng(1)
    arrays = [
        rng.integers(0, 255, (28, 28), dtype=np.uint8),
        rng.random((3, 5)),
        np.arange(7, dtype=np.int64),
        (rng.random(100) > 0.5),
        (rng.random(4) + 1j * rng.random(4)).astype(np.complex64),
        np.array(2.5, dtype=np.float32),
        rng.random((400, 400)).astype(np.float32),  # large: its own block
        np.zeros((256, 256), np.float64),  # very compressible
    ]
    digests = put(store, arrays)
    got = read_all(store, digests)
    for a, g in zip(arrays, got, strict=True):
        assert g.dtype == a.dtype and g.shape == a.shape
        np.testing.assert_array_equal(g, a)
        assert g.flags.writeable and g.flags.c_contiguous
    r = store.reader()
    locs = r.locate_many(digests)
    many = r.read_many([locs[d] for d in reversed(digests)])
    for a, g in zip(reversed(arrays), many, strict=True):
        np.testing.assert_array_equal(g, a)
    for d, a in zip(digests, arrays, strict=True):
        np.testing.assert_array_equal(r.get(d), a)
    r.close()


def test_small_arrays_share_blocks_and_compress(store):
    arrays = [np.full(100, i % 7, np.int32) for i in range(1000)]
    digests = put(store, arrays)
    r = store.reader()
    locs = r.locate_many(digests)
    assert len({(loc.pack, loc.boff) for loc in locs.values()}) < 10
    r.close()
    distinct = 7 * 100 * 4
    assert pack_bytes(store) < 4 * distinct + 4096  # dedup: 7 distinct payloads


def test_identical_payloads_stored_once(store):
    a = np.random.default_rng(2).random(5000)
    put(store, [a, a.copy()])
    size = pack_bytes(store)
    put(store, [a])  # a later writer also finds it already stored
    assert pack_bytes(store) == size
    assert size < a.nbytes * 1.1


def test_incompressible_data_stays_near_raw_size(store):
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, 4096, dtype=np.uint8) for _ in range(300)]
    put(store, arrays)
    raw = sum(a.nbytes for a in arrays)
    assert raw <= pack_bytes(store) < raw * 1.05


def test_missing_payload(store):
    r = store.reader()
    d = array_digest(np.zeros(3))
    assert r.locate_many([d]) == {}
    assert r.locate(d) is None and not r.contains(d)
    with pytest.raises(MissingPayloadError):
        r.get(d)
    with pytest.raises(FileNotFoundError):  # MissingPayloadError is a FileNotFoundError
        r.get(d)
    r.close()


def test_pending_location_flushes_queued_payload(store):
    w = store.writer()
    p = payload_from_array(np.arange(10, dtype=np.int16))
    w.add(p)
    loc = w.pending_location(p.digest)
    assert loc is not None
    r = store.reader()
    assert r.locate(p.digest) == loc  # already visible to other readers
    assert r.read(loc, p.digest).tolist() == list(range(10))
    r.close()
    w.close()


def test_writer_appends_after_torn_tail(store):
    a = np.arange(1000, dtype=np.float64)
    (da,) = put(store, [a])
    pack = next(store.packs_dir.glob("*.pack"))
    with open(pack, "ab") as fh:  # a killed writer left half a block
        fh.write(b"HGB1" + os.urandom(300))
    b = np.arange(1000, dtype=np.float64) * 2
    (db,) = put(store, [b])
    got = read_all(store, [da, db])
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], b)


def test_reader_survives_fork(store):
    arrays = [np.full(10, i, np.int64) for i in range(20)]
    digests = put(store, arrays)
    r = store.reader()
    r.get(digests[0])  # handles opened in the parent
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = all((r.get(d) == i).all() for i, d in enumerate(digests))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (r.get(digests[5]) == 5).all()
    r.close()


# --------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------
def _corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["header", "body", "last"])
def test_corrupt_block_is_detected(store, where):
    rng = np.random.default_rng(4)
    arrays = [rng.random(300) for _ in range(5)]
    digests = put(store, arrays)
    pack = next(store.packs_dir.glob("*.pack"))
    size = pack.stat().st_size
    _corrupt(pack, {"header": 1, "body": size // 2, "last": size - 1}[where])
    r = store.reader()
    locs = r.locate_many(digests)
    with pytest.raises(IntegrityError):
        for d in digests:
            r.read(locs[d])
    with pytest.raises(IntegrityError):
        r.read_many([locs[d] for d in digests])
    r.close()


def test_truncated_or_missing_pack_is_detected(store):
    digests = put(store, [np.random.default_rng(5).random(2000)])
    pack = next(store.packs_dir.glob("*.pack"))
    with open(pack, "r+b") as fh:
        fh.truncate(pack.stat().st_size - 10)
    with pytest.raises(IntegrityError):
        read_all(store, digests)
    pack.unlink()
    with pytest.raises(IntegrityError):
        read_all(store, digests)


def test_corruption_detected_through_checkout(written_repo):
    from hangar_git import IntegrityError as PublicIntegrityError

    packs = sorted((Path(written_repo._hdir) / "store" / "packs").glob("*.pack"))
    for p in packs:
        _corrupt(p, p.stat().st_size - 1)
    rc = written_repo.checkout()
    with pytest.raises(PublicIntegrityError):
        for k in rc.arraysets["aset"]:
            rc.arraysets["aset"][k]
    with pytest.raises(RuntimeError):  # IntegrityError is a RuntimeError
        rc.arraysets["aset"].get_batch(list(rc.arraysets["aset"].keys()))
    rc.close()


# --------------------------------------------------------------------------
# bulk reads: streamed blocks, arrays handed out as views of the read buffer
# --------------------------------------------------------------------------
def _entries(store: PackStore, digests: list[bytes]) -> np.ndarray:
    r = store.reader()
    try:
        found, e = r.lookup(digests)
        assert found.all()
        return e
    finally:
        r.close()


def test_bulk_gather_arrays_are_independent(store):
    """Many raw blocks take the streamed path; the arrays it returns (views of
    one buffer when dense) are equal to the stored ones and independent: writing
    one changes no other, and a payload asked for twice comes back as two
    arrays that do not share memory."""
    rng = np.random.default_rng(11)
    arrays = [rng.integers(0, 255, 784, dtype=np.uint8) for _ in range(600)]  # ~7 blocks
    digests = put(store, arrays)
    e = _entries(store, digests)
    order = rng.permutation(len(digests))
    r = store.reader()
    try:
        got = r.gather(e[order])
        for i, a in zip(order.tolist(), got, strict=True):
            assert a.flags.writeable and np.array_equal(a, arrays[i])
        got[0][:] = 0
        assert all(np.array_equal(a, arrays[i]) for i, a in zip(order[1:], got[1:], strict=True))
        assert np.array_equal(r.gather(e[order[:1]])[0], arrays[order[0]])  # store intact
        twice = r.gather(np.concatenate([e, e]))
        for a, b in zip(twice[: len(e)], twice[len(e) :], strict=True):
            assert not np.shares_memory(a, b)
        twice[0][:] = 1
        assert np.array_equal(twice[len(e)], arrays[0])
    finally:
        r.close()


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_bulk_gather_detects_a_corrupt_block(store, where):
    rng = np.random.default_rng(12)
    arrays = [rng.integers(0, 255, 784, dtype=np.uint8) for _ in range(600)]
    digests = put(store, arrays)
    e = _entries(store, digests)
    pack = next(store.packs_dir.glob("*.pack"))
    size = pack.stat().st_size
    _corrupt(pack, {"first": 40, "middle": size // 2, "last": size - 1}[where])
    r = store.reader()
    try:
        with pytest.raises(IntegrityError):
            r.gather(e)
    finally:
        r.close()


@pytest.mark.parametrize("fast", [True, False])
def test_block_checksums_equal_zlib_crc32(monkeypatch, fast):
    """The vectorised CRC (and the two-thread stdlib path) give zlib's values:
    packs written by either read back under the other."""
    import zlib

    from hangar_git.store import checksum

    rng = np.random.default_rng(5)
    views = [memoryview(rng.bytes(int(n))) for n in rng.integers(0, 200_000, 40)]
    monkeypatch.setattr(checksum, "FAST", fast)
    assert checksum.crc_many(views) == [zlib.crc32(v) for v in views]
    assert checksum.crc32(views[1]) == zlib.crc32(views[1])
    assert checksum.crc32(b"abc", 7) == zlib.crc32(b"abc", 7)


def test_blosc2_is_imported_on_first_use_only():
    """Importing hangar_git (every ``git hangar`` start) does not pay for blosc2."""
    import subprocess
    import sys

    code = (
        "import sys, hangar_git, hangar_git.cli\n"
        "assert 'blosc2' not in sys.modules, 'blosc2 imported eagerly'\n"
        "from hangar_git.store.blosc_codec import blosc2\n"
        "assert blosc2.decompress(blosc2.compress(b'x' * 800)) == b'x' * 800\n"
        "assert 'blosc2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_block_rows_of_many_blocks_refuse_a_damaged_one(store):
    """The bulk form of ``block_row``: rows of many blocks as one array, and
    an IntegrityError naming the damaged row when one fails its check."""
    w = store.writer()
    for k in range(3):  # three flushes: three blocks
        w.add(payload_from_array(np.full(64, k, np.int64)))
        w.flush()
    w.close()
    con = sqlite3.connect(store.index_path)
    bids = [r[0] for r in con.execute("SELECT id FROM blocks ORDER BY id")]
    r = store.reader()
    rows = r.block_rows(bids)
    assert rows.shape == (3, 3) and rows.dtype == np.int64
    assert [tuple(x) for x in rows.tolist()] == [r.block_row(b) for b in bids]
    r.close()
    con.execute("UPDATE blocks SET boff = boff + 1 WHERE id = ?", (bids[1],))
    con.commit()
    con.close()
    r = store.reader()
    assert r.block_rows([bids[0], bids[2]]).shape == (2, 3)
    with pytest.raises(IntegrityError, match=f"block row {bids[1]} "):
        r.block_rows(bids)
    r.close()


def _mapped(path: Path) -> bool:
    """True when this process maps the file at ``path`` (Linux's /proc)."""
    with open("/proc/self/maps") as maps:
        return any(line.rstrip().endswith(str(path)) for line in maps)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_a_reader_maps_its_index_and_sees_it_change(store):
    """A reader reads the index through a memory map (no ``pread`` per page of
    a segment), and still finds every payload written, merged or removed
    since it opened: SQLite maps the file afresh as it grows and shrinks."""
    first = put(store, [np.full(7, i, np.int64) for i in range(300)])
    r = store.reader()
    try:
        found, _ = r.lookup(first[:5])
        assert found.all()
        assert _mapped(store.index_path)
        later: list[bytes] = []
        for size in (5, 5, 40):  # new segments; small ones merged away
            later += put(store, [np.full(7, 1000 + len(later) + i, np.int64) for i in range(size)])
        found, _ = r.lookup(later + first[::37])
        assert found.all()
        got = read_all(store, later[-3:])
        assert [int(a[0]) for a in got] == [1047, 1048, 1049]
        absent = [payload_from_array(np.full(7, -i, np.int64)).digest for i in range(1, 9)]
        assert not r.lookup(absent)[0].any()
    finally:
        r.close()
    assert not _mapped(store.index_path)


@pytest.mark.parametrize("n", [0, 1, 700])
def test_take_places_are_the_fields_of_the_entries_taken(n):
    """What a bulk read needs of index entries, taken in a given order: the
    block, offset and kind of each, with nothing else copied."""
    from hangar_git.store.index import ENTRY
    from hangar_git.store.reader import PLACE, take_places

    rng = np.random.default_rng(n)
    e = np.zeros(n, ENTRY)
    e.view(np.uint8)[:] = rng.integers(0, 256, e.nbytes, dtype=np.uint8)
    pos = rng.permutation(n)[: max(0, n - 3)] if n else np.zeros(0, np.intp)
    got = take_places(e, pos)
    assert got.dtype == PLACE and got.shape == (len(pos),)
    for f in ("block", "ioff", "kind"):
        np.testing.assert_array_equal(got[f], e[f][pos])
