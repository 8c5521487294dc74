"""Where each payload is over a remote's packs (hangar_git/remotes/lookup.py):
digests found by a binary search over arrays, with the answers of a dict of
them (the first pack by id for a digest in two, nothing for a malformed one),
and the byte bounds of a fetch kept as arrays."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git.remotes import bounded
from hangar_git.remotes import packformat as pf
from hangar_git.remotes.fetchplan import FetchPlan
from hangar_git.remotes.lookup import DigestIndex, DigestLimits, RemoteLookup

KIND = "|u1|8"


def _d(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=20).digest()


def _pack(digests: list[bytes], ilen: int = 8) -> tuple[str, pf.PackIndex]:
    n = len(digests)
    order = sorted(range(n), key=lambda i: digests[i])  # an index is sorted by digest
    ds = [digests[i] for i in order]
    index = pf.encode_index(
        ds, [0] * n, [KIND], [0] * n, [8 * n + 16] * n, [8 * i for i in range(n)],
        [ilen] * n, 8 * n + 16, b"\0" * 20,
    )  # fmt: skip
    pid = pf.content_hash(index).hex()
    return pid, pf.decode_index(pid, index)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 60), unique=True, max_size=30), min_size=1, max_size=3),
    st.lists(st.integers(0, 80), max_size=40),
)
def test_rows_are_those_a_dict_of_the_digests_gives(packs, queries):
    indexes = dict(_pack([_d(i) for i in ids]) for ids in packs)
    lk = RemoteLookup(indexes)
    rows: dict[bytes, int] = {}
    offset = 0
    for pid in sorted(indexes):  # a digest in two packs: the first by pack id
        for k, d in enumerate(indexes[pid].digests):
            rows.setdefault(d, offset + k)
        offset += len(indexes[pid])
    want = [_d(q) for q in queries]
    assert lk.find(want).tolist() == [rows.get(d, -1) for d in want]
    assert lk.find(b"".join(want)).tolist() == [rows.get(d, -1) for d in want]
    for d in want:
        assert (d in lk) == (d in rows)
        got = lk.get(d)
        assert (got is None) == (d not in rows)
        if got is not None:
            assert got[0] == lk.pack_ids[lk.pack[rows[d]]]
    every = lk.index.joined  # the digests indexed, in order: each at its first row
    assert lk.find(every).tolist() == [rows[every[i : i + 20]] for i in range(0, len(every), 20)]
    found = [r for r in lk.find(want).tolist() if r >= 0]
    assert lk.digests_at(found) == [d for d in want if d in rows]


def test_digests_sharing_their_first_bytes_are_told_apart():
    twins = [b"\x07" * 8 + bytes([i]) * 12 for i in range(5)]
    index = DigestIndex(b"".join([twins[3], twins[1], twins[3], twins[0]]))
    assert index.find(b"".join(twins)).tolist() == [3, 1, -1, 0, -1]
    assert index.at(np.array([3, 0])) == twins[0] + twins[3]
    assert index.find(index.joined).tolist() == [0, 1, 0, 3]
    assert DigestIndex(twins[2] * 2).find(twins[2] * 2).tolist() == [0, 0]
    assert DigestIndex(twins[0]).find(twins[1] + twins[0]).tolist() == [-1, 0]


def test_malformed_digests_are_never_found():
    pid, idx = _pack([_d(1), _d(2)])
    lk = RemoteLookup({pid: idx})
    assert lk.find([_d(1), b"short", _d(2)[:19] + b"", _d(2)]).tolist() == [
        lk.row(_d(1)), -1, -1, lk.row(_d(2)),
    ]  # fmt: skip
    assert "nope" not in lk and b"" not in lk and lk.get(b"x" * 21) is None
    with pytest.raises(ValueError):
        DigestIndex(b"x" * 21)


def test_limits_as_arrays_answer_as_their_dict_and_bound_a_fetch():
    ds = [_d(i) for i in range(6)]
    limits = DigestLimits(b"".join([*ds, ds[0]]), np.array([8, 8, 4, 8, 8, 8, 1]))
    assert dict(limits) == {d: (4 if i == 2 else 8) for i, d in enumerate(ds)}
    assert limits[ds[0]] == 8 and len(limits) == 6
    with pytest.raises(KeyError):
        limits[_d(99)]
    got = limits.bounds_of(b"".join([ds[2], _d(99), ds[0]]), 123)
    assert got.tolist() == [4, 123, 8]
    pid, idx = _pack(ds)  # every payload states 8 bytes: the one bound to 4 is refused unread
    lk = RemoteLookup({pid: idx})
    for lim in (limits, dict(limits)):
        plan = FetchPlan(lk, np.arange(len(lk)), lim)
        assert plan.refused == [ds[2]]
    assert FetchPlan(lk, np.arange(len(lk)), DigestLimits(b"", np.zeros(0))).refused == []
    cap = bounded.MAX_PAYLOAD_BYTES
    assert DigestLimits(b"", np.zeros(0)).bounds_of(ds[0], cap).tolist() == [cap]


@pytest.mark.parametrize(
    "values",
    [[], [7], [3, 1, 3, 2, 1], [5, 5, 5], list(range(10, 0, -1))],
)
def test_distinct_is_np_unique(values):
    from hangar_git.remotes.lookup import distinct

    a = np.array(values, np.int64)
    assert distinct(a).tolist() == np.unique(a).tolist()


def test_many_queries_are_found_as_a_dict_finds_them():
    """Over :data:`~hangar_git.remotes.lookup.SORT_QUERIES` queries are
    searched in key order; the answer is the same: the first row of each
    digest, -1 where absent, digests sharing their first 8 bytes told apart."""
    from hangar_git.remotes.lookup import SORT_QUERIES

    rng = np.random.default_rng(3)
    twins = [b"\x07" * 8 + bytes([i]) * 12 for i in range(6)]
    rows = [_d(i) for i in range(3 * SORT_QUERIES)] + twins[:4] + [_d(5), twins[1]]
    index = DigestIndex(b"".join(rows))
    first: dict[bytes, int] = {}
    for r, d in enumerate(rows):
        first.setdefault(d, r)
    pool = rows + twins[4:] + [_d(-i) for i in range(1, 50)]
    want = [pool[i] for i in rng.integers(0, len(pool), 2 * SORT_QUERIES).tolist()]
    want += [*twins, _d(5), b"\xff" * 20, b"\x00" * 20]
    assert len(want) >= SORT_QUERIES
    assert index.find(b"".join(want)).tolist() == [first.get(d, -1) for d in want]
    assert index.find(index.joined).tolist() == [first[d] for d in rows]


def test_a_lookup_takes_each_index_s_digests_joined_without_a_list_of_them():
    """A parsed pack index holds its digests joined as they lie in it; the
    list of them is made only when asked for, and a lookup over the
    remote's packs never asks (it searches the joined digests)."""
    a = _pack([_d(i) for i in range(300)])
    b = _pack([_d(i) for i in range(250, 400)])
    for _, idx in (a, b):
        assert "digests" not in vars(idx)  # not made at parse time
        assert len(idx) == len(idx.joined) // 20
    lk = RemoteLookup(dict([a, b]))
    assert all("digests" not in vars(idx) for _, idx in (a, b))
    assert lk.find([_d(5), _d(399), _d(1000)]).tolist()[:2] == [
        lk.row(_d(5)),
        lk.row(_d(399)),
    ]
    for _, idx in (a, b):
        assert b"".join(idx.digests) == idx.joined and idx.digests == sorted(idx.digests)
    assert lk.row(_d(1000)) == -1
