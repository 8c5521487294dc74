"""The local cache of parsed sample records (``.git/hangar/keys/<tree id>``).

A fresh checkout of a commit whose records this machine has parsed before
reads them from the cache instead of the tree's leaves. The cache is local,
untrusted state: whatever is in the file (torn, flipped, another tree's,
lying about its count, huge, unreadable), reads return what the records
say, and a bad file is replaced by a sound one.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from hangar_git.records import entry_hints, key_cache, snapshot
from hangar_git.records.key_cache import HEADER, KeyTable
from hangar_git.store.checksum import crc32

N = 3000  # 256 fan-out leaves


def _commit(repo, keys: list, name: str = "a") -> np.ndarray:
    data = np.arange(len(keys) * 3, dtype=np.int64).reshape(len(keys), 3)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset(name, shape=(3,), dtype=np.int64)
    aset.add_stacked(data, keys)
    co.commit(f"{name}: {len(keys)}")
    co.close()
    # the commit kept the new tree's table (see test_key_cache_commit.py)
    # and its entry hints (test_entry_hints.py): dropped, so that the first
    # read here parses the leaves as a first read of a tree committed
    # elsewhere (fetched) does
    s = _samples(repo, name)
    key_cache.cache_path(s.repo, s.oid).unlink()
    entry_hints.hint_path(s.repo, s.oid).unlink()
    return data


def _samples(repo, name: str = "a") -> snapshot.SampleRecords:
    """The records of ``name`` as a fresh process sees them (nothing parsed)."""
    snapshot.clear_leaf_cache()
    rc = repo.checkout()
    s = rc.view.base_samples(name)
    rc.close()
    return s


def _parses(monkeypatch) -> list[bytes]:
    """Record the leaves read from the object database from now on."""
    seen: list[bytes] = []
    real = snapshot.read_tree

    def spy(repo, oid, what):
        seen.append(oid)
        return real(repo, oid, what)

    monkeypatch.setattr(snapshot, "read_tree", spy)
    return seen


def _check_reads(repo, data: np.ndarray, keys: list, name: str = "a") -> None:
    """Every way of reading the whole arrayset gives ``data``."""
    snapshot.clear_leaf_cache()
    rc = repo.checkout()
    aset = rc.arraysets[name]
    out = np.empty_like(data)
    if all(isinstance(k, int) for k in keys) and keys == list(range(len(keys))):
        np.testing.assert_array_equal(aset.read_into(range(len(keys)), out), data)
    np.testing.assert_array_equal(np.stack(aset.get_batch(keys)), data)
    with aset:
        for i in range(0, len(keys), 97):
            np.testing.assert_array_equal(aset[keys[i]], data[i])
    enc = [f"i:{k}" if isinstance(k, int) else f"s:{k}" for k in keys]
    assert sorted(rc.view.base_samples(name).flat()) == sorted(enc)
    rc.close()


@pytest.mark.parametrize("kind", ["ints", "strs"])
def test_a_second_process_reads_the_records_from_the_cache(repo, monkeypatch, kind):
    keys: list = list(range(N)) if kind == "ints" else [f"k{i}" for i in range(N)]
    data = _commit(repo, keys)
    s = _samples(repo)
    flat = s.flat()  # parsed from the leaves, then cached
    path = key_cache.cache_path(s.repo, s.oid)
    assert path.is_file()
    table = key_cache.load(s.repo, s.oid, N)
    assert table is not None and table.to_dict() == flat
    assert (table.ints is not None) == (kind == "ints")
    seen = _parses(monkeypatch)
    s2 = _samples(repo)
    before = len(seen)
    assert s2.has_cached_table()
    assert s2.flat() == flat and s2.key_table().digests == table.digests
    assert len(seen) == before  # no leaf parsed
    _check_reads(repo, data, keys)


def _corruptions(data: bytes, other: bytes) -> dict[str, bytes]:
    """Ways a cache file can be wrong; ``other`` is another tree's sound file."""
    flipped = bytearray(data)
    flipped[HEADER.size + 5] ^= 0x40  # a digest byte: fails the CRC
    forged = bytearray(data)  # a count the tree does not have, CRC made to fit
    magic, version, flags, tree, n, names_len = HEADER.unpack_from(data)
    forged[: HEADER.size] = HEADER.pack(magic, version, flags, tree, n + 1, names_len)
    forged[-4:] = struct.pack("<I", crc32(bytes(forged[:-4])))
    return {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "header only": data[: HEADER.size],
        "flipped digest": bytes(flipped),
        "flipped crc": data[:-1] + bytes([data[-1] ^ 1]),
        "extra bytes": data + b"\x00" * 8,
        "other tree": other,
        "wrong count": bytes(forged),
        "wrong magic": b"XXXX" + data[4:],
        "garbage": os.urandom(len(data)),
    }


