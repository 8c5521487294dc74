"""The store's index (sorted segments), the git object packs written by commits,
the batched staging journal lines, and the bulk read paths built on them."""

from __future__ import annotations

import sqlite3
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pygit2
import pytest

from hangar_git.errors import IntegrityError
from hangar_git.records.objpack import object_id, write_trees
from hangar_git.records.staging import Journal
from hangar_git.store import PackStore, payload_from_array
from hangar_git.store.index import ENTRY, QUERY, Run, lookup_runs, sorted_entries


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


def _segments(store: PackStore) -> list[tuple[int, int]]:
    con = sqlite3.connect(store.index_path)
    try:
        return con.execute("SELECT id, n FROM segments ORDER BY id").fetchall()
    finally:
        con.close()


def test_one_flush_per_add_keeps_few_segments_and_every_entry(store):
    w = store.writer()
    arrays = [np.full(3, i, np.int32) for i in range(300)]
    for a in arrays:  # a flush per add: the durable path outside `with`
        w.add(payload_from_array(a))
        w.flush()
    w.close()
    segs = _segments(store)
    assert sum(n for _, n in segs) == 300
    assert len(segs) <= 12  # merged as they pile up: O(log n) segments
    r = store.reader()
    assert r.count() == 300
    digests = [payload_from_array(a).digest for a in arrays]
    locs = r.locate_many(digests)
    assert len(locs) == 300
    for d, a in zip(digests, arrays, strict=True):
        np.testing.assert_array_equal(r.read(locs[d], d), a)
    found, e = r.lookup([*digests[::-1], b"\x00" * 20, b"short"])
    assert found.tolist() == [True] * 300 + [False, False]
    got = r.gather(e[:300])
    for g, a in zip(got, arrays[::-1], strict=True):
        np.testing.assert_array_equal(g, a)
        assert g.flags.writeable
    r.close()


def test_reader_sees_segments_written_after_it_opened(store):
    r = store.reader()
    a = np.arange(5.0)
    d = payload_from_array(a).digest
    assert r.locate(d) is None
    w = store.writer()
    w.add(payload_from_array(a))
    w.close()
    np.testing.assert_array_equal(r.get(d), a)  # a miss reloads the index
    r.close()


def test_lookup_handles_digests_sharing_their_first_8_bytes():
    rng = np.random.default_rng(0)
    base = bytes(rng.integers(0, 256, 20, dtype=np.uint8))
    digests = [base[:8] + bytes(rng.integers(0, 256, 12, dtype=np.uint8)) for _ in range(5)]
    digests.append(bytes(20))
    e = np.zeros(len(digests), ENTRY)
    q = np.frombuffer(b"".join(digests), dtype=[("key", ">u8"), ("tail", "V12")])
    e["key"], e["tail"] = q["key"], q["tail"]
    e["block"] = np.arange(len(digests))
    e = sorted_entries(e)
    run = Run(1, e["key"].astype(np.uint64), e)
    other = base[:8] + bytes(12)
    found, got = lookup_runs([run], [*digests[::-1], other])
    assert found.tolist() == [True] * len(digests) + [False]
    assert got["block"][: len(digests)].tolist() == list(range(len(digests)))[::-1]


def _run(sid, digests, blocks):
    e = np.zeros(len(digests), ENTRY)
    q = np.frombuffer(b"".join(digests), dtype=[("key", ">u8"), ("tail", "V12")])
    e["key"], e["tail"], e["block"] = q["key"], q["tail"], blocks
    e = sorted_entries(e)
    return Run(sid, e["key"].astype(np.uint64), e)


