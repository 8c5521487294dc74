"""The digests commits reference, as arrays (:func:`reachable.referenced`):
every leaf of a samples tree checked in one pass (:func:`reachable.tree_digests`)
with the same verdict as leaf by leaf, a whole tree taken from this machine's
key table, and repeats kept once, where they first come."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git.errors import CorruptRecordError
from hangar_git.records import reachable, snapshot, validate
from hangar_git.records.layout import serialize_links
from hangar_git.records.reachable import Referenced, first_occurrences, tree_digests


def _digest(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=20).digest()


def _leaves(n: int = 200) -> tuple[list[bytes], list[tuple[str, ...]]]:
    """``n`` int keys in the 16 leaves of a one-digit fan-out, as their hash places them."""
    by_leaf: dict[str, dict[str, bytes]] = {}
    for i in range(n):
        key = f"i:{i}"
        by_leaf.setdefault(f"{zlib.crc32(key.encode()) >> 28:x}", {})[key] = _digest(i)
    paths = sorted(by_leaf)
    return [serialize_links(dict(sorted(by_leaf[p].items()))) for p in paths], [(p,) for p in paths]


def _leaf_by_leaf(raws: list[bytes], paths: list[tuple[str, ...]]) -> bytes:
    out = []
    for raw, path in zip(raws, paths, strict=True):
        out += validate.leaf_digests(raw, tuple(len(p) for p in path), path)
    return b"".join(out)


def test_one_pass_over_the_leaves_gives_what_leaf_by_leaf_does():
    raws, paths = _leaves()
    want = _leaf_by_leaf(raws, paths)
    assert len(want) == 200 * 20
    assert tree_digests(raws, paths, trusted=False) == want
    assert tree_digests(raws, paths, trusted=True) == want
    flat = serialize_links({f"i:{i}": _digest(i) for i in range(5)})
    assert tree_digests([flat], [()], trusted=False) == b"".join(_digest(i) for i in range(5))


def _names(raw: bytes) -> list[bytes]:
    return validate.parse_link_pairs(raw)[0]


def _swap_first_two(raw: bytes) -> bytes:
    names = validate.parse_link_pairs(raw)[0]
    assert len(names[0]) == len(names[1])
    size = len(names[0]) + 28
    return raw[size : 2 * size] + raw[:size] + raw[2 * size :]


def _cases() -> dict[str, tuple[list[bytes], bool]]:
    """Damaged leaves: ``(raws, refused even when trusted)``."""
    raws, _ = _leaves()
    moved = list(raws)
    moved[0], moved[1] = raws[0][:-7], raws[0][-7:] + raws[1]  # a record across two leaves
    junk = list(raws)
    junk[3] = raws[3] + b"x"
    empty = list(raws)
    empty[2] = b""
    bad_key = list(raws)
    bad_key[4] = raws[4].replace(b"160000 i:", b"160000 i:0", 1)  # i:0N is no canonical key
    swapped = list(raws)
    i = next(
        k
        for k, r in enumerate(raws)
        if len(set(map(len, validate.parse_link_pairs(r)[0][:2]))) == 1
    )
    swapped[i] = _swap_first_two(raws[i])
    misplaced = list(raws)
    misplaced[5], misplaced[6] = raws[6], raws[5]  # every key of two leaves out of place
    return {
        "record across leaves": (moved, True),
        "junk after the records": (junk, True),
        "an empty leaf": (empty, True),
        "a key not canonical": (bad_key, True),
        "keys out of order": (swapped, False),
        "keys in another leaf": (misplaced, False),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_damage_is_never_passed(case):
    """Whatever leaf by leaf refuses, the one pass refuses too (it answers
    None: the caller then reads leaf by leaf, which names the problem)."""
    raws, always = _cases()[case]
    _, paths = _leaves()
    with pytest.raises(CorruptRecordError):
        _leaf_by_leaf(raws, paths)
    assert tree_digests(raws, paths, trusted=False) is None
    if always:
        assert tree_digests(raws, paths, trusted=True) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=120), st.lists(st.integers(0, 2), max_size=120))
def test_first_occurrences_keep_each_digest_where_it_first_comes(ids, owners):
    joined = b"".join(_digest(i) for i in ids)
    want = sorted({d: k for k, d in reversed(list(enumerate(ids)))}.values())
    assert first_occurrences(joined).tolist() == want
    # digests sharing their first 8 bytes are told apart by the rest
    twins = [b"\x01" * 8 + bytes([i % 3]) * 12 for i in ids]
    assert first_occurrences(b"".join(twins)).tolist() == sorted(
        {d: k for k, d in reversed(list(enumerate(twins)))}.values()
    )
    parts = [_digest(i) for i in ids]
    owned = [owners[k % len(owners)] if owners else 0 for k in range(len(ids))]
    got = Referenced.from_parts(parts, owned, ["a", "b", "c"]).to_dict()
    expect: dict[bytes, str] = {}
    for d, o in zip(parts, owned, strict=True):
        expect.setdefault(d, "abc"[o])
    assert list(got.items()) == list(expect.items())


def _mnist_like(repo, n: int = 3000):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("images", shape=(4,), dtype=np.uint8)
    b = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    rng = np.random.default_rng(1)
    a.add_stacked(rng.integers(0, 255, (n, 4), dtype=np.uint8), list(range(n)))
    b.add_stacked(rng.integers(0, 10, (n, 1)).astype(np.int64), list(range(n)))
    sha = co.commit("bulk")
    co.close()
    return sha


def test_a_tree_with_a_key_table_is_not_read_leaf_by_leaf(repo, monkeypatch):
    sha = _mnist_like(repo)
    git = repo.git_repository()
    want = reachable.referenced_digests(git, [sha])
    assert len(want) > 3000  # images, and the few distinct labels
    calls = []
    real = reachable.tree_digests
    monkeypatch.setattr(reachable, "tree_digests", lambda *a: calls.append(1) or real(*a))
    # the bulk commit kept a key table of each tree: no leaf read
    assert reachable.referenced(git, [sha]).to_dict() == want
    assert calls == []
    # strict (gc) believes no table: every leaf read and checked
    assert reachable.referenced_digests(git, [sha], strict=True) == want
    assert len(calls) == 2


def test_a_damaged_key_table_is_not_believed(repo, monkeypatch):
    sha = _mnist_like(repo)
    git = repo.git_repository()
    want = reachable.referenced_digests(git, [sha])
    folder = git.path.rstrip("/") + "/hangar/keys"
    for name in os.listdir(folder):  # a digest flipped: its CRC no longer matches
        path = Path(folder) / name
        data = bytearray(path.read_bytes())
        data[60] ^= 0xFF
        path.write_bytes(bytes(data))
    snapshot.clear_leaf_cache()
    assert reachable.referenced_digests(git, [sha]) == want
