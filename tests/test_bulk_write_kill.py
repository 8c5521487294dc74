"""Samples staged through the bulk write path survive a process killed at any
of its writes and syncs once the call that staged them has returned.

The two bulk forms are covered: a ``with a, b:`` block of samples set one by
one (held, then staged together when the block ends) and ``add_stacked``.
Their blocks that do not compress are written straight from the rows, and
what does compress from a buffer of the writer's own, in windows synced one
after the other. A child process does both, acknowledging each once it has
returned, and SIGKILLs itself at the N-th ``os.write`` or ``os.writev`` (sometimes after
writing part of it: a torn write) or ``os.fsync``. Whatever N: every sample
acknowledged reads back as it was set, an operation not acknowledged left
all of its samples staged or none, and the repository passes ``verify``.
The default run kills at every fourth event; ``-m slow`` at every one.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forked import run_forked

from hangar_git import Repository

N = 600  # > held_rows.STACK_MIN: the bulk path
#: windows this small make several windows, each written and synced (see PackWriter._write_rows)
WINDOW = 150_000

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork")


def _open(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path)


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (blocks that compress and blocks that do not), labels, and the
    images of the ``add_stacked`` call."""
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (2 * N, 28, 28), dtype=np.uint8)
    images[N // 2 : N] //= 64
    images[N + N // 3 :] //= 32
    labels = rng.integers(0, 10, (N, 1)).astype(np.int64)
    return images[:N], labels, images[N:]


def _child(path: Path, kill_at: int, wfd: int, overlap: bool) -> None:  # pragma: no cover - a child
    """Stage the block and the bulk add, writing ``1`` and ``2`` to ``wfd`` once
    each has returned; killed at I/O event ``kill_at`` (0: never; then the
    number of events is written last). ``overlap``: both hash their rows while
    their blocks are written (see :mod:`hangar_git.store.writer_rows`); else
    one after the other."""
    from hangar_git.store import writer, writer_rows

    writer.STREAM_WINDOW = WINDOW
    writer_rows.OVERLAP_MIN = 100_000 if overlap else 1 << 40
    rng = random.Random(kill_at)
    real_write, real_writev = os.write, os.writev
    events = [0]

    def event(fd: int, data: Any = None) -> None:
        events[0] += 1
        if events[0] == kill_at:
            if data is not None and len(data) > 1 and rng.random() < 0.5:
                real_write(fd, memoryview(data)[: rng.randrange(1, len(data))])  # torn
            os.kill(os.getpid(), signal.SIGKILL)

    def write(fd: int, data: Any) -> int:
        if fd != wfd:
            event(fd, data)
        return real_write(fd, data)

    def writev(fd: int, bufs: Any) -> int:
        event(fd, b"".join(bytes(b) for b in bufs))
        return real_writev(fd, bufs)

    def fsync(fd: int) -> None:
        event(fd)  # not synced: a killed process loses nothing the system holds

    images, labels, more = _data()
    co = _open(path).checkout(write=True)
    os.write, os.writev, os.fsync = write, writev, fsync  # type: ignore[assignment]
    a, b = co.arraysets["images"], co.arraysets["labels"]
    with a, b:
        for i in range(N):
            a[i] = images[i]
            b[i] = labels[i]
    real_write(wfd, b"1")
    a.add_stacked(more, range(N, 2 * N))
    real_write(wfd, b"2")
    co.close()
    real_write(wfd, str(events[0]).encode())


def _run(path: Path, kill_at: int, overlap: bool) -> bytes:
    """Run :func:`_child` in a forked process; what it wrote to its pipe."""
    out, status = run_forked(lambda wfd: _child(path, kill_at, wfd, overlap))
    if kill_at:
        assert os.WIFSIGNALED(status), (kill_at, status, out)
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return out


def _staged(aset: Any, keys: range, want: np.ndarray, whole: bool) -> None:
    """The samples ``keys`` of ``aset`` are those of ``want``: all of them,
    or (``whole`` False) all or none."""
    present = [k in aset for k in keys]
    if not whole and not any(present):
        return
    assert all(present), f"{sum(present)} of {len(keys)} staged"
    got = np.stack(aset.get_batch(list(keys)))
    np.testing.assert_array_equal(got, want)


@pytest.fixture
def template(repo) -> Path:
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
    co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    co.commit("schemas")
    co.close()
    return Path(repo.path)


@pytest.mark.parametrize(
    "stride", [pytest.param(1, marks=pytest.mark.slow, id="every"), pytest.param(4, id="sampled")]
)
@pytest.mark.parametrize("overlap", [False, True], ids=["serial", "overlapped"])
def test_bulk_writes_killed_at_their_writes_and_syncs(template, tmp_path, stride, overlap):
    """Killed at every ``stride``-th event (from the first, and at the last)."""
    images, labels, more = _data()
    out = _run(_copy(template, tmp_path / "count"), 0, overlap)
    assert out[:2] == b"12"
    events = int(out[2:])
    assert events > 20  # the windows' writes and syncs, the journal, the index...
    for kill_at in sorted({*range(1, events + 1, stride), events}):
        path = _copy(template, tmp_path / f"k{kill_at}")
        acks = _run(path, kill_at, overlap)
        co = _open(path).checkout(write=True)  # recovers what the child left
        try:
            _staged(co.arraysets["images"], range(N), images, whole=b"1" in acks)
            _staged(co.arraysets["labels"], range(N), labels, whole=b"1" in acks)
            _staged(co.arraysets["images"], range(N, 2 * N), more, whole=b"2" in acks)
        finally:
            co.close()
        report = _open(path).verify()
        assert report.ok, (kill_at, report.summary())
        shutil.rmtree(path)


def _copy(template: Path, to: Path) -> Path:
    shutil.copytree(template, to, symlinks=True)
    return to
