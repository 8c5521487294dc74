"""Keys of a bulk add held as one array (:mod:`hangar_git.records.keynames`):
encoded, logged and committed exactly as the key-by-key path does."""

from __future__ import annotations

import binascii
import hashlib
import os
import zlib

import numpy as np
import pygit2
import pytest

from hangar_git.held_rows import HeldRows
from hangar_git.naming import encode_key
from hangar_git.records import build as build_mod
from hangar_git.records import journal_lines
from hangar_git.records.build import build_root, write_sample_run, write_samples
from hangar_git.records.keynames import KeyNames, int_key_names, names_crc32
from hangar_git.records.layout import leaf_path, serialize_links
from hangar_git.records.snapshot import TreeRecords
from hangar_git.records.staging import B_LINE_SAMPLES, Journal, StagedAset
from hangar_git.store.digest_run import Digests


@pytest.fixture
def git(tmp_path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "g"), bare=True)


def digest(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=20).digest()


INTS = [0, 1, 9, 10, 11, 99, 100, 12345, 10**17, 10**18 - 1, 2**63 - 1]


def test_int_key_names_are_encode_key_of_each():
    rng = np.random.default_rng(0)
    ints = np.array(INTS + rng.integers(0, 2**63 - 1, 500).tolist() + list(range(1000)))
    names = int_key_names(ints)
    assert names.tolist() == [encode_key(int(k)) for k in ints]
    assert list(names) == names.tolist()
    assert names[3] == "i:10" and names[-1] == "i:999"
    assert names[1:4].tolist() == ["i:1", "i:9", "i:10"]
    assert names.lengths().tolist() == [len(encode_key(int(k))) for k in ints]


@pytest.mark.parametrize("order", ["sorted", "shuffled", "none"])
def test_int_key_names_of_runs_and_of_scattered_keys(order):
    """Keys of each digit count in one run of rows (a range: sliced) or
    scattered (gathered), and no keys at all, all named as encode_key does."""
    ints = np.arange(20_000, dtype=np.int64) * 7 + 3
    if order == "shuffled":
        ints = np.random.default_rng(1).permutation(ints)
    elif order == "none":
        ints = ints[:0]
    names = int_key_names(ints)
    assert names.tolist() == [encode_key(int(k)) for k in ints]
    assert names.lengths().tolist() == [len(encode_key(int(k))) for k in ints]


def test_names_crc32_is_zlib_crc32():
    encs = [encode_key(k) for k in INTS] + ["s:a", "s:abc-DEF_1.2", "s:" + "x" * 200]
    raw = [e.encode() for e in encs]
    names = KeyNames(np.array(raw))
    assert names.lengths().tolist() == list(map(len, raw))
    assert names_crc32(names.rows(), names.lengths()).tolist() == list(map(zlib.crc32, raw))


@pytest.mark.parametrize("order", ["ascending", "shuffled", "strings by length"])
def test_names_crc32_of_names_in_ascending_and_in_mixed_lengths(order):
    """Names whose lengths ascend (those of ascending int keys: each column
    taken from the first name that long) and names in any order, each
    given zlib.crc32 of its bytes."""
    if order == "strings by length":
        raw = sorted((f"s:{'ab' * (i % 9)}{i}".encode() for i in range(3000)), key=len)
        names = KeyNames(np.array(raw))
    else:
        ints = np.concatenate([np.arange(0, 120_000, 7), np.array(INTS[-3:])])
        if order == "shuffled":
            ints = np.random.default_rng(2).permutation(ints)
        names = int_key_names(ints)
        raw = [encode_key(int(k)).encode() for k in ints]
    assert names.lengths().tolist() == list(map(len, raw))
    assert names_crc32(names.rows(), names.lengths()).tolist() == list(map(zlib.crc32, raw))


def test_lengths_of_ascending_int_key_names_follow_their_slices():
    names = int_key_names(np.array([5, 50, 500, 5000, 10**18]))
    assert names.lengths().tolist() == [3, 4, 5, 6, 21]
    part = names[1:4]
    assert part.tolist() == ["i:50", "i:500", "i:5000"]
    assert part.lengths().tolist() == [4, 5, 6]


