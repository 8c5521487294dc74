"""The same payloads added twice before the writer's flush are stored once.

Bulk adds queued without a flush (``add_stacked(..., flush=False)``,
``add_hashing(..., flush=False)``, the arraysets of one ``with a, b:`` block)
wait for the next index commit; a later add of rows they hold (in bulk or one
by one) writes and indexes only rows not queued yet: content addressing
keeps one copy. :meth:`.uncommitted.Uncommitted.held` is what finds them.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hangar_git.store import PackStore, rebuild_index, threads, writer_rows
from hangar_git.store.digest import kind_of, payload_from_array, stacked_digests
from hangar_git.store.index import ENTRY, QUERY
from hangar_git.store.uncommitted import Uncommitted, digest_order


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


def _entries(store: PackStore) -> int:
    con = sqlite3.connect(store.index_path)
    try:
        segments = con.execute("SELECT entries FROM segments").fetchall()
    finally:
        con.close()
    return sum(len(np.frombuffer(e, ENTRY)) for (e,) in segments)


def _pack_bytes(store: PackStore) -> int:
    return sum(p.stat().st_size for p in store.packs_dir.glob("*.pack"))


def _read(store: PackStore, digests) -> list[bytes]:
    r = store.reader()
    try:
        return [r.get(d).tobytes() for d in digests]
    finally:
        r.close()


def _once(tmp_path, rows: np.ndarray) -> int:
    """Pack bytes of ``rows`` added alone, in a store of their own."""
    s = PackStore(tmp_path / "once")
    s.create()
    w = s.writer()
    try:
        w.add_stacked(kind_of(rows[0]), stacked_digests(rows), rows)
    finally:
        w.close()
    return _pack_bytes(s)


@pytest.mark.parametrize("how", ["stacked", "hashing", "overlapped"])
def test_the_same_rows_queued_twice_are_written_and_indexed_once(store, tmp_path, how, monkeypatch):
    if how == "overlapped":  # blocks written while the rows are hashed
        monkeypatch.setattr(writer_rows, "OVERLAP_MIN", 100_000)
        monkeypatch.setattr(threads, "WORKERS", 2)
    rows = _rows(2000, 1)
    kind, digests = kind_of(rows[0]), stacked_digests(rows)
    w = store.writer()
    try:
        for copy in (rows, rows.copy()):
            if how == "stacked":
                w.add_stacked(kind, digests, copy, flush=False)
            else:
                assert w.add_hashing(kind, copy, flush=False).joined == digests.joined
        w.flush()
    finally:
        w.close()
    assert _entries(store) == 2000
    assert _pack_bytes(store) == _once(tmp_path, rows)
    assert _read(store, digests) == [r.tobytes() for r in rows]
    report = rebuild_index(store.root)
    assert report.clean, report.summary()
    assert report.duplicates == 0


@pytest.mark.parametrize("repeated", [False, True])
def test_a_bulk_add_sharing_some_rows_with_one_queued_writes_only_the_others(
    store, tmp_path, repeated
):
    """Half the rows queued already (and, ``repeated``, rows repeated within
    the second add: the path that does not sort): only the other half is
    written and indexed."""
    first, other = _rows(1000, 2), _rows(1000, 3)
    second = np.concatenate([first[500:], other])
    if repeated:
        second[-100:] = second[-300:-200]
    kind = kind_of(first[0])
    w = store.writer()
    try:
        w.add_stacked(kind, stacked_digests(first), first, flush=False)
        w.add_stacked(kind, stacked_digests(second), second, flush=False)
        w.flush()
    finally:
        w.close()
    fresh = other[:900] if repeated else other
    assert _entries(store) == 1000 + len(fresh)
    # (blocks cut elsewhere: a few headers more or less; 500 rows of ``first`` again: 392 kB)
    assert _pack_bytes(store) < _once(tmp_path, np.concatenate([first, fresh])) + 20 * 784
    both = np.concatenate([first, second])
    assert _read(store, stacked_digests(both)) == [r.tobytes() for r in both]


def _bulk_then_single(store: PackStore, rows: np.ndarray, again: tuple[int, ...]) -> int:
    """``rows`` queued in bulk, then rows ``again`` and a new payload added one
    by one, then flushed: the pack's bytes."""
    digests = stacked_digests(rows)
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests, rows, flush=False)
        assert w.has_pending(digests[5]) and w.has_pending()
        assert not w.has_pending(stacked_digests(_rows(1, 5))[0])
        for i in again:
            w.add(payload_from_array(rows[i]))
        w.add(payload_from_array(np.arange(784, dtype=np.uint8)))  # new: written
        w.flush()
        assert w.pending_location(digests[17]) is None  # indexed: the reader finds it
    finally:
        w.close()
    assert _entries(store) == 601
    assert _read(store, digests) == [r.tobytes() for r in rows]
    return _pack_bytes(store)


