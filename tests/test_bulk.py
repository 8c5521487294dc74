"""The bulk write paths: ``aset.update(mapping)`` and ``aset.add_stacked(stack, keys)``.

What they must do at a few thousand samples: store exactly what the
per-sample form stores (same digests, same record trees), refuse bad input
with a ValueError (TypeError for a non-mapping) before staging anything,
survive a process killed in the middle, and keep commits of small changes
small (only the touched record leaves are rewritten). Also the batch digest
helper, and the remembered sample counts behind ``len(aset)``.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pygit2
import pytest
from forked import run_forked
from pygit2.enums import ObjectType

from hangar_git import Repository
from hangar_git.records import counts as counts_mod
from hangar_git.records import layout, staging
from hangar_git.records.snapshot import SampleRecords, clear_leaf_cache
from hangar_git.store import PackStore, array_digest
from hangar_git.store.digest import stacked_digests

N = 3000


def _journal(repo: Repository) -> bytes:
    return (Path(repo._hdir) / "staging" / "journal").read_bytes()


def _store_state(repo: Repository) -> tuple[int, list[tuple[str, int]]]:
    """(payload index entries, pack files and sizes)."""
    store = Path(repo._hdir) / "store"
    reader = PackStore(store).reader()
    try:
        n = reader.count()
    finally:
        reader.close()
    packs = sorted((p.name, p.stat().st_size) for p in (store / "packs").iterdir())
    return n, packs


def _open(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path)


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(7).random((N, 4), dtype=np.float32)


@pytest.fixture
def writer(repo):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    co.commit("empty arrayset")
    yield co
    co.close()


# --------------------------------------------------------------------------
# batch digests
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stack",
    [
        np.arange(24, dtype=np.float32).reshape(6, 4),
        np.arange(10, dtype=np.int64),  # rows are 0-d arrays
        np.array([[True, False], [False, False], [True, True]]),
        (np.arange(12) + 1j).astype(np.complex64).reshape(3, 2, 2),
        np.random.default_rng(1).integers(0, 255, (5, 70, 70), dtype=np.uint8),  # >= 4 KiB rows
        np.zeros((4, 3), np.int8),  # equal rows
    ],
)
def test_stacked_digests_equal_single_digests(stack):
    got = stacked_digests(stack)
    assert got == [array_digest(np.array(stack[i])) for i in range(len(stack))]


# what a fresh process writing MNIST-like data (images and repeating labels,
# in bulk and key by key in a with block) imports on the way: numpy.ma costs
# 25-40 ms to import (np.unique imports it) and no write needs it
_WRITE_IMPORTS = """
import sys
import numpy as np
from hangar_git import Repository
repo = Repository(sys.argv[1], exists=False)
repo.init(user_name="a", user_email="a@example.com")
co = repo.checkout(write=True)
n = 2000
images = np.random.default_rng(0).integers(0, 255, (n, 28, 28), dtype=np.uint8)
labels = np.random.default_rng(1).integers(0, 10, (n, 1)).astype(np.int64)
a = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
b = co.arraysets.init_arrayset("labels", prototype=labels[0])
if sys.argv[2] == "bulk":
    a.add_stacked(images, list(range(n)))
    b.add_stacked(labels, list(range(n)))
else:
    with a, b:
        for i in range(n):
            a[i] = images[i]
            b[i] = labels[i]