@pytest.mark.parametrize("kind", ["ints", "strs"])
def test_a_bad_cache_file_is_ignored_and_rebuilt(repo, kind):
    keys: list = list(range(N)) if kind == "ints" else [f"k{i}" for i in range(N)]
    data = _commit(repo, keys)
    _commit(repo, list(range(1, N + 1)), "b")  # as many samples, another tree
    s = _samples(repo)
    s.flat()
    other = _samples(repo, "b")
    other.flat()
    path = key_cache.cache_path(s.repo, s.oid)
    good = path.read_bytes()
    other_file = key_cache.cache_path(s.repo, other.oid).read_bytes()
    for why, bad in _corruptions(good, other_file).items():
        path.write_bytes(bad)
        assert key_cache.load(s.repo, s.oid, N) is None, why
        _check_reads(repo, data, keys)
        assert path.read_bytes() == good, why  # written anew once parsed


def test_a_link_or_a_pipe_in_place_of_a_table_is_not_read(repo, tmp_path):
    keys = list(range(N))
    data = _commit(repo, keys)
    s = _samples(repo)
    s.flat()
    path = key_cache.cache_path(s.repo, s.oid)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(path.read_bytes())  # a sound table, but not in its place
    path.unlink()
    path.symlink_to(elsewhere)
    assert key_cache.load(s.repo, s.oid, N) is None
    _check_reads(repo, data, keys)
    path.unlink(missing_ok=True)
    os.mkfifo(path)  # opened without O_NONBLOCK, this would wait for a writer forever
    assert key_cache.load(s.repo, s.oid, N) is None
    _check_reads(repo, data, keys)


def test_a_sound_file_with_a_forged_key_is_refused(repo):
    """Names that are not canonical keys, or negative int keys, are refused
    even when the file's CRC fits them."""
    _commit(repo, [f"k{i}" for i in range(N)])
    s = _samples(repo)
    s.flat()
    table = key_cache.load(s.repo, s.oid, N)
    assert table is not None and table.names is not None
    bad_names = KeyTable(table.digests, None, table.names.replace(b"s:k1\x00", b"s:k/\x00", 1))
    assert key_cache.parse(key_cache.encode(bad_names, s.oid), s.oid, N) is None
    ints = np.arange(N, dtype=np.int64)
    ints[7] = -7
    negative = KeyTable(table.digests, ints, None)
    assert key_cache.parse(key_cache.encode(negative, s.oid), s.oid, N) is None
    fine = KeyTable(table.digests, np.arange(N, dtype=np.int64), None)
    assert key_cache.parse(key_cache.encode(fine, s.oid), s.oid, N) is not None


def test_a_huge_file_is_not_read(repo, monkeypatch):
    """A file larger than a table of the tree's count can be is refused on
    its size, before any of it is read."""
    _commit(repo, list(range(N)))
    s = _samples(repo)
    s.flat()
    path = key_cache.cache_path(s.repo, s.oid)
    with open(path, "ab") as fh:
        fh.truncate(N * 1000)  # sparse: no disk spent
    reads: list[int] = []
    real = os.pread

    def spy(fd, n, off):
        reads.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(key_cache.os, "pread", spy)
    assert key_cache.load(s.repo, s.oid, N) is None
    assert reads == []


