"""A bulk add's rows hashed while their blocks are written
(:meth:`PackWriter.add_hashing`, :mod:`hangar_git.store.writer_rows`): the
same pack, index and digests as hashing then :meth:`~PackWriter.add_stacked`;
rows found stored only after their blocks were written; a failed write."""

from __future__ import annotations

import errno
import os
import sqlite3
from concurrent.futures import Future

import numpy as np
import pytest

from hangar_git.store import PackStore, rebuild_index, threads, writer_rows
from hangar_git.store.block_format import BLOCK_TARGET
from hangar_git.store.digest import kind_of, payload_from_array, stacked_digests
from hangar_git.store.index import ENTRY
from hangar_git.store.uncommitted import digest_order


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


@pytest.fixture
def overlapped(monkeypatch) -> list[int]:
    """Adds of 100 kB and more overlap (on two threads even on one core);
    counts the writes handed to the write thread."""
    monkeypatch.setattr(writer_rows, "OVERLAP_MIN", 100_000)
    monkeypatch.setattr(threads, "WORKERS", 2)
    jobs: list[int] = []
    real = threads.writer

    def counting():
        jobs.append(1)
        return real()

    monkeypatch.setattr(threads, "writer", counting)
    return jobs


def _rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)
    rows[n // 3 : n // 2] //= 64  # blocks that compress, and blocks that do not
    return rows


def _read(store: PackStore, digests) -> list[bytes]:
    r = store.reader()
    try:
        return [r.get(d).tobytes() for d in digests]
    finally:
        r.close()


def _packs(store: PackStore) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.packs_dir.glob("*.pack")))


def test_add_hashing_stores_what_hashing_then_add_stacked_stores(store, tmp_path, overlapped):
    rows = _rows(2000, 1)
    w = store.writer()
    try:
        got = w.add_hashing(kind_of(rows[0]), rows)
    finally:
        w.close()
    assert overlapped == [1]
    digests = stacked_digests(rows)
    assert got.joined == digests.joined
    other = PackStore(tmp_path / "other")
    other.create()
    w = other.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests, rows)
    finally:
        w.close()
    assert _packs(store) == _packs(other)
    assert _read(store, digests) == [r.tobytes() for r in rows]
    assert rebuild_index(store.root, dry_run=True).clean


