"""Row tables: the key-by-key reads of a read checkout, once spread over an
arrayset (or inside ``with aset:``), copy each sample from the arrayset
decoded once. They must return what the records say (never a stale table
after writes, commits or on another branch), fresh arrays the user may
change, and the same errors as before for damaged or hostile data."""

from __future__ import annotations

import numpy as np
import pytest
from raw_records import entries, head, raw_tree, sorted_raw
from test_hostile_reads import hostile_branch, root_of, samples_of, with_samples

from hangar_git import payloads
from hangar_git.errors import ClosedError, CorruptRecordError, IntegrityError
from hangar_git.records.layout import MODE_LINK
from hangar_git.records.snapshot import SampleRecords


def _rows(n: int, add: int = 0) -> np.ndarray:
    return np.arange(3 * n, dtype=np.int64).reshape(n, 3) + add


def _commit(repo, n: int = 300, branch: str = "master", add: int = 0) -> None:
    """Arrayset ``a``: int keys 0..n-1 -> rows of :func:`_rows`; ``s``: str keys."""
    co = repo.checkout(write=True, branch=branch)
    if "a" in co.arraysets:
        a, s = co.arraysets["a"], co.arraysets["s"]
    else:
        a = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.int64)
        s = co.arraysets.init_arrayset("s", shape=(2,), dtype=np.float32)
    a.add_stacked(_rows(n, add), list(range(n)))
    with s:
        for i in range(20):
            s[f"k{i}"] = np.full(2, i + add, np.float32)
    co.commit(f"n={n} add={add}")
    co.close()


def test_with_block_builds_the_table_and_hands_out_fresh_arrays(repo):
    _commit(repo)
    rc = repo.checkout()
    a, s = rc.arraysets["a"], rc.arraysets["s"]
    with a, s:
        assert len(rc.payloads.rows["a"]) == 300 and len(rc.payloads.rows["s"]) == 20
        x = a[5]
        assert x.tolist() == [15, 16, 17] and x.flags.writeable
        x[:] = -1  # the user's copy: the table is untouched
        y = a.get(5)
        assert y.tolist() == [15, 16, 17] and not np.shares_memory(x, y)
        assert a[5, 1:].tolist() == [16, 17]
        assert s["k7"].tolist() == [7.0, 7.0]
        with pytest.raises(KeyError):
            a[300]
        for past in (2**63, 2**64, 2**70):  # no row of the stacked table
            with pytest.raises(KeyError):
                a[past]
        with pytest.raises(KeyError):
            s["nope"]
    rc.close()
    with pytest.raises(ClosedError):
        a[5]


def test_spread_reads_build_the_table(repo):
    n = 3000  # 256 leaves
    _commit(repo, n)
    rc = repo.checkout()
    a = rc.arraysets["a"]
    want = _rows(n)
    for k in range(0, n, 7):
        assert (a[k] == want[k]).all()
    assert len(rc.payloads.rows["a"]) == n
    for k in range(n):
        assert (a[k] == want[k]).all()
    rc.close()


def test_three_spread_reads_of_records_cached_here_build_the_table(repo, monkeypatch):
    """A commit keeps its new tree's key table on this machine: a loop of
    reads of an arrayset too large to build its table at its first read
    builds it at its third read (each in a leaf of its own); reads of one
    key again and again, or fewer reads, build none."""
    n = 3000  # 256 leaves
    monkeypatch.setattr(payloads, "FIRST_ROWS_BYTES", n * 24 - 1)  # one row short
    _commit(repo, n)
    want = _rows(n)
    rc = repo.checkout()
    a = rc.arraysets["a"]
    for _ in range(5):
        assert (a[7] == want[7]).all()  # one leaf only
    assert (a[8] == want[8]).all()
    assert "a" not in rc.payloads.rows
    rc.close()
    rc = repo.checkout()
    a = rc.arraysets["a"]
    for k in range(3):
        assert (a[k] == want[k]).all()
    assert len(rc.payloads.rows["a"]) == n
    assert all((a[k] == want[k]).all() for k in range(n))
    rc.close()


def test_the_first_read_of_records_cached_here_builds_a_small_table(repo, monkeypatch):
    """An arrayset whose key table is cached on this machine and whose
    payloads fit :data:`payloads.FIRST_ROWS_BYTES` gets its table at its first
    int-key read, with no leaf of its records parsed; the arrays it hands
    out are fresh and right, and absent keys are still KeyError."""
    n = 3000  # 256 leaves
    monkeypatch.setattr(payloads, "FIRST_ROWS_BYTES", n * 24)  # just fits
    _commit(repo, n)
    want = _rows(n)
    rc = repo.checkout()
    a = rc.arraysets["a"]
    x = a[1234]
    assert x.tolist() == want[1234].tolist() and x.flags.writeable
    assert len(rc.payloads.rows["a"]) == n
    assert rc.view.base_samples("a").leaves_parsed() == 0  # no leaf parsed for it
    x[:] = -1  # the user's copy: the table is untouched
    y = a[1234]
    assert y.tolist() == want[1234].tolist() and not np.shares_memory(x, y)
    with pytest.raises(KeyError):
        a[n]
    assert all((a[k] == want[k]).all() for k in range(0, n, 11))
    rc.close()


