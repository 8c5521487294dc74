"""Loaded index segments (:class:`hangar_git.store.entries.Run`): a segment
whose keys are out of order is refused however long it is, and a run's sort
keys are made only when a search needs them (reads at kept places make
none), always equal to its entries' keys."""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git.store import entries
from hangar_git.store.checksum import crc32
from hangar_git.store.entries import ENTRY, lookup_runs, parse_run


def _blob(keys: np.ndarray) -> bytes:
    e = np.zeros(len(keys), ENTRY)
    e["key"] = keys
    e["block"] = np.arange(len(keys))
    return e.tobytes()


def _parse(keys: np.ndarray) -> entries.Run | str:
    blob = _blob(keys)
    return parse_run(7, len(keys), crc32(blob), blob)


N = 2 * entries._SORT_CHECK + 5  # three stretches of the sortedness check


@pytest.mark.parametrize("at", [1, 100, entries._SORT_CHECK, entries._SORT_CHECK + 1, N - 1])
def test_a_segment_out_of_order_anywhere_is_refused(at):
    """One pair out of order, inside a stretch or across two, is found."""
    keys = np.arange(N, dtype=np.uint64) * 3 + 2**62  # (big keys: byte order matters)
    keys[at - 1], keys[at] = keys[at], keys[at - 1]
    assert _parse(keys) == "is not sorted"


def test_sorted_segments_load_with_their_keys_made_on_use():
    keys = np.sort(np.random.default_rng(5).integers(0, 2**64 - 1, N, dtype=np.uint64))
    keys[10] = keys[11]  # equal neighbours are in order
    run = _parse(keys)
    assert not isinstance(run, str) and run.sid == 7 and len(run) == N
    assert run._keys is None  # not made at load
    assert run.keys.dtype == np.uint64 and (run.keys == keys).all()
    assert run.keys is run.keys  # made once
    for tiny in ([], [3], [3, 3], [4, 3]):
        got = _parse(np.array(tiny, np.uint64))
        assert got == ("is not sorted" if tiny == [4, 3] else got)
        assert isinstance(got, str) or len(got) == len(tiny)


def test_a_search_finds_what_the_run_holds():
    keys = np.arange(0, 3 * N, 3, dtype=np.uint64) + 2**63
    blob = _blob(keys)
    run = parse_run(1, N, crc32(blob), blob)
    assert not isinstance(run, str)
    q = np.zeros(3, entries.QUERY)
    q["key"] = [keys[5], keys[N - 1], keys[5] + 1]
    found, e = lookup_runs([run], q.tobytes())
    assert found.tolist() == [True, True, False]
    assert e["block"][:2].tolist() == [5, N - 1]


def test_a_whole_read_at_kept_places_makes_no_sort_keys(repo):
    """A fresh checkout's whole read of an arrayset (its places kept at
    commit) takes its entries at those places: no run's keys are made."""
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(4,), dtype=np.int32)
    n = 3000  # a fanned-out tree, its key table and places kept by the commit
    a.add_stacked(np.arange(4 * n, dtype=np.int32).reshape(n, 4), list(range(n)))
    co.commit("a")
    co.close()
    rc = repo.checkout()
    out = rc.arraysets["a"].read_into(range(n), np.empty((n, 4), np.int32))
    assert (out == np.arange(4 * n).reshape(n, 4)).all()
    runs = rc.payloads.reader._segs.runs
    assert runs and all(r._keys is None for r in runs)
    assert rc.arraysets["a"].get(n - 1).tolist() == list(range(4 * n - 4, 4 * n))
    rc.close()