@pytest.mark.parametrize("n_query", [3, 40, 400])
def test_lookup_in_runs_smaller_and_larger_than_the_query_matches_a_dict(n_query):
    """Runs smaller than the query are searched the other way round first:
    whatever the sizes, every digest resolves to the entry of the first run
    holding it, repeated digests and 8-byte clashes included."""
    rng = np.random.default_rng(n_query)
    pool = [bytes(rng.integers(0, 256, 20, dtype=np.uint8)) for _ in range(300)]
    pool += [pool[0][:8] + bytes(rng.integers(0, 256, 12, dtype=np.uint8)) for _ in range(4)]
    runs, first = [], {}
    for sid, size in enumerate([5, 120, 30], start=1):
        picked = [pool[int(i)] for i in rng.choice(len(pool), size, replace=False)]
        blocks = [1000 * sid + i for i in range(size)]
        runs.append(_run(sid, picked, blocks))
        for d, b in zip(picked, blocks, strict=True):
            first.setdefault(d, b)
    query = [pool[int(i)] for i in rng.integers(0, len(pool), n_query)]
    query += [pool[0][:8] + bytes(12), query[0]]  # a clash not stored; a repeat
    found, got = lookup_runs(runs, query)
    assert found.tolist() == [d in first for d in query]
    assert [int(b) for b, f in zip(got["block"], found, strict=True) if f] == [
        first[d] for d in query if d in first
    ]
    # the same with the queries' keys given sorted (as a bulk write has them)
    keys = np.sort(np.frombuffer(b"".join(query), QUERY)["key"].astype(np.uint64))
    found2, got2 = lookup_runs(runs, b"".join(query), sorted_keys=keys)
    assert found2.tolist() == found.tolist()
    assert got2[found2].tobytes() == got[found].tobytes()
    with pytest.raises(ValueError):
        lookup_runs(runs, b"".join(query), sorted_keys=keys[1:])


def test_remove_and_relocate_rewrite_the_segments(store):
    w = store.writer()
    arrays = [np.full(50, i, np.float64) for i in range(40)]
    ps = [payload_from_array(a) for a in arrays]
    for p in ps:
        w.add(p)
    w.flush()
    assert w.remove([p.digest for p in ps[:10]] + [b"\x01" * 20]) == 10
    moved = w.relocate(ps[10:20])
    old_pack = min(store.pack_numbers())
    assert {loc.pack for loc in moved.values()} == {max(store.pack_numbers())}
    with pytest.raises(ValueError):
        w.drop_pack(old_pack)  # ps[20:] still live in it
    w.close()
    r = store.reader()
    assert r.count() == 30
    locs = r.locate_many([p.digest for p in ps])
    assert set(locs) == {p.digest for p in ps[10:]}
    for p, a in zip(ps[10:], arrays[10:], strict=True):
        assert locs[p.digest] == moved.get(p.digest, locs[p.digest])
        np.testing.assert_array_equal(r.read(locs[p.digest], p.digest), a)
    r.close()


def test_damaged_segment_is_refused_not_misread(store):
    w = store.writer()
    a = np.arange(100, dtype=np.int64)
    p = payload_from_array(a)
    w.add(p)
    w.close()
    con = sqlite3.connect(store.index_path)
    blob = bytearray(con.execute("SELECT entries FROM segments").fetchone()[0])
    blob[24] ^= 0xFF  # the item offset of the entry
    con.execute("UPDATE segments SET entries=?", (bytes(blob),))
    con.commit()
    con.close()
    r = store.reader()
    assert r.locate(p.digest) is None
    assert r.damaged_segments and p.digest in r.bad_rows
    r.close()


@pytest.mark.parametrize("value", ["garbage", 12345, 1.5])
def test_a_segment_row_holding_no_blob_is_refused_and_the_others_load(store, value):
    """A segment whose entries are not a blob (a damaged row: text, a
    number) is a damaged segment, as a blob failing its checksum is; the
    other segments are loaded and read (they are read through a blob
    handle, which opens blobs only)."""
    w = store.writer()
    arrays = [np.full(4, i, np.int32) for i in range(3)]
    payloads = [payload_from_array(a) for a in arrays]
    for p in payloads:
        w.add(p)
    w.close()
    con = sqlite3.connect(store.index_path)
    ((first, n, chk, blob),) = con.execute("SELECT id, n, chk, entries FROM segments").fetchall()
    # the same entries again in a second segment, then the first one damaged
    con.execute("INSERT INTO segments (n, chk, entries) VALUES (?,?,?)", (n, chk, blob))
    con.execute("UPDATE segments SET entries=? WHERE id=?", (value, first))
    con.commit()
    con.close()
    r = store.reader()
    found = r.locate_many([p.digest for p in payloads])
    assert list(r.damaged_segments) == [first]
    assert len(found) == len(payloads)  # from the sound segment
    for p, a in zip(payloads, arrays, strict=True):
        np.testing.assert_array_equal(r.read(found[p.digest], p.digest), a)
    r.close()


