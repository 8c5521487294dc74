"""Hostile records and data remotes met by reads: lazy fetches, partial reads
of chunked payloads, and ``len()``.

- A checkout opened with ``fetch_missing`` bounds each payload it fetches by
  what the sample's arrayset schema allows: a data remote offering a larger
  object (a pack entry, a large-payload object) for a wanted digest is
  refused before the object is read, with little memory, and nothing is
  stored.
- ``aset[key, region]`` of records not built on this machine checks the
  stored payload's kind against the schema, as whole reads do; records
  built here skip the check.
- ``len(aset)`` of records not trusted checks every record name (and where
  each key lies), as ``keys()`` does; a trusted arrayset is counted without.

Hostile objects are built here with raw git objects (records) and the data
remote's own pack format (payloads).
"""

from __future__ import annotations

import subprocess
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pygit2
import pytest
from pygit2.enums import ObjectType
from raw_records import entries, head, raw_tree, sorted_raw

from hangar_git import Repository
from hangar_git.errors import CorruptRecordError, IntegrityError
from hangar_git.gitutil import HEADS
from hangar_git.records import counts, snapshot, validate
from hangar_git.records.layout import MODE_BLOB, MODE_LINK, MODE_TREE
from hangar_git.remotes import data_transport as dt
from hangar_git.store import array_digest, chunked

MiB = 1 << 20


# --------------------------------------------------------------------------
# raw records
# --------------------------------------------------------------------------


def root_of(git: pygit2.Repository, branch: str) -> bytes:
    return git.get(head(git, branch)).tree_id.raw


def samples_of(git: pygit2.Repository, root: bytes, aset: str) -> bytes:
    at = entries(git, entries(git, entries(git, root)[b"arraysets"][1])[aset.encode()][1])
    return at[b"samples"][1]


def with_samples(git: pygit2.Repository, root: bytes, aset: str, samples: bytes) -> bytes:
    """Root tree ``root`` with arrayset ``aset``'s samples tree replaced."""
    r = entries(git, root)
    asets = entries(git, r[b"arraysets"][1])
    at = entries(git, asets[aset.encode()][1])
    at[b"samples"] = (MODE_TREE, samples)
    asets[aset.encode()] = (MODE_TREE, raw_tree(git, sorted_raw(at)))
    r[b"arraysets"] = (MODE_TREE, raw_tree(git, sorted_raw(asets)))
    return raw_tree(git, sorted_raw(r))


def hostile_branch(git: pygit2.Repository, tree: bytes, branch: str, parent: str) -> str:
    """Commit ``tree`` (made by hand: never trusted here) as branch ``branch``."""
    sig = pygit2.Signature("Mallory", "m@example.org")
    sha = git.create_commit(
        HEADS + branch, sig, sig, "hostile", pygit2.Oid(raw=tree), [pygit2.Oid(hex=parent)]
    )
    return str(sha)


# --------------------------------------------------------------------------
# 1. lazy fetches are bounded by the records
# --------------------------------------------------------------------------
def _new_repo(path: Path) -> Repository:
    path.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


@pytest.fixture
def lazy(tmp_path: Path):
    """Alice pushed 8x8 uint8 ``images`` and int64 ``labels`` (keys 0..9) to a
    bare repository and a local-directory data remote; Bob cloned the records
    only. Returns ``(bob, data remote folder, images)``."""
    alice = _new_repo(tmp_path / "alice")
    alice.init(user_name="Alice", user_email="alice@example.org")
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 256, (8, 8), dtype=np.uint8) for i in range(10)}
    co = alice.checkout(write=True)
    co.arraysets.init_arrayset("images", shape=(8, 8), dtype=np.uint8).update(images)
    co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64).update(
        {i: np.array([i], np.int64) for i in range(10)}
    )
    co.commit("data")
    co.close()
    bare, data = tmp_path / "origin.git", tmp_path / "data"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    alice.remote.add("origin", str(bare), data=str(data))
    alice.remote.push("origin", "master")
    bob = _new_repo(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=str(data))
    return bob, data, images


def _drop_packs(data: Path) -> None:
    for p in (data / "packs").iterdir():
        p.unlink()


