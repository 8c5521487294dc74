"""Rebuilding the payload index from the packs' manifest files and the large files:
every payload comes back after the index is lost, damage is skipped and reported,
and nothing on disk is trusted (hostile manifests allocate nothing big)."""

from __future__ import annotations

import errno
import os
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git.errors import WriterLockError
from hangar_git.store import PackStore, Payload, appender, rebuild, rebuild_index
from hangar_git.store.chunked import LARGE_PACK, LargeFiles
from hangar_git.store.digest import digest_bytes, kind_of, stacked_digests
from hangar_git.store.manifest import ManifestWriter, manifest_path
from hangar_git.store.manifest_scan import scan_pack
from hangar_git.store.packs import HEADER_SIZE
from hangar_git.store.rebuild import index_problem


def payload(a: np.ndarray) -> Payload:
    """The store's payload of ``a`` (zero-sized arrays included)."""
    kind = kind_of(a)
    data = memoryview(np.ascontiguousarray(a).tobytes())
    return Payload(digest_bytes(kind, data), kind, data)


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


def populate(store: PackStore) -> dict[bytes, np.ndarray]:
    """Three flushes into one pack: small payloads of several kinds sharing blocks
    (blosc2 and raw), a block of its own, stacked rows, and a large chunked payload."""
    rng = np.random.default_rng(0)
    out: dict[bytes, np.ndarray] = {}

    def add(w, a: np.ndarray) -> None:
        p = payload(a)
        w.add(p)
        out[p.digest] = a

    w = store.writer()
    try:
        for i in range(300):
            add(w, np.full(50, i, np.int32))  # compressible: blosc2 blocks
        for _ in range(40):
            add(w, rng.random((7, 3)).astype(np.float32))
        for a in (np.array(3.5), np.array(True), np.arange(4, dtype=">f8"), np.zeros((0, 4))):
            add(w, a)
        add(w, rng.random(9000))  # 72 KB of random floats: a raw block of its own
        w.flush()
        rows = rng.integers(0, 255, (2000, 784), dtype=np.uint8)
        digests = stacked_digests(rows)
        w.add_stacked(kind_of(rows[0]), digests, rows)  # flushes
        out.update(zip(digests, rows, strict=True))
        add(w, rng.random((512, 520)).astype(np.float32))  # 1.04 MiB: a large file
        for i in range(30):
            add(w, np.full(10, i, np.int16))
        w.flush()
    finally:
        w.close()
    return out


def check_all(store: PackStore, expected: dict[bytes, np.ndarray]) -> None:
    """Every payload of ``expected`` reads back equal, its digest verified."""
    r = store.reader()
    try:
        locs = r.locate_many(list(expected))
        assert set(locs) == set(expected)
        for d, a in expected.items():
            got = r.read(locs[d], d)  # checks the bytes against the digest
            assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
    finally:
        r.close()


def indexed(store: PackStore) -> dict[bytes, tuple]:
    """digest -> (pack, block offset, block length, item offset, kind) of the index."""
    r = store.reader()
    try:
        return {
            d: (loc.pack, loc.boff, loc.blen, loc.ioff, r.kind_text(loc.kind))
            for d, loc in r.all_locations()
            if loc is not None
        }
    finally:
        r.close()