def test_reads_work_when_the_cache_cannot_be_written(repo, monkeypatch):
    """A full disk or a read-only directory: reads return the records, no
    file (nor a temporary one) is left; a file is used only with the count
    this machine knows for the tree."""
    data = _commit(repo, list(range(N)))

    def refuse(*args):
        raise PermissionError("read-only")

    monkeypatch.setattr(key_cache.os, "replace", refuse)
    _check_reads(repo, data, list(range(N)))
    s = _samples(repo)
    keys_dir = key_cache.cache_path(s.repo, s.oid).parent
    assert list(keys_dir.iterdir()) == []
    monkeypatch.undo()
    s.flat()
    assert key_cache.load(s.repo, s.oid, N) is not None
    assert key_cache.load(s.repo, s.oid, N - 1) is None


@pytest.mark.parametrize("kind", ["ints", "mixed", "sparse"])
def test_the_table_parsed_from_the_leaves_is_the_records(repo, kind):
    """The key table a first read parses (no dict of the keys) holds every
    record, in the order of ``items()``, and is what the next process loads."""
    keys: list = {
        "ints": list(range(N)),
        "mixed": [i if i % 3 else f"k{i}" for i in range(N)],
        "sparse": list(range(0, 2 * N, 2)),
    }[kind]
    data = _commit(repo, keys)
    s = _samples(repo)
    assert s.trusted
    table = s.key_table()
    items = list(_samples(repo).items())  # leaf by leaf
    assert list(zip(table.keys(), table.digest_list(), strict=True)) == items
    assert (table.dense_order() is not None) == (kind == "ints")
    loaded = key_cache.load(s.repo, s.oid, N)
    assert loaded is not None and loaded.digests == table.digests and loaded.keys() == table.keys()
    _check_reads(repo, data, keys)


def test_the_folder_keeps_the_most_recently_used_tables(repo, monkeypatch):
    """Past its budget, the least recently used tables go; the one just
    written and the one just read stay; reads stay right either way."""
    data = {}
    for i, name in enumerate("abc"):
        data[name] = _commit(repo, list(range(i, N + i)), name)
    s = {name: _samples(repo, name) for name in "abc"}
    s["a"].flat()
    size = key_cache.cache_path(s["a"].repo, s["a"].oid).stat().st_size
    monkeypatch.setattr(key_cache, "KEYS_BYTES", 2 * size)
    s["b"].flat()
    path = {n: key_cache.cache_path(s[n].repo, s[n].oid) for n in "abc"}
    os.utime(path["a"], (1, 1))  # long unused
    os.utime(path["b"], (2, 2))
    assert key_cache.load(s["a"].repo, s["a"].oid, N) is not None  # used now
    s["c"].flat()
    assert [path[n].exists() for n in "abc"] == [True, False, True]
    stale = path["a"].with_name(".left.123.tmp")
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    key_cache.prune(path["a"].parent)
    assert not stale.exists() and path["a"].exists()
    for name in "abc":
        _check_reads(repo, data[name], list(range("abc".index(name), N + "abc".index(name))), name)


def test_int_keys_past_int64_are_read_whole(repo):
    """An int key no int64 holds (keys are unbounded ints): the table keeps
    the keys as names, and every whole read returns the records."""
    keys: list = [*range(N - 2), 2**63, 10**30]
    data = _commit(repo, keys)
    _check_reads(repo, data, keys)
    s = _samples(repo)
    table = key_cache.load(s.repo, s.oid, N)
    assert table is not None and table.ints is None
    assert set(table.keys()) == {f"i:{k}" for k in keys}


@pytest.mark.parametrize(
    ("ints", "dense"),
    [([2, 0, 1], True), ([0, 0, 2], False), ([1, 2, 3], False), ([0, 2, 2, 1], False), ([0], True)],
)
def test_dense_order_is_the_key_order_of_a_permutation_only(ints, dense):
    """Keys exactly ``0 .. n-1``: the tree position of each key in key order;
    any key twice (even with the right least and greatest keys): None."""
    table = KeyTable(bytes(20 * len(ints)), np.array(ints, np.int64), None)
    order = table.dense_order()
    assert (order is not None) == dense
    if order is not None:
        assert np.array(ints)[order].tolist() == list(range(len(ints)))
        assert order.dtype == np.int32  # (half the memory of intp)


