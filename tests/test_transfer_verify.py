"""Every payload is checked against its digest on both sides of a transfer, in
bulk: a push refuses to send a local payload whose bytes are not its digest's,
and a fetch stores the payloads of a block that match their digests and
refuses only the one that does not (hangar_git/remotes/transfer.py,
hangar_git/remotes/fetchplan.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hangar_git.errors import IntegrityError
from hangar_git.remotes import packformat as pf
from hangar_git.remotes.data_remote import DataRemote
from hangar_git.remotes.fetchplan import FetchPlan, row_digests
from hangar_git.remotes.lookup import RemoteLookup
from hangar_git.remotes.transfer import TransferReport, upload_payloads
from hangar_git.store.digest import digest_bytes

KIND = "|u1|64"


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64), dtype=np.uint8)


@pytest.mark.parametrize("size", [0, 7, 5000])
def test_row_digests_are_the_payload_digests(size):
    rows = np.random.default_rng(1).integers(0, 256, (5, size), dtype=np.uint8)
    kind = f"|u1|{size}"
    assert row_digests(kind, rows) == [digest_bytes(kind, r.tobytes()) for r in rows]


def test_push_refuses_a_local_payload_that_is_not_its_digests(repo, tmp_path):
    good = _rows(3)
    digests = [digest_bytes(KIND, r.tobytes()) for r in good]
    liar = digest_bytes(KIND, b"\0" * 64)  # stored with other bytes than its digest's
    writer = repo.payload_store.writer()
    writer.add_stacked(KIND, [*digests, liar], np.concatenate([good, _rows(1, seed=9)]))
    writer.close()
    remote = DataRemote(str(tmp_path / "data"))
    with pytest.raises(IntegrityError, match=f"{liar.hex()} does not match its digest"):
        upload_payloads(repo, remote, [*digests, liar])
    remote.refresh()
    assert len(remote.lookup()) == 0  # nothing was sent
    report = upload_payloads(repo, remote, digests)  # the good ones still go
    assert report.payloads == 3


class _OnePack:
    """A data remote holding one pack's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_ranges(self, ranges):
        return [self.data[s:e] for _pid, s, e in ranges]


class _Writer:
    """Records what a fetch stores."""

    def __init__(self) -> None:
        self.stored: dict[bytes, bytes] = {}

    def add_stacked(self, kind, digests, rows):
        assert kind == KIND
        for d, r in zip(digests, rows, strict=True):
            self.stored[d] = r.tobytes()

    def flush(self) -> None:
        pass


def test_fetch_stores_the_good_payloads_of_a_block_and_refuses_the_liar():
    rows = _rows(4)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    liar = digest_bytes(KIND, b"\1" * 64)  # the index says row 2 is this payload
    stated = [digests[0], digests[1], liar, digests[3]]
    block = pf.encode_block(rows.tobytes(), 1)
    index = pf.encode_index(
        stated,
        [0] * 4,
        [KIND],
        [0] * 4,
        [len(block)] * 4,
        [0, 64, 128, 192],
        [64] * 4,
        len(block),
        pf.content_hash(block),
    )
    pid = pf.content_hash(index).hex()
    lk = RemoteLookup({pid: pf.decode_index(pid, index)})
    plan = FetchPlan(lk, np.arange(len(lk)), None)
    writer, report = _Writer(), TransferReport()
    plan.run(_OnePack(block), writer, report, None, 1 << 20)  # type: ignore[arg-type]
    assert report.refused == [liar]
    assert report.payloads == 3 and report.raw_bytes == 3 * 64
    assert writer.stored == {d: rows[i].tobytes() for i, d in enumerate(digests) if i != 2}


def test_fetch_reads_items_of_several_kinds_off_their_grid():
    """A block gathered one payload at a time holds kinds of one dtype mixed,
    so the items of a kind need not sit on a grid of rows."""
    a0, a1 = _rows(2, seed=3)
    b0 = np.arange(10, dtype=np.uint8)
    other = "|u1|10"
    payloads = [(KIND, a0.tobytes()), (other, b0.tobytes()), (KIND, a1.tobytes())]
    digests = [digest_bytes(k, b) for k, b in payloads]
    block = pf.encode_block(b"".join(b for _, b in payloads), 1)
    index = pf.encode_index(
        digests,
        [0, 1, 0],
        [KIND, other],
        [0] * 3,
        [len(block)] * 3,
        [0, 64, 74],
        [64, 10, 64],
        len(block),
        pf.content_hash(block),
    )
    pid = pf.content_hash(index).hex()
    lk = RemoteLookup({pid: pf.decode_index(pid, index)})
    plan = FetchPlan(lk, np.arange(len(lk)), None)
    stored: dict[bytes, bytes] = {}

    class Writer:
        def add_stacked(self, kind, ds, rows):
            stored.update((d, r.tobytes()) for d, r in zip(ds, rows, strict=True))

        def flush(self) -> None:
            pass

    report = TransferReport()
    plan.run(_OnePack(block), Writer(), report, None, 1 << 20)  # type: ignore[arg-type]
    assert report.refused == [] and report.payloads == 3
    assert stored == {d: b for d, (_, b) in zip(digests, payloads, strict=True)}