def test_a_run_is_staged_in_order_with_the_samples_set_around_it():
    st = StagedAset(samples={"i:1": digest(-1), "i:5": digest(-5)})
    st.add_run(int_key_names(np.arange(4)), [digest(i) for i in range(4)])
    assert st.as_run() is None  # i:1 set twice: for the dict to settle
    st.samples["i:2"] = None  # a later change wins
    assert st.samples == {
        "i:1": digest(1),
        "i:5": digest(-5),
        "i:0": digest(0),
        "i:2": None,
        "i:3": digest(3),
    }
    assert st.as_run() is None  # no run left
    alone = StagedAset(created=True)
    run = (int_key_names(np.arange(3)), [digest(i) for i in range(3)])
    alone.add_run(*run)
    assert alone.as_run() == run


def test_runs_and_the_samples_before_them_are_one_run():
    st = StagedAset(created=True, samples={"s:x": digest(-1), "i:99": digest(-2)})
    st.add_run(int_key_names(np.arange(3)), [digest(i) for i in range(3)])
    st.add_run(int_key_names(np.arange(10, 12)), [digest(i) for i in range(10, 12)])
    run = st.as_run()
    assert run is not None
    names, digests = run
    assert names.tolist() == ["s:x", "i:99", "i:0", "i:1", "i:2", "i:10", "i:11"]
    assert list(digests) == [digest(-1), digest(-2), *map(digest, [0, 1, 2, 10, 11])]
    st.add_run(int_key_names(np.array([11])), [digest(0)])  # set again: the last wins
    assert st.as_run() is None
    assert st.samples["i:11"] == digest(0)
    removed = StagedAset(created=True, samples={"i:5": None})
    removed.add_run(int_key_names(np.arange(3)), [digest(i) for i in range(3)])
    assert removed.as_run() is None


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode()


#: int keys logged as a range (ascending, evenly spaced), and as names
_RUN_KEYS = {
    "range": lambda n: int_key_names(np.arange(7, 7 + 3 * n, 3)),
    "descending": lambda n: int_key_names(np.arange(n)[::-1].copy()),
    "str": lambda n: KeyNames(np.array([b"s:k%d" % i for i in range(n)])),
}


@pytest.mark.parametrize("keys", sorted(_RUN_KEYS))
@pytest.mark.parametrize("n", [1, 5, 3000, B_LINE_SAMPLES + 10])
def test_a_logged_run_replays_as_the_same_samples(tmp_path, n, keys):
    encs = _RUN_KEYS[keys](n)
    digests = [digest(i) for i in range(n)]
    j = Journal.open(tmp_path / "journal", "master", None)
    j.record("S", "a", "{}")
    j.record_samples("a", encs, Digests(b"".join(digests)))
    j.close()
    expected = dict(zip(encs.tolist(), digests, strict=True))
    assert j.asets["a"].samples == expected
    again = Journal.peek(tmp_path / "journal")
    assert again is not None and again.asets["a"].as_run() is not None  # a run, not a dict
    assert again.asets["a"].samples == expected
    # the same samples logged key by key (B lines) replay the same; the
    # columns of the bulk log (Y lines) take fewer bytes
    k = Journal.open(tmp_path / "other", "master", None)
    k.record("S", "a", "{}")
    k.record_samples("a", encs.tolist(), digests)
    k.close()
    other = Journal.peek(tmp_path / "other")
    assert other is not None and other.asets["a"].samples == expected
    bulk, by_key = (tmp_path / "journal").read_bytes(), (tmp_path / "other").read_bytes()
    assert b"\nY\t" in bulk and b"\nY\t" not in by_key
    if n >= 3000:
        assert len(bulk) < (0.65 if keys == "range" else 0.8) * len(by_key)


def test_a_bulk_log_names_a_range_of_int_keys_by_its_ends(tmp_path):
    j = Journal.open(tmp_path / "journal", "master", None)
    j.record_samples("a", int_key_names(np.arange(7, 7 + 3 * 5000, 3)), [digest(1)] * 5000)
    j.close()
    line = (tmp_path / "journal").read_bytes().split(b"\n")[1]
    assert line.startswith(b"Y\ta\tr7,3\t")