def test_the_first_read_builds_no_table_when_not_cached_or_too_large(repo, monkeypatch):
    """Records not cached on this machine (no key table: its leaves would be
    parsed), payloads past :data:`payloads.FIRST_ROWS_BYTES` or samples past
    :data:`payloads.FIRST_ROWS_COUNT` get no table at the first read, nor at
    the second."""
    n = 3000
    _commit(repo, n)
    want = _rows(n)
    monkeypatch.setattr(payloads, "FIRST_ROWS_BYTES", n * 24 - 1)  # one row short
    rc = repo.checkout()
    a = rc.arraysets["a"]
    assert a[5].tolist() == want[5].tolist() and a[2999].tolist() == want[2999].tolist()
    assert "a" not in rc.payloads.rows
    rc.close()
    monkeypatch.setattr(payloads, "FIRST_ROWS_BYTES", n * 24)
    monkeypatch.setattr(payloads, "FIRST_ROWS_COUNT", n - 1)  # one sample short
    rc = repo.checkout()
    a = rc.arraysets["a"]
    assert a[5].tolist() == want[5].tolist() and a[2999].tolist() == want[2999].tolist()
    assert "a" not in rc.payloads.rows
    rc.close()
    monkeypatch.setattr(payloads, "FIRST_ROWS_COUNT", n)
    monkeypatch.setattr(SampleRecords, "has_cached_table", lambda self: False)  # no cache
    rc = repo.checkout()
    a = rc.arraysets["a"]
    assert a[5].tolist() == want[5].tolist() and a[2999].tolist() == want[2999].tolist()
    assert "a" not in rc.payloads.rows
    rc.close()


@pytest.mark.parametrize("first", [True, False])
def test_0d_samples_read_from_the_table_are_0d_arrays(repo, monkeypatch, first):
    """Samples of shape () come out of a row table as fresh 0-d arrays, as
    every other read gives them (not numpy scalars), whether the table is
    built at the first read or after spread reads."""
    if not first:
        monkeypatch.setattr(payloads, "FIRST_ROWS_COUNT", 0)
    n = 3000
    co = repo.checkout(write=True)
    z = co.arraysets.init_arrayset("z", prototype=np.array(0.5))
    z.add_stacked(np.arange(n) + 0.5, list(range(n)))
    co.commit("scalars")
    co.close()
    rc = repo.checkout()
    z = rc.arraysets["z"]
    got = [z[k] for k in (0, 1500, 2999, 700, 5)]
    assert "z" in rc.payloads.rows
    assert all(type(v) is np.ndarray and v.shape == () for v in got)
    assert [float(v) for v in got] == [0.5, 1500.5, 2999.5, 700.5, 5.5]
    assert type(z.get(3)) is np.ndarray and type(z[3, ...]) is np.ndarray
    got[0][()] = -1.0  # the caller's own
    assert float(z[0]) == 0.5
    rc.close()


def test_write_checkout_reads_its_own_writes_without_a_table(repo):
    _commit(repo)
    co = repo.checkout(write=True)
    a = co.arraysets["a"]
    for k in range(300):  # spread reads: the read checkout would build a table
        a[k]
    a[5] = np.array([7, 7, 7], np.int64)
    assert a[5].tolist() == [7, 7, 7]
    with a:
        a[6] = np.array([8, 8, 8], np.int64)
        assert a[6].tolist() == [8, 8, 8]
    assert co.payloads.row_table("a") is None  # its records change
    assert co.payloads.rows == {}
    co.commit("changed")
    assert a[5].tolist() == [7, 7, 7] and a[6].tolist() == [8, 8, 8]
    del a[6]
    with pytest.raises(KeyError):
        a[6]
    co.commit("removed")
    co.close()
    rc = repo.checkout()
    with rc.arraysets["a"] as ra:
        assert "a" in rc.payloads.rows
        assert ra[5].tolist() == [7, 7, 7] and ra[7].tolist() == [21, 22, 23]
        with pytest.raises(KeyError):
            ra[6]
    rc.close()


def test_a_read_checkout_keeps_its_commit_and_branches_their_own(repo):
    _commit(repo)
    old = repo.checkout()
    with old.arraysets["a"]:
        assert old.arraysets["a"][1].tolist() == [3, 4, 5]
    repo.create_branch("dev")
    _commit(repo, branch="dev", add=1000)
    _commit(repo, branch="master", add=2000)
    new, dev = repo.checkout(), repo.checkout(branch="dev")
    for co, add in ((old, 0), (new, 2000), (dev, 1000)):
        a, s = co.arraysets["a"], co.arraysets["s"]
        with a, s:
            assert a[1].tolist() == [3 + add, 4 + add, 5 + add]
            assert s["k3"].tolist() == [3.0 + add] * 2
        assert "a" in co.payloads.rows
        co.close()


