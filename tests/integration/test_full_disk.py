"""A full disk, failing writes, damaged journals, hostile sizes, read-only
repositories and the umask: the store's failure paths, on real files.

The full-disk tests use a real 2 MiB tmpfs when ``mount`` works here (root in
a container that allows it), and inject ``ENOSPC`` into ``os.write`` otherwise
or in addition (short writes included). The read-only test uses a read-only
bind mount (which binds root too) when it can make one.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from hangar_git import Repository
from hangar_git.errors import IntegrityError
from hangar_git.fsck import verify
from hangar_git.store import packs
from hangar_git.store.blosc_codec import blosc2


def _new_repo(path: Path) -> Repository:
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Disk Test", user_email="disk@example.org")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(2000,), dtype=np.float32)
    co.arraysets["a"]["base"] = np.zeros(2000, np.float32)
    co.commit("base")
    co.close()
    return repo


def _sample(i: int) -> np.ndarray:
    return np.random.default_rng(i).random(2000, dtype=np.float32)


def _check_all(repo: Repository, acked: dict[str, int], commit: bool = True) -> None:
    co = repo.checkout(write=True)
    try:
        for k, seed in acked.items():
            assert co.arraysets["a"][k].tobytes() == _sample(seed).tobytes(), k
        if commit:
            co.arraysets["a"]["after"] = _sample(10**6)
            co.commit("after the disk filled")
    finally:
        co.close()
    rep = verify(repo, full=True)
    assert rep.ok, rep.summary()


# ---- a real full disk ----------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk_then_space_returns(small_fs):
    """As above, with a filler file: once it is removed the writer commits, and
    every acknowledged sample reads back bit for bit, committed and staged."""
    repo = _new_repo(small_fs / "r")
    filler = small_fs / "filler"
    acked: dict[str, int] = {}
    co = repo.checkout(write=True)
    with open(filler, "wb") as fh:  # leave ~300 KiB free
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        fh.write(b"\0" * max(0, free - 300 * 1024))
    failures = 0
    for i in range(200):
        try:
            co.arraysets["a"][f"k{i}"] = _sample(i)
            acked[f"k{i}"] = i
        except OSError as exc:
            assert exc.errno in (errno.ENOSPC, errno.EIO), exc
            failures += 1
            if failures >= 5:
                break
    assert failures >= 5
    filler.unlink()  # space returns
    for i in range(200, 205):  # the same writer, after the failures
        co.arraysets["a"][f"k{i}"] = _sample(i)
        acked[f"k{i}"] = i
    co.commit("after space returned")
    co.close()
    _check_all(repo, acked)


# ---- injected failures: short writes, then ENOSPC ------------------------------------
class _Full:
    """``os.write`` (and ``os.writev``) replacement: after ``budget`` bytes, a
    short write then ENOSPC."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.real = os.write
        self.on = True

    def __call__(self, fd: int, data) -> int:
        if not self.on:
            return self.real(fd, data)
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), self.budget)
        self.budget -= n
        return self.real(fd, bytes(data)[:n])

    def writev(self, fd: int, bufs) -> int:
        """``os.writev`` replacement: the buffers as one ``os.write``."""
        return self(fd, b"".join(bytes(b) for b in bufs))


@pytest.mark.parametrize("budget", [0, 1, 100, 9000, 40000])
def test_injected_enospc_in_packs_and_journal(tmp_path, monkeypatch, budget):
    """A pack write and a journal line cut by ENOSPC: the pack's next offsets
    stay right, the journal takes no appends onto a torn line, and all five
    samples acknowledged after space returns survive a reopen."""
    repo = _new_repo(tmp_path / "r")
    co = repo.checkout(write=True)
    full = _Full(budget)
    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(os, "writev", full.writev)
    acked: dict[str, int] = {}
    fails = 0
    for i in range(8):  # those that fit are acknowledged, then every call fails
        try:
            co.arraysets["a"][f"pre{i}"] = _sample(100 + i)
            acked[f"pre{i}"] = 100 + i
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            assert f"pre{i}" not in co.arraysets["a"]  # the failed call staged nothing
            fails += 1
    assert fails >= 3
    full.on = False  # space returns
    after = {f"k{i}": i for i in range(5)}
    acked.update(after)
    for k, seed in after.items():
        co.arraysets["a"][k] = _sample(seed)
    co.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing damaged: no warning
        _check_all(repo, acked)


def test_sqlite_full_is_an_oserror(tmp_path, monkeypatch):
    """A full disk inside SQLite surfaces as OSError(ENOSPC), never as
    ``sqlite3.OperationalError: cannot rollback``; the writer goes on."""
    repo = _new_repo(tmp_path / "r")
    co = repo.checkout(write=True)
    real = packs._insert_segment
    calls = {"n": 0}

    def full(con, e):
        calls["n"] += 1
        con.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorcode = 13  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(packs, "_insert_segment", full)
    with pytest.raises(OSError) as info:
        co.arraysets["a"]["lost"] = _sample(1)
    assert info.value.errno == errno.ENOSPC and calls["n"] == 1
    monkeypatch.setattr(packs, "_insert_segment", real)
    co.arraysets["a"]["kept"] = _sample(2)
    co.close()
    _check_all(repo, {"kept": 2})


