"""The plan of a ranged fetch (hangar_git/remotes/fetchplan.py): sizes the
remote states are checked before anything is read for them."""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git.remotes import bounded
from hangar_git.remotes import packformat as pf
from hangar_git.remotes.fetchplan import FetchPlan
from hangar_git.remotes.lookup import RemoteLookup
from hangar_git.store.codec import decode_body

MiB = 1 << 20
KIND = "|u1|64"


def _encoded(blocks: list[tuple[int, int, list[tuple[bytes, int, int]]]], size: int):
    """``(pack id, index bytes)`` of one remote pack of ``size`` bytes holding
    ``blocks``: (offset, length, [(digest, item offset, item length)])."""
    cols: dict[str, list] = {k: [] for k in ("d", "boff", "blen", "ioff", "ilen")}
    for boff, blen, items in blocks:
        for d, ioff, ilen in items:
            for k, v in zip(cols, (d, boff, blen, ioff, ilen), strict=True):
                cols[k].append(v)
    n = len(cols["d"])
    index = pf.encode_index(
        cols["d"],
        [0] * n,
        [KIND],
        cols["boff"],
        cols["blen"],
        cols["ioff"],
        cols["ilen"],
        size,
        b"\0" * 20,
    )
    return pf.content_hash(index).hex(), index


def lookup(blocks: list[tuple[int, int, list[tuple[bytes, int, int]]]], size: int) -> RemoteLookup:
    pid, index = _encoded(blocks, size)
    return RemoteLookup({pid: pf.decode_index(pid, index)})


class Recorder:
    """A writer recording what a fetch stores, rows and whole blocks (decoded)."""

    def __init__(self) -> None:
        self.stored: dict[bytes, bytes] = {}
        self.whole_blocks = 0

    def add_stacked(self, kind, ds, rs):
        self.stored.update((d, r.tobytes()) for d, r in zip(ds, rs, strict=True))

    def add_blocks(self, blocks):
        for b in blocks:
            raw = bytes(decode_body(b.codec, memoryview(b.body), b.rawlen, "test"))
            size = b.rawlen // len(b.digests)
            self.stored.update((d, raw[i * size : (i + 1) * size]) for i, d in enumerate(b.digests))
            self.whole_blocks += 1

    def flush(self) -> None:
        pass


def plan_for(lk: RemoteLookup, limits=None) -> FetchPlan:
    return FetchPlan(lk, np.arange(len(lk)), limits)


def test_a_block_longer_than_its_payloads_can_need_is_refused_unread():
    a, b, c = b"\1" * 20, b"\2" * 20, b"\3" * 20
    too_long = pf.BLOCK_HEADER_SIZE + bounded.MAX_BLOCK_RAW + 1
    lk = lookup([(0, 100, [(a, 0, 64)]), (100, too_long, [(b, 0, 64), (c, 64, 64)])], 32 * MiB)
    plan = plan_for(lk)
    assert sorted(plan.refused) == [b, c]
    assert [(s, e) for _pid, s, e, _blocks in plan.plans] == [(0, 100)]


def test_a_payload_over_its_limit_is_refused_and_its_block_kept_for_the_others():
    a, b = b"\1" * 20, b"\2" * 20
    lk = lookup([(0, 300, [(a, 0, 64), (b, 64, 200)])], 300)
    plan = plan_for(lk, limits={b: 64})
    assert plan.refused == [b]
    assert [(s, e) for _pid, s, e, _blocks in plan.plans] == [(0, 300)]
    plan = plan_for(lk, limits={a: 8, b: 8})  # nothing left to want: the block goes
    assert sorted(plan.refused) == [a, b] and plan.plans == []


def test_without_limits_the_global_payload_bound_applies():
    a = b"\1" * 20
    big = bounded.MAX_PAYLOAD_BYTES + 1
    lk = lookup([(0, 100, [(a, 0, big)])], 100)
    assert plan_for(lk).refused == [a]


class _NoReads:
    """A data remote that fails the test if anything is read from it."""

    def read_ranges(self, ranges):
        raise AssertionError(f"read {ranges} from a pack whose index was refused")


def test_purging_a_remote_pack_checks_its_stated_sizes_before_reading():
    """A data-remote purge repacks the payloads it keeps: the same bounds as a
    fetch apply to them, before one byte is read."""
    from hangar_git.errors import IntegrityError
    from hangar_git.history_tools.remote_purge import _repack

    a, b, gone = b"\1" * 20, b"\2" * 20, b"\3" * 20
    too_long = pf.BLOCK_HEADER_SIZE + bounded.MAX_BLOCK_RAW + 1
    idx = pf.decode_index(*_encoded([(0, too_long, [(a, 0, 64), (gone, 64, 64)])], 32 * MiB))
    with pytest.raises(IntegrityError, match="more than its payloads can need"):
        _repack(_NoReads(), idx, {gone})
    big = bounded.MAX_PAYLOAD_BYTES + 1
    idx = pf.decode_index(*_encoded([(0, 100, [(b, 0, big), (gone, 0, 8)])], 100))
    with pytest.raises(IntegrityError, match="states"):
        _repack(_NoReads(), idx, {gone})


