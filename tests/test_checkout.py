"""Checkouts: the writer lock, readers alongside a writer (threads and
processes), commit, reset, staging status and diff, closed-object errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from hangar_git import ClosedError, Repository, WriterLockError
from hangar_git.diff import Changes, DiffRecords


def open_repo(path: Path | str) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def head(repo: Repository, branch: str = "master") -> str:
    return repo.log(branch=branch, return_contents=True)["head"]


def spawn(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


HOLD_WRITER = """
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from hangar_git import Repository
    repo = Repository(sys.argv[1], exists=False)
    co = repo.checkout(write=True)
    co.metadata["child"] = "was here"
    print("locked", flush=True)
    sys.stdin.read()          # until the parent closes stdin (or kills us)
    co.close()
    print("closed", flush=True)
"""


# --------------------------------------------------------------------------
# writer lock
# --------------------------------------------------------------------------
def test_second_writer_in_same_process_refused(repo):
    co = repo.checkout(write=True)
    with pytest.raises(PermissionError, match=f"pid {os.getpid()}") as exc:
        repo.checkout(write=True)
    assert isinstance(exc.value, WriterLockError)
    # another Repository object on the same path is refused too
    other = open_repo(repo.path)
    with pytest.raises(PermissionError):
        other.checkout(write=True)
    # the first writer still works
    co.metadata["a"] = "b"
    co.close()
    co2 = other.checkout(write=True)
    assert co2.metadata["a"] == "b"
    co2.close()


def test_writer_lock_across_processes_and_sigkill(repo):
    child = spawn(HOLD_WRITER, repo.path)
    try:
        assert child.stdout.readline().strip() == "locked", child.stderr.read()
        assert repo.writer_lock_held
        with pytest.raises(PermissionError, match=f"pid {child.pid}"):
            repo.checkout(write=True)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # a killed writer leaves no lock: the next writer opens at once
    assert not repo.writer_lock_held
    t0 = time.monotonic()
    co = repo.checkout(write=True)
    assert time.monotonic() - t0 < 5
    # what the killed writer staged before it acknowledged survived
    assert co.metadata["child"] == "was here"
    co.close()


def test_writer_lock_released_by_other_process_close(repo):
    child = spawn(HOLD_WRITER, repo.path)
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(PermissionError):
        repo.checkout(write=True)
    child.stdin.close()
    assert child.stdout.readline().strip() == "closed"
    assert child.wait(timeout=30) == 0
    co = repo.checkout(write=True)
    co.close()


def test_force_release_writer_lock_in_process(repo):
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.int32)
    aset.__enter__()  # a batch left open, as when a notebook cell died mid-block
    aset["x"] = np.arange(3, dtype=np.int32)
    assert repo.force_release_writer_lock() is True
    assert not repo.writer_lock_held
    with pytest.raises(ClosedError):
        co.metadata  # noqa: B018
    co2 = repo.checkout(write=True)
    # the batched work was written before the lock was released
    assert co2.arraysets["a"]["x"].tolist() == [0, 1, 2]
    co2.close()
    assert repo.force_release_writer_lock() is True  # nothing held: still fine


def test_force_release_breaks_lock_of_other_process(repo):
    child = spawn(HOLD_WRITER, repo.path)
    try:
        assert child.stdout.readline().strip() == "locked"
        assert repo.writer_lock_held
        assert repo.force_release_writer_lock() is True
        assert not repo.writer_lock_held
        # a new writer opens at once: the payload store's lock went too
        start = time.monotonic()
        co = repo.checkout(write=True)
        assert time.monotonic() - start < 10
        co.close()
    finally:
        child.kill()
        child.wait()


def test_writer_context_manager_releases_lock(repo):
    with repo.checkout(write=True) as co:
        assert repo.writer_lock_held
        co.metadata["k"] = "v"
        co.commit("c")
    assert not repo.writer_lock_held
    with pytest.raises(ClosedError):
        co.commit("again")


def test_failed_writer_open_releases_lock(written_repo):
    repo = written_repo
    with pytest.raises(ValueError):
        repo.checkout(write=True, branch="nope")
    assert not repo.writer_lock_held


# --------------------------------------------------------------------------
# readers alongside a writer
# --------------------------------------------------------------------------
def _commit_round(co, k: int) -> str:
    """Commit k holds samples 0..k-1 (each value its key) and meta n=k."""
    aset = co.arraysets["a"]
    with aset:
        aset[k - 1] = np.full(64, k - 1, np.int64)
    co.metadata["n"] = str(k)
    return co.commit(f"round {k}")


def _check_consistent(co) -> int:
    n = int(co.metadata["n"])
    aset = co.arraysets["a"]
    assert len(aset) == n
    got = aset.get_batch(list(range(n)))
    for i, arr in enumerate(got):
        assert arr.shape == (64,) and (arr == i).all()
    if n:
        assert (aset[n - 1] == n - 1).all()
    return n


def _seed_rounds(repo) -> object:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(64,), dtype=np.int64)
    _commit_round(co, 1)
    return co


def test_readers_in_threads_while_writer_commits(repo):
    co = _seed_rounds(repo)
    first = head(repo)
    pinned = repo.checkout(commit=first)  # shared by all threads
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[int] = set()

    def reader() -> None:
        try:
            while not stop.is_set():
                rc = repo.checkout()
                try:
                    seen.add(_check_consistent(rc))
                finally:
                    rc.close()
                assert _check_consistent(pinned) == 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for k in range(2, 30):
            _commit_round(co, k)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    co.close()
    assert not errors, errors[0]
    assert len(seen) > 1
    assert _check_consistent(pinned) == 1
    pinned.close()


READER_LOOP = """
    import sys, time, warnings
    warnings.simplefilter("ignore")
    from hangar_git import Repository
    repo = Repository(sys.argv[1], exists=False)
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        co = repo.checkout()
        try:
            n = int(co.metadata["n"])
            a = co.arraysets["a"]
            assert len(a) == n, (len(a), n)
            for i, arr in enumerate(a.get_batch(list(range(n)))):
                assert (arr == i).all()
            assert (a[n - 1] == n - 1).all()
        finally:
            co.close()
        seen.add(n)
        if n >= int(sys.argv[2]):
            break
    print(len(seen), max(seen), flush=True)