@pytest.mark.parametrize(
    ("names", "digests"),
    [
        ("r0,1", "!!"),  # not base64
        ("r0,1", "AAAA"),  # not whole digests
        ("r0,0", _b64(b"x" * 40)),  # a step of 0: one key twice
        ("r-1,1", _b64(b"x" * 20)),
        (f"r{10**40},1", _b64(b"x" * 20)),  # past the int keys' bound
        ("rx", _b64(b"x" * 20)),
        ("s3," + _b64(b"s:a" * 2), _b64(b"x" * 40)),  # a name twice
        ("s3," + _b64(b"s:a"), _b64(b"x" * 40)),  # fewer names than digests
        ("s3," + _b64(b"\x00" * 3), _b64(b"x" * 20)),  # an empty name
        ("s0,", ""),  # nothing
        ("q0,1", _b64(b"x" * 20)),  # an unknown form
    ],
)
def test_a_malformed_bulk_log_line_is_refused_on_replay(tmp_path, names, digests):
    """A ``Y`` line with an intact CRC but columns that do not make distinct
    names, one per whole digest, is refused as a ``B`` line of odd fields is."""
    with pytest.raises(RuntimeError, match="malformed staging journal entry 'Y'"):
        Journal(tmp_path / "journal")._apply(["Y", "a", names, digests])
    with pytest.raises(RuntimeError, match="malformed"):
        Journal(tmp_path / "journal")._apply(["Y", "a", "r0,1"])


def test_a_journal_of_b_lines_still_replays(tmp_path):
    """Journals written before ``Y`` lines (bulk adds as ``B`` lines) replay as they did."""
    n = 3000
    encs = [f"i:{k}" for k in range(n)]
    digests = [digest(i) for i in range(n)]
    path = tmp_path / "journal"
    j = Journal.open(path, "master", None)
    j.record("S", "a", "{}")
    j.close()
    with open(path, "ab") as fh:
        fh.write(journal_lines.b_line("a", encs, digests).encode())
    again = Journal.open(path, "master", None)
    assert again.asets["a"].samples == dict(zip(encs, digests, strict=True))
    again.close()