@pytest.mark.parametrize("where", ["all", "first", "middle", "last"])
def test_add_hashing_writes_nothing_ahead_when_rows_probed_are_stored(store, overlapped, where):
    """Rows of the first, a middle or the last block stored already: the rows
    are hashed first, and only the new ones written."""
    rows = _rows(2000, 2)
    per = -(-BLOCK_TARGET // 784)
    at = {"all": slice(None), "first": slice(0, 5), "middle": slice(1010, 1011)}
    old = rows[at.get(where, slice(1999, 2000))]
    w = store.writer()
    try:
        w.add_hashing(kind_of(old[0]), old)  # a small add, served serially
        size = len(_packs(store))
        again = w.add_hashing(kind_of(rows[0]), rows)
    finally:
        w.close()
    assert overlapped == ([1] if where == "all" else [])
    assert again.joined == stacked_digests(rows).joined
    grown = len(_packs(store)) - size
    assert grown == 0 if where == "all" else 0 < grown < (2000 - len(old) + per) * 784
    assert _read(store, again) == [r.tobytes() for r in rows]


@pytest.mark.parametrize("later", ["stored", "repeated"])
def test_rows_found_stored_after_their_blocks_were_written_get_no_entries(store, overlapped, later):
    """The probed blocks' rows are new, others are stored already (or repeat
    rows of this add): the blocks are written whole, the new rows indexed once
    each, every row reads back, and a rebuilt index accounts for every byte."""
    old = _rows(600, 3)
    rows = _rows(2000, 4)  # (rows 0-83, 1000-1083 and 1916-1999 probed: new)
    rows[200:800] = old if later == "stored" else rows[1200:1800]
    w = store.writer()
    try:
        if later == "stored":
            w.add_stacked(kind_of(old[0]), stacked_digests(old), old)
        got = w.add_hashing(kind_of(rows[0]), rows)
    finally:
        w.close()
    assert overlapped == [1]
    digests = list(stacked_digests(rows))
    assert list(got) == digests
    assert _read(store, digests) == [r.tobytes() for r in rows]
    r = store.reader()
    try:
        found, _ = r.lookup(digests)
        assert found.all()
    finally:
        r.close()
    con = sqlite3.connect(store.index_path)
    try:
        segments = con.execute("SELECT entries FROM segments").fetchall()
    finally:
        con.close()
    assert sum(len(np.frombuffer(e, ENTRY)) for (e,) in segments) == len(set(digests))
    report = rebuild_index(store.root)
    assert report.clean, report.summary()
    assert report.entries_recovered == len(set(digests))
    assert report.duplicates == 600
    assert _read(store, digests) == [r.tobytes() for r in rows]


def test_a_failed_write_leaves_nothing_queued_and_the_writer_usable(store, overlapped, monkeypatch):
    rows = _rows(2000, 5)
    small = _rows(10, 6)
    w = store.writer()
    try:
        w.add_hashing(kind_of(small[0]), small)  # a small add, served serially
        before = len(_packs(store))

        def full(fd, bufs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with monkeypatch.context() as m:
            m.setattr(os, "writev", full)
            with pytest.raises(OSError):
                w.add_hashing(kind_of(rows[0]), rows)
        assert overlapped == [1]
        assert w._app.queued_bytes == 0
        assert len(_packs(store)) == before
        want = rows.copy()
        rows[:5] = 9  # the caller's buffer, reused: nothing of the failed add is written
        w.flush()
        assert len(_packs(store)) == before
        rows[:] = want
        got = w.add_hashing(kind_of(rows[0]), rows)
    finally:
        w.close()
    assert overlapped == [1, 1]
    assert _read(store, got) == [r.tobytes() for r in rows]
    assert _read(store, stacked_digests(small)) == [r.tobytes() for r in small]


def test_drop_last_takes_back_only_the_parts_last_queued(store):
    w = store.writer()
    try:
        app = w._app
        a, b, c = b"a" * 10, b"b" * 20, b"c" * 30
        app.queue_parts([a])
        app.queue_parts([b, c])
        app.drop_last([a])  # not the last: kept
        assert app.queued_bytes == 60
        app.drop_last([b, c])
        assert app.queued_bytes == 10
        app.drop_last([b, c])  # gone already
        assert app.queued_bytes == 10
        app.drop_last([a])
        assert app.queued_bytes == 0
    finally:
        w.close()


def test_a_wait_interrupted_ends_only_when_the_write_has():
    class Job(Future):
        calls = 0

        def exception(self, timeout=None):
            Job.calls += 1
            if Job.calls < 3:
                raise KeyboardInterrupt
            return OSError("late")

    failed, interrupted = writer_rows._outcome(Job())
    assert Job.calls == 3
    assert isinstance(failed, OSError) and isinstance(interrupted, KeyboardInterrupt)


def test_rows_held_finds_the_rows_of_the_digests_given_among_keys_shared():
    rng = np.random.default_rng(8)
    heads = rng.bytes(8 * 5)
    digests = [heads[8 * (i % 5) : 8 * (i % 5) + 8] + rng.bytes(12) for i in range(400)]
    joined = b"".join(digests)
    order = digest_order(joined)
    assert order is not None
    held = [digests[7], digests[123], digests[399], heads[:8] + bytes(12), b"short"]
    assert writer_rows.rows_held(joined, order, held).tolist() == [7, 123, 399]
    assert writer_rows.rows_held(joined, order, []).tolist() == []


@pytest.mark.parametrize("shared", [False, True])
def test_a_bulk_add_after_single_payloads_takes_the_sorted_path(store, shared):
    """Payloads added one by one first: a bulk add holding none of them is
    queued with its sorted entries (no dict of every row); one holding some
    writes and indexes the others only."""
    rows = _rows(600, 9)
    digests = stacked_digests(rows)
    single = rows[17] if shared else np.arange(784, dtype=np.uint8)
    w = store.writer()
    try:
        w.add(payload_from_array(single))
        w.add_stacked(kind_of(rows[0]), digests, rows, flush=False)
        assert (w._rows_sorted is None) == shared
        w.flush()
    finally:
        w.close()
    con = sqlite3.connect(store.index_path)
    try:
        segments = con.execute("SELECT entries FROM segments").fetchall()
    finally:
        con.close()
    assert sum(len(np.frombuffer(e, ENTRY)) for (e,) in segments) == 600 + (not shared)
    assert _read(store, digests) == [r.tobytes() for r in rows]
