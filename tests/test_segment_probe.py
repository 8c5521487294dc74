"""A writer storing a few payloads reads only the index segments it needs
(:mod:`hangar_git.store.segment_probe`), and concludes what a full load of
the index would: stored payloads are skipped, new ones stored, small
segments still merged, damaged segments still set aside."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hangar_git.store import PackStore, payload_from_array
from hangar_git.store.index import Segments
from hangar_git.store.segment_probe import maybe_stored, stored_locations


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


def _entries(store: PackStore) -> int:
    return sum(n for _, n in _segments(store))


def _fill(store: PackStore, batches: list[int]) -> list[bytes]:
    """Payloads written in ``batches`` of that many (a segment each, at first)."""
    digests, k = [], 0
    for size in batches:
        w = store.writer()
        for _ in range(size):
            p = payload_from_array(np.full(5, k, np.int64))
            w.add(p)
            digests.append(p.digest)
            k += 1
        w.close()
    return digests


def test_maybe_stored_is_exact_on_an_intact_index(store):
    digests = _fill(store, [500, 40, 3])
    con = sqlite3.connect(store.index_path)
    try:
        for d in digests[::37] + digests[-3:]:
            assert maybe_stored(con, store.index_path, [d])
        assert maybe_stored(con, store.index_path, [b"\x00" * 20, digests[7]])
        absent = [payload_from_array(np.full(5, -i, np.int64)).digest for i in range(1, 40)]
        assert not maybe_stored(con, store.index_path, absent)
        twin = digests[100][:8] + bytes(12)  # same sort key, another digest
        assert not maybe_stored(con, store.index_path, [twin])
    finally:
        con.close()


def test_fresh_writers_skip_stored_payloads_without_loading_the_index(store, monkeypatch):
    digests = _fill(store, [300])
    loads = []
    orig = Segments.load

    def spy(self, con, path):
        loads.append(path)
        return orig(self, con, path)

    monkeypatch.setattr(Segments, "load", spy)
    w = store.writer()
    w.add(payload_from_array(np.full(5, -1, np.int64)))  # new
    w.flush()
    assert loads == []  # a new payload: the 300 entries stayed unread
    w.add(payload_from_array(np.full(5, 7, np.int64)))  # stored already
    w.flush()
    # found by the probe, believed once its block and bytes check out: still unread
    assert loads == []
    w.close()
    assert _entries(store) == 301  # the stored one was not indexed twice
    r = store.reader()
    new = payload_from_array(np.full(5, -1, np.int64)).digest
    assert len(r.locate_many([*digests, new])) == 301
    r.close()


def test_small_commits_in_fresh_writers_still_merge_segments(store):
    _fill(store, [1000])
    for i in range(60):  # a commit of one change each, each in a new process's writer
        w = store.writer()
        w.add(payload_from_array(np.full(5, 10_000 + i, np.int64)))
        w.close()
    segs = _segments(store)
    assert sum(n for _, n in segs) == 1060
    assert len(segs) <= 8  # merged as they pile up, not one segment per commit


def test_a_damaged_segment_is_set_aside_as_a_full_load_would(store, monkeypatch):
    p = payload_from_array(np.arange(100, dtype=np.int64))
    w = store.writer()
    w.add(p)
    w.close()
    con = sqlite3.connect(store.index_path)
    blob = bytearray(con.execute("SELECT entries FROM segments").fetchone()[0])
    blob[24] ^= 0xFF  # the item offset: the checksum fails, the key still matches
    con.execute("UPDATE segments SET entries=?", (bytes(blob),))
    con.commit()
    con.close()
    loads = []
    orig = Segments.load

    def spy(self, con, path):
        loads.append(path)
        return orig(self, con, path)

    monkeypatch.setattr(Segments, "load", spy)
    w = store.writer()
    w.add(p)  # found by the probe, its bytes do not check out: refused by the verified load
    w.close()
    assert loads  # the probe's find was not believed
    r = store.reader()
    loc = r.locate(p.digest)
    assert loc is not None
    np.testing.assert_array_equal(r.read(loc, p.digest), np.arange(100, dtype=np.int64))
    r.close()


def test_a_writer_probes_at_most_probe_max_digests_then_loads_the_index(store, monkeypatch):
    """Probing costs a few blob reads per digest and segment: a writer storing
    payloads one at a time probes up to PROBE_MAX digests in all, then loads
    the index once (and still skips what is stored, stores what is not)."""
    from hangar_git.store import chunked, segment_probe
    from hangar_git.store import writer as writer_mod

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)  # each payload its own file and probe
    stored = _fill(store, [3])
    probed: list[int] = []

    def counting(tables, con, digests, kept=None):
        probed.append(len(digests))
        return stored_locations(tables, con, digests, kept)

    monkeypatch.setattr(writer_mod, "stored_locations", counting)
    w = store.writer()
    arrays = [np.full(8192, k, np.float64) for k in range(segment_probe.PROBE_MAX + 10)]
    for a in arrays:
        w.add(payload_from_array(a))
    w.add(payload_from_array(np.full(5, 1, np.int64)))  # stored already
    w.close()
    assert sum(probed) == segment_probe.PROBE_MAX
    r = store.reader()
    assert all(np.array_equal(r.get(payload_from_array(a).digest), a) for a in arrays)
    assert all(r.locate(d) is not None for d in stored)
    r.close()
    assert _entries(store) == 3 + len(arrays)


def test_a_mapped_connection_stays_exact_as_the_index_changes(store):
    """The probe maps the index file (reads deep in a big segment then cost no
    ``pread`` per overflow page) and leaves it mapped: later searches on that
    connection see every segment written, merged or removed since."""
    digests = _fill(store, [400, 20])
    con = sqlite3.connect(store.index_path, isolation_level=None)
    try:
        assert con.execute("PRAGMA mmap_size").fetchone()[0] == 0
        assert maybe_stored(con, store.index_path, [digests[3]])
        assert con.execute("PRAGMA mmap_size").fetchone()[0] > 0
        later = []
        for size in (5, 5, 30):  # new segments, small ones merged away
            w = store.writer()
            for _ in range(size):
                p = payload_from_array(np.full(5, 1000 + len(later), np.int64))
                w.add(p)
                later.append(p.digest)
            w.close()
        assert len(_segments(store)) < 5
        for d in later[::7] + digests[::53]:
            assert maybe_stored(con, store.index_path, [d])
        absent = [payload_from_array(np.full(5, -i, np.int64)).digest for i in range(1, 30)]
        assert not maybe_stored(con, store.index_path, absent)
    finally:
        con.close()


def test_stored_locations_believe_only_payloads_that_check_out(store, monkeypatch):
    """What the probe finds is a location only once the payload there proves
    to be the one asked for; else None (the full, verified load decides)."""
    from hangar_git.store import chunked

    digests = _fill(store, [50])
    w = store.writer()
    later = payload_from_array(np.full(5, 500, np.int64))
    w.add(later)  # a second segment
    w.close()
    w = store.writer()
    try:
        con = sqlite3.connect(store.index_path, isolation_level=None)
        assert len(_segments(store)) == 2
        got = stored_locations(w, con, [digests[3], later.digest])
        r = store.reader()
        assert got == {digests[3]: r.locate(digests[3]), later.digest: r.locate(later.digest)}
        absent = payload_from_array(np.full(5, -9, np.int64)).digest
        assert stored_locations(w, con, [absent]) == {}
        # the bytes of the block holding digests[3] damaged on disk: not believed
        loc = r.locate(digests[3])
        r.close()
        path = store.pack_path(loc.pack)
        raw = bytearray(path.read_bytes())
        raw[loc.boff + loc.blen - 1] ^= 0xFF
        path.write_bytes(bytes(raw))
        assert stored_locations(w, con, [digests[3]]) is None
        assert stored_locations(w, con, [absent]) == {}
        con.close()
    finally:
        w.close()
    # a large payload (a file of its own) is left to the full load
    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    big = payload_from_array(np.full(8192, 3, np.float64))
    w = store.writer()
    w.add(big)
    w.close()
    w = store.writer()
    try:
        con = sqlite3.connect(store.index_path, isolation_level=None)
        assert stored_locations(w, con, [big.digest]) is None
        con.close()
    finally:
        w.close()


def test_kept_handles_stay_exact_over_a_writers_flushes(store, monkeypatch):
    """A writer storing one payload per flush searches the big segments through
    handles it keeps open (their overflow walk paid once): segments written
    after the handles' snapshot are read too, stored payloads are skipped, new
    ones stored, and the index loaded by no flush."""
    from hangar_git.store import segment_probe

    monkeypatch.setattr(segment_probe, "KEEP_ENTRIES", 4)  # every segment of 4+ is "big"
    digests = _fill(store, [40])
    loads, opened = [], []
    orig_load, orig_blob = Segments.load, segment_probe.KeptBlobs.blob

    def spy_load(self, con, path):
        loads.append(path)
        return orig_load(self, con, path)

    def spy_blob(self, sid):
        opened.append(sid)
        return orig_blob(self, sid)

    monkeypatch.setattr(Segments, "load", spy_load)
    monkeypatch.setattr(segment_probe.KeptBlobs, "blob", spy_blob)
    w = store.writer()
    news = []
    for i in range(12):  # one flush each: new segments (of 1, merged as they pile up)
        p = payload_from_array(np.full(5, 5000 + i, np.int64))
        w.add(p)
        w.flush()
        news.append(p.digest)
        w.add(payload_from_array(np.full(5, i, np.int64)))  # stored before: skipped
        w.add(payload_from_array(np.full(5, 5000 + i, np.int64)))  # stored just now
        w.flush()
    assert loads == []
    assert opened  # the big segments went through kept handles
    w.close()
    assert _entries(store) == 40 + 12
    r = store.reader()
    assert all(r.locate(d) is not None for d in digests + news)
    r.close()


def test_a_writer_checkpoints_past_its_kept_handles_when_it_closes(store, monkeypatch):
    """The kept handles hold a read transaction open: the writer ends it before
    its closing checkpoint, so a reader of the main file alone (``immutable=1``,
    for those who cannot write the index) finds every payload written, even
    while another connection keeps the write-ahead log from being removed."""
    from hangar_git.store import segment_probe

    monkeypatch.setattr(segment_probe, "KEEP_ENTRIES", 4)
    _fill(store, [40])
    other = sqlite3.connect(store.index_path)  # open: the writer's close is not the last
    other.execute("SELECT COUNT(*) FROM segments").fetchone()
    try:
        w = store.writer()
        news = []
        for i in range(6):
            p = payload_from_array(np.full(5, 9000 + i, np.int64))
            w.add(p)
            w.flush()
            news.append(p.digest)
        w.close()
        uri = store.index_path.resolve().as_uri() + "?mode=ro&immutable=1"
        con = sqlite3.connect(uri, uri=True)
        try:
            assert sum(n for (n,) in con.execute("SELECT n FROM segments")) == 46
        finally:
            con.close()
    finally:
        other.close()