def lose_index(store: PackStore, how: str = "delete") -> None:
    """Damage the index as a bad disk or a mistake would (its WAL files too)."""
    path = store.index_path
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    if how == "delete":
        path.unlink()
    elif how == "zero":
        os.truncate(path, 0)
    elif how == "half":
        os.truncate(path, path.stat().st_size // 2)
    elif how == "flip":
        data = bytearray(path.read_bytes())
        for off in range(0, len(data), 509):
            data[off] ^= 0x5A
        path.write_bytes(bytes(data))
    else:
        raise ValueError(how)


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def packed(expected: dict[bytes, np.ndarray]) -> int:
    from hangar_git.store import chunked

    return sum(1 for a in expected.values() if a.nbytes < chunked.THRESHOLD)


# --------------------------------------------------------------------------
# the manifests
# --------------------------------------------------------------------------
def test_manifest_files_name_every_packed_entry_and_packs_hold_only_blocks(store):
    expected = populate(store)
    index = indexed(store)
    named = {}
    for n in store.pack_numbers():
        scan = scan_pack(store.pack_path(n), n)
        assert not scan.problems and scan.has_manifest
        assert sum(scan.blens) == store.pack_path(n).stat().st_size  # nothing but blocks
        for _, rec in scan.records:
            e = 0
            for boff, blen, count in rec.blocks.tolist():
                for ent in rec.entries[e : e + count]:
                    kind = rec.kinds[int(ent["kind"])]
                    named[ent["digest"].tobytes()] = (n, boff, blen, int(ent["ioff"]), kind)
                e += count
    assert named == {d: v for d, v in index.items() if v[0] != LARGE_PACK}
    assert len(named) == packed(expected)


# --------------------------------------------------------------------------
# losing the index
# --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["zero", "half", "delete", "flip"])
def test_every_payload_reads_back_after_the_index_is_lost(store, how):
    expected = populate(store)
    before = indexed(store)
    assert index_problem(store.root) is None
    lose_index(store, how)
    damaged = store.index_path.read_bytes() if how != "delete" else None
    assert index_problem(store.root) is not None
    rep = rebuild_index(store.root)
    assert rep.clean, rep.summary()
    assert rep.entries_recovered == packed(expected) and rep.large_files_recovered == 1
    assert rep.damaged_blocks == rep.entries_refused == rep.unattributed_bytes == 0
    if damaged is None:
        assert rep.old_index == "absent" and rep.old_index_path is None
    else:  # the user's evidence is kept as it was
        assert rep.old_index_path.read_bytes() == damaged
    assert index_problem(store.root) is None
    check_all(store, expected)
    assert indexed(store) == before
    # the rebuilt index takes new payloads, small and large
    w = store.writer()
    more = [np.arange(7.0), np.random.default_rng(9).random((600, 600))]
    for a in more:
        w.add(payload(a))
    w.close()
    expected.update({payload(a).digest: a for a in more})
    check_all(store, expected)


def test_rebuild_after_relocate_and_drop_pack(store):
    """gc's moves: relocated payloads are found in their new pack (its manifest),
    those of a dropped pack are gone with it, one removed from the index while
    its bytes stay comes back."""
    expected = populate(store)
    r = store.reader()
    locs = dict(r.all_locations())
    dead = [d for d, a in expected.items() if a.dtype == np.int32][:100]
    live = {d: a for d, a in expected.items() if d not in set(dead)}
    move = [payload(live[d]) for d, loc in locs.items() if d in live and loc.pack == 1]
    r.close()
    w = store.writer()
    assert w.remove(dead) == len(dead)
    moved = w.relocate(move)
    named = {  # synced with the new pack, before its entries were committed
        ent["digest"].tobytes()
        for _, rec in scan_pack(store.pack_path(2), 2).records
        for ent in rec.entries
    }
    assert named == set(moved)
    w.drop_pack(1)
    w.close()
    assert not store.pack_path(1).exists() and not manifest_path(store.packs_dir, 1).exists()
    resurrected = next(d for d, a in live.items() if a.dtype == np.int16)
    w = store.writer()
    w.remove([resurrected])
    w.close()
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.clean, rep.summary()
    check_all(store, live)
    r = store.reader()
    assert not r.locate_many(dead)
    r.close()


def test_rebuild_after_gc_of_a_repository(repo):
    from hangar_git.gc import gc

    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(9000,), dtype=np.float64)
    b = co.arraysets.init_arrayset("b", shape=(28, 28), dtype=np.uint8)
    rng = np.random.default_rng(3)
    data_a = {i: rng.random(9000) for i in range(6)}
    data_b = {i: rng.integers(0, 255, (28, 28), dtype=np.uint8) for i in range(200)}
    with a, b:
        for i, v in data_a.items():
            a[i] = v
        for i, v in data_b.items():
            b[i] = v
    co.commit("one")
    for i in range(100, 140):
        a[i] = rng.random(9000)
    for i in range(100, 140):
        del a[i]  # written, never committed: gc drops them and compacts their pack
    co.close()
    rep_gc = gc(repo, threshold=0.0, git_objects=False)
    assert rep_gc.payloads_removed == 40 and rep_gc.packs_compacted
    lose_index(repo._store, "zero")
    rep = rebuild_index(repo._store.root)
    assert rep.clean and rep.entries_recovered == 206, rep.summary()
    assert repo.verify(full=True).ok
    rc = repo.checkout()
    assert all(np.array_equal(rc.arraysets["b"][i], v) for i, v in data_b.items())
    assert all(np.array_equal(rc.arraysets["a"][i], v) for i, v in data_a.items())
    rc.close()