def test_over_the_budget_reads_keep_the_block_path(repo, monkeypatch):
    monkeypatch.setattr(payloads, "ROWS_BYTES", 300 * 24 - 1)  # one row short
    _commit(repo)
    rc = repo.checkout()
    a = rc.arraysets["a"]
    with a:
        assert all(a[k].tolist() == [3 * k, 3 * k + 1, 3 * k + 2] for k in range(300))
    assert "a" not in rc.payloads.rows
    with rc.arraysets["s"]:  # the budget is shared: what is left fits `s`
        assert rc.arraysets["s"]["k1"].tolist() == [1.0, 1.0]
    assert "s" in rc.payloads.rows
    rc.close()


def test_a_damaged_block_is_reported_on_read(repo):
    _commit(repo)
    rc = repo.checkout()
    reader = rc.payloads.reader
    _, e = reader.lookup([rc.view.get("a", "i:0")])
    pack, boff, blen = reader.block_row(int(e["block"][0]))
    path = reader.pack_path(pack)
    data = bytearray(path.read_bytes())
    data[boff + blen // 2] ^= 0xFF  # inside the block of a's samples
    path.write_bytes(bytes(data))
    a = rc.arraysets["a"]
    with a, pytest.raises(IntegrityError, match="damaged"):
        for k in range(300):
            a[k]
    assert "a" not in rc.payloads.rows
    rc.close()


def test_foreign_records_of_another_kind_are_refused_on_read(repo):
    """In a tree made elsewhere, a[1] points at a payload of ``s`` (float32
    (2,)): its read is refused as before, the other samples read."""
    _commit(repo)
    git = repo._git_repo()
    root = root_of(git, "master")
    target = entries(git, samples_of(git, root, "s"))[b"s:k0"][1]
    leaf = entries(git, samples_of(git, root, "a"))
    leaf[b"i:1"] = (MODE_LINK, target)
    tree = with_samples(git, root, "a", raw_tree(git, sorted_raw(leaf)))
    hostile_branch(git, tree, "evil", head(git))
    rc = repo.checkout(branch="evil")
    a = rc.arraysets["a"]
    with a:
        assert a[2].tolist() == [6, 7, 8]
        with pytest.raises(CorruptRecordError, match="does not allow"):
            a[1]
    assert "a" not in rc.payloads.rows
    rc.close()


@pytest.mark.parametrize("strs", [0, 1, 5])
def test_int_and_str_keys_stay_distinct(repo, strs):
    """``1`` and ``'1'`` are different samples; the int keys' fast path sees
    only int keys, whatever the str keys around them."""
    co = repo.checkout(write=True)
    m = co.arraysets.init_arrayset("m", shape=(1,), dtype=np.int64)
    m.add_stacked(np.arange(10, dtype=np.int64).reshape(10, 1), list(range(10)))
    with m:
        for i in range(strs):
            m[str(i)] = np.array([100 + i], np.int64)
    co.commit("mixed")
    co.close()
    rc = repo.checkout()
    m = rc.arraysets["m"]
    with m:
        rows = rc.payloads.int_rows["m"]  # a list by key when the keys are 0 .. n-1
        assert list(range(len(rows)) if isinstance(rows, list) else sorted(rows)) == list(range(10))
        assert [m[i].item() for i in range(10)] == list(range(10))
        assert [m[str(i)].item() for i in range(strs)] == [100 + i for i in range(strs)]
        with pytest.raises(KeyError):
            m[10]
        with pytest.raises(KeyError):
            m[str(strs)]
    rc.close()


@pytest.mark.parametrize("strs", [0, 3])
def test_read_into_a_range_of_int_keys(repo, strs):
    """``read_into(range(...))`` (its own fast path of key encoding) reads int
    keys beside str keys, in a read checkout with or without its row table,
    names the first missing key, and reads a write checkout's staged samples."""
    co = repo.checkout(write=True)
    m = co.arraysets.init_arrayset("m", shape=(2,), dtype=np.int64)
    m.add_stacked(np.arange(80, dtype=np.int64).reshape(40, 2), list(range(40)))
    with m:
        for i in range(strs):
            m[str(i)] = np.array([-i, -i], np.int64)
    out = np.empty((40, 2), np.int64)
    assert (m.read_into(range(40), out) == np.arange(80).reshape(40, 2)).all()
    co.commit("m")
    m[3] = np.array([7, 7], np.int64)  # staged over the commit
    assert m.read_into(range(2, 5), np.empty((3, 2), np.int64)).tolist() == [[4, 5], [7, 7], [8, 9]]
    co.close()
    rc = repo.checkout()
    m = rc.arraysets["m"]
    if strs:
        with m:  # the row table does not change what read_into reads
            assert "m" in rc.payloads.rows
    evens = m.read_into(range(0, 40, 2), np.empty((20, 2), np.int64))
    assert (evens[:, 0] == np.arange(0, 80, 4)).all()
    with pytest.raises(KeyError) as exc:
        m.read_into(range(35, 45), np.empty((10, 2), np.int64))
    assert exc.value.args == (40,)
    rc.close()
