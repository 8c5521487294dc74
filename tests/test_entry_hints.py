"""The places of a tree's index entries kept by tree id (``.git/hangar/keys/<tree>.at``).

A whole read in a fresh process takes each payload's index entry at the
place a first read found it instead of searching the index. The file is
local, untrusted state, and only a hint: whatever it says (torn, another
tree's, pointing at other payloads' entries, naming segments merged
since), reads return what the records say.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git.records import entry_hints, snapshot
from hangar_git.store import placement
from hangar_git.store.checksum import crc32
from hangar_git.store.index import ENTRY, Run, lookup_runs, sorted_entries

N = 600
#: samples of a fanned-out tree: its commit keeps the key table (flat trees keep none)
FANNED = 2000


def _commit(repo, n: int = N, name: str = "a", start: int = 0) -> np.ndarray:
    data = np.arange(start, start + n * 4, dtype=np.int64).reshape(n, 4)
    co = repo.checkout(write=True)
    if name not in co.arraysets:
        co.arraysets.init_arrayset(name, shape=(4,), dtype=np.int64)
    co.arraysets[name].add_stacked(data, list(range(n)))
    co.commit(f"{name}: {n}")
    co.close()
    return data


def _read(repo, data: np.ndarray, name: str = "a") -> None:
    """A whole read as a fresh process does it gives ``data``; key-by-key
    reads (through the arrayset's row table) too."""
    snapshot.clear_leaf_cache()
    rc = repo.checkout()
    aset = rc.arraysets[name]
    out = np.empty_like(data)
    np.testing.assert_array_equal(aset.read_into(range(len(data)), out), data)
    rc.close()
    snapshot.clear_leaf_cache()
    rc = repo.checkout()
    aset = rc.arraysets[name]
    with aset:
        got = np.stack([aset[i] for i in range(len(data))])
    np.testing.assert_array_equal(got, data)
    rc.close()


def _hint(repo, name: str = "a"):
    rc = repo.checkout()
    s = rc.view.base_samples(name)
    rc.close()
    return s, entry_hints.hint_path(s.repo, s.oid)


def _searches(monkeypatch) -> list[int]:
    """Count the index searches of hinted lookups from now on."""
    calls: list[int] = []
    real = placement.place

    def spy(runs, joined):
        calls.append(len(joined) // 20)
        return real(runs, joined)

    monkeypatch.setattr(placement, "place", spy)
    monkeypatch.setattr("hangar_git.store.reader.place", spy)
    return calls


def test_a_second_whole_read_takes_the_entries_at_their_kept_places(repo, monkeypatch):
    data = _commit(repo)
    _, path = _hint(repo)
    assert not path.exists()
    calls = _searches(monkeypatch)
    _read(repo, data)
    assert path.exists() and calls == [N]  # searched once, then hinted
    calls.clear()
    _read(repo, data)
    assert calls == []  # no search at all


def _rewrite(path, oid: bytes, where: np.ndarray, sids=None, sizes=None) -> None:
    got = entry_hints.parse(path.read_bytes(), oid, len(where))
    assert got is not None
    fake = placement.Placement(
        got.sids if sids is None else sids, got.sizes if sizes is None else sizes, where
    )
    path.write_bytes(entry_hints.encode(fake, oid))  # a sound file: CRC and all


@pytest.mark.parametrize("n, written_by", [(N, "read"), (FANNED, "commit")])
def test_a_hint_pointing_at_other_payloads_entries_is_not_followed(
    repo, monkeypatch, n, written_by
):
    """A hint file (kept by the first whole read, or by the commit that wrote
    the tree whole) with a right checksum whose places are swapped (each key
    sent to another payload's entry) reads the right samples: every entry is
    checked against its digest, and the file is written anew."""
    data = _commit(repo, n)
    if written_by == "read":
        _read(repo, data)
    s, path = _hint(repo)
    good = entry_hints.load(s.repo, s.oid, n)
    assert good is not None
    _rewrite(path, s.oid, np.roll(good.where, 1))
    calls = _searches(monkeypatch)
    _read(repo, data)
    assert calls == [n]
    again = entry_hints.load(s.repo, s.oid, n)
    assert again is not None and (again.where == good.where).all()


@pytest.mark.parametrize("why", ["past the end", "unknown segment", "other size", "bad run"])
def test_a_hint_naming_what_the_index_does_not_hold_is_not_followed(repo, why):
    data = _commit(repo)
    _read(repo, data)
    s, path = _hint(repo)
    good = entry_hints.load(s.repo, s.oid, N)
    assert good is not None
    if why == "past the end":
        _rewrite(path, s.oid, good.where + 10**6)
    elif why == "unknown segment":
        _rewrite(path, s.oid, good.where, sids=tuple(i + 999 for i in good.sids))
    elif why == "other size":
        _rewrite(path, s.oid, good.where, sizes=tuple(z + 1 for z in good.sizes))
    else:
        _rewrite(path, s.oid, good.where | (7 << 32))
    _read(repo, data)


def test_hints_of_segments_merged_since_are_searched_again(repo, monkeypatch):
    """Later commits merge the index segments the hints name: the next
    whole read finds them gone, searches, and keeps the new places."""
    data = _commit(repo)
    _read(repo, data)
    s, _ = _hint(repo)
    before = entry_hints.load(s.repo, s.oid, N)
    _commit(repo, 400, name="b", start=10**6)  # its segment absorbs a's
    calls = _searches(monkeypatch)
    _read(repo, data)  # a's tree is unchanged (the same tree id)
    after = entry_hints.load(s.repo, s.oid, N)
    assert before is not None and after is not None
    assert after.sids != before.sids and calls == [N]


@pytest.mark.parametrize(
    "damage", ["flip", "truncate", "other tree", "other count", "grown", "empty", "link"]
)
def test_a_damaged_or_foreign_hint_file_is_ignored_and_replaced(repo, tmp_path, damage):
    data = _commit(repo)
    _read(repo, data)
    s, path = _hint(repo)
    raw = bytearray(path.read_bytes())
    assert entry_hints.parse(bytes(raw), s.oid, N) is not None
    if damage == "flip":
        raw[len(raw) // 2] ^= 1
    elif damage == "truncate":
        raw = raw[:-9]
    elif damage == "other tree":
        raw[6] ^= 1
        body = bytes(raw[:-4])
        raw = bytearray(body + crc32(body).to_bytes(4, "little"))
    elif damage == "other count":
        assert entry_hints.parse(bytes(raw), s.oid, N + 1) is None
    elif damage == "grown":
        raw += bytes(8 * N + 10**6)
    elif damage == "empty":
        raw = bytearray()
    if damage == "link":
        other = tmp_path / "elsewhere"
        other.write_bytes(bytes(raw))
        path.unlink()
        path.symlink_to(other)
        assert entry_hints.load(s.repo, s.oid, N) is None
    else:
        path.write_bytes(bytes(raw))
        if damage != "other count":
            assert entry_hints.parse(bytes(raw), s.oid, N) is None
    _read(repo, data)
    assert entry_hints.load(s.repo, s.oid, N) is not None  # written anew


def _run(sid: int, digests: list[bytes]) -> Run:
    e = np.zeros(len(digests), ENTRY)
    q = np.frombuffer(b"".join(digests), [("key", ">u8"), ("tail", "V12")])
    e["key"], e["tail"] = q["key"], q["tail"]
    e["block"] = np.arange(len(digests)) + 100 * sid
    e = sorted_entries(e)
    return Run(sid, e["key"].astype(np.uint64), e)


def test_lookup_places_name_the_entry_found_in_each_run():
    rng = np.random.default_rng(3)
    pool = [bytes(rng.integers(0, 256, 20, dtype=np.uint8)) for _ in range(9000)]
    runs = [_run(4, pool[:5000]), _run(9, pool[5000:5020]), _run(12, pool[5020:8000])]
    query = [pool[int(i)] for i in rng.integers(0, 9000, 6000)]
    where = np.zeros(len(query), np.int64)
    found, e = lookup_runs(runs, query, where)
    assert found.tolist() == [pool.index(d) < 8000 for d in query]
    for i in np.flatnonzero(found).tolist():
        run = runs[int(where[i]) >> 32]
        assert run.entries[int(where[i]) & 0xFFFFFFFF].tobytes() == e[i].tobytes()
    joined = b"".join(d for d, f in zip(query, found, strict=True) if f)
    f2, e2, placed = placement.place(runs, joined)
    assert f2.all() and placed.sids == (4, 9, 12)
    got = placement.entries_at(runs, joined, placed)
    assert got is not None and got.tobytes() == e2.tobytes()
    only_first = b"".join(pool[:50])
    _, _, p1 = placement.place(runs, only_first)
    assert p1.sids == (4,) and (p1.where >> 32 == 0).all()  # only the segments named
    assert placement.entries_at(runs[:1], only_first, p1) is not None
    assert placement.entries_at(runs[1:], only_first, p1) is None  # segment 4 gone


@pytest.mark.parametrize("case", ["all found", "in two runs", "shared first bytes", "absent"])
def test_the_sorted_placement_finds_what_the_index_search_finds(case):
    """:func:`placement.place` searches in key order and compares whole
    digests; whatever the runs hold (a digest in two runs, two digests with
    the same first 8 bytes, absent ones) it gives the entries and places the
    general search of the index gives."""
    rng = np.random.default_rng(5)
    pool = [bytes(rng.integers(0, 256, 20, dtype=np.uint8)) for _ in range(9000)]
    if case == "shared first bytes":  # each twin differs from its digest after byte 8
        pool[6000:6100] = [d[:8] + bytes(12) for d in pool[100:200]]
    split = [pool[:5000], pool[5000:5020], pool[5020:8000]]
    if case == "in two runs":
        split[2] += pool[:300]  # also in the first run: found there first
    if case == "shared first bytes":
        split[0] += pool[6000:6100]
    runs = [_run(sid, ds) for sid, ds in zip((4, 9, 12), split, strict=True)]
    stored = list(dict.fromkeys(d for part in split for d in part))
    query = [stored[int(i)] for i in rng.integers(0, len(stored), 6000)]
    if case == "shared first bytes":
        query[:200] = pool[100:200] + pool[6000:6100]
    if case == "absent":
        query[::7] = pool[8000 : 8000 + len(query[::7])]
    joined = b"".join(query)
    where = np.zeros(len(query), np.int64)
    found, e = lookup_runs(runs, joined, where)
    f2, e2, placed = placement.place(runs, joined)
    assert f2.tolist() == found.tolist() and found.all() == (case != "absent")
    # the sorted search answers alone unless the general one must decide
    fast = placement._place_sorted(runs, joined) is not None
    assert fast == (case in ("all found", "in two runs"))
    assert e2[found].tobytes() == e[found].tobytes()
    sids = [r.sid for r in runs]
    for i in np.flatnonzero(found).tolist()[:500]:
        run = runs[sids.index(placed.sids[int(placed.where[i]) >> 32])]
        assert run.entries[int(placed.where[i]) & 0xFFFFFFFF].tobytes() == e[i].tobytes()
    if found.all():
        got = placement.entries_at(runs, joined, placed)
        assert got is not None and got.tobytes() == e.tobytes()


def test_a_commit_keeps_the_entry_hints_of_the_trees_it_wrote_whole(repo, monkeypatch):
    """The commit that writes a samples tree whole keeps its places too:
    the first whole read after it, in a fresh process, searches nothing."""
    data = _commit(repo, FANNED)
    s, path = _hint(repo)
    assert path.exists()
    assert entry_hints.load(s.repo, s.oid, FANNED) is not None
    calls = _searches(monkeypatch)
    _read(repo, data)
    assert calls == []


def test_a_commit_of_a_few_changes_searches_nothing(repo, monkeypatch):
    """A commit that keeps no key table (a few changes) keeps no hint, and a
    commit leaves the hints of arraysets it did not change alone: neither
    costs an index search."""
    _commit(repo, FANNED)
    data_b = _commit(repo, FANNED, name="b", start=10**6)
    _, path_a = _hint(repo)
    path_a.unlink()
    calls = _searches(monkeypatch)
    co = repo.checkout(write=True)
    co.arraysets["b"][0] = data_b[0] + 1
    co.commit("one change to b")
    co.close()
    assert calls == [] and not path_a.exists()
    _, path_b = _hint(repo, "b")
    assert not path_b.exists()  # b's new tree: no table kept, so no hint
    data_b[0] += 1
    _read(repo, data_b, "b")
    assert calls == [FANNED]  # its first whole read searches, then keeps them
    assert path_b.exists()


def test_a_commit_whose_hints_cannot_be_placed_is_made_all_the_same(repo, monkeypatch):
    """Keeping the hints is best effort, after the commit: a busy or damaged
    index then leaves them to the first read, and the commit stands."""
    import sqlite3

    from hangar_git.store.reader import PackReader

    def busy(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(PackReader, "lookup_placed", busy)
    monkeypatch.setattr(entry_hints, "_take_layout", lambda oid: None)  # the search path
    data = _commit(repo, FANNED)
    _, path = _hint(repo)
    assert not path.exists()
    monkeypatch.undo()
    _read(repo, data)
    assert path.exists()


def _searched_placement(repo, s) -> placement.Placement:
    """The placement an index search gives for the digests of samples tree ``s``."""
    from hangar_git.records import key_cache

    table = key_cache.load(s.repo, s.oid, FANNED)
    assert table is not None
    rc = repo.checkout()
    try:
        found, _, placed = rc.payloads.reader.lookup_placed(table.digests)
    finally:
        rc.close()
    assert found.all() and placed is not None
    return placed


@pytest.mark.parametrize("merged", [False, True])
def test_a_bulk_add_commit_places_its_hints_with_no_search(repo, monkeypatch, merged):
    """The rows of one bulk add, committed alone by the payload writer, are
    placed from where its merge put them and from the tree's layout: the
    commit searches nothing, and the hint is the one a search gives (in a
    new segment of their own, and merged with an older, smaller one)."""
    if merged:
        _commit(repo, N // 2, name="small", start=-(10**6))
    calls = _searches(monkeypatch)
    data = _commit(repo, FANNED)
    assert calls == []
    s, _ = _hint(repo)
    kept = entry_hints.load(s.repo, s.oid, FANNED)
    assert kept is not None
    want = _searched_placement(repo, s)
    assert kept.sids == want.sids and kept.sizes == want.sizes
    np.testing.assert_array_equal(kept.where, want.where)
    if merged:
        assert kept.sizes[0] == FANNED + N // 2  # the older segment merged into it
    calls.clear()
    _read(repo, data)
    assert calls == []


def test_rows_not_committed_alone_are_placed_by_a_search(repo, monkeypatch):
    """Rows whose entries the writer committed before another's (a bulk add
    flushed before the next one's) or with others (two arraysets set key
    by key in one ``with`` block, flushed at once) or not all (repeated
    payloads) are not placed from the writer's merge: the commit searches
    for them, as before."""
    calls = _searches(monkeypatch)
    data = np.arange(FANNED * 4, dtype=np.int64).reshape(FANNED, 4)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int64)
    b = co.arraysets.init_arrayset("b", shape=(4,), dtype=np.int64)
    with a, b:
        a.add_stacked(data, list(range(FANNED)))
        b.add_stacked(data + FANNED * 4, list(range(FANNED)))
    co.commit("a and b, in bulk")
    co.close()
    assert calls == [FANNED]  # a searched, b placed from its flush
    co = repo.checkout(write=True)
    c = co.arraysets.init_arrayset("c", shape=(4,), dtype=np.int64)
    d = co.arraysets.init_arrayset("d", shape=(4,), dtype=np.int64)
    with c, d:
        for i in range(FANNED):
            c[i] = data[i] + 2 * FANNED * 4
            d[i] = data[i] + 3 * FANNED * 4
    co.commit("c and d, key by key")
    co.close()
    assert calls == [FANNED] * 3
    rep = np.zeros((FANNED, 4), np.int64)
    rep[::2] = 7  # repeated payloads
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("e", shape=(4,), dtype=np.int64).add_stacked(rep, range(FANNED))
    co.commit("e")
    co.close()
    assert calls == [FANNED] * 4
    for k, name in enumerate("abcd"):
        _, path = _hint(repo, name)
        assert path.exists()
        _read(repo, data + k * FANNED * 4, name)
    assert _hint(repo, "e")[1].exists()
    _read(repo, rep, "e")


def test_bulk_adds_whose_segments_stay_are_all_placed_with_no_search(repo, monkeypatch):
    """A later flush that leaves an earlier bulk add's segment alone (it is
    more than twice the size of what is written) keeps that add's places:
    a commit of two bulk adds, images then a few repeated labels as MNIST's,
    searches for neither of the images."""
    calls = _searches(monkeypatch)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int64)
    b = co.arraysets.init_arrayset("b", shape=(4,), dtype=np.int64)
    c = co.arraysets.init_arrayset("c", shape=(1,), dtype=np.int64)
    data_a = np.arange(3 * FANNED * 4, dtype=np.int64).reshape(3 * FANNED, 4)
    data_b = np.arange(FANNED * 4, dtype=np.int64).reshape(FANNED, 4) - 10**6
    labels = (np.arange(3 * FANNED, dtype=np.int64) % 10).reshape(-1, 1)
    a.add_stacked(data_a, range(3 * FANNED))
    b.add_stacked(data_b, range(FANNED))  # a's segment: 3x this, stays
    c.add_stacked(labels, range(3 * FANNED))  # repeated payloads: searched
    co.commit("a, b and c")
    co.close()
    assert calls == [3 * FANNED]
    for name, want in (("a", data_a), ("b", data_b), ("c", labels)):
        assert _hint(repo, name)[1].exists()
        _read(repo, want, name)


def test_layouts_noted_and_never_committed_are_bounded(monkeypatch):
    """Trees built and never committed (a diff of the staging area) leave at
    most a few layouts behind, of a bounded size; the newest is kept."""
    monkeypatch.setattr(entry_hints, "_layouts", {})
    order = np.arange(1000, dtype=np.int64)
    for i in range(10):
        entry_hints.note_layout(bytes([i]) * 20, b"x" * 20_000, order)
    assert len(entry_hints._layouts) == entry_hints._LAYOUTS_MAX
    assert entry_hints._take_layout(bytes([9]) * 20) is not None
    assert entry_hints._take_layout(bytes([0]) * 20) is None
    monkeypatch.setattr(entry_hints, "_LAYOUTS_BYTES", 50_000)
    for i in range(3):
        entry_hints.note_layout(bytes([i]) * 20, b"x" * 20_000, order)
    assert len(entry_hints._layouts) == 1  # 28 kB each: only the newest fits
    big = b"x" * 200_000
    entry_hints.note_layout(b"b" * 20, big, order)
    assert list(entry_hints._layouts) == [b"b" * 20]
    assert entry_hints._take_layout(b"b" * 20)[0] is big


def test_places_in_one_segment_are_checked_a_stretch_at_a_time():
    """A hint of one segment gives the run only when every entry at its
    places is its digest's, the stretches after the first included (each
    compared through a reused buffer); the places it gives are those the
    entries at the hint give."""
    from hangar_git.store.reader import take_places

    rng = np.random.default_rng(8)
    n = 2 * placement._CHECK_ROWS + 500  # three stretches
    pool = [bytes(rng.integers(0, 256, 20, dtype=np.uint8)) for _ in range(n + 10)]
    runs = [_run(4, pool)]
    query = [pool[int(i)] for i in rng.permutation(n)]
    joined = b"".join(query)
    found, _, placed = placement.place(runs, joined)
    assert found.all() and placed.sids == (4,)
    assert placement.positions_in_one(runs, joined, placed) is runs[0]
    pos = rng.permutation(n)[: n - 7]
    got = take_places(runs[0].entries, placed.where[pos])
    want = take_places(placement.entries_at(runs, joined, placed), pos)
    assert got.tobytes() == want.tobytes()
    for at in (0, placement._CHECK_ROWS + 3, n - 1):  # a wrong place in each stretch
        where = placed.where.copy()
        where[at] = (where[at] + 1) % len(pool)
        bad = placement.Placement(placed.sids, placed.sizes, where)
        assert placement.positions_in_one(runs, joined, bad) is None
        assert placement.entries_at(runs, joined, bad) is None
    past = placed.where.copy()
    past[-1] = len(pool)  # past the segment's end
    bad = placement.Placement(placed.sids, placed.sizes, past)
    assert placement.positions_in_one(runs, joined, bad) is None
    resized = placement.Placement(placed.sids, (len(pool) + 1,), placed.where)
    assert placement.positions_in_one(runs, joined, resized) is None
    two = [_run(4, pool[:100]), _run(9, pool[100:])]
    _, _, p2 = placement.place(two, joined)
    assert placement.positions_in_one(two, joined, p2) is None  # two segments: not its case