# --------------------------------------------------------------------------
# damage in packs, manifest files and large files
# --------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["codec header", "body"])
def test_a_flipped_byte_in_one_block_loses_that_block_only(store, where):
    expected = populate(store)
    index = indexed(store)
    d0 = next(d for d, a in expected.items() if a.dtype == np.int32)
    pack, boff, blen = index[d0][:3]
    victims = {d for d, v in index.items() if v[:3] == (pack, boff, blen)}
    assert len(victims) > 1
    flip(store.pack_path(pack), boff + (HEADER_SIZE + 5 if where == "codec header" else blen - 2))
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.damaged_blocks == 1 and rep.entries_refused == len(victims)
    assert any(f"bytes {boff}-{boff + blen} " in p for p in rep.problems)
    assert not rep.clean and rep.unattributed_bytes == blen
    check_all(store, {d: a for d, a in expected.items() if d not in victims})
    r = store.reader()
    assert not r.locate_many(victims)
    r.close()


def test_a_pack_truncated_mid_block_keeps_what_precedes(store):
    expected = populate(store)
    index = indexed(store)
    pack = store.pack_path(1)
    blocks = sorted({v[1:3] for v in index.values() if v[0] == 1})
    boff, blen = blocks[len(blocks) // 2]
    cut = boff + blen // 2
    os.truncate(pack, cut)
    lost = {d for d, v in index.items() if v[0] == 1 and v[1] + v[2] > cut}
    lose_index(store, "zero")
    rep = rebuild_index(store.root)
    assert rep.damaged_blocks == 1 and any("truncated" in p for p in rep.problems)
    assert rep.entries_refused == len(lost) and rep.unattributed_bytes == cut - boff
    check_all(store, {d: a for d, a in expected.items() if d not in lost})


def test_damaged_and_truncated_manifest_records(store):
    """A flipped byte refuses one record; the next one is still found; a
    manifest file cut mid-record keeps the records before the cut."""
    arrays = [[np.full(20, i + 100 * f, np.int64) for i in range(30)] for f in range(3)]
    w = store.writer()
    for group in arrays:  # a flush, and a record, each
        for a in group:
            w.add(payload(a))
        w.flush()
    w.close()
    path = manifest_path(store.packs_dir, 1)
    offs = [off for off, _ in scan_pack(store.pack_path(1), 1).records]
    assert len(offs) == 3
    flip(path, offs[0] + 40)  # in the first record's body
    os.truncate(path, offs[2] + 30)  # the third is cut short
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.damaged_manifests == 2 and rep.unattributed_blocks == 2
    assert rep.entries_recovered == 30
    check_all(store, {payload(a).digest: a for a in arrays[1]})


def test_a_damaged_large_file_is_refused_and_kept_and_never_overwritten(store):
    """Only large files: the damaged one (the highest number) is reported, kept,
    and a writer after the rebuild numbers its files above it."""
    rng = np.random.default_rng(5)
    big = [rng.random((400, 400)) for _ in range(2)]
    w = store.writer()
    for a in big:
        w.add(payload(a))
        w.flush()
    w.close()
    files_ = LargeFiles(store.large_dir)
    numbers = sorted(files_.numbers())
    victim = files_.path(numbers[-1])
    flip(victim, victim.stat().st_size - 100)
    evidence = victim.read_bytes()
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.large_files_recovered == 1 and rep.large_files_refused == 1
    assert any(str(victim) in p for p in rep.problems)
    w = store.writer()
    new = rng.random((300, 500))
    w.add(payload(new))
    w.close()
    assert victim.read_bytes() == evidence
    check_all(store, {payload(a).digest: a for a in (big[0], new)})


def test_an_unreadable_region_is_skipped(store, monkeypatch):
    """An I/O error (a bad sector) loses the blocks up to the next MiB, not the pack."""
    expected = populate(store)
    index = indexed(store)
    pack = store.pack_path(1)
    blocks = sorted({v[1:3] for v in index.values() if v[0] == 1})
    boff, blen = next(b for b in blocks if 300_000 < b[0] < 900_000)
    bad = boff + blen // 2
    boundary = (boff // (1 << 20) + 1) << 20
    assert pack.stat().st_size > boundary + 200_000
    ino = pack.stat().st_ino
    real = os.pread

    def pread(fd: int, n: int, off: int) -> bytes:
        if off <= bad < off + n and os.fstat(fd).st_ino == ino:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, n, off)

    lose_index(store)
    monkeypatch.setattr(os, "pread", pread)
    rep = rebuild_index(store.root)
    monkeypatch.undo()
    lost = {d for d, v in index.items() if v[0] == 1 and boff <= v[1] < boundary}
    assert lost and any("cannot be read" in p for p in rep.problems)
    assert rep.entries_refused == len(lost) and rep.unattributed_blocks == 0
    check_all(store, {d: a for d, a in expected.items() if d not in lost})


# --------------------------------------------------------------------------
# old packs, rotation, failures, the lock, dry runs
# --------------------------------------------------------------------------
def test_an_old_format_pack_without_manifest_is_reported(store, monkeypatch):
    with monkeypatch.context() as m:  # a writer from before manifests
        m.setattr(ManifestWriter, "seal", lambda self, pack, kind_ids: self._blocks.clear())
        old = populate(store)
    assert not manifest_path(store.packs_dir, 1).exists()
    monkeypatch.setattr(appender, "PACK_LIMIT", store.pack_path(1).stat().st_size)
    new = [np.full(5, i, np.uint16) for i in range(50)]
    w = store.writer()
    for a in new:
        w.add(payload(a))
    w.close()
    assert store.pack_numbers() == [1, 2]
    n_blocks = len(scan_pack(store.pack_path(1), 1).boffs)
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.packs_without_manifest == [1] and not rep.clean
    assert rep.unattributed_blocks == n_blocks
    assert rep.entries_recovered == len(new) and rep.large_files_recovered == 1
    assert "packs written before manifests (not recoverable): 1" in rep.summary()
    check_all(store, {payload(a).digest: a for a in new})
    check_all(store, {d: a for d, a in old.items() if a.nbytes >= 1 << 20})


def test_a_flush_across_packs_writes_each_pack_its_manifest(store, monkeypatch):
    """The writer moves to a new pack in the middle of a flush (of stacked rows
    and of single payloads): every pack's blocks are named in its own manifest."""
    monkeypatch.setattr(appender, "PACK_LIMIT", 150_000)
    expected = populate(store)
    numbers = store.pack_numbers()
    assert len(numbers) >= 5
    for n in numbers:
        scan = scan_pack(store.pack_path(n), n)
        assert (scan.has_manifest or not scan.boffs) and not scan.problems
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.clean, rep.summary()
    assert rep.entries_recovered == packed(expected) and rep.unattributed_blocks == 0
    check_all(store, expected)


def test_failed_writes_and_syncs_leave_consistent_manifests(store, monkeypatch):
    """A full disk while writing the manifest file, then a failed pack sync with
    the records of two flushes pending: each flush fails, is retried, and the
    files end up as if nothing failed."""
    from hangar_git.store import manifest

    arrays = [np.full(30, i, np.int32) for i in range(200)]
    real_write, real_sync = manifest.write_all, appender.fsync_fd
    fail = {"write": 1, "sync": 1}

    def write_all(fd, data):
        if fail["write"]:
            fail["write"] -= 1
            os.write(fd, bytes(data)[:10])  # a torn write, then the error
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data)

    def fsync_fd(fd):
        if fail["sync"]:
            fail["sync"] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_sync(fd)

    monkeypatch.setattr(manifest, "write_all", write_all)
    monkeypatch.setattr(appender, "fsync_fd", fsync_fd)
    w = store.writer()
    for a in arrays[:100]:
        w.add(payload(a))
    with pytest.raises(OSError, match="space"):
        w.flush()
    for a in arrays[100:150]:
        w.add(payload(a))
    with pytest.raises(OSError, match="Input/output"):
        w.flush()
    w.flush()
    for a in arrays[150:]:
        w.add(payload(a))
    w.close()
    scan = scan_pack(store.pack_path(1), 1)
    assert not scan.problems and len(scan.records) == 3
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.clean and rep.duplicates == 0 and rep.entries_recovered == 200
    check_all(store, {payload(a).digest: a for a in arrays})