def test_tables_kept_for_a_commit_are_handed_on_once_and_few_stay(repo, monkeypatch):
    """``take_stored`` gives the table ``store`` just kept, once; tables no
    commit takes are forgotten beyond a few, or beyond a size."""
    git = repo._git_repo()
    tables = [
        KeyTable(bytes([i]) * 20 * 10, np.arange(10, dtype=np.int64), None) for i in range(12)
    ]
    oids = [bytes([i]) * 20 for i in range(12)]
    for oid, table in zip(oids, tables, strict=True):
        key_cache.store(git, oid, table)
    assert key_cache.take_stored(oids[0]) is None  # the oldest went: at most 8 stay
    assert key_cache.take_stored(oids[-1]) is tables[-1]
    assert key_cache.take_stored(oids[-1]) is None  # handed on once
    monkeypatch.setattr(key_cache, "_STORED_BYTES", 500)
    key_cache.store(git, oids[0], tables[0])
    key_cache.store(git, oids[1], tables[1])  # 280 bytes each: only the last fits
    assert key_cache.take_stored(oids[0]) is None
    assert key_cache.take_stored(oids[1]) is tables[1]


@pytest.mark.parametrize("kind", ["ints", "strs"])
def test_a_table_kept_is_written_in_parts_as_its_encoding(repo, kind):
    """store writes the table's buffers one after the other: the file is
    encode() of the table byte for byte and parses back to it; so are the
    entry hints kept beside it."""
    keys = list(range(N)) if kind == "ints" else [f"k{i}" for i in range(N)]
    _commit(repo, keys)
    s = _samples(repo)
    rng = np.random.default_rng(5)
    digests = rng.bytes(20 * N)
    table = (
        KeyTable(digests, np.arange(N, dtype=np.int64)[::-1], None)  # not contiguous
        if kind == "ints"
        else KeyTable(digests, None, "\x00".join(f"s:k{i}" for i in range(N)).encode())
    )
    key_cache.store(s.repo, s.oid, table)
    path = key_cache.cache_path(s.repo, s.oid)
    assert path.read_bytes() == key_cache.encode(table, s.oid)
    back_table = key_cache.parse(path.read_bytes(), s.oid, N)
    assert back_table is not None and back_table.digests == digests
    assert back_table.keys() == table.keys()
    from hangar_git.store.placement import Placement

    places = Placement((3, 9), (N, 7), (np.arange(N, dtype=np.int64) * 2)[::2].repeat(2))
    entry_hints.store(s.repo, s.oid, places)
    data = entry_hints.hint_path(s.repo, s.oid).read_bytes()
    assert data == entry_hints.encode(places, s.oid)
    back = entry_hints.parse(data, s.oid, N)
    assert back is not None and back.sids == (3, 9) and back.where.tolist() == places.where.tolist()


@pytest.mark.parametrize("kind", ["ints", "strs"])
def test_a_table_is_read_in_its_parts_never_whole(repo, monkeypatch, kind):
    """load reads the header, the digests, the keys and the checksum each
    straight into its own buffer (no read of the whole file, then copies
    of its parts: in a fresh process each page of a fresh buffer is a page
    fault), and gives what parse() of the whole file gives."""
    keys: list = list(range(N)) if kind == "ints" else [f"k{i}" for i in range(N)]
    _commit(repo, keys)
    s = _samples(repo)
    s.flat()  # parsed, then cached
    path = key_cache.cache_path(s.repo, s.oid)
    whole = key_cache.parse(path.read_bytes(), s.oid, N)
    assert whole is not None
    sizes: list[int] = []
    real_pread, real_preadv = os.pread, os.preadv

    def pread(fd, n, off):
        sizes.append(n)
        return real_pread(fd, n, off)

    def preadv(fd, buffers, off):
        sizes.append(sum(memoryview(b).nbytes for b in buffers))
        return real_preadv(fd, buffers, off)

    monkeypatch.setattr(key_cache.os, "pread", pread)
    monkeypatch.setattr(key_cache.os, "preadv", preadv)
    table = key_cache.load(s.repo, s.oid, N)
    assert table is not None and table.to_dict() == whole.to_dict()
    assert table.digests == whole.digests
    if kind == "ints":
        assert table.ints is not None and table.ints.flags.writeable
        assert table.ints.dtype == np.int64 and table.dense_order() is not None
    assert sizes and max(sizes) < path.stat().st_size
    assert sum(sizes) == path.stat().st_size  # every byte read once