def _upload(data: Path, payloads: list[tuple[bytes, str, bytes]]) -> None:
    """A pack of ``(digest, kind, raw bytes)`` payloads on the data remote."""
    remote = dt.DataRemote(str(data))
    remote.refresh()
    builder = dt.PackBuilder()
    for d, kind, raw in payloads:
        builder.add(d, kind, raw)
    remote.upload(builder.seal())


def _store_files(repo: Repository) -> dict[str, int]:
    root = repo._store.root
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.stat().st_size and not p.name.endswith(("-wal", "-shm", ".lock"))
    }


READS = {
    "getitem": lambda aset: aset[3],
    "get": lambda aset: aset.get(3),
    "get_batch": lambda aset: aset.get_batch([3]),
    "region": lambda aset: aset[3, 0:2],
    "values": lambda aset: list(aset.values()),
    "items": lambda aset: dict(aset.items()),
}


def test_lazy_fetch_refuses_an_oversized_pack_entry_unread(lazy):
    """The remote's only pack lists images[3]'s digest as a 64 MiB payload (a
    well-formed block of zeros, a few hundred bytes on disk): the schema allows
    64 bytes, so the block is never read nor inflated."""
    bob, data, images = lazy
    _drop_packs(data)
    _upload(data, [(array_digest(images[3]), "|u1|8192,8192", bytes(64 * MiB))])
    before = _store_files(bob)
    co = bob.checkout(fetch_missing=True)
    try:
        images = co.arraysets["images"]
        tracemalloc.start()
        try:
            with pytest.raises(IntegrityError, match="larger than the 64 bytes"):
                images[3]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 * MiB, peak
        assert images.remote_reference_sample_keys == list(range(10))
    finally:
        co.close()
    assert _store_files(bob) == before


@pytest.mark.parametrize("read", sorted(READS))
def test_lazy_fetch_refuses_an_oversized_large_object_unread(lazy, read):
    """The remote holds the other images in a pack, and for images[3]'s digest
    a large-payload object listed at 64 MiB (sparse: no disk used): it is
    refused on its listed size, not a byte of it copied, by every read form."""
    bob, data, images = lazy
    _drop_packs(data)
    _upload(data, [(array_digest(a), "|u1|8,8", a.tobytes()) for i, a in images.items() if i != 3])
    d = array_digest(images[3])
    with open(data / "packs" / f"{d.hex()}{chunked.SUFFIX}", "wb") as fh:
        fh.truncate(64 * MiB)
    before = _store_files(bob)
    co = bob.checkout(fetch_missing=True)
    try:
        aset = co.arraysets["images"]
        with pytest.raises(IntegrityError, match="larger than the 64 bytes"):
            READS[read](aset)
        assert co.payloads.fetcher.remote.bytes_received < MiB
        assert 3 in aset.remote_reference_sample_keys
        if read not in ("values", "items"):  # those fetched the other images first
            assert _store_files(bob) == before
    finally:
        co.close()
    tmp = bob._store.large_dir / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())


def test_lazy_fetch_bound_is_the_arrayset_of_the_sample(lazy, monkeypatch):
    """labels are 8 bytes a sample: an entry of 64 bytes (the size of an image,
    another arrayset of the same commit) for a label's digest is refused
    unread too: not a byte of its block is read."""
    bob, data, _ = lazy
    _drop_packs(data)
    _upload(data, [(array_digest(np.array([5], np.int64)), "|u1|8,8", bytes(64))])
    ranges: list[object] = []
    real = dt.DataRemote.read_ranges

    def spy(self, wanted):
        ranges.extend(wanted)
        return real(self, wanted)

    monkeypatch.setattr(dt.DataRemote, "read_ranges", spy)
    co = bob.checkout(fetch_missing=True)
    try:
        with pytest.raises(IntegrityError, match="larger than the 8 bytes"):
            co.arraysets["labels"][5]
    finally:
        co.close()
    assert ranges == []  # the block holding it was never read


