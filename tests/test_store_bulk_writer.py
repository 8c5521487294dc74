"""The pack writer's bulk path (:meth:`PackWriter.add_stacked`): the rows it
writes, the index entries it commits (sorted once, as the index sorts them)
and :func:`.uncommitted.digest_order`, which both rest on."""

from __future__ import annotations

import errno
import itertools
import os
import sqlite3

import numpy as np
import pytest

from hangar_git.store import PackStore
from hangar_git.store import writer as writer_mod
from hangar_git.store.block_format import BLOCK_TARGET
from hangar_git.store.codec import encode_block
from hangar_git.store.digest import kind_of, stacked_digests
from hangar_git.store.index import ENTRY, QUERY, entry_digests, sorted_entries
from hangar_git.store.uncommitted import Uncommitted, digest_order


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


def _colliding(n: int, seed: int) -> list[bytes]:
    """Distinct 20-byte digests, many sharing their first 8 bytes (the sort key)."""
    rng = np.random.default_rng(seed)
    heads = rng.integers(0, 2**63, max(1, n // 3), dtype=np.uint64).astype(">u8")
    out = [heads[rng.integers(len(heads))].tobytes() + rng.bytes(12) for _ in range(n)]
    assert len(set(out)) == n
    return out


def _entries(digests: list[bytes]) -> np.ndarray:
    e = np.zeros(len(digests), ENTRY)
    q = np.frombuffer(b"".join(digests), QUERY)
    e["key"], e["tail"] = q["key"], q["tail"]
    e["ioff"] = np.arange(len(digests))  # tells equal-key entries apart
    return e


def _segments(store: PackStore) -> list[np.ndarray]:
    con = sqlite3.connect(store.index_path)
    try:
        rows = con.execute("SELECT entries FROM segments ORDER BY id").fetchall()
    finally:
        con.close()
    return [np.frombuffer(r[0], ENTRY) for r in rows]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("collide", [False, True])
def test_digest_order_sorts_as_the_index_sorts(seed, collide):
    rng = np.random.default_rng(seed)
    digests = _colliding(300, seed) if collide else [rng.bytes(20) for _ in range(3000)]
    order = digest_order(b"".join(digests))
    assert order is not None
    e = _entries(digests)
    assert np.take(e, order).tobytes() == sorted_entries(e).tobytes()


def test_digest_order_is_none_for_a_repeated_digest():
    digests = _colliding(50, 7)
    assert digest_order(b"".join(digests)) is not None
    assert digest_order(b"".join([*digests, digests[17]])) is None  # apart once sorted
    assert digest_order(b"".join([digests[3], digests[9], digests[3]])) is None  # neighbours
    # the same key with another tail is not a repeat
    twin = digests[17][:8] + bytes(12)
    assert digest_order(b"".join([*digests, twin])) is not None


def test_uncommitted_returns_presorted_entries_as_they_are_and_sorts_the_rest():
    digests = _colliding(40, 3)
    e = _entries(digests)
    done = sorted_entries(e)
    u = Uncommitted()
    u.add_sorted_entries(done)
    assert u.entries() is done
    u.add([bytes(20)], 9, [0], [1])  # an entry added one by one: all are sorted again
    got = u.entries()
    assert len(got) == len(e) + 1 and (np.diff(got["key"].astype(np.uint64)) >= 0).all()
    u.clear()
    u.add_sorted_entries(done)
    u.add_entries(e[::-1])  # unsorted ones after it
    assert u.entries().tobytes() == sorted_entries(np.concatenate([done, e[::-1]])).tobytes()
    for first in (e[::-1], done):  # sorted ones after others, or twice: sorted again
        u.clear()
        u.add_entries(first) if first is not done else u.add_sorted_entries(first)
        u.add_sorted_entries(done)
        want = sorted_entries(np.concatenate([first, done]))
        assert u.entries().tobytes() == want.tobytes()


@pytest.mark.parametrize("repeat", [False, True])
def test_add_stacked_commits_the_entries_the_index_order_gives(store, repeat):
    """Rows whose digests share their sort key, given in no order: the segment
    committed is exactly the sorted entries (equal keys in input order), read
    back row by row; with a digest repeated, the slower path gives the same."""
    rows = np.arange(600 * 3, dtype=np.int32).reshape(600, 3)
    digests = _colliding(600, 11)
    if repeat:
        rows = np.concatenate([rows, rows[:5]])
        digests = digests + digests[:5]
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests, rows)
    finally:
        w.close()
    (seg,) = _segments(store)
    assert len(seg) == 600
    assert seg.tobytes() == sorted_entries(seg[np.argsort(seg["block"], kind="stable")]).tobytes()
    # each digest names its own row: (digests made up, so the reader, which
    # checks a payload's bytes against its digest, is not asked)
    # a repeated digest is written once, from the last row holding it
    last = {d: i for i, d in enumerate(digests)}
    written = [digests[i] for i in sorted(last.values())]
    where = dict(zip(entry_digests(seg), seg["ioff"].tolist(), strict=True))
    assert [where[d] for d in written] == [i * 12 for i in range(600)]


def test_add_stacked_skips_rows_stored_already(store):
    rows = np.random.default_rng(2).random((500, 4), dtype=np.float32)
    digests = stacked_digests(rows)
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests[:200], rows[:200])
        size = sum(p.stat().st_size for p in store.packs_dir.glob("*.pack"))
        w.add_stacked(kind_of(rows[0]), digests, rows)  # 200 known, 300 new
        w.add_stacked(kind_of(rows[0]), digests, rows)  # all known
    finally:
        w.close()
    grown = sum(p.stat().st_size for p in store.packs_dir.glob("*.pack")) - size
    assert 0 < grown < 300 * 16 + 4096  # the 300 new rows, not 500 again
    assert sum(len(s) for s in _segments(store)) == 500