"""


def test_readers_in_other_processes_while_writer_commits(repo):
    co = _seed_rounds(repo)
    last = 40
    children = [spawn(READER_LOOP, repo.path, str(last)) for _ in range(2)]
    try:
        time.sleep(0.3)
        for k in range(2, last + 1):
            _commit_round(co, k)
            time.sleep(0.01)
        co.close()
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            nseen, top = map(int, out.split())
            assert top == last
            assert nseen >= 1
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_reader_sees_its_commit_only(written_repo):
    repo = written_repo
    c1 = head(repo)
    rc = repo.checkout()
    assert rc.commit_hash == c1
    co = repo.checkout(write=True)
    co.arraysets["aset"]["new"] = np.zeros((5, 7), np.float32)
    co.metadata["about"] = "changed"
    # staged changes are invisible to readers
    assert "new" not in rc.arraysets["aset"]
    c2 = co.commit("second")
    # a reader keeps its commit after the branch moved
    assert "new" not in rc.arraysets["aset"]
    assert rc.metadata["about"] == "fixture"
    assert len(rc.arraysets["aset"]) == 10
    rc2 = repo.checkout()
    assert rc2.commit_hash == c2
    assert "new" in rc2.arraysets["aset"] and rc2.metadata["about"] == "changed"
    co.close()
    rc.close()
    rc2.close()


def test_reader_is_read_only(written_repo):
    rc = written_repo.checkout()
    # as in the reference: None on a read checkout, so calling them is a TypeError
    assert rc.arraysets.init_arrayset is None and rc.arraysets.remove_aset is None
    with pytest.raises(TypeError):
        rc.arraysets.init_arrayset("x", shape=(1,), dtype=np.uint8)
    with pytest.raises(PermissionError):
        del rc.arraysets["aset"]
    with pytest.raises(TypeError):  # None too, as in Hangar 0.2.0
        rc.arraysets.multi_add({"aset": np.zeros((5, 7), np.float32)})
    aset = rc.arraysets["aset"]
    assert not aset.iswriteable and not rc.arraysets.iswriteable
    assert not rc.metadata.iswriteable
    for attempt in (
        lambda: aset.__setitem__("z", np.zeros((5, 7), np.float32)),
        lambda: aset.add(np.zeros((5, 7), np.float32), "z"),
        lambda: aset.remove("0"),
        lambda: rc.metadata.__setitem__("k", "v"),
        lambda: rc.metadata.remove("about"),
    ):
        with pytest.raises((AttributeError, PermissionError, TypeError)):
            attempt()
    assert not hasattr(rc, "commit")
    rc.close()


# --------------------------------------------------------------------------
# commit, reset, status, diff
# --------------------------------------------------------------------------
def test_commit_moves_branch_and_rebases_staging(repo):
    co = repo.checkout(write=True)
    assert co.commit_hash == ""
    assert co.branch_name == "master"
    co.metadata["a"] = "1"
    c1 = co.commit("one")
    assert len(c1) == 40 and int(c1, 16) >= 0
    assert co.commit_hash == c1 == head(repo)
    assert co.diff.status() == "CLEAN"
    co.metadata["a"] = "2"
    c2 = co.commit("two")
    assert repo.log(return_contents=True)["ancestors"][c2] == [c1]
    assert co.metadata["a"] == "2"
    co.close()


def test_commit_errors(repo):
    co = repo.checkout(write=True)
    with pytest.raises(RuntimeError):
        co.commit("nothing staged")
    co.metadata["a"] = "1"
    with pytest.raises(ValueError):
        co.commit(123)  # type: ignore[arg-type]
    assert co.diff.status() == "DIRTY"
    co.close()
    assert repo.log() is None


def test_commit_after_add_then_remove_is_refused(written_repo):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    aset["tmp"] = np.zeros((5, 7), np.float32)
    del aset["tmp"]
    assert co.diff.status() == "CLEAN"
    with pytest.raises(RuntimeError):
        co.commit("no-op")
    co.close()


def test_staging_area_persists_across_writer_sessions(written_repo):
    repo = written_repo
    co = repo.checkout(write=True)
    co.arraysets["aset"]["new"] = np.ones((5, 7), np.float32)
    co.metadata["m"] = "staged"
    co.close()
    other = open_repo(repo.path)
    co = other.checkout(write=True)
    assert co.diff.status() == "DIRTY"
    assert (co.arraysets["aset"]["new"] == 1).all()
    assert co.metadata["m"] == "staged"
    co.commit("later")
    co.close()


def test_reset_staging_area(written_repo):
    repo = written_repo
    base = head(repo)
    co = repo.checkout(write=True)
    with pytest.raises(RuntimeError):
        co.reset_staging_area()
    co.arraysets["aset"]["new"] = np.ones((5, 7), np.float32)
    del co.arraysets["aset"]["0"]
    co.arraysets.init_arrayset("b", shape=(2,), dtype=np.uint8)
    co.metadata["about"] = "changed"
    assert co.reset_staging_area() == base
    # the checkout is closed and the lock released
    assert not repo.writer_lock_held
    with pytest.raises(ClosedError):
        co.arraysets  # noqa: B018
    co = repo.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    assert sorted(co.arraysets.keys()) == ["aset"]
    assert "new" not in co.arraysets["aset"] and "0" in co.arraysets["aset"]
    assert co.metadata["about"] == "fixture"
    co.close()


def test_reset_before_first_commit(repo):
    co = repo.checkout(write=True)
    co.metadata["x"] = "y"
    assert co.reset_staging_area() == ""
    co = repo.checkout(write=True)
    assert len(co.metadata) == 0
    co.close()


def test_status_and_staged_diff(written_repo):
    co = written_repo.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    staged = co.diff.staged()
    # (changes, conflicts) as the reference gives them; the plain view is .records
    assert isinstance(staged, tuple) and len(staged) == 2
    assert isinstance(staged.records, DiffRecords)
    assert staged.empty
    aset = co.arraysets["aset"]
    aset["new"] = np.ones((5, 7), np.float32)
    aset["1"] = np.full((5, 7), 100, np.float32)
    aset["2"] = np.full((5, 7), 2, np.float32)  # same value: no mutation
    del aset["3"]
    co.arraysets.init_arrayset("fresh", shape=(1,), dtype=np.uint8)[7] = np.ones(1, np.uint8)
    co.metadata["about"] = "changed"
    co.metadata["extra"] = "x"
    assert co.diff.status() == "DIRTY"
    d = co.diff.staged()
    assert d.aset == Changes(("fresh",), (), ())
    assert d.meta == Changes(("extra",), (), ("about",))
    assert d.samples["aset"] == Changes(("new",), ("3",), ("1",))
    assert d.samples["fresh"] == Changes((7,), (), ())
    co.arraysets.remove_aset("aset")
    d = co.diff.staged()
    assert d.aset.removals == ("aset",)
    assert set(d.samples["aset"].removals) == {str(i) for i in range(10)}
    co.commit("changes")
    assert co.diff.status() == "CLEAN"
    co.close()


def test_writer_cannot_switch_branch_with_dirty_staging(written_repo):
    repo = written_repo
    repo.create_branch("dev")
    co = repo.checkout(write=True)
    co.metadata["dirty"] = "yes"
    co.close()
    with pytest.raises(ValueError, match="uncommitted"):
        repo.checkout(write=True, branch="dev")
    assert not repo.writer_lock_held
    co = repo.checkout(write=True)
    co.commit("clean it")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    assert co.branch_name == "dev"
    assert "dirty" not in co.metadata
    co.close()


def test_writer_can_switch_branch_when_staged_changes_cancel_out(written_repo):
    repo = written_repo
    repo.create_branch("dev")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("tmp", shape=(2,), dtype=np.uint8)
    co.arraysets.remove_aset("tmp")
    co.metadata["about"] = "changed"
    co.metadata["about"] = "fixture"
    assert co.diff.status() == "CLEAN"
    co.close()
    co = repo.checkout(write=True, branch="dev")  # nothing to lose: allowed
    assert co.branch_name == "dev" and co.diff.status() == "CLEAN"
    co.close()


def test_reprs(written_repo):
    repo = written_repo
    co = repo.checkout(write=True)
    r = repr(co)
    assert "Hangar WriterCheckout" in r
    assert "Writer       : True" in r
    assert "Base Branch  : master" in r
    assert "Num Arraysets : 1" in r
    assert "Num Metadata : 1" in r
    co.close()
    assert "closed" in repr(co)
    rc = repo.checkout()
    r = repr(rc)
    assert "Hangar ReaderCheckout" in r and "Writer       : False" in r
    assert f"Commit Hash  : {rc.commit_hash}" in r
    rc.close()
    assert "closed" in repr(rc)


# --------------------------------------------------------------------------
# closed objects
# --------------------------------------------------------------------------
def _closed_uses(co, aset, asets, meta):
    yield lambda: co.arraysets
    yield lambda: co.metadata
    yield lambda: co.diff
    yield lambda: co.commit_hash
    yield lambda: asets.keys()
    yield lambda: len(asets)
    yield lambda: "aset" in asets
    yield lambda: asets["aset"]
    yield lambda: asets.get("aset")
    yield lambda: aset["0"]
    yield lambda: aset.get("0")
    yield lambda: aset.get_batch(["0"])
    yield lambda: aset["0", 0:2]
    yield lambda: len(aset)
    yield lambda: "0" in aset
    yield lambda: list(aset.keys())
    yield lambda: list(aset.items())
    yield lambda: aset.shape
    yield lambda: aset.dtype
    yield lambda: meta["about"]
    yield lambda: meta.get("about")
    yield lambda: len(meta)
    yield lambda: "about" in meta
    yield lambda: list(meta.keys())


def test_closed_reader_objects_raise(written_repo):
    rc = written_repo.checkout()
    asets, aset, meta = rc.arraysets, rc.arraysets["aset"], rc.metadata
    rc.close()
    rc.close()  # idempotent
    for use in _closed_uses(rc, aset, asets, meta):
        with pytest.raises(ClosedError) as exc:
            use()
        assert isinstance(exc.value, ReferenceError)


def test_closed_writer_objects_raise(written_repo):
    co = written_repo.checkout(write=True)
    asets, aset, meta = co.arraysets, co.arraysets["aset"], co.metadata
    diff = co.diff
    co.close()
    co.close()
    uses = [
        *_closed_uses(co, aset, asets, meta),
        lambda: co.commit("x"),
        lambda: co.reset_staging_area(),
        lambda: co.branch_name,
        lambda: diff.status(),
        lambda: diff.staged(),
        lambda: asets.init_arrayset("z", shape=(1,), dtype=np.uint8),
        lambda: asets.remove_aset("aset"),
        lambda: asets.multi_add({"aset": np.zeros((5, 7), np.float32)}),
        lambda: aset.add(np.zeros((5, 7), np.float32), "x"),
        lambda: aset.__setitem__("x", np.zeros((5, 7), np.float32)),
        lambda: aset.remove("0"),
        lambda: aset.__enter__(),
        lambda: asets.__enter__(),
        lambda: meta.add("k", "v"),
        lambda: meta.__setitem__("k", "v"),
        lambda: meta.remove("about"),
        lambda: co.__enter__(),
    ]
    for use in uses:
        with pytest.raises(ClosedError):
            use()
    # nothing the closed objects were asked to do reached the repository
    co = written_repo.checkout(write=True)
    assert co.diff.status() == "CLEAN"
    co.close()


def test_first_commit_goes_to_master_only(repo):
    with pytest.raises(ValueError, match="no branch named 'dev'"):
        repo.checkout(write=True, branch="dev")
    assert not repo.writer_lock_held
    assert repo.list_branches() == ["master"]


def test_the_surface_a_checkout_offers_what_it_hands_out(written_repo):
    """Arraysets, metadata, importers and dataloaders reach a checkout only
    through these public members (tests/test_layers.py forbids the private ones)."""
    from hangar_git.naming import encode_key

    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    assert aset.checkout is co and co.repository is written_repo
    assert not co.closed and not co.has_staged_changes
    enc = encode_key("3")
    digest = co.view.get("aset", enc)
    assert digest is not None
    co.unstage_sample("aset", enc)
    assert "3" not in aset and co.has_staged_changes
    co.restore_sample("aset", enc, digest)
    assert (aset["3"] == 3).all()
    co.close()
    assert co.closed
    with pytest.raises(ClosedError):
        co.check_open()