# --------------------------------------------------------------------------
# 2. partial reads of chunked payloads check the payload's kind
# --------------------------------------------------------------------------
@pytest.fixture
def chunked_records(repo):
    """master: ``big`` float32 (512, 512) (1 MiB: a chunked payload), ``other``
    int16 (512, 1024) (1 MiB too), ``nums`` int64 (2,); branch ``evil``
    (made by hand) where other[0] and nums[1] point at big[0]'s payload and
    big[1] at big[0]'s (of the right kind)."""
    co = repo.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=(512, 512), dtype=np.float32)
    other = co.arraysets.init_arrayset("other", shape=(512, 1024), dtype=np.int16)
    nums = co.arraysets.init_arrayset("nums", shape=(2,), dtype=np.int64)
    big[0] = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)
    big[1] = np.ones((512, 512), np.float32)
    other[0] = np.zeros((512, 1024), np.int16)
    nums[0] = np.array([1, 2], np.int64)
    nums[1] = np.array([3, 4], np.int64)
    co.commit("chunked")
    co.close()
    git = repo._git_repo()
    root = root_of(git, "master")
    target = entries(git, samples_of(git, root, "big"))[b"i:0"][1]
    tree = root
    for aset, key in (("other", b"i:0"), ("nums", b"i:1"), ("big", b"i:1")):
        leaf = entries(git, samples_of(git, tree, aset))
        leaf[key] = (MODE_LINK, target)
        tree = with_samples(git, tree, aset, raw_tree(git, sorted_raw(leaf)))
    hostile_branch(git, tree, "evil", head(git))
    return repo


def _spy_check_kind(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = validate.check_kind

    def spy(schema, dtype, shape, aset, enc):
        calls.append(f"{aset}[{enc}]")
        return real(schema, dtype, shape, aset, enc)

    monkeypatch.setattr(validate, "check_kind", spy)
    return calls


@pytest.mark.parametrize(
    "aset,index",
    [
        ("other", (slice(0, 4),)),
        ("other", (0, 0)),
        ("other", (Ellipsis, slice(None, None, -7))),
        ("nums", (slice(0, 1),)),
        ("nums", (0,)),
    ],
)
def test_region_read_of_foreign_records_checks_the_payload_kind(
    chunked_records, monkeypatch, aset, index
):
    """A record pointing at the chunked payload of another kind of sample is
    refused by a partial read, before any chunk is read, as by a whole read."""
    calls = _spy_check_kind(monkeypatch)
    co = chunked_records.checkout(branch="evil")
    try:
        key = 0 if aset == "other" else 1
        with pytest.raises(CorruptRecordError, match="does not allow"):
            co.arraysets[aset][(key, *index)]
        with pytest.raises(CorruptRecordError, match="does not allow"):
            co.arraysets[aset][key]
        assert calls[:1] == [f"{aset}[i:{key}]"]
    finally:
        co.close()


def test_region_read_of_foreign_records_checks_once_and_reads(chunked_records, monkeypatch):
    """A sound record of such a tree (big[1] at big[0]'s payload: the right
    kind) reads its region; the kind is checked once per read."""
    calls = _spy_check_kind(monkeypatch)
    want = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)
    co = chunked_records.checkout(branch="evil")
    try:
        big = co.arraysets["big"]
        np.testing.assert_array_equal(big[1, 3:9, ::-5], want[3:9, ::-5])
        assert calls == ["big[i:1]"]
        assert big[1, 7, 11] == want[7, 11]
        assert calls == ["big[i:1]", "big[i:1]"]
    finally:
        co.close()


def test_region_read_of_records_built_here_skips_the_check(chunked_records, monkeypatch):
    calls = _spy_check_kind(monkeypatch)
    co = chunked_records.checkout()
    try:
        big = co.arraysets["big"]
        assert big[0, 2, 3] == 2 * 512 + 3
        np.testing.assert_array_equal(big[1, 0:2, 0:2], np.ones((2, 2), np.float32))
    finally:
        co.close()
    assert calls == []


# --------------------------------------------------------------------------
# 3. len() checks what keys() checks
# --------------------------------------------------------------------------
N_FANNED = 1100  # more than a flat leaf holds: a fanned-out samples tree


@pytest.fixture
def fanned(repo):
    """master: arrayset ``big`` of 1100 uint8 (1,) samples (fanned out)."""
    co = repo.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=(1,), dtype=np.uint8)
    big.update({i: np.array([i % 256], np.uint8) for i in range(N_FANNED)})
    co.commit("fanned out")
    co.close()
    return repo