co.commit("mnist")
co.close()
print(sorted(m for m in sys.modules if m == "numpy.ma" or m.startswith("numpy.ma.")))
"""


@pytest.mark.parametrize("how", ["bulk", "keys"])
def test_a_fresh_process_writing_images_and_labels_imports_no_numpy_ma(tmp_path, how):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", _WRITE_IMPORTS, str(repo), how],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split("\n")[-2] == "[]", out.stdout


def test_stacked_digests_of_a_non_contiguous_stack():
    base = np.arange(60, dtype=np.int32).reshape(6, 10)
    view = base[:, ::2]
    assert stacked_digests(view) == [array_digest(np.ascontiguousarray(r)) for r in view]
    assert stacked_digests(np.empty((0, 3), np.float32)) == []


# --------------------------------------------------------------------------
# the three write forms store the same thing
# --------------------------------------------------------------------------
def test_update_add_stacked_and_loop_give_the_same_records(tmp_path, data):
    trees = {}
    for how in ("loop", "update", "stacked"):
        path = tmp_path / how
        path.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            repo = Repository(path, exists=False)
        repo.init(user_name="T", user_email="t@example.org")
        co = repo.checkout(write=True)
        aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
        keys = list(range(N))
        if how == "loop":
            with aset:
                for k in keys:
                    aset[k] = data[k]
        elif how == "update":
            aset.update(dict(zip(keys, data, strict=True)))
        else:
            assert aset.add_stacked(data, keys) == keys
        sha = co.commit(how)
        co.close()
        git = repo._git_repo()
        trees[how] = str(git.get(sha).tree["arraysets/x"].id)
        rc = repo.checkout()
        x = rc.arraysets["x"]
        assert len(x) == N
        assert np.array_equal(np.stack(x.get_batch(keys)), data)
        rc.close()
        assert _store_state(repo)[0] == N
    assert len(set(trees.values())) == 1, trees


def test_scalar_samples_match_the_per_sample_form(writer):
    s = writer.arraysets.init_arrayset("s", shape=(), dtype=np.int64)
    t = writer.arraysets.init_arrayset("t", shape=(), dtype=np.int64)
    s.update({i: np.array(i) for i in range(5)})
    s.add_stacked(np.arange(5, 10), range(5, 10))
    with t:
        for i in range(10):
            t[i] = np.array(i)
    sha = writer.commit("scalars")
    tree = writer._repo._git_repo().get(sha).tree
    assert tree["arraysets/s/samples"].id == tree["arraysets/t/samples"].id
    assert s[7] == 7 and s[7].shape == ()


def test_update_accepts_keywords_and_keywords_win(writer, data):
    aset = writer.arraysets["x"]
    aset.update({"a": data[0], "b": data[1]}, b=data[2], c=data[3])
    assert np.array_equal(aset["a"], data[0])
    assert np.array_equal(aset["b"], data[2])
    assert np.array_equal(aset["c"], data[3])
    aset.update()  # nothing: a no-op
    assert len(aset) == 3


def test_mixed_str_and_int_keys(writer, data):
    aset = writer.arraysets["x"]
    aset.add_stacked(data[:4], [1, "1", "one", 0])
    aset.update({2: data[4], "2": data[5]})
    assert np.array_equal(aset[1], data[0]) and np.array_equal(aset["1"], data[1])
    assert np.array_equal(aset[2], data[4]) and np.array_equal(aset["2"], data[5])
    assert sorted(aset.keys(), key=str) == sorted([0, 1, "1", "one", 2, "2"], key=str)
    sha = writer.commit("mixed")
    rc = writer._repo.checkout(commit=sha)
    assert set(rc.arraysets["x"].keys()) == {0, 1, "1", "one", 2, "2"}
    rc.close()


def test_names_as_range_and_numpy_ints(writer, data):
    aset = writer.arraysets["x"]
    assert aset.add_stacked(data[:10], range(10)) == list(range(10))
    assert aset.add_stacked(data[10:20], np.arange(10, 20)) == list(range(10, 20))
    assert np.array_equal(np.stack(aset.get_batch(range(20))), data[:20])


def test_identical_rows_are_stored_once(writer):
    aset = writer.arraysets["x"]
    rows = np.zeros((500, 4), np.float32)
    rows[250:] = 1.0
    aset.add_stacked(rows, range(500))
    n, packs = _store_state(writer._repo)
    assert n == 2
    aset.add_stacked(rows[::-1].copy(), range(500, 1000))  # stored already: nothing written
    assert _store_state(writer._repo) == (n, packs)
    assert np.array_equal(aset[0], rows[0]) and np.array_equal(aset[999], rows[0])


def test_large_rows_go_one_block_each(writer, repo):
    co = writer
    big = co.arraysets.init_arrayset("big", shape=(200, 100), dtype=np.float32)
    stack = np.random.default_rng(3).random((6, 200, 100), dtype=np.float32)  # 80 KB rows
    big.add_stacked(stack, [f"b{i}" for i in range(6)])
    co.commit("big rows")
    rc = repo.checkout()
    got = rc.arraysets["big"].get_batch([f"b{i}" for i in range(6)])
    assert all(np.array_equal(g, s) for g, s in zip(got, stack, strict=True))
    rc.close()


def test_variable_shape_arrayset(writer):
    v = writer.arraysets.init_arrayset("v", shape=(5, 5), dtype=np.int16, variable_shape=True)
    v.add_stacked(np.ones((3, 2, 4), np.int16), ["p", "q", "r"])
    mixed = {f"m{i}": np.full((1 + i % 5, 1 + i % 3), i, np.int16) for i in range(40)}
    v.update(mixed)
    assert v["q"].shape == (2, 4)
    for k, a in mixed.items():
        assert np.array_equal(v[k], a)
    with pytest.raises(ValueError, match="exceeds"):
        v.add_stacked(np.ones((2, 6, 1), np.int16), ["s", "t"])
    with pytest.raises(ValueError, match="exceeds"):
        v.update({"s": np.ones((1, 1), np.int16), "t": np.ones((6, 1), np.int16)})
    assert "s" not in v and "t" not in v


def test_unnamed_arrayset_generates_keys(writer):
    u = writer.arraysets.init_arrayset("u", shape=(2,), dtype=np.uint8, named_samples=False)
    keys = u.add_stacked(np.arange(20, dtype=np.uint8).reshape(10, 2))
    assert len(set(keys)) == 10 and len(u) == 10
    with pytest.raises(ValueError, match="unnamed"):
        u.add_stacked(np.zeros((1, 2), np.uint8), ["k"])
    with pytest.raises(ValueError, match="unnamed"):
        u.update({"k": np.zeros(2, np.uint8)})
    with pytest.raises(ValueError, match="needs a name"):
        writer.arraysets["x"].add_stacked(np.zeros((1, 4), np.float32))


# --------------------------------------------------------------------------
# bad input: a clear error, and nothing staged
# --------------------------------------------------------------------------
def _bad_calls(data: np.ndarray) -> list:
    good = {i: data[i] for i in range(100)}
    return [
        ("rows of the wrong dtype", lambda a: a.add_stacked(data.astype(np.float64), range(N))),
        ("rows of the wrong shape", lambda a: a.add_stacked(data[:, :3].copy(), range(N))),
        ("a flat stack", lambda a: a.add_stacked(data.reshape(-1), range(4 * N))),
        ("not an ndarray", lambda a: a.add_stacked(data.tolist(), range(N))),
        ("too few names", lambda a: a.add_stacked(data, range(N - 1))),
        ("a str as names", lambda a: a.add_stacked(data[:3], "abc")),
        ("float names", lambda a: a.add_stacked(data[:3], np.arange(3.0))),
        ("a negative key", lambda a: a.add_stacked(data[:3], [0, -1, 2])),
        ("a bool key", lambda a: a.add_stacked(data[:3], [0, True, 2])),
        ("a bad str key", lambda a: a.add_stacked(data[:3], ["ok", "no/slash", "x"])),
        ("a duplicate key", lambda a: a.add_stacked(data[:3], [5, 6, 5])),
        ("a duplicate key", lambda a: a.add_stacked(data[:3], ["k", "k", "j"])),
        ("one bad dtype", lambda a: a.update({**good, 50: data[50].astype(np.float16)})),
        ("one bad shape", lambda a: a.update({**good, 99: data[:2]})),
        ("one non-array", lambda a: a.update({**good, 7: [1.0, 2.0, 3.0, 4.0]})),
        ("one non-contiguous", lambda a: a.update({**good, 3: np.zeros(8, np.float32)[::2]})),
        ("one bad key", lambda a: a.update({**good, -5: data[0]})),
        ("one bad key", lambda a: a.update({**good, 1.5: data[0]})),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls(np.zeros((N, 4), np.float32)))))
def test_bad_input_raises_value_error_and_stages_nothing(writer, data, i):
    label, call = _bad_calls(data)[i]
    aset = writer.arraysets["x"]
    aset.add_stacked(data[:10], range(10))
    before = (_journal(writer._repo), _store_state(writer._repo), len(aset))
    with pytest.raises(ValueError):
        call(aset)
    assert (_journal(writer._repo), _store_state(writer._repo), len(aset)) == before, label
    # and in a batch, the samples added before the bad call stay staged
    with pytest.raises(ValueError), aset:
        aset[500] = data[500]
        call(aset)
    assert np.array_equal(aset[500], data[500])
    assert len(aset) == 11


def test_update_of_a_non_mapping_is_a_type_error(writer, data):
    aset = writer.arraysets["x"]
    before = _journal(writer._repo)
    with pytest.raises(TypeError):
        aset.update([(1, data[0])])  # type: ignore[arg-type]
    assert _journal(writer._repo) == before


def test_bulk_calls_on_a_reader_or_closed_checkout_fail(repo, writer, data):
    writer.arraysets["x"].add_stacked(data[:5], range(5))
    writer.commit("five")
    rc = repo.checkout()
    assert not hasattr(rc.arraysets["x"], "add_stacked")
    rc.close()
    aset = writer.arraysets["x"]
    writer.close()
    with pytest.raises(ReferenceError):
        aset.add_stacked(data[:5], range(5))
    with pytest.raises(ReferenceError):
        aset.update({1: data[0]})


# --------------------------------------------------------------------------
# staging: order, batches, replay after reopening
# --------------------------------------------------------------------------
def test_later_adds_win_in_order_and_survive_a_reopen(repo, writer, data, monkeypatch):
    monkeypatch.setattr(staging, "B_LINE_SAMPLES", 700)  # several Y lines in one batch
    aset = writer.arraysets["x"]
    aset[5] = data[0]  # before the bulk call: overwritten by it
    with aset:
        aset.add_stacked(data, range(N))
        aset[6] = data[1]  # after it, in the same batch: wins
    aset.update({7: data[2], "s": data[3]})
    lines = [ln for ln in _journal(repo).split(b"\n") if ln]
    assert sum(ln.startswith(b"Y\t") for ln in lines) >= N // 700
    writer.close()
    co = repo.checkout(write=True)
    a2 = co.arraysets["x"]
    assert len(a2) == N + 1
    assert np.array_equal(a2[5], data[5])
    assert np.array_equal(a2[6], data[1])
    assert np.array_equal(a2[7], data[2])
    assert np.array_equal(a2["s"], data[3])
    assert np.array_equal(a2[N - 1], data[N - 1])
    co.close()


def _kill_during_add_stacked(path: Path, data: np.ndarray, kill_at: int, seed: int) -> int:
    """Fork a child that runs add_stacked and is SIGKILLed at its ``kill_at``-th
    ``os.write`` (after writing a random prefix of it); returns how many writes it saw."""

    def child(wfd: int) -> None:
        rng = random.Random(seed)
        repo = _open(path)
        co = repo.checkout(write=True)
        aset = co.arraysets["x"]
        real = os.write
        seen = [0]

        def write(fd: int, buf) -> int:
            if fd == wfd:
                return real(fd, buf)
            seen[0] += 1
            if seen[0] == kill_at:
                raw = bytes(buf)
                # nothing written, a cut anywhere, a cut after a line, all of it
                cut = [
                    0,
                    rng.randrange(len(raw)),
                    raw.rfind(b"\n", 0, len(raw) - 1) + 1,
                    len(raw),
                ][seed % 4]
                real(fd, raw[:cut])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(fd, buf)

        os.write = write  # type: ignore[assignment]
        os.writev = lambda fd, bufs: write(fd, b"".join(bytes(b) for b in bufs))  # type: ignore[assignment]
        aset.add_stacked(data, range(len(data)))
        real(wfd, str(seen[0]).encode())

    out, status = run_forked(child)
    if out:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        return int(out)
    assert os.WIFSIGNALED(status), status
    return -1


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_killed_during_add_stacked_stages_all_or_nothing(repo, data, monkeypatch):
    monkeypatch.setattr(staging, "B_LINE_SAMPLES", 400)  # a batch of several lines
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    co.commit("empty")
    co.close()
    path = Path(repo.path)
    writes = _kill_during_add_stacked(path, data, 0, 0)
    assert writes >= 2  # the pack bytes, then the journal
    outcomes = set()
    for kill_at in range(1, writes + 1):
        for seed in range(4):
            co = _open(path).checkout(write=True)
            co.reset_staging_area() if co.diff.status() == "DIRTY" else co.close()
            rows = data + np.float32(10 * kill_at + seed + 1)  # payloads not stored yet
            assert _kill_during_add_stacked(path, rows, kill_at, seed) == -1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                co = _open(path).checkout(write=True)
            aset = co.arraysets["x"]
            n = len(aset)
            assert n in (0, N), (kill_at, seed, n)
            outcomes.add(n)
            if n:
                assert np.array_equal(np.stack(aset.get_batch(range(N))), rows)
            # and the store still takes the same rows afterwards
            aset.add_stacked(rows[:50], range(50))
            assert np.array_equal(aset[49], rows[49])
            co.close()
    assert outcomes == {0, N}  # killed before the journal line, and after it


# --------------------------------------------------------------------------
# commits: small changes rewrite only the touched leaves
# --------------------------------------------------------------------------
def _tree_ids(git: pygit2.Repository) -> set[bytes]:
    return {o.raw for o in git.odb if git.odb.read(o)[0] == ObjectType.TREE}


@pytest.mark.parametrize(
    ("steps", "fanout"),
    [
        (None, (2,)),  # the layout of 1,025 to 262,144 samples
        (((16, ()), (64, (2,)), (1 << 62, (2, 1))), (2, 1)),  # that of 1M, at 3,000
    ],
)
def test_ten_sample_commit_writes_only_touched_trees(repo, data, monkeypatch, steps, fanout):
    if steps is not None:
        monkeypatch.setattr(layout, "_FANOUT_STEPS", steps)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    aset.add_stacked(data, range(N))
    sha1 = co.commit("base")
    git = repo._git_repo()
    samples = git.get(sha1).tree["arraysets/x/samples"].id.raw
    assert SampleRecords(git, samples).fanout == fanout
    before = _tree_ids(git)
    changed = [3, 77, 500, 1234, 1500, 2000, 2222, 2500, 2998, 2999]
    with aset:
        for k in changed:
            aset[k] = data[k] + 1
    sha2 = co.commit("ten")
    new = _tree_ids(git) - before
    leaves = {layout.leaf_path(f"i:{k}", fanout) for k in changed}
    upper = {p[:i] for p in leaves for i in range(1, len(p))}
    # the leaves, the fan-out trees above them, samples/, the arrayset, arraysets/, root
    assert len(new) == len(leaves) + len(upper) + 4, (len(new), len(leaves), len(upper))
    changes, _ = repo.checkout(commit=sha2).diff.commit(sha1)
    assert sorted(changes.master.samples["x"].mutations) == changed
    co.close()


# --------------------------------------------------------------------------
# remembered counts behind len(aset)
# --------------------------------------------------------------------------
def test_len_uses_remembered_counts_and_survives_a_damaged_file(repo, data, monkeypatch):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("x", shape=(4,), dtype=np.float32)
    aset.add_stacked(data, range(N))
    co.commit("base")
    with aset:
        for k in range(10):
            del aset[k]
        aset.add_stacked(data[:5], range(N, N + 5))
    sha = co.commit("change")
    co.close()
    git = repo._git_repo()
    oid = git.get(sha).tree["arraysets/x/samples"].id.raw
    assert counts_mod.known_count(git, oid) == N - 5  # remembered by the commit

    def refuse(self, checked):  # pragma: no cover - must not run
        raise AssertionError("counted every leaf")

    monkeypatch.setattr(SampleRecords, "_count_leaves", refuse)
    counts_mod.TABLE.forget()
    clear_leaf_cache()
    rc = _open(Path(repo.path)).checkout()
    assert len(rc.arraysets["x"]) == N - 5
    rc.close()
    monkeypatch.undo()
    # a damaged file: its lines are ignored and the count computed again
    path = counts_mod.counts_path(git)
    text = path.read_bytes()
    path.write_bytes(text.replace(b" ", b"  ")[: len(text) - 3] + b"garbage 12")
    counts_mod.TABLE.forget()
    assert counts_mod.known_count(git, oid) is None
    rc = _open(Path(repo.path)).checkout()
    assert len(rc.arraysets["x"]) == N - 5
    assert sum(1 for _ in rc.arraysets["x"]) == N - 5
    rc.close()
    counts_mod.TABLE.forget()
    assert counts_mod.known_count(git, oid) == N - 5  # counted, and remembered again


@pytest.mark.parametrize("limit, whole", [(10**9, True), (100, False)])
def test_scattered_reads_resolve_everything_only_in_small_arraysets(
    tmp_path, limit, whole, monkeypatch
):
    """Reads touching a quarter of the leaves resolve the whole arrayset at once
    (in a read checkout, into its row table), unless it is large: then only the
    leaves read are (memory stays with the reads)."""
    from hangar_git import payloads as checkout_mod  # PayloadAccess lives there

    monkeypatch.setattr(checkout_mod, "_RESOLVE_ALL_MAX", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(tmp_path, exists=False)
    repo.init(user_name="T", user_email="t@example.org")
    n = 3000  # 256 leaves of about 12
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)
    aset.add_stacked(np.arange(2 * n, dtype=np.int64).reshape(n, 2), list(range(n)))
    co.commit("base")
    co.close()
    clear_leaf_cache()
    rc = repo.checkout()
    a = rc.arraysets["a"]
    for k in range(0, n, 20):  # 150 keys over most leaves
        assert a[k].tolist() == [2 * k, 2 * k + 1]
    resolved = max(len(rc.payloads._ents), len(rc.payloads.rows.get("a", {})))
    assert (resolved == n) is whole
    assert resolved >= 150
    rc.close()