def test_single_payloads_queued_in_bulk_already_are_not_written_again(store, tmp_path):
    """Rows queued by a bulk add, added again one by one before the flush:
    nothing more is written (the same pack bytes as without them); they read
    back once the writer has flushed, and the writer tells they are pending."""
    rows = _rows(600, 4)
    other = PackStore(tmp_path / "other")
    other.create()
    assert _bulk_then_single(store, rows, (5, 17, 599)) == _bulk_then_single(other, rows, ())


def test_a_queued_payload_asked_for_is_flushed_first(store):
    rows = _rows(600, 6)
    digests = stacked_digests(rows)
    w = store.writer()
    try:
        w.add_stacked(kind_of(rows[0]), digests, rows, flush=False)
        w.pending_location(digests[3])
        assert not w.has_pending()
        assert _entries(store) == 600
    finally:
        w.close()


def test_two_arraysets_of_one_block_holding_the_same_samples_store_them_once(repo):
    import hangar_git.held_rows as held_rows

    n = held_rows.STACK_MIN + 1500
    data = _rows(n, 7).reshape(n, 28, 28)
    co = repo.checkout(write=True)
    try:
        a = co.arraysets.init_arrayset("a", shape=(28, 28), dtype=np.uint8)
        b = co.arraysets.init_arrayset("b", shape=(28, 28), dtype=np.uint8)
        with a, b:
            for i in range(n):
                a[i] = data[i]
                b[i] = data[i]
        store = repo.payload_store
        assert _entries(store) == n
        assert np.array_equal(np.stack(b.get_batch(range(n))), data)
        assert np.array_equal(np.stack(a.get_batch(range(n))), data)
    finally:
        co.close()


def test_held_finds_the_digests_of_entries_queued_whole_among_keys_shared():
    """Entries added in arrays, sorted and not, some of their digests sharing
    their first 8 bytes (the search key): :meth:`Uncommitted.held` marks
    exactly the digests of those entries, whatever the runs merged."""
    rng = np.random.default_rng(8)
    heads = rng.bytes(8 * 5)
    digests = [heads[8 * (i % 5) : 8 * (i % 5) + 8] + rng.bytes(12) for i in range(300)]
    digests += [rng.bytes(20) for _ in range(700)]
    u = Uncommitted()
    assert u.held(b"".join(digests)) is None
    queued: set[bytes] = set()
    for lo, hi in [(0, 100), (100, 110), (200, 600), (650, 660), (661, 662), (900, 1000)]:
        e = np.zeros(hi - lo, ENTRY)
        q = np.frombuffer(b"".join(digests[lo:hi]), QUERY)
        e["key"], e["tail"] = q["key"], q["tail"]
        if lo % 200 == 0:
            u.add_sorted_entries(np.sort(e, order="key", kind="stable"))
        else:
            u.add_entries(e)
        queued.update(digests[lo:hi])
        got = u.held(b"".join(digests))
        assert got is not None
        assert got.tolist() == [d in queued for d in digests]
        given = u.held(b"".join(digests), digest_order(b"".join(digests)))  # (order known)
        assert given is not None and given.tolist() == got.tolist()
    u.clear()
    assert u.held(b"".join(digests)) is None