def test_a_damaged_or_torn_bulk_log_line_stages_nothing_of_it(tmp_path):
    """A ``Y`` line is a line: cut short (a killed process) or damaged (its
    CRC fails), none of its samples are staged, and the lines around it are."""
    n = 3000
    path = tmp_path / "journal"
    j = Journal.open(path, "master", None)
    j.record("S", "a", "{}")
    j.record_samples("a", int_key_names(np.arange(n)), [digest(i) for i in range(n)])
    j.record("S", "b", "{}")
    j.close()
    data = path.read_bytes()
    at = data.index(b"\nY\t") + 1
    end = data.index(b"\n", at) + 1
    path.write_bytes(data[: at + (end - at) // 2])  # torn inside the Y line
    again = Journal.open(path, "master", None)
    assert "a" in again.asets and not again.asets["a"].samples and "b" not in again.asets
    again.close()
    damaged = bytearray(data)
    damaged[at + 100] ^= 1  # a flipped bit in the digests column
    path.write_bytes(bytes(damaged))
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = Journal.open(path, "master", None)
    assert not again.asets["a"].samples and "b" in again.asets
    again.close()


@pytest.mark.parametrize("n", [10, 3000, 70_000])
def test_a_run_commits_the_tree_the_samples_make(git, n):
    rng = np.random.default_rng(n)
    ints = rng.permutation(n * 3)[:n]
    digests = [digest(i) for i in range(n)]
    names = int_key_names(ints)
    records = dict(zip(names.tolist(), digests, strict=True))
    assert write_sample_run(git, names, digests) == write_samples(git, records)
    mixed = KeyNames(np.array([e.encode() for e in [*names.tolist()[:-1], "s:word"]]))
    mixed_records = dict(zip(mixed.tolist(), digests, strict=True))
    assert write_sample_run(git, mixed, digests) == write_samples(git, mixed_records)
    base = TreeRecords(git, None)
    run_st = StagedAset(created=True, schema="{}")
    run_st.add_run(names, digests)
    dict_st = StagedAset(created=True, schema="{}", samples=dict(records))
    assert build_root(git, base, {"a": run_st}, {}) == build_root(git, base, {"a": dict_st}, {})


@pytest.mark.parametrize("fanout", [(1,), (2,), (2, 1), (2, 2)])
def test_leaves_laid_out_from_arrays_are_the_serialized_records(fanout):
    """Each leaf the array layout cuts is byte for byte serialize_links of the
    records leaf_path puts in it (names of every length, int and str keys)."""
    rng = np.random.default_rng(len(fanout))
    ints = rng.permutation(10**6)[:3000].tolist() + INTS
    strs = ["s:" + "k" * int(rng.integers(1, 40)) + str(i) for i in range(2000)]
    encs = [encode_key(int(k)) for k in ints] + strs
    digests = [digest(i) for i in range(len(encs))]
    leaves, _ = build_mod._fanned_leaves(encs, digests, fanout)
    want: dict[tuple[str, ...], dict[str, bytes]] = {}
    for enc, d in zip(encs, digests, strict=True):
        want.setdefault(leaf_path(enc, fanout), {})[enc] = d
    assert leaves == {path: serialize_links(links) for path, links in want.items()}


def test_a_run_is_laid_out_from_its_arrays(git, monkeypatch):
    """The commit of one bulk add does not go through a dict of its records."""
    names = int_key_names(np.arange(5000))
    st = StagedAset(created=True, schema="{}")
    st.add_run(names, [digest(i) for i in range(5000)])

    def no_dict(*a: object, **k: object) -> None:
        raise AssertionError("laid out from a dict")

    monkeypatch.setattr(build_mod, "build_samples", no_dict)
    monkeypatch.setattr(build_mod, "_fanned_leaves", no_dict)
    build_root(git, TreeRecords(git, None), {"a": st}, {})
    assert st.as_run() is not None  # and the run was never merged into a dict


def test_held_int_keys_are_named_as_one_array():
    held = HeldRows(np.dtype(np.uint8), (2,), encs=[3, 1, 2])
    names = held.names()
    assert isinstance(names, KeyNames) and names.tolist() == ["i:3", "i:1", "i:2"]
    assert HeldRows(np.dtype(np.uint8), (2,), encs=[3, "s:a", 2]).names() == ["i:3", "s:a", "i:2"]
    # a key set twice: a list, whose last sample wins when staged
    assert HeldRows(np.dtype(np.uint8), (2,), encs=[3, 1, 3]).names() == ["i:3", "i:1", "i:3"]


def test_a_with_block_of_int_keys_commits_from_arrays(repo, monkeypatch):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    b = co.arraysets.init_arrayset("b", shape=(1,), dtype=np.int64)
    rows = np.arange(6000, dtype=np.uint8).reshape(3000, 2)
    with a, b:
        for i in range(3000):
            a[i] = rows[i]
            b[i] = np.array([i])

    def no_dict(*args: object, **kw: object) -> None:
        raise AssertionError("laid out from a dict")

    monkeypatch.setattr(build_mod, "build_samples", no_dict)
    co.commit("keys")
    co.close()
    r = repo.checkout()
    assert all((r.arraysets["a"][i] == rows[i]).all() for i in range(0, 3000, 7))
    assert r.arraysets["b"][2999].tolist() == [2999] and len(r.arraysets["b"]) == 3000
    r.close()


@pytest.mark.parametrize(
    "names",
    [
        range(5, 3005),
        range(3004, 4, -1),
        np.arange(5, 3005, dtype=np.int32),
        np.arange(5, 3005, dtype=np.uint64),
        list(range(5, 3005)),
    ],
    ids=["range", "descending-range", "int32", "uint64", "list"],
)
def test_bulk_keys_in_any_form_make_the_same_records(repo, names):
    rows = np.arange(6000, dtype=np.uint8).reshape(3000, 2)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8)
    assert a.add_stacked(rows, names) == [int(k) for k in names]
    co.commit("bulk")
    got = dict(co.arraysets["a"].items())
    assert got.keys() == {int(k) for k in names}
    assert all((got[int(k)] == rows[i]).all() for i, k in enumerate(names))
    co.close()
    with pytest.raises(ValueError, match="appears more than once"):
        co = repo.checkout(write=True)
        try:
            co.arraysets["a"].add_stacked(rows[:3], np.array([7, 8, 7], dtype=np.int16))
        finally:
            co.close()


def test_held_rows_stack_to_the_rows_held():
    """The stacked rows are the rows as held, in order, of their dtype and shape."""
    rows = np.random.default_rng(2).random((300, 3, 5)).astype(">f4")
    held = HeldRows(rows.dtype, (3, 5))
    for i, r in enumerate(rows):
        held.encs.append(i)
        held.buf += r.tobytes()
    got = held.stacked()
    assert got.dtype == rows.dtype and got.shape == rows.shape
    assert got.tobytes() == rows.tobytes()


@pytest.mark.parametrize("step", [5, 4096, None])
def test_journal_lines_in_parts_are_written_whole(tmp_path, monkeypatch, step):
    """A bulk line is written part by part; writes that take only some of what
    they are given (a signal, a pipe) still leave every byte in order, as
    one joined write would."""
    if step is not None:
        real = os.write
        monkeypatch.setattr(os, "write", lambda fd, buf: real(fd, memoryview(buf)[:step]))
    n = 700
    encs = int_key_names(np.arange(n))
    digests = [digest(i) for i in range(n)]
    j = Journal.open(tmp_path / "journal", "master", None)
    j.record("S", "a", "{}")
    j.record_samples("a", encs, digests)
    j.close()
    k = Journal.open(tmp_path / "other", "master", None)
    k.record("S", "a", "{}")
    k.close()
    line = journal_lines.y_line("a", encs, digests)
    assert isinstance(line, tuple) and len(line) > 1  # in parts
    whole = (tmp_path / "other").read_bytes() + b"".join(line)  # the same, joined
    assert (tmp_path / "journal").read_bytes() == whole
    again = Journal.peek(tmp_path / "journal")
    assert again is not None and again.asets["a"].samples == dict(
        zip(encs.tolist(), digests, strict=True)
    )


def test_names_given_with_lengths_need_one_length_each():
    names = np.array([b"i:1", b"i:22"])
    assert KeyNames(names, lengths=np.array([3, 4])).lengths().tolist() == [3, 4]
    with pytest.raises(ValueError, match="one length per name"):
        KeyNames(names, lengths=np.array([3]))


def test_arraysets_of_the_same_keys_in_one_commit_are_laid_out_once(git, monkeypatch):
    """Two runs of the same names (images and their labels), one of other
    names of the same count, one of the same names in another array: the
    names' layout is made once per distinct names, and each tree is the one
    its records make alone."""
    n = 3000
    same = int_key_names(np.arange(n) + 10_000)
    other = int_key_names(np.arange(n) + 20_000)  # (names of the same lengths)
    runs = {
        "images": (same, [digest(i) for i in range(n)]),
        "labels": (same, [digest(i % 10) for i in range(n)]),
        "other": (other, [digest(-i) for i in range(n)]),
        "again": (KeyNames(same.names.copy()), [digest(2 * i) for i in range(n)]),
    }
    staged = {}
    for name, (names, ds) in runs.items():
        st = StagedAset(created=True, schema="{}")
        st.add_run(names, ds)
        staged[name] = st
    made = []
    real = build_mod.names_crc32

    def counted(rows, lengths):
        made.append(len(rows))
        return real(rows, lengths)

    monkeypatch.setattr(build_mod, "names_crc32", counted)
    root = build_root(git, TreeRecords(git, None), staged, {})
    assert made == [n, n, n]  # images (labels take it), other, again (other's was last)
    monkeypatch.undo()
    records = TreeRecords(git, root)
    for name, (names, ds) in runs.items():
        want = write_samples(git, dict(zip(names.tolist(), ds, strict=True)))
        assert records.aset_entries[name][1] != want  # (an arrayset's tree holds its schema)
        assert records.samples(name).oid == want