def _hostile_leaf(git: pygit2.Repository, case: str) -> bytes:
    """master's ``big`` samples tree with one leaf made hostile by ``case``."""
    samples = samples_of(git, root_of(git, "master"), "big")
    top = entries(git, samples)
    name, (mode, leaf_oid) = sorted(top.items())[0]
    leaf = entries(git, leaf_oid)
    digest = next(iter(leaf.values()))[1]
    if case == "misplaced":  # a key another leaf's hash names
        other = next(k for n, (_, o) in top.items() if n != name for k in entries(git, o))
        leaf[other] = (MODE_LINK, digest)
        raw = sorted_raw(leaf)
    elif case == "unsorted":
        raw = sorted_raw(leaf)[::-1]
    else:
        bad = {
            "alias": (MODE_LINK, b"i:007"),
            "space": (MODE_LINK, b"i: 7"),
            "dotdot": (MODE_LINK, b".."),
            "blob_mode": (MODE_BLOB, b"i:99999"),
        }[case]
        leaf[bad[1]] = (bad[0], digest)
        raw = sorted_raw(leaf)
    top[name] = (mode, raw_tree(git, raw))
    return raw_tree(git, sorted_raw(top))


HOSTILE_LEAVES = ["alias", "blob_mode", "dotdot", "misplaced", "space", "unsorted"]


@pytest.mark.parametrize("case", HOSTILE_LEAVES)
def test_len_of_foreign_records_checks_names_as_keys_does(fanned, case):
    repo = fanned
    git = repo._git_repo()
    samples = _hostile_leaf(git, case)
    hostile_branch(
        git, with_samples(git, root_of(git, "master"), "big", samples), "evil", head(git)
    )
    snapshot.clear_leaf_cache()
    co = repo.checkout(branch="evil")
    try:
        with pytest.raises(CorruptRecordError):
            len(co.arraysets["big"])
        with pytest.raises(CorruptRecordError):
            list(co.arraysets["big"].keys())
    finally:
        co.close()
    assert counts.known_count(git, samples) is None


def test_len_of_foreign_records_ignores_an_unchecked_count(fanned):
    """A count remembered for the samples tree without its records checked
    (the commit that built it on an unchecked base, or an older version)
    does not stand in for the check."""
    repo = fanned
    git = repo._git_repo()
    samples = _hostile_leaf(git, "alias")
    hostile_branch(
        git, with_samples(git, root_of(git, "master"), "big", samples), "evil", head(git)
    )
    counts.remember_count(git, samples, N_FANNED + 1)
    co = repo.checkout(branch="evil")
    try:
        with pytest.raises(CorruptRecordError):
            len(co.arraysets["big"])
    finally:
        co.close()


