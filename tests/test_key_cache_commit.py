"""The key table a commit keeps for the samples tree it builds.

A commit that writes an arrayset's samples tree whole (its first commit, or
a change of fan-out) has every key and digest in hand, so it keeps the
tree's key table (:mod:`hangar_git.records.key_cache`) and the first read
after it parses no leaf. The file is the one that read would have written;
a commit that changes a few samples of a large arrayset writes none (a new
table would cost time in proportion to the arrayset); a failure to write it
never fails the commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hangar_git.records import key_cache, snapshot

N = 3000  # 256 fan-out leaves


def _keys(kind: str, n: int = N) -> list:
    return {
        "ints": list(range(n)),
        "strs": [f"k{i}" for i in range(n)],
        "mixed": [i if i % 3 else f"k{i}" for i in range(n)],
        "sparse": list(range(0, 3 * n, 3)),
        "wide": [10**17 + 7 * i for i in range(n)],  # 18 digits
        # past 18 digits, past int64 (a table of names then)
        "19 digits": [*range(n - 3), 10**18, 2**63 - 1, 10**19 - 1],
        "huge": [*range(n - 1), 10**30],
    }[kind]


def _write(repo, changes: dict, removed: list = (), name: str = "a") -> None:
    """Commit ``changes`` ({key: row}) and ``removed`` keys to arrayset ``name``."""
    co = repo.checkout(write=True)
    if name not in co.arraysets:
        co.arraysets.init_arrayset(name, shape=(3,), dtype=np.int64)
    aset = co.arraysets[name]
    if changes:
        aset.add_stacked(np.stack(list(changes.values())), list(changes))
    for k in removed:
        del aset[k]
    co.commit(f"{len(changes)} changes, {len(removed)} removed")
    co.close()


def _rows(keys: list, start: int = 0) -> dict:
    return {k: np.full(3, start + i, np.int64) for i, k in enumerate(keys)}


def _samples(repo, name: str = "a") -> snapshot.SampleRecords:
    """The records of ``name`` as a fresh process sees them (nothing parsed)."""
    snapshot.clear_leaf_cache()
    rc = repo.checkout()
    s = rc.view.base_samples(name)
    rc.close()
    return s


def _as_a_read_writes_it(repo, how: str, name: str = "a") -> bytes:
    """Remove the table of ``name``'s tree, read the tree whole (which writes
    it anew from the leaves), and return the file."""
    s = _samples(repo, name)
    path = key_cache.cache_path(s.repo, s.oid)
    path.unlink(missing_ok=True)
    if how == "key_table":
        s.key_table()
    else:
        s.flat()
    return path.read_bytes()


@pytest.mark.parametrize("how", ["key_table", "flat"])
@pytest.mark.parametrize("kind", ["ints", "strs", "mixed", "sparse", "wide", "19 digits", "huge"])
def test_a_first_commit_keeps_the_table_a_read_would_write(repo, monkeypatch, kind, how):
    keys = _keys(kind)
    _write(repo, _rows(keys))
    s = _samples(repo)
    kept = key_cache.cache_path(s.repo, s.oid).read_bytes()
    # the first read after the commit parses no leaf
    seen: list[bytes] = []
    real = snapshot.read_tree
    monkeypatch.setattr(snapshot, "read_tree", lambda *a: seen.append(a[1]) or real(*a))
    assert s.has_cached_table()
    table = s.key_table()
    assert seen == []
    assert list(zip(table.keys(), table.digest_list(), strict=True)) == list(_samples(repo).items())
    monkeypatch.undo()
    assert _as_a_read_writes_it(repo, how) == kept


def test_a_change_of_fan_out_keeps_the_table_of_the_new_tree(repo):
    """Growing past a fan-out bound writes the whole tree again: its table too
    (the flat tree before it has none: a flat tree is one leaf)."""
    _write(repo, _rows(_keys("mixed", 1000)))
    s = _samples(repo)
    assert not s.fanout and not key_cache.cache_path(s.repo, s.oid).exists()
    _write(repo, _rows([f"n{i}" for i in range(100)], 5000), removed=[1, "k3"])
    s = _samples(repo)
    assert s.fanout and len(s.flat()) == 1098
    kept = key_cache.cache_path(s.repo, s.oid).read_bytes()
    assert _as_a_read_writes_it(repo, "key_table") == kept


@pytest.mark.parametrize("kind", ["ints", "strs"])
def test_a_commit_of_a_few_changes_leaves_the_tables_right(repo, kind):
    """A few changes on a large arrayset write no new table at the commit (it
    would cost time in proportion to the arrayset); the parent's stays as it
    was, and the first read of the new tree writes its table, which then
    holds the records."""
    keys = _keys(kind)
    _write(repo, _rows(keys))
    parent = _samples(repo)
    parent_path = key_cache.cache_path(parent.repo, parent.oid)
    parent_file = parent_path.read_bytes()
    changes = {keys[5]: np.full(3, -5), keys[7]: np.full(3, -7), "new": np.zeros(3, np.int64)}
    _write(repo, changes, removed=[keys[9]])
    s = _samples(repo)
    path = key_cache.cache_path(s.repo, s.oid)
    assert not path.exists()
    table = s.key_table()
    assert path.exists() and parent_path.read_bytes() == parent_file
    assert table.to_dict() == dict(_samples(repo).items())
    assert len(table) == N
    loaded = key_cache.load(s.repo, s.oid, N)
    assert loaded is not None and loaded.to_dict() == table.to_dict()
    assert _as_a_read_writes_it(repo, "flat") == path.read_bytes()


def test_a_table_that_cannot_be_written_does_not_fail_the_commit(repo, monkeypatch):
    """A full disk or a read-only folder at the commit: the commit is made,
    no file (nor a temporary one) is left, reads return the records."""
    keys = _keys("ints")

    real = key_cache.os.replace

    def refuse(src, dst):  # the keys folder only (key_cache.os is the os module)
        if Path(dst).parent.name == "keys":
            raise PermissionError("read-only")
        real(src, dst)

    monkeypatch.setattr(key_cache.os, "replace", refuse)
    _write(repo, _rows(keys))
    monkeypatch.undo()
    s = _samples(repo)
    assert list(key_cache.cache_path(s.repo, s.oid).parent.iterdir()) == []
    rc = repo.checkout()
    out = np.stack(rc.arraysets["a"].get_batch(keys))
    rc.close()
    np.testing.assert_array_equal(out[:, 0], np.arange(N))