def test_the_store_lock_is_taken_but_not_for_a_dry_run(store):
    expected = populate(store)
    w = store.writer()
    try:
        with pytest.raises(WriterLockError):
            rebuild_index(store.root, lock_timeout=0.05)
        assert rebuild_index(store.root, dry_run=True).entries_recovered == packed(expected)
    finally:
        w.close()


def test_a_stale_wal_is_kept_aside_and_never_replayed(store):
    """SQLite would apply an old WAL to the new index: it moves aside with the
    old index, as evidence."""
    import sqlite3

    expected = populate(store)
    con = sqlite3.connect(store.index_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("DELETE FROM segments")  # a WAL of frames that empty the index
    wal = Path(f"{store.index_path}-wal").read_bytes()
    con.close()
    lose_index(store, "zero")
    Path(f"{store.index_path}-wal").write_bytes(wal)
    rep = rebuild_index(store.root)
    assert Path(f"{rep.old_index_path}-wal").read_bytes() == wal
    assert index_problem(store.root) is None
    check_all(store, expected)


def test_a_dry_run_changes_nothing(store):
    expected = populate(store)
    lose_index(store, "flip")
    before = files(store.root)
    dry = rebuild_index(store.root, dry_run=True)
    assert files(store.root) == before
    assert dry.dry_run and "dry run" in dry.old_index and dry.old_index_path is None
    assert dry.entries_recovered == packed(expected) and dry.large_files_recovered == 1
    assert "would index" in dry.summary()
    real = rebuild_index(store.root)
    assert (real.entries_recovered, real.large_files_recovered) == (
        dry.entries_recovered,
        dry.large_files_recovered,
    )
    check_all(store, expected)


def test_checks_on_crcs_only_beyond_the_limits(store, monkeypatch):
    """Blocks and large files too big to hash are indexed on their CRCs (and
    counted so); a large file with a bad chunk is refused all the same."""
    expected = populate(store)
    monkeypatch.setattr(rebuild, "VERIFY_LIMIT", 0)
    monkeypatch.setattr(rebuild, "LARGE_VERIFY_LIMIT", 0)
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.entries_unverified == packed(expected) and rep.large_files_unverified == 1
    assert "CRCs only" in rep.summary()
    check_all(store, expected)
    (number,) = LargeFiles(store.large_dir).numbers()
    flip(LargeFiles(store.large_dir).path(number), 5000)
    rep = rebuild_index(store.root)
    assert rep.large_files_refused == 1 and rep.large_files_recovered == 0


def test_an_empty_store_rebuilds_to_an_empty_index(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    rep = rebuild_index(root)
    assert rep.clean and rep.entries_recovered == rep.packs_scanned == 0
    assert PackStore(root).reader().count() == 0
    with pytest.raises(FileNotFoundError):
        rebuild_index(tmp_path / "nowhere")


# --------------------------------------------------------------------------
# hostile manifests
# --------------------------------------------------------------------------
def header(nk: int, nb: int, ne: int, klen: int) -> bytes:
    """A record header as documented, with a good CRC (and no body)."""
    head = struct.pack("<4sBBHIIII", b"HGM1", 1, 0, 0, nk, nb, ne, klen)
    return head + struct.pack("<I", zlib.crc32(head))


def record(kinds: list[bytes], blocks: list[tuple[int, int, int]], entries: list) -> bytes:
    """A whole record as documented: kind table, block rows, entries, CRCs."""
    kt = b"".join(struct.pack("<H", len(k)) + k for k in kinds)
    bt = b"".join(struct.pack("<QQI", *b) for b in blocks)
    et = b"".join(d + struct.pack("<II", ioff, k) for d, ioff, k in entries)
    body = kt + bt + et
    return (
        header(len(kinds), len(blocks), len(entries), len(kt))
        + body
        + struct.pack("<I", zlib.crc32(body))
    )


def test_hostile_manifest_records_are_refused_without_a_big_allocation(store, monkeypatch):
    first = [np.full(64, i, np.int64) for i in range(20)]
    w = store.writer()
    for a in first:
        w.add(payload(a))
    w.close()
    (d0, (pack, boff, blen, ioff, kind)) = next(iter(indexed(store).items()))
    real = (boff, blen, 1)
    hostile = [
        header(1, 1, 2**31 - 1, 10),  # two billion entries
        header(1, 1, 1, 2**32 - 1),  # a 4 GiB kind table
        header(1, 1, 1 << 20, 6),  # a believable count the file does not hold
        record([b"|u1|" + b"9" * 60_000], [real], [(d0, 0, 0)]),  # a 60 KB kind
        record([kind.encode()], [real], [(d0, ioff, 0)]),  # as documented: good (twice)
        record([b"|u1|1000000,1000000"], [real], [(d0, 0, 0)]),  # a 1 TB payload
        record([b"|O|3"], [real], [(d0, 0, 0)]),  # objects: pointers
        record([kind.encode()], [real], [(b"\x01" * 20, ioff, 0)]),  # a wrong digest
        record([kind.encode()], [(boff + 1, blen, 1)], [(d0, ioff, 0)]),  # no block there
    ]
    with open(manifest_path(store.packs_dir, pack), "ab") as fh:
        fh.write(b"".join(hostile))
    later = [np.full(64, i, np.int64) for i in range(100, 120)]
    w = store.writer()
    for a in later:  # a record after the hostile ones
        w.add(payload(a))
    w.close()
    lose_index(store)
    tracemalloc.start()
    try:
        rep = rebuild_index(store.root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak
    assert rep.damaged_manifests == 4 and rep.entries_refused == 4 and rep.duplicates == 1
    legit = {payload(a).digest: a for a in first + later}
    check_all(store, legit)
    # blocks trusted on their CRC alone: kinds and bounds are still checked
    monkeypatch.setattr(rebuild, "VERIFY_LIMIT", 0)
    rep = rebuild_index(store.root)
    assert rep.damaged_manifests == 4 and rep.entries_refused == 3
    check_all(store, legit)


def test_hostile_large_files_are_refused_without_a_big_allocation(store):
    from hangar_git.store import chunked

    big = np.random.default_rng(1).random((400, 400))
    w = store.writer()
    w.add(payload(big))
    w.close()
    ld = store.large_dir
    fixed = chunked.FIXED  # magic, version, flags, kind length, header length, chunks, digest
    claims_2gib = fixed.pack(b"HGC1", 1, 0, 4, 2**31, 1, bytes(20))
    (ld / "0000000090.hgc").write_bytes(claims_2gib + b"|u1|" + bytes(100))
    hlen = chunked.header_length("|O|3", 1, 1)  # objects: pointers, with a good CRC
    table = np.zeros(1, chunked.TABLE)
    table["off"], table["len"], table["crc"] = hlen, 24, zlib.crc32(bytes(24))
    objects = chunked.encode_header(bytes(20), "|O|3", (3,), table) + bytes(24)
    (ld / "0000000091.hgc").write_bytes(objects)
    (ld / "9999999999.hgc").write_bytes(b"")  # no writer numbers a file above 2**32
    (ld / "notes.hgc").write_bytes(b"not a payload file")  # not a name the store writes
    lose_index(store)
    tracemalloc.start()
    try:
        rep = rebuild_index(store.root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak
    assert rep.large_files_recovered == 1 and rep.large_files_refused == 3
    assert sum("large" in p for p in rep.problems) == 3
    check_all(store, {payload(big).digest: big})


def test_garbage_in_a_pack_and_its_manifest_is_skipped(store):
    expected = populate(store)
    rng = np.random.default_rng(8)
    junk = rng.bytes(5000) + b"HGB1" + bytes(16) + b"HGM1" + rng.bytes(100)
    with open(store.pack_path(1), "ab") as fh:
        fh.write(junk)
    with open(manifest_path(store.packs_dir, 1), "ab") as fh:
        fh.write(junk)
    lose_index(store)
    rep = rebuild_index(store.root)
    assert rep.entries_recovered == packed(expected) and rep.unattributed_bytes == len(junk)
    assert rep.problems and not rep.clean
    check_all(store, expected)


# --------------------------------------------------------------------------
# property: any payloads, any flush points
# --------------------------------------------------------------------------
_DTYPES = ["<i4", "|u1", "<f8", ">f4", "|b1", "<i2"]


@st.composite
def payload_sets(draw: st.DrawFn) -> tuple[list[np.ndarray], list[bool], str]:
    n = draw(st.integers(1, 60))
    arrays, flushes = [], []
    for _ in range(n):
        dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
        shape = tuple(draw(st.lists(st.integers(0, 9), max_size=3)))
        seed = draw(st.integers(0, 5))  # small seeds: repeated payloads
        arrays.append(np.random.default_rng(seed).integers(0, 3, shape).astype(dtype))
        flushes.append(draw(st.booleans()))
    return arrays, flushes, draw(st.sampled_from(["zero", "half", "delete", "flip"]))


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload_sets())
def test_rebuild_gives_the_same_digest_to_array_mapping(case):
    arrays, flushes, how = case
    with tempfile.TemporaryDirectory() as tmp:
        store = PackStore(Path(tmp) / "store")
        store.create()
        w = store.writer()
        for a, flush in zip(arrays, flushes, strict=True):
            w.add(payload(a))
            if flush:
                w.flush()
        w.close()
        expected = {payload(a).digest: a for a in arrays}
        before = indexed(store)
        lose_index(store, how)
        rep = rebuild_index(store.root)
        assert rep.clean and rep.entries_recovered == len(expected)
        assert indexed(store) == before
        check_all(store, expected)
