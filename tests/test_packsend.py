"""A push sends a local block whose items are all wanted as it is stored
(hangar_git/remotes/packsend.py): its body is not compressed again, it is
checked (checksum, each payload's digest) before it leaves, and a block
holding any byte not pushed is never sent whole."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from hangar_git.errors import IntegrityError
from hangar_git.remotes.data_remote import DataRemote
from hangar_git.remotes.packbuilder import PackBuilder
from hangar_git.remotes.transfer import download_payloads, upload_payloads
from hangar_git.store.block_format import HEADER_SIZE
from hangar_git.store.digest import Payload, digest_bytes

KIND = "|u1|64"


def _stored(repo, rows: np.ndarray, kind: str = KIND) -> list[bytes]:
    digests = [digest_bytes(kind, r.tobytes()) for r in rows]
    writer = repo.payload_store.writer()
    writer.add_stacked(kind, digests, rows)
    writer.close()
    return digests


def _local_blocks(repo, digests: list[bytes]) -> list[bytes]:
    """The stored bytes (header and body) of the blocks holding ``digests``."""
    reader = repo.payload_store.reader()
    try:
        found, entries = reader.lookup(digests)
        assert found.all()
        out = []
        for bid in sorted(set(entries["block"].tolist())):
            pack, boff, blen = reader.block_row(bid)
            out.append(os.pread(reader.fd(pack), blen, boff))
        return out
    finally:
        reader.close()


def _remote_bytes(url: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((url / "packs").glob("*.pack")))


def test_a_wholly_wanted_block_travels_with_its_body_unchanged(repo, tmp_path, other_repo):
    # compressible rows: the local block is blosc2-LZ4, a block packed anew
    # by the remote packer would be zstd, so its bytes would differ
    rows = np.zeros((300, 64), np.uint8)
    rows[:, 0], rows[:, 1] = np.arange(300) % 256, np.arange(300) // 256
    digests = _stored(repo, rows)
    blocks = _local_blocks(repo, digests)
    assert blocks and all(b[4] == 1 for b in blocks)  # compressed (codec 1)
    url = tmp_path / "data"
    report = upload_payloads(repo, DataRemote(str(url)), digests)
    assert report.payloads == len(digests)
    sent = _remote_bytes(url)
    for b in blocks:
        assert b[HEADER_SIZE:] in sent  # the body as stored here
        assert b[4:HEADER_SIZE] in sent  # codec, raw length and CRC too
    other = other_repo
    got = download_payloads(other, DataRemote(str(url)), digests)
    assert got.payloads == len(digests) and not got.refused
    reader = other.payload_store.reader()
    try:
        for d, r in zip(digests, rows, strict=True):
            assert reader.get(d).tobytes() == r.tobytes()
    finally:
        reader.close()


@pytest.mark.parametrize("kept", [2, 5])  # a gap among the items, or bytes after them
def test_a_block_shared_with_a_payload_not_pushed_never_leaves_whole(
    repo, tmp_path, kept, other_repo
):
    rows = np.random.default_rng(4).integers(0, 256, (6, 64), dtype=np.uint8)  # incompressible
    digests = _stored(repo, rows)
    assert len(_local_blocks(repo, digests)) == 1  # all six share one block
    url = tmp_path / "data"
    wanted = digests[:kept] + digests[kept + 1 :]  # row ``kept`` stays here
    report = upload_payloads(repo, DataRemote(str(url)), wanted)
    assert report.payloads == 5
    sent = _remote_bytes(url)
    assert rows[kept].tobytes() not in sent
    assert all(r.tobytes() in sent for i, r in enumerate(rows) if i != kept)
    other = other_repo
    got = download_payloads(other, DataRemote(str(url)), wanted)
    assert got.payloads == 5 and not got.refused


def test_blocks_of_several_kinds_travel_whole_and_are_checked(repo, tmp_path, other_repo):
    """Payloads added one at a time share blocks across kinds of one dtype."""
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 256, (8,) if i % 2 else (5, 3), dtype=np.uint8) for i in range(40)]
    payloads = []
    for a in arrays:
        kind = f"|u1|{','.join(map(str, a.shape))}"
        payloads.append(Payload(digest_bytes(kind, a.tobytes()), kind, memoryview(a.tobytes())))
    writer = repo.payload_store.writer()
    for p in payloads:
        writer.add(p)
    writer.close()
    digests = [p.digest for p in payloads]
    blocks = _local_blocks(repo, digests)
    url = tmp_path / "data"
    assert upload_payloads(repo, DataRemote(str(url)), digests).payloads == 40
    sent = _remote_bytes(url)
    assert all(b[HEADER_SIZE:] in sent for b in blocks)
    other = other_repo
    got = download_payloads(other, DataRemote(str(url)), digests)
    assert got.payloads == 40 and not got.refused
    reader = other.payload_store.reader()
    try:
        for p, a in zip(payloads, arrays, strict=True):
            assert np.array_equal(reader.get(p.digest), a)
    finally:
        reader.close()


def test_a_damaged_local_block_is_not_sent(repo, tmp_path):
    rows = np.random.default_rng(6).integers(0, 256, (10, 64), dtype=np.uint8)
    digests = _stored(repo, rows)
    reader = repo.payload_store.reader()
    try:
        _, entries = reader.lookup(digests[:1])
        pack, boff, _ = reader.block_row(int(entries["block"][0]))
        path = reader.pack_path(pack)
    finally:
        reader.close()
    with open(path, "r+b") as f:  # flip one byte of the body
        f.seek(boff + HEADER_SIZE + 5)
        byte = f.read(1)
        f.seek(boff + HEADER_SIZE + 5)
        f.write(bytes([byte[0] ^ 0xFF]))
    url = tmp_path / "data"
    with pytest.raises(IntegrityError, match="fails its checksum"):
        upload_payloads(repo, DataRemote(str(url)), digests)
    remote = DataRemote(str(url))
    remote.refresh()
    assert len(remote.lookup()) == 0  # nothing was sent


def test_a_sealed_pack_names_the_hash_of_its_bytes(monkeypatch):
    """The pack's hash, computed on a second thread as blocks come, is that
    of the bytes sent, whichever way its blocks were added."""
    from hangar_git.remotes import packbuilder
    from hangar_git.remotes import packformat as pf

    monkeypatch.setattr(packbuilder, "HASH_STEP", 1000)  # many hand-overs to the thread
    rows = np.random.default_rng(7).integers(0, 256, (50, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    builder = packbuilder.PackBuilder(block_target=640)
    builder.add_rows(digests[:20], KIND, rows[:20])
    for d, r in zip(digests[20:30], rows[20:30], strict=True):
        builder.add(d, KIND, r.tobytes())
    block = pf.encode_block(rows[30:].tobytes(), 1)
    builder.add_block(
        digests[30:],
        [KIND] * 20,
        np.arange(20) * 64,
        np.full(20, 64),
        block[: pf.BLOCK_HEADER_SIZE],
        memoryview(block)[pf.BLOCK_HEADER_SIZE :],
    )
    for _ in range(2):  # a builder is reused after a seal
        pack = builder.seal()
        idx = pf.decode_index(pack.pack_id, pack.index)
        assert idx.pack_hash == pf.content_hash(pack.data)
        assert idx.pack_size == len(pack.data)
        builder.add_rows(digests[:5], KIND, rows[:5])


@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097, 9000])
def test_an_index_gives_back_its_digests_in_order(n):
    """A pack index read back gives every digest, in its sorted order, as
    bytes: cut from the index a run at a time, and the tail one by one."""
    from hangar_git.remotes import packformat as pf

    rng = np.random.default_rng(n)
    rows = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    digests = [digest_bytes("|u1|8", r.tobytes()) for r in rows]
    builder = PackBuilder()
    builder.add_rows(digests, "|u1|8", rows)
    pack = builder.seal()
    idx = pf.decode_index(pack.pack_id, pack.index)
    assert idx.digests == sorted(digests)
    assert all(type(d) is bytes and len(d) == 20 for d in idx.digests)
    raw = os.urandom(7 + 20 * n + 3)
    plain = [raw[i : i + 20] for i in range(7, 7 + 20 * n, 20)]
    assert pf.split_digests(raw, 7, n) == plain
    assert pf.split_digests(memoryview(raw), 7, n) == plain


def test_object_stores_get_packs_cut_smaller(tmp_path, monkeypatch):
    """A push cuts its packs at PACK_TARGET for a local folder, at
    OBJECT_STORE_PACK_TARGET for an object store (the next pack is built
    while one uploads), never above PACK_TARGET."""
    from hangar_git.remotes import data_transport as dt

    assert dt.OBJECT_STORE_PACK_TARGET < dt.PACK_TARGET
    local, memory = DataRemote(str(tmp_path / "d")), DataRemote("memory://h5-send-target")
    assert dt.send_target(local) == dt.PACK_TARGET
    assert dt.send_target(memory) == dt.OBJECT_STORE_PACK_TARGET
    monkeypatch.setattr(dt, "PACK_TARGET", 2048)
    assert dt.send_target(local) == dt.send_target(memory) == 2048


def test_blocks_are_read_from_a_mapping_of_exactly_their_bytes(tmp_path):
    """The push reads local blocks through a private mapping (no copy), at
    any offset, and what it writes there never reaches the file; a range
    past the file's end is not mapped (a truncated pack is read, and refused
    as truncated), nor an empty one."""
    from hangar_git.remotes.packsend import _map_window

    data = np.random.default_rng(7).integers(0, 256, 5 * mmap.ALLOCATIONGRANULARITY + 123, np.uint8)
    path = tmp_path / "p.pack"
    path.write_bytes(data.tobytes())
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, n in [
            (0, 10),
            (5, 4096),
            (mmap.ALLOCATIONGRANULARITY + 17, 9000),
            (100, len(data) - 100),
        ]:
            view = _map_window(fd, start, n)
            assert isinstance(view, memoryview)
            assert bytes(view) == data[start : start + n].tobytes()
            view[:4] = b"HGRB"  # as a push puts a remote header in place
            assert bytes(view[:4]) == b"HGRB"
            assert path.read_bytes() == data.tobytes()  # the file is unchanged
        assert _map_window(fd, len(data) - 5, 6) is None
        assert _map_window(fd, 0, 0) is None
    finally:
        os.close(fd)


def test_a_pack_truncated_under_its_index_is_refused_not_mapped(repo, tmp_path):
    rows = np.random.default_rng(8).integers(0, 256, (50, 64), dtype=np.uint8)
    digests = _stored(repo, rows)
    reader = repo.payload_store.reader()
    try:
        _, entries = reader.lookup(digests[-1:])
        pack, boff, blen = reader.block_row(int(entries["block"][0]))
        path = reader.pack_path(pack)
    finally:
        reader.close()
    os.truncate(path, boff + blen - 3)  # the last block's tail gone
    url = tmp_path / "data"
    with pytest.raises(IntegrityError, match="passes the end of the file"):
        upload_payloads(repo, DataRemote(str(url)), digests)
    remote = DataRemote(str(url))
    remote.refresh()
    assert len(remote.lookup()) == 0  # nothing was sent


def test_blocks_lying_one_after_the_other_go_as_one_piece():
    """Blocks added from one piece of memory, each where the one before
    ended, make one part of the pack (one write, one hash update); a gap, or
    another piece of memory, starts a new part; the pack and its name are
    those of the same blocks added one by one."""
    from hangar_git.remotes import packformat as pf

    rng = np.random.default_rng(3)
    rows = rng.integers(0, 256, (40, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    blocks = [pf.encode_block(rows[i : i + 8].tobytes(), 1) for i in range(0, 40, 8)]
    gap = b"\0" * 7
    mem = bytearray(b"".join(blocks[:3]) + gap + blocks[3])  # blocks 0-2, a gap, block 3
    base, other = memoryview(mem).toreadonly(), memoryview(blocks[4])
    starts = [0, len(blocks[0]), len(blocks[0]) + len(blocks[1])]
    starts.append(starts[2] + len(blocks[2]) + len(gap))
    plain, joined = PackBuilder(), PackBuilder()
    for i, block in enumerate(blocks):
        args = (digests[8 * i : 8 * i + 8], [KIND] * 8, np.arange(8) * 64, np.full(8, 64))
        head, body = block[: pf.BLOCK_HEADER_SIZE], memoryview(block)[pf.BLOCK_HEADER_SIZE :]
        plain.add_block(*args, head, body)
        if i < 4:
            joined.add_block(*args, head, body, base, starts[i])
        else:
            joined.add_block(*args, head, body, other, 0)
    a, b = plain.seal(), joined.seal()
    assert b.data == a.data == b"".join(blocks)
    assert b.pack_id == a.pack_id and b.index == a.index
    assert len(a.parts) == 10
    assert [len(p) for p in b.parts] == [starts[2] + len(blocks[2]), len(blocks[3]), len(blocks[4])]


def test_digests_given_joined_are_sent_and_fetched_as_a_list_of_them(repo, tmp_path, other_repo):
    """upload_payloads and download_payloads take the payloads a push or a
    fetch-data works out as they come (a Referenced: distinct, joined; looked
    up here without a list of them), with the outcome of the same digests
    given as a list; a malformed digest in a list is looked up one by one."""
    from hangar_git.records.reachable import Referenced

    rows = np.random.default_rng(11).integers(0, 256, (30, 64), dtype=np.uint8)
    digests = _stored(repo, rows)
    ref = Referenced.from_parts([b"".join(digests)], [0], ["x"])
    url = tmp_path / "data"
    report = upload_payloads(repo, DataRemote(str(url)), ref)
    assert report.payloads == 30 and report.skipped == 0
    assert upload_payloads(repo, DataRemote(str(url)), ref).skipped == 30  # there already
    got = download_payloads(other_repo, DataRemote(str(url)), ref)
    assert got.payloads == 30 and not got.refused and not got.absent
    assert download_payloads(other_repo, DataRemote(str(url)), ref).skipped == 30
    reader = other_repo.payload_store.reader()
    try:
        assert [reader.get(d).tobytes() for d in digests] == [r.tobytes() for r in rows]
    finally:
        reader.close()
    again = download_payloads(other_repo, DataRemote(str(url)), [*digests, b"short"])
    assert again.skipped == 30 and again.absent == [b"short"]


def test_the_remote_is_searched_for_digests_given_joined_as_for_a_list(repo, tmp_path):
    """select_for_fetch finds the same rows, and names the same absent
    digests, whether the wanted digests come joined or as a list."""
    from hangar_git.remotes.transfer import select_for_fetch

    rows = np.random.default_rng(12).integers(0, 256, (20, 64), dtype=np.uint8)
    digests = _stored(repo, rows)
    remote = DataRemote(str(tmp_path / "data"))
    upload_payloads(repo, remote, digests[:15])
    remote.refresh()
    lk = remote.lookup()
    wanted = digests[5:] + digests[:5]
    for budget in (None, 64 * 7):
        as_list = select_for_fetch(lk, wanted, budget)
        joined = select_for_fetch(lk, wanted, budget, b"".join(wanted))
        assert joined[0].tolist() == as_list[0].tolist() and joined[1] == as_list[1]
        assert joined[1] == digests[15:]


def test_an_index_sorts_digests_sharing_their_first_words():
    """Digests equal in their first 8 (or 16) bytes, and repeated ones, are
    sorted by all their bytes, stably: as Python sorts them."""
    from hangar_git.remotes import packformat as pf

    rng = np.random.default_rng(5)
    head = rng.bytes(8)
    ds = [rng.bytes(20) for _ in range(300)]
    ds += [head + rng.bytes(12) for _ in range(50)] + [head * 2 + rng.bytes(4) for _ in range(20)]
    ds += ds[:10]
    order = pf._digest_order(ds, b"".join(ds))
    assert order.tolist() == sorted(range(len(ds)), key=ds.__getitem__)
    plain = [rng.bytes(20) for _ in range(5000)]
    got = pf._digest_order(plain, b"".join(plain))
    assert got.tolist() == sorted(range(len(plain)), key=plain.__getitem__)


@pytest.mark.parametrize("n", [1, 2, 300, 5000])
def test_items_are_ordered_by_block_then_offset_as_lexsort_orders_them(n):
    """The order a push walks its items in is lexsort's, ties kept in their
    order, whether block, offset and position fit one 64-bit key or not."""
    from hangar_git.remotes.packsend import _item_order

    rng = np.random.default_rng(n)
    for top in (50, 1 << 40):  # packed, and too wide to pack
        bid = rng.integers(0, top, n).astype(np.int64)
        ioff = rng.integers(0, 7, n).astype(np.int64) * 784
        if n > 2:
            bid[1], ioff[1] = bid[0], ioff[0]  # a pair twice
        got = _item_order(bid, ioff)
        assert got.dtype == np.int64 and got.tolist() == np.lexsort((ioff, bid)).tolist()


def test_a_builder_told_its_digests_are_distinct_keeps_no_set_of_them():
    """A push adds each payload once: its builder (distinct=True) makes the
    same pack without checking for repeats; one not told so keeps a digest
    added twice once (a repeat given to the other is indexed twice)."""
    from hangar_git.remotes import packformat as pf

    rows = np.random.default_rng(9).integers(0, 256, (30, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    block = pf.encode_block(rows[20:].tobytes(), 1)
    head, body = block[: pf.BLOCK_HEADER_SIZE], memoryview(block)[pf.BLOCK_HEADER_SIZE :]
    packs = []
    for distinct in (False, True):
        b = PackBuilder(block_target=640, distinct=distinct)
        b.add_rows(digests[:10], KIND, rows[:10])
        for d, r in zip(digests[10:20], rows[10:20], strict=True):
            b.add(d, KIND, r.tobytes())
        b.add_block(digests[20:], [KIND] * 10, np.arange(10) * 64, np.full(10, 64), head, body)
        packs.append(b.seal())
    assert packs[0].data == packs[1].data and packs[0].index == packs[1].index
    twice = []
    for distinct in (False, True):
        b = PackBuilder(distinct=distinct)
        b.add_rows(digests[:3], KIND, rows[:3])
        b.add(digests[0], KIND, rows[0].tobytes())
        twice.append(len(pf.decode_index((p := b.seal()).pack_id, p.index).digests))
    assert twice == [3, 4]


def test_a_long_run_of_blocks_goes_to_the_hash_in_pieces(monkeypatch):
    """Blocks one after the other in memory, never taken to be written ahead
    (an object store's pack), are still handed to the hashing thread a
    HASH_STEP or so at a time, not all at the seal."""
    from hangar_git.remotes import packbuilder
    from hangar_git.remotes import packformat as pf

    rows = np.random.default_rng(4).integers(0, 256, (40, 64), dtype=np.uint8)
    digests = [digest_bytes(KIND, r.tobytes()) for r in rows]
    blocks = [pf.encode_block(rows[i : i + 8].tobytes(), 1) for i in range(0, 40, 8)]
    monkeypatch.setattr(packbuilder, "HASH_STEP", 2 * len(blocks[0]))
    hashed: list[int] = []
    real = packbuilder._RunningHash.add
    monkeypatch.setattr(
        packbuilder._RunningHash,
        "add",
        lambda self, part: (hashed.append(len(part)), real(self, part)),
    )
    base = memoryview(b"".join(blocks)).toreadonly()
    builder, at = PackBuilder(distinct=True), 0
    for i, block in enumerate(blocks):
        head, body = block[: pf.BLOCK_HEADER_SIZE], memoryview(block)[pf.BLOCK_HEADER_SIZE :]
        builder.add_block(
            digests[8 * i : 8 * i + 8],
            [KIND] * 8,
            np.arange(8) * 64,
            np.full(8, 64),
            head,
            body,
            base,
            at,
        )
        at += len(block)
        if i == 1:
            assert hashed == [2 * len(block)]  # before the seal
    pack = builder.seal()
    assert hashed == [2 * len(blocks[0])] * 2 + [len(blocks[0])]
    assert pack.data == bytes(base) and pf.decode_index(
        pack.pack_id, pack.index
    ).pack_hash == pf.content_hash(bytes(base))
