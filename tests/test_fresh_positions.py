"""Which rows of a bulk add the pack writer writes when digests repeat
(labels) or some are stored already: the last row of each distinct digest
not stored, as a dict of them all picks it, found by one sort."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hangar_git.store.digest import payload_from_array, stacked_digests
from hangar_git.store.uncommitted import fresh_positions, last_occurrences


def _by_dict(digests, known=(), pending=()):
    pick = dict(zip(digests, range(len(digests)), strict=True))
    return sorted(i for d, i in pick.items() if d not in known and d not in pending)


def _digests(values) -> list[bytes]:
    return [hashlib.blake2b(b"%d" % v, digest_size=20).digest() for v in values]


@pytest.mark.parametrize("distinct", [1, 3, 10, 700, 5000])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_last_row_of_each_distinct_digest_is_what_a_dict_keeps(distinct, seed):
    rng = np.random.default_rng(seed)
    digests = _digests(rng.integers(0, distinct, 5000).tolist())
    joined = b"".join(digests)
    last = last_occurrences(joined)
    assert last is not None and last.tolist() == _by_dict(digests)
    known = set(digests[::7])
    pending = set(digests[1::11])
    assert fresh_positions(joined, digests, known, pending) == _by_dict(digests, known, pending)
    assert fresh_positions(joined, digests, {}, set()) == _by_dict(digests)


def test_digests_sharing_their_first_bytes_are_told_apart():
    """Two digests with the same first 8 bytes are not one: the sort alone
    cannot say which rows repeat, so the dict decides."""
    a, b = b"\x01" * 8 + b"a" * 12, b"\x01" * 8 + b"b" * 12
    digests = [a, b, a, b"\x02" * 20, b]
    joined = b"".join(digests)
    assert last_occurrences(joined) is None
    assert fresh_positions(joined, digests, set(), set()) == [2, 3, 4]
    assert fresh_positions(joined, digests, {a}, set()) == [3, 4]
    same = [a, a, b"\x02" * 20]  # the same digest twice under one key: a repeat
    assert last_occurrences(b"".join(same)).tolist() == [1, 2]
    assert last_occurrences(b"").tolist() == []


@pytest.mark.parametrize("size", [1, 3, 8])
def test_labels_hashed_once_per_value_carry_where_each_digest_last_is(size):
    """``stacked_digests`` of rows that repeat knows where each value is last
    (the hint :class:`Digests` carries): what ``last_occurrences`` sorts out."""
    rng = np.random.default_rng(size)
    values = np.zeros((6000, size), np.uint8)
    values[:, -1] = rng.integers(0, 10, 6000)
    digests = stacked_digests(values)
    assert digests.last is not None
    assert (
        digests.last.tolist()
        == _by_dict(list(digests))
        == last_occurrences(digests.joined).tolist()
    )
    assert stacked_digests(rng.integers(0, 256, (6000, 8), dtype=np.uint8)).last is None


def test_a_bulk_add_of_labels_with_the_hint_sorts_no_digests(tmp_path, monkeypatch):
    """The writer takes the hint: neither ``digest_order`` nor
    ``last_occurrences`` runs, and the distinct rows are stored once each."""
    from hangar_git.store import PackStore, uncommitted, writer
    from hangar_git.store.digest import kind_of

    labels = np.random.default_rng(5).integers(0, 10, (5000, 1)).astype(np.int64)
    labels[-1] = 11
    digests = stacked_digests(labels)
    store = PackStore(tmp_path / "store")
    store.create()

    def sorts(*args):
        raise AssertionError("digests sorted")

    w = store.writer()
    try:
        w.add(payload_from_array(labels[7]))  # one of them stored already
        w.flush()
        monkeypatch.setattr(writer, "digest_order", sorts)
        monkeypatch.setattr(uncommitted, "last_occurrences", sorts)
        w.add_stacked(kind_of(labels[0]), digests, labels)
    finally:
        w.close()
    monkeypatch.undo()
    r = store.reader()
    try:
        assert [r.get(d).tobytes() for d in digests] == [x.tobytes() for x in labels]
        found, _ = r.lookup(list(digests))
        assert found.all()
    finally:
        r.close()
    assert len(set(digests)) == 11