def test_segments_are_read_through_a_blob_handle_not_selected(store):
    """Loading the index selects no segment's entries: each blob is read
    through an incremental blob handle, with no copy of it SQLite makes
    first (in a fresh process, twice the fresh memory)."""
    w = store.writer()
    p = payload_from_array(np.arange(50, dtype=np.int64))
    w.add(p)
    w.close()
    r = store.reader()
    statements: list[str] = []
    r._con.set_trace_callback(statements.append)
    assert r.locate(p.digest) is not None
    assert any("FROM segments" in s for s in statements)
    assert not any("entries FROM segments" in s for s in statements), statements
    r.close()


def test_damaged_block_row_is_refused(store):
    w = store.writer()
    p = payload_from_array(np.arange(10, dtype=np.int16))
    w.add(p)
    w.close()
    con = sqlite3.connect(store.index_path)
    con.execute("UPDATE blocks SET boff = boff + 1")
    con.commit()
    con.close()
    r = store.reader()
    assert r.locate(p.digest) is None and p.digest in r.bad_rows
    found, e = r.lookup([p.digest])
    assert found.all()
    with pytest.raises(IntegrityError):
        r.read_entry(int(e["block"][0]), int(e["ioff"][0]), int(e["kind"][0]))
    r.close()


def test_index_of_the_first_layout_is_upgraded(tmp_path):
    root = tmp_path / "store"
    (root / "packs").mkdir(parents=True)
    s = PackStore(root)
    a = np.arange(7, dtype=np.int64)
    p = payload_from_array(a)
    from hangar_git.store.codec import encode_block

    block = encode_block(bytes(p.data), 8)
    (root / "packs" / "00000001.pack").write_bytes(block)
    con = sqlite3.connect(s.index_path)
    con.executescript(
        "CREATE TABLE payloads (digest BLOB PRIMARY KEY, pack INTEGER, boff INTEGER,"
        " blen INTEGER, ioff INTEGER, ilen INTEGER, kind INTEGER) WITHOUT ROWID;"
        "CREATE TABLE kinds (id INTEGER PRIMARY KEY, kind TEXT NOT NULL UNIQUE);"
    )
    con.execute("INSERT INTO kinds VALUES (1, ?)", (p.kind,))
    con.execute(
        "INSERT INTO payloads VALUES (?,?,?,?,?,?,?)",
        (p.digest, 1, 0, len(block), 0, len(p.data), 1),
    )
    con.commit()
    con.close()
    r = s.reader()
    np.testing.assert_array_equal(r.get(p.digest), a)
    assert r.count() == 1
    r.close()


