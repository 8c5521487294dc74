"""The child side of the crash-injection test (``test_crash_injection.py``).

Run as a script it is a *zygote*: it imports hangar-git once, then for each
job (a JSON line on stdin) forks a child that runs a seeded sequence of
operations on a repository and exits; the zygote prints ``pid <n>`` when the
child starts and ``exit <n> <signal or status>`` when it ends. Forking from a
warm process makes hundreds of kill points affordable.

The child appends to an acknowledgement file, one JSON line each:
``{"begin": {...}}`` before an operation and ``{"ack": {...}}`` once the call
has returned. With ``kill_at = N`` it kills itself (SIGKILL, with its whole
process group, so a ``git`` subprocess dies too) at the N-th I/O event:
``os.write`` (sometimes after writing only part of the data: a torn write),
``os.replace``/``rename``/``unlink``/``fsync``, each SQLite statement, each
git object or commit written, each ref moved, each subprocess started.

With ``fail_at = N`` (and ``fail_len = w``) it does not kill: the I/O events
N .. N+w-1 fail as on a full disk or a failing one (``ENOSPC`` or ``EIO``;
an ``os.write`` sometimes writes part of its data first, and the write after
it fails), then space returns. SQLite statements fail with ``SQLITE_FULL``,
rolled back first as SQLite does itself. Git events are counted, not failed.
The operation that failed must raise an :class:`OSError`; the child logs
``{"failed": ...}``, closes its checkout and exits with status 3 (the
operation stays begun, not acknowledged). Any other exception is a failure
(status 1).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from typing import Any

import numpy as np

_REAL_WRITE = os.write
#: small: shares pack blocks; big: > 64 KiB, a pack block of its own; large: over
#: :data:`LARGE_THRESHOLD`, a chunked file of its own (``store/large/``)
ASETS = {
    "small": ((6,), np.int32),
    "big": ((130, 130), np.float32),
    "large": ((320, 320), np.float32),
}
#: the children store payloads of this many bytes and more as large files
#: (the default, 1 MiB, would make every large sample slow to write)
LARGE_THRESHOLD = 256 * 1024
PREFIX = {"master": "m", "dev": "d"}


def gen(aset: str, seed: int) -> np.ndarray:
    """The array stored as ``seed`` in ``aset`` (the parent computes the same)."""
    shape, dtype = ASETS[aset]
    rng = np.random.default_rng(seed)
    if dtype == np.int32:
        return rng.integers(-(2**31), 2**31 - 1, size=shape, dtype=np.int32)
    return rng.random(shape, dtype=np.float32)


# ---- fault injection ---------------------------------------------------------------
class Faults:
    """Counts I/O events and kills the process group at event ``kill_at``.

    With ``focus`` (operation names), only the events of those operations
    count: the kill lands inside one of them.
    """

    def __init__(
        self,
        kill_at: int,
        rng: random.Random,
        keep_fds: set[int],
        note_fd: int,
        focus: set[str] | None = None,
    ) -> None:
        self.n = 0
        self.kill_at = kill_at
        self.rng = rng
        self.keep_fds = keep_fds
        self.note_fd = note_fd
        self.focus = focus
        self.op: str | None = None  # the operation in flight
        self.fail_at = 0
        self.fail_len = 1
        self.force_fail = False  # the write after a short one fails
        self.injected: list[str] = []

    def failing(self, what: str) -> bool:
        """True when event ``what`` (already counted) is to fail."""
        # unlinking frees space; git reports its failures as GitError
        if what.startswith(("git", "subprocess", "sqlite ROLLBACK", "os.unlink", "os.remove")):
            return False
        if self.force_fail:
            self.force_fail = False
            return True
        return bool(self.fail_at) and self.fail_at <= self.n < self.fail_at + self.fail_len

    def event(self, what: str, tear: Any = None) -> None:
        if self.focus is not None and self.op not in self.focus:
            return
        self.n += 1
        if self.failing(what):
            code = self.rng.choice([errno.ENOSPC, errno.ENOSPC, errno.EIO])
            self.injected.append(f"{what} {errno.errorcode[code]}")
            raise OSError(code, os.strerror(code))
        if self.kill_at and self.n == self.kill_at:
            torn = tear() if tear is not None else None
            line = json.dumps({"killed": what, "event": self.n, "torn": torn}) + "\n"
            _REAL_WRITE(self.note_fd, line.encode())
            os.killpg(0, signal.SIGKILL)


def install(faults: Faults) -> None:
    """Route the I/O hangar-git does through ``faults``."""
    import pygit2.references

    import hangar_git.gitutil as gitutil

    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if fd in faults.keep_fds:
            return real_write(fd, data)

        def tear() -> str:
            raw = bytes(data)
            if len(raw) < 2:
                return "none"
            mode = faults.rng.randrange(3)
            if mode == 0:  # nothing reached the file
                return "none"
            cut = faults.rng.randrange(1, len(raw))
            if mode == 2:  # cut at a line boundary (a journal batch cut between lines)
                nl = raw.rfind(b"\n", 0, cut)
                cut = nl + 1 if nl >= 0 else cut
            real_write(fd, raw[:cut])
            return f"{cut}/{len(raw)}"

        if faults.fail_at and faults.fail_at <= faults.n + 1 < faults.fail_at + faults.fail_len:
            raw = bytes(data)
            if len(raw) > 1 and faults.rng.random() < 0.5:  # a short write, then ENOSPC
                faults.n += 1
                faults.injected.append("os.write short")
                faults.force_fail = True
                return real_write(fd, raw[: faults.rng.randrange(1, len(raw))])
        faults.event("os.write", tear)
        return real_write(fd, data)

    def writev(fd: int, bufs: Any) -> int:  # the buffers as one write (one event)
        return write(fd, b"".join(bytes(b) for b in bufs))

    os.write, os.writev = write, writev  # type: ignore[assignment]
    for name in ("replace", "rename", "unlink", "remove", "fsync"):
        real = getattr(os, name)

        def wrapped(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            faults.event(f"os.{_name}")
            return _real(*a, **k)

        setattr(os, name, wrapped)

    class Conn(sqlite3.Connection):
        def _event(self, what: str) -> None:
            try:
                faults.event(what)
            except OSError:  # as SQLite reports a full disk: rolled back, SQLITE_FULL
                if self.in_transaction:
                    super().execute("ROLLBACK")
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorcode = 13  # type: ignore[attr-defined]
                exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
                raise exc from None

        def execute(self, *a: Any, **k: Any) -> Any:  # type: ignore[override]
            self._event("sqlite " + str(a[0])[:30])
            return super().execute(*a, **k)

        def executemany(self, *a: Any, **k: Any) -> Any:  # type: ignore[override]
            self._event("sqlite many")
            return super().executemany(*a, **k)

    real_connect = sqlite3.connect

    def connect(*a: Any, **k: Any) -> Any:
        k.setdefault("factory", Conn)
        return real_connect(*a, **k)

    sqlite3.connect = connect  # type: ignore[assignment]

    def counted(fn: Any, what: str) -> Any:
        def inner(*a: Any, **k: Any) -> Any:
            faults.event(what)
            out = fn(*a, **k)
            faults.event(what + " done")
            return out

        return inner

    from hangar_git.records import objpack

    for owner, name in (
        (gitutil, "write_tree"),
        (gitutil, "write_blob"),
        (objpack, "write_pack"),
        (gitutil, "write_commit_object"),
        (gitutil, "move_branch"),
    ):
        real = getattr(owner, name)
        wrapped = counted(real, f"git {name}")
        for mod in list(sys.modules.values()):
            if (
                getattr(mod, "__name__", "").startswith("hangar_git")
                and getattr(mod, name, None) is real
            ):
                setattr(mod, name, wrapped)
    refs = pygit2.references.References
    refs.create = counted(refs.create, "git ref")  # type: ignore[method-assign]
    subprocess.run = counted(subprocess.run, "subprocess")  # type: ignore[assignment]


class _Failed(Exception):
    """An operation failed with an OSError, as an injected fault should make it."""


# ---- the workload ---------------------------------------------------------------
def run(job: dict[str, Any]) -> None:
    """Run one job in a forked child; never returns."""
    import warnings

    warnings.simplefilter("ignore")
    os.setsid()
    err = os.open(job["errlog"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(err, 2)
    ack_fd = os.open(job["acks"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    focus = set(job["focus"]) if job.get("focus") else None
    faults = Faults(
        job["kill_at"], random.Random(job["seed"] * 7 + 1), {ack_fd, err, 1, 2}, ack_fd, focus
    )
    faults.fail_at = job.get("fail_at", 0)
    faults.fail_len = job.get("fail_len", 1)
    install(faults)
    try:
        _work(job, faults, ack_fd)
    except _Failed:
        os._exit(3)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def _work(job: dict[str, Any], faults: Faults, ack_fd: int) -> None:
    from hangar_git import Repository
    from hangar_git.gc import gc
    from hangar_git.gitutil import branch_head

    def note(kind: str, obj: dict[str, Any]) -> None:
        os.write(ack_fd, (json.dumps({kind: obj}) + "\n").encode())
        faults.op = obj["op"] if kind == "begin" else None

    rng = random.Random(job["seed"])
    repo = Repository(job["path"])
    git = repo._git_repo()
    branch = repo._writer_branch()
    try:
        co = repo.checkout(write=True, branch=branch)
    except OSError as exc:
        if not job.get("fail_at"):
            raise
        faults.fail_at, faults.force_fail = 0, False  # space returns
        os.write(
            ack_fd,
            (json.dumps({"failed": {"errno": exc.errno, "at": faults.injected}}) + "\n").encode(),
        )
        repo.checkout(write=True, branch=branch).close()
        raise _Failed from None
    note("ack", {"op": "open", "branch": branch})

    def existing(aset: str) -> list[str]:
        p = PREFIX[branch]
        return [k for k in co.arraysets[aset] if isinstance(k, str) and k.startswith(p)]

    def change() -> list[Any]:
        x = rng.random()
        aset = "large" if x < 0.06 else "big" if x < 0.18 else "small"
        keys = existing(aset)
        if keys and rng.random() < 0.25:
            return [aset, rng.choice(keys), None]
        return [aset, f"{PREFIX[branch]}{rng.randrange(40)}", rng.randrange(1 << 30)]

    def apply(ch: list[Any]) -> None:
        aset, key, seed = ch
        if seed is None:
            del co.arraysets[aset][key]
        else:
            co.arraysets[aset][key] = gen(aset, seed)

    try:
        for _ in range(job["ops"]):
            r = rng.random()
            dirty = co.diff.status() != "CLEAN"
            if not dirty:  # clean: move between the branches and merge often
                x = rng.random()
                if branch == "master":
                    master, dev = branch_head(git, "master"), branch_head(git, "dev")
                    if str(git.merge_base(master, dev)) != dev:  # dev has work to merge
                        r = 0.8 if x < 0.5 else 0.72 if x < 0.6 else r
                    else:  # nothing to merge: go and work on dev
                        r = 0.72 if x < 0.35 else r
                elif x < 0.3:
                    r = 0.72
            if r < 0.30:
                ch = change()
                note("begin", {"op": "stage", "changes": [ch]})
                apply(ch)
                note("ack", {"op": "stage", "changes": [ch]})
            elif r < 0.45:
                chs: list[list[Any]] = []
                for _ in range(rng.randrange(2, 8)):
                    ch = change()
                    if ch[2] is None and any(c[:2] == ch[:2] for c in chs):
                        continue  # removed twice in one batch: keep it simple
                    chs.append(ch)
                note("begin", {"op": "stage", "changes": chs})
                with co.arraysets:
                    for ch in chs:
                        apply(ch)
                note("ack", {"op": "stage", "changes": chs})
            elif r < 0.50:
                key = f"{PREFIX[branch]}m{rng.randrange(10)}"
                value = f"v{rng.randrange(1000)}"
                note("begin", {"op": "meta", "key": key, "value": value})
                co.metadata[key] = value
                note("ack", {"op": "meta", "key": key, "value": value})
            elif r < 0.68:
                if not dirty:
                    continue
                note("begin", {"op": "commit", "branch": branch, "base": co.commit_hash})
                sha = co.commit(f"commit {rng.random()}")
                note("ack", {"op": "commit", "branch": branch, "sha": sha})
            elif r < 0.75:
                if dirty:
                    continue
                other = "dev" if branch == "master" else "master"
                note("begin", {"op": "switch", "branch": other})
                co.close()
                co = repo.checkout(write=True, branch=other)
                branch = other
                note("ack", {"op": "switch", "branch": other})
            elif r < 0.85:
                if dirty or branch != "master":
                    continue
                heads = {"master": branch_head(git, "master"), "dev": branch_head(git, "dev")}
                note("begin", {"op": "merge", **heads})
                sha = co.merge("merge dev", "dev")
                note("ack", {"op": "merge", "sha": sha})
            elif r < 0.93:
                threshold = rng.choice([0.0, 0.25, 0.5])
                note("begin", {"op": "gc"})
                co.close()
                gc(repo, threshold=threshold)
                note("ack", {"op": "gc"})
                co = repo.checkout(write=True, branch=branch)
            else:
                if not dirty:
                    continue
                note("begin", {"op": "reset"})
                co.reset_staging_area()
                note("ack", {"op": "reset"})
                co = repo.checkout(write=True, branch=branch)
        co.close()
    except OSError as exc:
        if not job.get("fail_at"):
            raise
        faults.fail_at, faults.force_fail = 0, False  # space returns
        line = {"failed": {"errno": exc.errno, "error": str(exc)[:300], "at": faults.injected}}
        os.write(ack_fd, (json.dumps(line) + "\n").encode())
        co.close()  # the writer is usable again: closing it must work
        co = repo.checkout(write=True, branch=repo._writer_branch())
        co.close()
        raise _Failed from None
    note("ack", {"op": "end", "events": faults.n})


def zygote() -> None:
    """Read jobs on stdin, fork a child for each, report its pid and its end."""
    import pygit2

    home = os.environ.get("HOME", "/nonexistent")
    for level in (
        pygit2.enums.ConfigLevel.GLOBAL,
        pygit2.enums.ConfigLevel.XDG,
        pygit2.enums.ConfigLevel.SYSTEM,
    ):
        pygit2.settings.search_path[level] = os.path.join(home, "nonexistent")
    import hangar_git  # warm: the children start with it loaded
    import hangar_git.gc
    import hangar_git.merge  # noqa: F401
    from hangar_git.store import chunked

    chunked.THRESHOLD = LARGE_THRESHOLD

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run(job)
        out.write(f"pid {pid}\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            out.write(f"exit signal {os.WTERMSIG(status)}\n")
        else:
            out.write(f"exit status {os.WEXITSTATUS(status)}\n")
        out.flush()


if __name__ == "__main__":
    zygote()