def _spy_leaf_checks(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = validate.leaf_count

    def spy(raw, fanout=(), path=()):
        calls.append(1)
        return real(raw, fanout, path)

    monkeypatch.setattr(validate, "leaf_count", spy)
    return calls


def test_len_of_sound_foreign_records_is_checked_once(fanned, monkeypatch):
    """A sound tree made elsewhere (here: master's records committed by hand,
    so not trusted) is counted with its leaves checked the first time, then
    from the checked count."""
    repo = fanned
    git = repo._git_repo()
    samples = samples_of(git, root_of(git, "master"), "big")
    top = entries(git, samples)
    # master's records plus a metadata entry: a root tree never trusted here,
    # holding master's samples tree (whose count the commit kept, unchecked)
    root = entries(git, root_of(git, "master"))
    note = git.odb.write(ObjectType.BLOB, b"x").raw
    root[b"metadata"] = (MODE_TREE, raw_tree(git, [(MODE_BLOB, b"s:note", note)]))
    hostile_branch(git, raw_tree(git, sorted_raw(root)), "other", head(git))
    assert counts.known_count(git, samples) == N_FANNED
    calls = _spy_leaf_checks(monkeypatch)
    snapshot.clear_leaf_cache()
    co = repo.checkout(branch="other")
    try:
        assert len(co.arraysets["big"]) == N_FANNED
    finally:
        co.close()
    assert len(calls) == len(top)
    assert counts.known_count(git, samples, checked=True) == N_FANNED
    calls.clear()
    snapshot.clear_leaf_cache()
    co = repo.checkout(branch="other")
    try:
        assert len(co.arraysets["big"]) == N_FANNED
        assert sorted(co.arraysets["big"].keys()) == list(range(N_FANNED))
    finally:
        co.close()
    assert calls == []


def test_len_of_records_built_here_checks_nothing(fanned, monkeypatch):
    repo = fanned
    git = repo._git_repo()
    calls = _spy_leaf_checks(monkeypatch)
    placed: list[int] = []
    real = validate.check_placement
    monkeypatch.setattr(validate, "check_placement", lambda *a: placed.append(1) or real(*a))
    counts.TABLE.forget()
    counts.counts_path(git).unlink()  # counted afresh: libgit2's count, no checks
    snapshot.clear_leaf_cache()
    co = repo.checkout()
    try:
        assert len(co.arraysets["big"]) == N_FANNED
    finally:
        co.close()
    assert calls == [] and placed == []
    assert counts.known_count(git, samples_of(git, root_of(git, "master"), "big")) == N_FANNED


# --------------------------------------------------------------------------
# 4. len() and whole-tree checks share their verdict on a samples tree
# --------------------------------------------------------------------------
def _foreign_roots(repo: Repository) -> tuple[bytes, bytes, bytes, bytes]:
    """Two root trees made by hand (never trusted here): A, master's records
    plus a metadata entry, and B, A plus sample 5000 in ``big``. Returns
    ``(A, B, A's big samples tree, B's)``."""
    git = repo._git_repo()
    root = entries(git, root_of(git, "master"))
    note = git.odb.write(ObjectType.BLOB, b"x").raw
    root[b"metadata"] = (MODE_TREE, raw_tree(git, [(MODE_BLOB, b"s:note", note)]))
    a = raw_tree(git, sorted_raw(root))
    samples = samples_of(git, a, "big")
    top = entries(git, samples)
    name = f"{zlib.crc32(b'i:5000') >> 24:02x}".encode()
    leaf = entries(git, top[name][1])
    leaf[b"i:5000"] = next(iter(leaf.values()))
    top[name] = (MODE_TREE, raw_tree(git, sorted_raw(leaf)))
    b = with_samples(git, a, "big", raw_tree(git, sorted_raw(top)))
    hostile_branch(git, a, "a", head(git))
    hostile_branch(git, b, "b", head(git, "a"))
    return a, b, samples, samples_of(git, b, "big")


def test_whole_tree_check_skips_a_samples_tree_len_checked(fanned, monkeypatch):
    """A fresh clone read (``len``), then diffed: the diff's check of the
    records does not check the samples tree ``len`` checked again."""
    repo = fanned
    git = repo._git_repo()
    a, _b, samples, _ = _foreign_roots(repo)
    snapshot.clear_leaf_cache()
    co = repo.checkout(branch="a")
    try:
        assert len(co.arraysets["big"]) == N_FANNED
    finally:
        co.close()
    assert counts.known_count(git, samples, checked=True) == N_FANNED
    calls = _spy_leaf_checks(monkeypatch)
    validate.ensure_trusted(git, [a])
    assert calls == []


def test_len_after_a_whole_tree_check_reads_no_leaf(fanned, monkeypatch):
    """Diffed first (the records checked whole), then read: ``len`` takes the
    count the check kept. A tree checked relative to a trusted one (only its
    changed leaves) gets no count from that partial check."""
    repo = fanned
    git = repo._git_repo()
    a, b, sa, sb = _foreign_roots(repo)
    validate.ensure_trusted(git, [a, b])  # A whole, then B relative to A
    assert counts.known_count(git, sa, checked=True) == N_FANNED
    assert counts.known_count(git, sb, checked=True) is None
    calls = _spy_leaf_checks(monkeypatch)
    snapshot.clear_leaf_cache()
    for branch, n in (("a", N_FANNED), ("b", N_FANNED + 1)):
        co = repo.checkout(branch=branch)
        try:
            assert len(co.arraysets["big"]) == n
        finally:
            co.close()
    assert calls == []


def test_failed_check_keeps_no_count(fanned):
    repo = fanned
    git = repo._git_repo()
    samples = _hostile_leaf(git, "alias")
    root = with_samples(git, root_of(git, "master"), "big", samples)
    with pytest.raises(CorruptRecordError):
        validate.ensure_trusted(git, [root])
    assert counts.known_count(git, samples) is None