# ---- the staging journal after a power cut --------------------------------------------
@pytest.mark.parametrize("content", [b"", b"garbage\n", b"H\t{broken\t00000000\nA\tx\n"])
def test_unreadable_journal_is_set_aside(tmp_path, content):
    repo = _new_repo(tmp_path / "r")
    path = repo._journal_path()
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="set aside as .*journal.unreadable-"):
        co = repo.checkout(write=True)
    assert co.arraysets["a"]["base"].tobytes() == np.zeros(2000, np.float32).tobytes()
    co.arraysets["a"]["new"] = _sample(3)
    co.commit("after the power cut")
    co.close()
    kept = list(path.parent.glob("journal.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert verify(repo).ok


def test_damaged_line_keeps_later_intact_lines(tmp_path):
    repo = _new_repo(tmp_path / "r")
    co = repo.checkout(write=True)
    for i in range(4):
        co.arraysets["a"][f"s{i}"] = _sample(i)
    co.close()
    path = repo._journal_path()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:5] + b"#" + lines[2][6:]  # one damaged line in the middle
    path.write_bytes(b"".join(lines))
    with pytest.warns(RuntimeWarning, match="1 damaged lines"):
        co = repo.checkout(write=True)
    got = set(co.arraysets["a"].keys())
    co.close()
    assert {"s0", "s2", "s3"} <= got and "s1" not in got


# ---- sizes from outside ---------------------------------------------------------------
def test_blosc_chunk_claiming_more_than_its_block_is_refused():
    body = blosc2.compress(np.zeros(1 << 20, np.uint8).tobytes(), typesize=1)
    assert len(body) < 100
    bomb = bytearray(body)
    bomb[4:8] = (2**31 - 1).to_bytes(4, "little")  # a 2 GiB claim
    with pytest.raises(IntegrityError, match="states"):
        packs.decode_body(packs.CODEC_BLOSC2_LZ4, memoryview(bytes(bomb)), 1 << 20, "test")
    with pytest.raises(IntegrityError):  # the honest body, a smaller promise
        packs.decode_body(packs.CODEC_BLOSC2_LZ4, memoryview(body), 1000, "test")
    assert len(packs.decode_body(packs.CODEC_BLOSC2_LZ4, memoryview(body), 1 << 20, "t")) == (
        1 << 20
    )


def test_block_row_past_the_pack_end_is_refused(tmp_path):
    """An index row claiming a 6 GB block over a sparse pack is refused before
    anything is read or allocated."""
    repo = _new_repo(tmp_path / "r")
    store = next(Path(repo._git_repo().path).rglob("index.sqlite")).parent
    con = sqlite3.connect(store / "index.sqlite")
    rows = con.execute("SELECT id, pack, boff FROM blocks").fetchall()
    blen = 6 * 10**9
    for bid, pack, boff in rows:
        chk = packs.block_check(bid, pack, boff, blen)
        con.execute("UPDATE blocks SET blen=?, chk=? WHERE id=?", (blen, chk, bid))
    con.commit()
    con.close()
    for pack in store.glob("packs/*.pack"):
        os.truncate(pack, 7 * 10**9)  # sparse: the row now lies inside the file
    co = repo.checkout()
    with pytest.raises(IntegrityError, match="impossible length"):
        co.arraysets["a"]["base"]
    co.close()


# ---- permissions ------------------------------------------------------------------------
def test_files_respect_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        repo = _new_repo(tmp_path / "r")
        co = repo.checkout(write=True)
        co.arraysets.init_arrayset("big", shape=(800, 800), dtype=np.float32)
        co.arraysets["big"]["x"] = np.random.default_rng(0).random((800, 800), np.float32)
        co.commit("large")
        co.close()
    finally:
        os.umask(old)
    store = next(Path(repo._git_repo().path).rglob("index.sqlite")).parent
    files = [store / "index.sqlite", *store.glob("packs/*.pack"), *store.glob("large/*.hgc")]
    assert any(f.suffix == ".hgc" for f in files)
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o664, (f, oct(f.stat().st_mode))


@pytest.fixture
def read_only_view(tmp_path: Path):
    """``tmp_path/ro``: a read-only bind mount of ``tmp_path/rw`` (root cannot
    write there either)."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    r = subprocess.run(["mount", "--bind", str(rw), str(ro)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot bind-mount here: {r.stderr.decode().strip()}")
    try:
        r = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True, check=False
        )
        if r.returncode:
            pytest.skip(f"cannot remount read-only: {r.stderr.decode().strip()}")
        yield rw, ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_read_checkout_summary_verify_on_a_read_only_mount(read_only_view):
    rw, ro = read_only_view
    repo = _new_repo(rw / "r")
    co = repo.checkout(write=True)
    co.arraysets["a"]["x"] = _sample(9)
    co.commit("second")
    co.close()
    for p in (rw / "r").rglob("*"):  # read permission only, too
        p.chmod(p.stat().st_mode & ~0o222)
    with pytest.raises(OSError):
        (ro / "probe").write_text("x")  # the mount really is read-only
    ro_repo = Repository(ro / "r")
    rco = ro_repo.checkout()
    assert rco.arraysets["a"]["x"].tobytes() == _sample(9).tobytes()
    rco.close()
    ro_repo.summary()
    rep = ro_repo.verify(full=True)
    assert rep.ok, rep.summary()
    for p in (rw / "r").rglob("*"):
        p.chmod(p.stat().st_mode | 0o200)
