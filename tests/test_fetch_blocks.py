"""A fetch appends a remote block whose payloads all check out and fill it as
it is (hangar_git/remotes/fetchplan.py, PackWriter.add_blocks in
hangar_git/store/writer.py): nothing is compressed again, the block is read
back with the local checks (CRC-32, length, codec), and a tampered remote
block never becomes readable data."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from hangar_git.errors import IntegrityError, MissingPayloadError
from hangar_git.remotes import packformat as pf
from hangar_git.remotes.data_remote import DataRemote
from hangar_git.remotes.fetchplan import FetchPlan
from hangar_git.remotes.lookup import RemoteLookup
from hangar_git.remotes.transfer import TransferReport, download_payloads, upload_payloads
from hangar_git.store import appender
from hangar_git.store.block_format import BLOCK_MAGIC, BLOCK_TARGET, HEADER_SIZE, CheckedBlock
from hangar_git.store.checksum import crc32
from hangar_git.store.codec import encode_block
from hangar_git.store.digest import digest_bytes

KIND = "|u1|64"


def _rows(n: int, compressible: bool, seed: int = 0) -> np.ndarray:
    if compressible:
        rows = np.zeros((n, 64), np.uint8)
        rows[:, 0], rows[:, 1] = np.arange(n) % 256, np.arange(n) // 256
        return rows
    return np.random.default_rng(seed).integers(0, 256, (n, 64), dtype=np.uint8)


def _digests(rows: np.ndarray) -> list[bytes]:
    return [digest_bytes(KIND, r.tobytes()) for r in rows]


def _one_block_pack(block: bytes, digests: list[bytes]) -> RemoteLookup:
    """The lookup of a remote pack holding ``block`` alone, its rows of 64 bytes."""
    n = len(digests)
    index = pf.encode_index(
        digests,
        [0] * n,
        [KIND],
        [0] * n,
        [len(block)] * n,
        [64 * i for i in range(n)],
        [64] * n,
        len(block),
        pf.content_hash(block),
    )
    pid = pf.content_hash(index).hex()
    return RemoteLookup({pid: pf.decode_index(pid, index)})


class _OnePack:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_ranges(self, ranges):
        return [self.data[s:e] for _pid, s, e in ranges]


def _fetch(repo, block: bytes, digests: list[bytes]) -> TransferReport:
    lk = _one_block_pack(block, digests)
    writer, report = repo.payload_store.writer(), TransferReport()
    try:
        FetchPlan(lk, np.arange(len(lk)), None).run(_OnePack(block), writer, report, None, 1 << 20)
    finally:
        writer.close()
    return report


def _pack_bytes(repo) -> bytes:
    store = repo.payload_store
    return b"".join(store.pack_path(p).read_bytes() for p in store.pack_numbers())


def _read_all(repo, digests: list[bytes]) -> list[bytes]:
    reader = repo.payload_store.reader()
    try:
        return [reader.get(d).tobytes() for d in digests]
    finally:
        reader.close()


def _as_remote(local_block: bytes) -> bytes:
    """A block made by the local writer, with the remote magic (as a push sends it)."""
    assert local_block[:4] == BLOCK_MAGIC
    return pf.BLOCK_MAGIC + local_block[4:]


@pytest.mark.parametrize("compressible", [False, True])
def test_a_checked_block_is_appended_as_it_is_and_reads_back(repo, compressible):
    rows = _rows(300, compressible)
    digests = _digests(rows)
    block = _as_remote(encode_block(rows.tobytes(), 1))  # LZ4 inside blosc2 when compressible
    assert pf.block_fields(block)[0] == (pf.CODEC_BLOSC2 if compressible else pf.CODEC_RAW)
    report = _fetch(repo, block, digests)
    assert report.payloads == 300 and not report.refused
    packs = _pack_bytes(repo)
    assert block[4:] in packs  # codec, raw length, CRC and body, unchanged
    assert _read_all(repo, digests) == [r.tobytes() for r in rows]


@pytest.mark.parametrize("n, compressible", [(300, True), (4000, False)])
def test_a_block_shaped_otherwise_is_stored_the_local_way(repo, n, compressible):
    """A remote-packed block (zstd, or raw and four times as long as the
    local writer's) is checked and its payloads stored in local blocks."""
    rows = _rows(n, compressible)
    digests = _digests(rows)
    block = pf.encode_block(rows.tobytes(), 1)
    assert len(block) > (BLOCK_TARGET if not compressible else 0)
    report = _fetch(repo, block, digests)
    assert report.payloads == n and not report.refused
    assert block[HEADER_SIZE:] not in _pack_bytes(repo)
    assert _read_all(repo, digests) == [r.tobytes() for r in rows]


def test_a_block_with_a_tampered_payload_is_never_appended_as_it_is(repo):
    rows = _rows(8, compressible=False)
    digests = _digests(rows)
    bad = rows.copy()
    bad[3, :4] ^= 0xFF  # the remote changed payload 3 and made a CRC that matches
    block = pf.encode_block(bad.tobytes(), 1)
    assert pf.block_fields(block)[0] == pf.CODEC_RAW
    report = _fetch(repo, block, digests)
    assert report.refused == [digests[3]] and report.payloads == 7
    assert bad[3].tobytes() not in _pack_bytes(repo)  # its bytes never reached a pack
    reader = repo.payload_store.reader()
    try:
        with pytest.raises(MissingPayloadError):
            reader.get(digests[3])
        assert [reader.get(d).tobytes() for i, d in enumerate(digests) if i != 3] == [
            r.tobytes() for i, r in enumerate(rows) if i != 3
        ]
    finally:
        reader.close()


def test_a_block_failing_its_crc_stores_nothing(repo):
    rows = _rows(8, compressible=False)
    digests = _digests(rows)
    block = bytearray(pf.encode_block(rows.tobytes(), 1))
    block[-1] ^= 1
    report = _fetch(repo, bytes(block), digests)
    assert sorted(report.refused) == sorted(digests) and report.payloads == 0
    reader = repo.payload_store.reader()
    try:
        assert not reader.lookup(digests)[0].any()
    finally:
        reader.close()


def _checked(rows: np.ndarray, digests: list[bytes], codec: int = 0) -> CheckedBlock:
    body = rows.tobytes()
    return CheckedBlock(KIND, codec, len(body), crc32(body), body, digests)


@pytest.mark.parametrize(
    "bad",
    [
        {"codec": 7},  # no codec of the local packs
        {"rawlen": 64 * 3},  # the payloads do not fill the block
        {"digests": []},
    ],
)
def test_add_blocks_refuses_a_block_it_cannot_hold_and_writes_nothing(repo, bad):
    rows = _rows(4, compressible=False)
    good = _checked(rows, _digests(rows))
    writer = repo.payload_store.writer()
    try:
        with pytest.raises(ValueError):
            writer.add_blocks([good, good._replace(**bad)])
        assert not writer.has_pending()
    finally:
        writer.close()
    assert _pack_bytes(repo) == b""


def test_add_blocks_indexes_only_payloads_not_stored_yet(repo):
    rows = _rows(6, compressible=False)
    digests = _digests(rows)
    writer = repo.payload_store.writer()
    writer.add_stacked(KIND, digests[:2], rows[:2])
    writer.close()
    before = len(_pack_bytes(repo))
    writer = repo.payload_store.writer()
    try:
        writer.add_blocks([_checked(rows[:2], digests[:2])])  # all stored: not written
        assert len(_pack_bytes(repo)) == before
        writer.add_blocks([_checked(rows, digests)])  # some stored: the others indexed
    finally:
        writer.close()
    assert len(_pack_bytes(repo)) == before + HEADER_SIZE + rows.nbytes
    assert _read_all(repo, digests) == [r.tobytes() for r in rows]
    reader = repo.payload_store.reader()
    try:
        found, entries = reader.lookup(digests)
        assert found.all()
        assert len(set(entries["block"][:2].tolist()) & set(entries["block"][2:].tolist())) == 0
    finally:
        reader.close()


def test_add_blocks_of_several_kinds_places_each_payload_in_its_block(repo):
    """Several blocks at once, of two kinds and sizes, some payloads stored
    already: every payload reads back from where its entry says."""
    kind2 = "|u1|16"
    small = np.random.default_rng(3).integers(0, 256, (9, 16), dtype=np.uint8)
    small_digests = [digest_bytes(kind2, r.tobytes()) for r in small]
    rows = _rows(12, compressible=False, seed=4)
    digests = _digests(rows)
    writer = repo.payload_store.writer()
    writer.add_stacked(KIND, digests[5:7], rows[5:7])  # stored: the block holding them is
    writer.flush()  # written whole, only the others get entries
    small_block = CheckedBlock(
        kind2, 0, small.nbytes, crc32(small.tobytes()), small.tobytes(), small_digests
    )
    blocks = [_checked(rows[:4], digests[:4]), small_block, _checked(rows[4:], digests[4:])]
    try:
        writer.add_blocks(blocks)
    finally:
        writer.close()
    assert _read_all(repo, digests) == [r.tobytes() for r in rows]
    assert _read_all(repo, small_digests) == [r.tobytes() for r in small]


def test_a_block_appended_as_it_is_is_checked_by_local_reads(repo):
    rows = _rows(5, compressible=False)
    digests = _digests(rows)
    writer = repo.payload_store.writer()
    writer.add_blocks([_checked(rows, digests)])
    writer.close()
    store = repo.payload_store
    (pack,) = store.pack_numbers()
    path = store.pack_path(pack)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last payload's last byte, on disk
    path.write_bytes(bytes(data))
    reader = store.reader()
    try:
        with pytest.raises(IntegrityError):
            reader.get(digests[0])
    finally:
        reader.close()


def test_a_failed_write_indexes_nothing_and_a_later_flush_stores_the_blocks(repo, monkeypatch):
    rows = _rows(5, compressible=False)
    digests = _digests(rows)
    writer = repo.payload_store.writer()
    real = appender.write_parts
    calls = []

    def full(fd, parts):
        calls.append(1)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(appender, "write_parts", full)
    try:
        with pytest.raises(OSError):
            writer.add_blocks([_checked(rows, digests)])
        assert calls
        reader = repo.payload_store.reader()
        try:
            assert not reader.lookup(digests)[0].any()
        finally:
            reader.close()
        monkeypatch.setattr(appender, "write_parts", real)
        writer.flush()
    finally:
        writer.close()
    assert _read_all(repo, digests) == [r.tobytes() for r in rows]


def test_push_then_fetch_keeps_the_local_blocks_byte_for_byte(repo, tmp_path, other_repo):
    rows = _rows(3000, compressible=True)
    digests = _digests(rows)
    writer = repo.payload_store.writer()
    writer.add_stacked(KIND, digests, rows)
    writer.close()
    url = str(tmp_path / "data")
    assert upload_payloads(repo, DataRemote(url), digests).payloads == len(digests)
    other = other_repo
    got = download_payloads(other, DataRemote(url), digests)
    assert got.payloads == len(digests) and not got.refused
    assert _pack_bytes(other) == _pack_bytes(repo)  # the same blocks, not encoded again
    assert _read_all(other, digests) == [r.tobytes() for r in rows]