def test_add_stacked_refuses_digests_of_the_wrong_length(store):
    rows = np.zeros((2, 3), np.float32)
    w = store.writer()
    try:
        with pytest.raises(ValueError, match="20 bytes"):
            w.add_stacked(kind_of(rows[0]), [bytes(20), bytes(19)], rows)
    finally:
        w.close()


@pytest.mark.parametrize("window", [None, 200_000])
def test_add_stacked_writes_the_blocks_encode_block_makes(store, monkeypatch, window):
    """The pack holds, block after block, encode_block of each run of rows
    (compressible and not, one window or several encoded into buffers of
    their own), and every block row the index commits points at one."""
    if window is not None:
        monkeypatch.setattr(writer_mod, "STREAM_WINDOW", window)
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 256, (1500, 784), dtype=np.uint8)
    rows[::3] = rows[::3] // 64  # some rows compress, some do not
    digests = stacked_digests(rows)
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests, rows)
    finally:
        w.close()
    per = -(-BLOCK_TARGET // 784)
    blocks = [encode_block(rows[a : a + per].tobytes(), 1) for a in range(0, 1500, per)]
    (pack,) = store.pack_numbers()
    assert store.pack_path(pack).read_bytes() == b"".join(blocks)
    con = sqlite3.connect(store.index_path)
    try:
        got = con.execute("SELECT boff, blen FROM blocks ORDER BY boff").fetchall()
    finally:
        con.close()
    ends = np.cumsum([0] + [len(b) for b in blocks]).tolist()
    assert got == [(a, b - a) for a, b in itertools.pairwise(ends)]


def test_add_stacked_moves_to_a_new_pack_at_the_limit(store, monkeypatch):
    """A bulk add fills a pack up to PACK_LIMIT and one block past it at most,
    then goes on in the next; every row reads back from where it went."""
    from hangar_git.store import appender

    monkeypatch.setattr(appender, "PACK_LIMIT", 150_000)
    rows = np.random.default_rng(5).integers(0, 256, (1500, 784), dtype=np.uint8)
    digests = stacked_digests(rows)
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests, rows)
    finally:
        w.close()
    numbers = store.pack_numbers()
    assert len(numbers) == 6  # 18 blocks, 3 a pack: as the writer placed them block by block
    block = -(-BLOCK_TARGET // 784) * 784 + 20
    assert all(store.pack_path(k).stat().st_size < 150_000 + block for k in numbers)
    r = store.reader()
    try:
        got = [r.get(d) for d in digests]
    finally:
        r.close()
    assert all(g.tobytes() == row.tobytes() for g, row in zip(got, rows, strict=True))


@pytest.mark.parametrize("fails", ["write", "fsync"])
def test_a_failed_bulk_add_leaves_no_view_of_the_callers_rows_queued(store, monkeypatch, fails):
    """Rows that do not compress are written from the caller's own buffer. When
    the add fails (a full disk) its blocks stay queued for a later flush: as
    copies, so a caller refilling its buffer afterwards changes nothing stored."""
    rows = np.random.default_rng(6).integers(0, 256, (400, 784), dtype=np.uint8)
    rows[300:] //= 64  # blocks that compress too
    want = rows.copy()
    digests = stacked_digests(rows)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    w = store.writer()
    try:
        for name in ("write", "writev") if fails == "write" else (fails,):
            monkeypatch.setattr(os, name, full)
        with pytest.raises(OSError):
            w.add_stacked(kind_of(rows[0]), digests, rows)
        monkeypatch.undo()
        rows[:] = 7  # the caller's buffer, reused
        w.flush()  # space is back: the queued blocks are written now
    finally:
        w.close()
    r = store.reader()
    try:
        got = [r.get(d) for d in digests]
    finally:
        r.close()
    assert all(g.tobytes() == x.tobytes() for g, x in zip(got, want, strict=True))


@pytest.mark.parametrize("compressible", [False, True])
def test_windows_start_their_writeback_and_sync_only_encoded_bytes(
    store, monkeypatch, compressible
):
    """Each window written has the disk start on it (the range it wrote); a
    window is synced before the next only when the writer holds a window's
    worth of encoded bytes: rows written from where they lie are synced once,
    by the flush."""
    from hangar_git.store import appender

    monkeypatch.setattr(writer_mod, "STREAM_WINDOW", 200_000)
    ranges, syncs = [], []
    monkeypatch.setattr(appender, "start_writeback", lambda fd, off, n: ranges.append((off, n)))
    real_sync = appender.PackAppender.sync
    monkeypatch.setattr(
        appender.PackAppender, "sync", lambda self: (syncs.append(1), real_sync(self))[1]
    )
    rows = np.random.default_rng(7).integers(0, 256, (1500, 784), dtype=np.uint8)
    if compressible:
        rows //= 64
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), stacked_digests(rows), rows)
    finally:
        w.close()
    (pack,) = store.pack_numbers()
    size = store.pack_path(pack).stat().st_size
    assert len(ranges) >= 3
    assert [off for off, _ in ranges] == list(np.cumsum([0] + [n for _, n in ranges[:-1]]))
    assert sum(n for _, n in ranges) == size
    window_syncs = len(syncs) - 2  # the flush's, and close's (nothing left by then)
    assert (window_syncs > 0) if compressible else (window_syncs == 0), (window_syncs, size)