def test_the_next_group_of_ranges_is_read_while_one_is_checked(monkeypatch):
    """A fetch asks for the next group of ranges before it checks the blocks
    of the group it has: reading and checking overlap. A read that fails
    stops the fetch after the groups before it are stored."""
    import threading

    from hangar_git.remotes import fetchplan
    from hangar_git.remotes import lookup as lookup_module
    from hangar_git.remotes.transfer import TransferReport
    from hangar_git.store.digest import digest_bytes

    monkeypatch.setattr(fetchplan, "READ_GROUP", 1)  # a group per range
    monkeypatch.setattr(lookup_module, "COALESCE_GAP", -1)  # a range per block
    rows = np.random.default_rng(2).integers(0, 256, (3, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    blocks = [pf.encode_block(r.tobytes(), 1) for r in rows]
    offs = np.cumsum([0] + [len(b) for b in blocks]).tolist()
    data = b"".join(blocks)
    lk = lookup([(offs[i], len(blocks[i]), [(digests[i], 0, 64)]) for i in range(3)], len(data))
    asked = [threading.Event() for _ in range(3)]

    class Remote:
        def read_ranges(self, ranges):
            ((_pid, s, e),) = ranges
            i = offs.index(s)
            asked[i].set()
            if i == 2:
                raise ConnectionError("network cut")
            return [data[s:e]]

    plan = plan_for(lk)
    real_check = FetchPlan._check_block
    seen_ahead = []

    def check(self, pid, boff, buf, verified, report):
        i = offs.index(boff)
        seen_ahead.append(asked[i + 1].wait(timeout=30))  # the next read was asked for
        return real_check(self, pid, boff, buf, verified, report)

    monkeypatch.setattr(FetchPlan, "_check_block", check)
    writer = Recorder()
    with pytest.raises(ConnectionError):
        plan.run(Remote(), writer, TransferReport(), None, 1)  # type: ignore[arg-type]
    assert seen_ahead == [True, True]
    assert writer.stored == {d: r.tobytes() for d, r in zip(digests[:2], rows[:2], strict=True)}


@pytest.mark.parametrize("wanted", [[0, 1, 2, 3], [1, 0], [0, 1, 3], [1, 2], [2, 0]])
def test_the_rows_of_a_block_are_read_in_place_only_when_they_tile_it(wanted):
    """The wanted rows of a block are read as a view only when they follow
    each other from its start; any other choice reads each at its offset."""
    from hangar_git.remotes.transfer import TransferReport
    from hangar_git.store.digest import digest_bytes

    rows = np.random.default_rng(3).integers(0, 256, (4, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    block = pf.encode_block(rows.tobytes(), 1)
    lk = lookup([(0, len(block), [(digests[i], 64 * i, 64) for i in range(4)])], len(block))
    want = np.array([lk.row(digests[i]) for i in wanted])
    plan = FetchPlan(lk, want, None)
    assert bool(plan.rows_only) == (sorted(wanted) == list(range(len(wanted))))

    class Remote:
        def read_ranges(self, ranges):
            return [block[s:e] for _pid, s, e in ranges]

    report, writer = TransferReport(), Recorder()
    plan.run(Remote(), writer, report, None, 1 << 20)  # type: ignore[arg-type]
    assert report.refused == []
    assert writer.stored == {digests[i]: rows[i].tobytes() for i in wanted}
    # the block is kept as it is only when the wanted rows fill it
    assert writer.whole_blocks == (1 if sorted(wanted) == [0, 1, 2, 3] else 0)


@pytest.mark.parametrize("big", [False, True])
def test_blocks_are_ordered_as_lexsort_orders_them(big):
    """The items of a fetch go by pack, block offset, then item offset (ties
    by position), as ``np.lexsort`` orders them; one packed key when the
    three fit in 64 bits, lexsort itself when they do not."""
    from hangar_git.remotes.fetchplan import _block_order

    rng = np.random.default_rng(7)
    n = 5000
    packs = rng.integers(0, 4, n).astype(np.int32)
    boffs = rng.integers(0, 1 << (50 if big else 20), n) // 64 * 64
    ioffs = rng.integers(0, 1 << (30 if big else 16), n) // 8 * 8
    ioffs[:50] = ioffs[50:100]  # ties
    boffs[:50], packs[:50] = boffs[50:100], packs[50:100]
    got = _block_order(packs, boffs, ioffs)
    assert got.tolist() == np.lexsort((ioffs, boffs, packs)).tolist()
    assert _block_order(packs[:0], boffs[:0], ioffs[:0]).tolist() == []