def test_commit_trees_written_as_a_pack_are_valid_git(repo):
    git = repo._git_repo()
    rng = np.random.default_rng(1)
    trees = [
        b"160000 i:%d\x00" % i + bytes(rng.integers(0, 256, 20, dtype=np.uint8)) for i in range(100)
    ]
    oids = write_trees(git, trees)
    assert oids == [object_id(2, t) for t in trees]
    assert list((Path(git.path) / "objects" / "pack").glob("pack-*.idx"))
    fresh = pygit2.Repository(git.path)
    for oid, t in zip(oids, trees, strict=True):
        assert fresh.odb.read(pygit2.Oid(raw=oid))[1] == t
    # and a real commit made that way passes git fsck
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(3,), dtype=np.uint8)
    with aset:
        for i in range(20_000):
            aset[i] = np.array([i % 256, i // 256 % 256, 7], np.uint8)
    co.commit("many leaves")
    co.close()
    res = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=repo.path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rc = repo.checkout()
    assert (rc.arraysets["x"][12345] == [12345 % 256, 12345 // 256 % 256, 7]).all()
    rc.close()


def test_batched_sample_lines_replay_and_a_torn_batch_is_dropped(tmp_path):
    path = tmp_path / "journal"
    j = Journal.open(path, "master", None)
    j.record("S", "a", "{}")
    j.batching += 1
    for i in range(5):
        j.record_sample("a", f"i:{i}", bytes([i]) * 20)
        j.record_sample("b", f"i:{i}", bytes([9]) * 20)
    j.record_sample("a", "i:0", bytes([7]) * 20)  # later write of the same key wins
    j.batching -= 1
    j.sync()
    j.close()
    data = path.read_bytes()
    assert data.count(b"\nB\t") == 2
    j2 = Journal.open(path, "master", None)
    assert j2.asets["a"].samples == {f"i:{i}": bytes([i]) * 20 for i in range(1, 5)} | {
        "i:0": bytes([7]) * 20
    }
    assert len(j2.asets["b"].samples) == 5
    j2.close()
    path.write_bytes(data[:-7])  # the last B line cut short: its whole batch goes
    j3 = Journal.open(path, "master", None)
    assert not j3.asets["a"].samples and not j3.asets.get("b")
    j3.close()
    line = "B\ta\ti:1"
    assert zlib.crc32(line.encode())  # odd field count is refused on replay
    with pytest.raises(RuntimeError):
        Journal(path)._apply(line.split("\t"))


def test_bulk_paths_agree_with_key_by_key(repo):
    co = repo.checkout(write=True)
    imgs = co.arraysets.init_arrayset("imgs", shape=(4, 5), dtype=np.float32)
    var = co.arraysets.init_arrayset("var", shape=(6,), dtype=np.int16, variable_shape=True)
    rng = np.random.default_rng(2)
    data = {i: rng.random((4, 5)).astype(np.float32) for i in range(3000)}
    vdata = {f"k{i}": np.arange(i % 6 + 1, dtype=np.int16) * i for i in range(200)}
    with imgs, var:
        for k, v in data.items():
            imgs[k] = v
        for k, v in vdata.items():
            var[k] = v
    imgs[5] = data[5] = np.zeros((4, 5), np.float32)  # dedup with nothing, outside `with`
    # staged (not committed) samples read back through every path
    assert all(
        np.array_equal(a, data[k]) for k, a in zip(data, imgs.get_batch(list(data)), strict=True)
    )
    co.commit("c")
    committed = dict(data)
    del imgs[7]
    staged = dict(data)
    staged.pop(7)
    for r, data in ((co, staged), (repo.checkout(write=False), committed)):
        a, v = r.arraysets["imgs"], r.arraysets["var"]
        keys = list(a.keys())
        assert sorted(keys) == sorted(data)
        got = a.get_batch(keys)
        vals = list(a.values(batch_size=333))
        items = dict(a.items(batch_size=1000))
        for k, g, val in zip(keys, got, vals, strict=True):
            np.testing.assert_array_equal(g, data[k])
            np.testing.assert_array_equal(val, data[k])
            np.testing.assert_array_equal(items[k], data[k])
            np.testing.assert_array_equal(a[k], data[k])
        got[0][...] = -1  # each array is its own
        assert not (got[1] == -1).all()
        vk = list(v.keys())
        for k, g in zip(vk, v.get_batch(vk), strict=True):
            np.testing.assert_array_equal(g, vdata[k])
        with pytest.raises(KeyError):
            a.get_batch([1, 2, 10**6])
        if r is not co:
            r.close()
    co.close()


def _pragma(path: Path, name: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        con.close()


def _wal_checkpoint_pages(path: Path) -> int:
    from hangar_git.store.index import connect_index

    con = connect_index(path)
    try:
        return int(con.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    finally:
        con.close()


def test_a_new_index_has_large_pages_and_a_rebuilt_one_too(store):
    """A new index, and one rebuilt from the packs, have PAGE_SIZE pages (a
    segment's blob is a chain of them), its WAL checkpointed once it holds
    WAL_CHECKPOINT_BYTES; every entry reads back after a rebuild."""
    from hangar_git.store.index import PAGE_SIZE, WAL_CHECKPOINT_BYTES
    from hangar_git.store.rebuild import rebuild_index

    assert _pragma(store.index_path, "page_size") == PAGE_SIZE > 4096
    assert _wal_checkpoint_pages(store.index_path) == WAL_CHECKPOINT_BYTES // PAGE_SIZE
    w = store.writer()
    arrays = [np.full(4, i, np.float32) for i in range(2000)]
    w.add_stacked(
        payload_from_array(arrays[0]).kind,
        [payload_from_array(a).digest for a in arrays],
        np.stack(arrays),
    )
    w.close()
    store.index_path.unlink()
    for side in ("-wal", "-shm"):
        Path(str(store.index_path) + side).unlink(missing_ok=True)
    rebuild_index(store.root)
    assert _pragma(store.index_path, "page_size") == PAGE_SIZE
    r = store.reader()
    assert r.count() == 2000
    np.testing.assert_array_equal(r.get(payload_from_array(arrays[7]).digest), arrays[7])
    r.close()


def test_an_index_of_small_pages_keeps_them_and_works(tmp_path):
    """An index made with 4 KiB pages (by an older version) keeps them: it is
    written and read as before, and its WAL is checkpointed at about the
    same size (WAL_CHECKPOINT_BYTES) as with any page size."""
    from hangar_git.store.index import WAL_CHECKPOINT_BYTES

    root = tmp_path / "store"
    root.mkdir()
    con = sqlite3.connect(root / "index.sqlite")
    con.execute("PRAGMA page_size=4096")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    s = PackStore(root)
    s.create()
    assert _pragma(s.index_path, "page_size") == 4096
    w = s.writer()
    arrays = [np.full(3, i, np.int32) for i in range(500)]
    for a in arrays:
        w.add(payload_from_array(a))
    w.close()
    assert _pragma(s.index_path, "page_size") == 4096
    r = s.reader()
    assert r.count() == 500
    np.testing.assert_array_equal(r.get(payload_from_array(arrays[99]).digest), arrays[99])
    r.close()
    assert _wal_checkpoint_pages(s.index_path) * 4096 == WAL_CHECKPOINT_BYTES


def test_sorted_parts_merge_as_their_stable_sort():
    """merge_sorted of sorted parts (the new segment and those it absorbs) is
    sorted_entries of them joined, entry for entry: where keys are equal
    (in several parts, or twice in one), earlier parts' entries first."""
    from hangar_git.store.segment_plan import merge_sorted

    rng = np.random.default_rng(3)

    def part(n: int, top: int) -> np.ndarray:
        e = np.zeros(n, ENTRY)
        e["key"] = rng.integers(0, top, n, dtype=np.uint64)
        e["block"] = rng.integers(0, 2**31, n)  # tells equal keys apart
        return sorted_entries(e)

    for parts in (
        [part(3000, 2**63), part(1200, 2**63)],
        [part(50, 20), part(70, 20), part(30, 20)],  # many equal keys across parts
        [part(0, 5), part(5, 5), part(0, 5)],
    ):
        merged = merge_sorted(parts)
        assert merged.dtype == ENTRY
        assert merged.tobytes() == sorted_entries(np.concatenate(parts)).tobytes()


def test_key_order_is_the_stable_argsort():
    """key_order gives np.argsort(kind="stable") and the keys in that order:
    for uniform keys (its packed sort), many equal keys (in input order),
    keys sharing their top bits out of order (the argsort taken), one and none."""
    from hangar_git.store.index import key_order

    rng = np.random.default_rng(4)
    top = np.uint64(1 << 63)
    cases = [
        rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64),
        rng.integers(0, 30, 5_000).astype(np.uint64),
        np.array([top + np.uint64(5), top + np.uint64(3), np.uint64(3), np.uint64(3)]),
        np.array([7], np.uint64),
        np.zeros(0, np.uint64),
    ]
    for keys in cases:
        order, sk = key_order(keys)
        want = np.argsort(keys, kind="stable")
        assert order.tolist() == want.tolist()
        assert sk.tolist() == keys[want].tolist()
