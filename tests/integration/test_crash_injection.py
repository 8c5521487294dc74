"""Crash injection: kill -9 a process that writes, commits, merges and runs gc, at
hundreds of points, and check after each one that nothing acknowledged is lost.

A child (forked from a warm zygote, see ``_crash_child.py``) runs a seeded mix
of operations on a repository: single adds and removals, batches, metadata,
commits, branch switches, merges of ``dev`` into ``master``, gc and resets. It
logs each operation before starting it and acknowledges it once the call has
returned. It is killed with SIGKILL, with its process group, either by itself
at the N-th I/O event (an ``os.write`` possibly torn, a rename, an unlink, an
fsync, a SQLite statement, a git object, a ref move, a subprocess) or by the
test after a random delay. After every kill:

- the repository opens and ``fsck`` is clean;
- a new writer starts (recovering the staging area);
- the state is the acknowledged one, or that plus the operation in flight, whole:
  branch heads, staged samples and metadata are compared with a model replayed
  from the acknowledgements, every branch head and staged sample is read back and
  compared bit for bit, and a commit rolled forward holds exactly what was staged.

The repository evolves across kills (recovery from recovery) and is started
afresh every ``EPOCH`` kill points, after its whole history has been read back.
Everything is seeded: a failure prints the seed and the kill point to replay.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hangar_git import Repository
from hangar_git.fsck import verify
from hangar_git.gc import gc
from hangar_git.gitutil import branch_head
from hangar_git.naming import decode_key
from hangar_git.store.digest import array_digest

sys.path.insert(0, str(Path(__file__).parent))
from _crash_child import gen

SEED = int(os.environ.get("HANGAR_CRASH_SEED", "20251125"))
#: kill points to reach (event-driven, then timed)
EVENT_KILLS = int(os.environ.get("HANGAR_CRASH_EVENT_KILLS", "200"))
TIMED_KILLS = int(os.environ.get("HANGAR_CRASH_TIMED_KILLS", "50"))
MERGE_KILLS = int(os.environ.get("HANGAR_CRASH_MERGE_KILLS", "40"))
#: kill points per repository before starting afresh
EPOCH = 25
OPS = 12

Samples = dict[tuple[str, str], int]


@dataclass
class Model:
    """What the acknowledgements say the repository holds."""

    heads: dict[str, str]
    contents: dict[str, tuple[Samples, dict[str, str]]]
    branch: str = "master"
    staged: dict[tuple[str, str], int | None] = field(default_factory=dict)
    staged_meta: dict[str, str] = field(default_factory=dict)

    def effective(self) -> tuple[Samples, dict[str, str]]:
        samples, meta = self.contents[self.heads[self.branch]]
        samples, meta = dict(samples), dict(meta)
        for k, seed in self.staged.items():
            if seed is None:
                samples.pop(k, None)
            else:
                samples[k] = seed
        meta.update(self.staged_meta)
        return samples, meta

    def clean_staging(self) -> None:
        """Drop staged entries that add up to no change; anything else is a failure."""
        assert self.effective() == self.contents[self.heads[self.branch]], self.staged
        self.staged, self.staged_meta = {}, {}

    def committed(self, sha: str) -> None:
        self.contents[sha] = self.effective()
        self.heads[self.branch] = sha
        self.staged, self.staged_meta = {}, {}


def apply(m: Model, ack: dict[str, Any], begin: dict[str, Any] | None, git: Any) -> None:
    """Apply one acknowledged (or, for the operation in flight, assumed) operation."""
    op = ack["op"]
    if op == "stage":
        for aset, key, seed in ack["changes"]:
            m.staged[(aset, key)] = seed
    elif op == "meta":
        m.staged_meta[ack["key"]] = ack["value"]
    elif op == "commit":
        m.committed(ack["sha"])
    elif op == "switch":
        # only a clean staging area switches; it may hold entries that add up to
        # no change (a sample added, then removed), which the switch drops
        m.clean_staging()
        m.branch = ack["branch"]
    elif op == "merge":
        assert begin is not None
        master, dev, sha = begin["master"], begin["dev"], ack["sha"]
        if sha == master:
            return
        if sha != dev:
            base = str(git.merge_base(master, dev))
            m.contents[sha] = three_way(m.contents[base], m.contents[master], m.contents[dev])
        m.clean_staging()  # moving the branch drops entries that add up to no change
        m.heads["master"] = sha
    elif op == "reset":
        m.staged, m.staged_meta = {}, {}
    elif op in ("gc", "open", "end"):
        pass
    else:  # pragma: no cover
        raise AssertionError(op)


def three_way(base: Any, ours: Any, theirs: Any) -> tuple[Samples, dict[str, str]]:
    out = []
    for b, o, t in zip(base, ours, theirs, strict=True):
        r = dict(o)
        for k in set(b) | set(t):
            if t.get(k) != b.get(k):
                if k in t:
                    r[k] = t[k]
                else:
                    r.pop(k, None)
        out.append(r)
    return out[0], out[1]


# ---- observing a repository ------------------------------------------------------
def read_commit(
    repo: Repository, sha: str
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, str]]:
    co = repo.checkout(commit=sha)
    try:
        samples = {(a, k): co.arraysets[a][k] for a in co.arraysets for k in co.arraysets[a]}
        meta = dict(co.metadata.items())
    finally:
        co.close()
    return samples, meta


def check_content(repo: Repository, sha: str, want: tuple[Samples, dict[str, str]]) -> None:
    samples, meta = read_commit(repo, sha)
    assert set(samples) == set(want[0]), f"commit {sha}: keys differ"
    for k, arr in samples.items():
        exp = gen(k[0], want[0][k])
        assert arr.dtype == exp.dtype and arr.shape == exp.shape
        assert arr.tobytes() == exp.tobytes(), f"commit {sha}: {k} differs"
    assert meta == want[1], f"commit {sha}: metadata differs"


def observe(repo: Repository, co: Any) -> dict[str, Any]:
    git = repo._git_repo()
    j = co._journal
    staged = {(a, decode_key(enc)): d for a, st in j.asets.items() for enc, d in st.samples.items()}
    return {
        "heads": {b: branch_head(git, b) for b in ("master", "dev")},
        "branch": j.branch,
        "base": j.base,
        "staged": staged,
        "meta": {decode_key(k): v for k, v in j.meta.items()},
    }


def matches(m: Model, obs: dict[str, Any]) -> bool:
    staged = {k: (None if s is None else array_digest(gen(k[0], s))) for k, s in m.staged.items()}
    return (
        obs["heads"] == m.heads
        and obs["branch"] == m.branch
        and obs["base"] == m.heads[m.branch]
        and obs["staged"] == staged
        and obs["meta"] == m.staged_meta
    )


def candidates(
    m: Model, begin: dict[str, Any] | None, obs: dict[str, Any], git: Any
) -> list[Model]:
    """The model as acknowledged, and with the operation in flight applied whole."""
    out = [m]
    if begin is None or begin["op"] in ("gc",):
        return out
    after = copy.deepcopy(m)
    op = begin["op"]
    if op in ("commit", "merge"):
        branch = begin.get("branch", "master")
        new = obs["heads"].get(branch)
        if new is None or new == m.heads[branch]:
            return out  # the branch did not move: only the acknowledged state fits
        parents = [str(p) for p in git.get(new).parent_ids]
        if op == "commit":
            assert parents == [m.heads[branch]], f"rolled-forward commit {new}: {parents}"
        elif new != begin["dev"]:
            assert parents == [begin["master"], begin["dev"]], f"merge {new}: {parents}"
        apply(after, {**begin, "sha": new}, begin, git)
    else:
        apply(after, begin, begin, git)
    return [m, after]


# ---- driving the zygote -------------------------------------------------------------
class Zygote:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")]
        )
        self.p = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "_crash_child.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died")
        return line.strip()

    def run(self, job: dict[str, Any], kill_after: float | None) -> tuple[str, float]:
        assert self.p.stdin is not None
        t0 = time.monotonic()
        self.p.stdin.write(json.dumps(job) + "\n")
        self.p.stdin.flush()
        pid = int(self.readline().split()[1])
        if kill_after is not None:
            time.sleep(kill_after)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        end = self.readline()
        return end, time.monotonic() - t0

    def close(self) -> None:
        if self.p.stdin is not None:
            self.p.stdin.close()
        self.p.wait(timeout=30)


def read_acks(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict]:
    """Acknowledged operations, the one in flight (begun, not acknowledged), and begins."""
    acks: list[dict[str, Any]] = []
    begins: list[dict[str, Any] | None] = []
    pending: dict[str, Any] | None = None
    extra: dict[str, Any] = {"begins": begins, "killed": None}
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "killed" in rec:
                extra["killed"] = rec
                continue
            if "failed" in rec:
                extra["failed"] = rec["failed"]
                continue
            if "begin" in rec:
                pending = rec["begin"]
            else:
                acks.append(rec["ack"])
                begins.append(pending)
                pending = None
    return acks, pending, extra


def new_repository(path: Path) -> tuple[Repository, Model]:
    path.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Crash Test", user_email="crash@example.org")
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("small", shape=(6,), dtype=np.int32)
    co.arraysets.init_arrayset("big", shape=(130, 130), dtype=np.float32)
    co.arraysets.init_arrayset("large", shape=(320, 320), dtype=np.float32)
    samples: Samples = {}
    for i in range(3):
        co.arraysets["small"][f"m{i}"] = gen("small", i)
        samples[("small", f"m{i}")] = i
    # a sample the workload never removes: removing an arrayset's last sample
    # removes the arrayset (as Hangar 0.2 does), which the model leaves out
    for aset in ("small", "big", "large"):
        co.arraysets[aset]["keep"] = gen(aset, 7)
        samples[(aset, "keep")] = 7
    co.metadata["created"] = "yes"
    base = co.commit("base")
    co.close()
    repo.create_branch("dev", base)
    m = Model(heads={"master": base, "dev": base}, contents={base: (samples, {"created": "yes"})})
    return repo, m


def check_after_kill(
    repo_path: Path, m: Model, acks_path: Path, full: bool
) -> tuple[Model, list[str]]:
    """Replay the acknowledgements, then hold the repository against them.

    Returns the model and fsck's warnings (leftover files: not damage).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged journal would warn: that is a failure
        repo = Repository(repo_path)
    git = repo._git_repo()
    acks, pending, extra = read_acks(acks_path)
    for ack, begin in zip(acks, extra["begins"], strict=True):
        apply(m, ack, begin, git)
    rep = verify(repo, full=full)
    assert rep.ok, rep.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        co = repo.checkout(write=True, branch=repo._writer_branch())  # a new writer starts
    try:
        obs = observe(repo, co)
        fits = [c for c in candidates(m, pending, obs, git) if matches(c, obs)]
        assert fits, f"state fits neither the acknowledged one nor it plus {pending}: {obs}"
        m = fits[-1]
        for k, seed in m.staged.items():  # staged samples read back, bit for bit
            if seed is not None:
                got = co.arraysets[k[0]][k[1]]
                assert got.tobytes() == gen(k[0], seed).tobytes(), f"staged {k} differs"
    finally:
        co.close()
    for sha in set(m.heads.values()):
        check_content(repo, sha, m.contents[sha])
    return m, rep.warnings


def final_check(repo_path: Path, m: Model) -> None:
    """The whole history reads back, before and after a gc that clears every
    leftover of the kills (unindexed large payload files among them)."""
    repo = Repository(repo_path)
    rep = verify(repo, full=True)
    assert rep.ok, rep.summary()
    for sha, content in m.contents.items():
        check_content(repo, sha, content)
    gc(repo, threshold=0.0)
    rep = verify(repo, full=True)
    assert rep.ok and not rep.warnings, rep.summary()
    for sha in set(m.heads.values()):
        check_content(repo, sha, m.contents[sha])
    co = repo.checkout(write=True, branch=repo._writer_branch())
    co.arraysets["small"]["final"] = gen("small", 7)
    co.commit("a commit after all the kills")
    co.close()


def campaign(
    tmp_path: Path,
    timed: bool,
    kills_wanted: int,
    seed: int,
    focus: list[str] | None = None,
    fail: bool = False,
) -> dict[str, Any]:
    """Run jobs until ``kills_wanted`` of them were killed, checking after each.

    ``focus``: kill only inside these operations (their I/O events alone count).
    ``fail``: instead of a kill, make I/O events fail (``ENOSPC``, ``EIO``, short
    writes; see ``_crash_child.py``) and count the runs whose operation failed.
    """
    rng = random.Random(seed)
    z = Zygote()
    stats: dict[str, Any] = {
        "kills": 0,
        "completed": 0,
        "runs": 0,
        "where": {},
        "ops": {},
        "warned": 0,  # checks after which fsck warned of leftover files
    }
    durations: list[float] = []
    # I/O events of a whole run (of the focused operations): the most seen in a
    # run that completed
    span = 150 if focus is None else 20
    epoch = 0
    repo_path = tmp_path / f"repo{epoch}"
    _, m = new_repository(repo_path)
    kills_here = 0
    try:
        while stats["kills"] < kills_wanted:
            stats["runs"] += 1
            assert stats["runs"] < kills_wanted * 4, "too few runs end in a kill"
            n = stats["runs"]
            job = {
                "path": str(repo_path),
                "seed": rng.randrange(1 << 30),
                "ops": OPS,
                "kill_at": 0 if timed or fail else rng.randint(1, span),
                "fail_at": rng.randint(1, span) if fail else 0,
                "fail_len": rng.choice([1, 1, 2, 5]),
                "focus": focus,
                "acks": str(tmp_path / f"acks{n}.jsonl"),
                "errlog": str(tmp_path / f"err{n}.txt"),
            }
            delay = None
            if timed:
                typical = float(np.median(durations)) if durations else 1.0
                delay = rng.uniform(0.0, typical)
            end, took = z.run(job, delay)
            what = f"run {n} (seed {seed}, job {json.dumps(job)}): {end}"
            if end == "exit status 0":
                stats["completed"] += 1
                durations.append(took)
                acks, _, _ = read_acks(Path(job["acks"]))
                span = max(span, acks[-1]["events"])
            elif end == f"exit signal {signal.SIGKILL.value}" or (fail and end == "exit status 3"):
                stats["kills"] += 1
                kills_here += 1
                _, pending, extra = read_acks(Path(job["acks"]))
                where = (extra["killed"] or {}).get("killed", "timer")
                if fail:
                    failed = extra.get("failed") or {}
                    stats["injected"] = stats.get("injected", 0) + len(failed.get("at", []))
                    where = (
                        " ".join(
                            str(x).split(" ")[0] + " " + str(x).split(" ")[-1]
                            for x in failed.get("at", [])[:1]
                        )
                        or "?"
                    )
                    stats["errnos"] = stats.get("errnos", set()) | {failed.get("errno")}
                # "sqlite <statement>": one group; "git <what>": tree, blob, commit, ref
                where = " ".join(where.split(" ")[: 2 if where.startswith("git") else 1])
                if extra["killed"] and extra["killed"].get("torn") not in (None, "none"):
                    where += " (torn)"
                op = pending["op"] if pending else "-"
                stats["where"][f"{op} @ {where}"] = stats["where"].get(f"{op} @ {where}", 0) + 1
                stats["ops"][op] = stats["ops"].get(op, 0) + 1
            else:
                err = Path(job["errlog"]).read_text()
                raise AssertionError(f"{what}\n{err}")
            try:
                m, warned = check_after_kill(
                    repo_path, m, Path(job["acks"]), full=stats["kills"] % 10 == 0
                )
            except AssertionError as exc:
                raise AssertionError(f"after {what}: {exc}") from None
            stats["warned"] += bool(warned)
            if kills_here >= EPOCH:
                final_check(repo_path, m)
                epoch += 1
                repo_path = tmp_path / f"repo{epoch}"
                _, m = new_repository(repo_path)
                kills_here = 0
        final_check(repo_path, m)
    finally:
        z.close()
    return stats


@pytest.mark.slow
def test_kill_at_io_events(tmp_path):
    """SIGKILL at the N-th I/O event (torn writes included), N drawn per run."""
    stats = campaign(tmp_path, timed=False, kills_wanted=EVENT_KILLS, seed=SEED)
    print(
        f"\nevent kills survived: {stats['kills']} "
        f"(runs {stats['runs']}, completed without a kill {stats['completed']}, "
        f"fsck warned of leftover files after {stats['warned']})"
    )
    for k, v in sorted(stats["where"].items()):
        print(f"  {v:4d}  {k}")
    assert stats["kills"] >= EVENT_KILLS
    # every kind of operation is killed in the middle, merge and gc included;
    # a merge does few I/O events, so few kills land in one here (and fewer as
    # merges get leaner): test_kill_inside_merges kills inside merges only
    floor = max(1, EVENT_KILLS // 40)
    for op in ("stage", "commit", "merge", "gc", "switch"):
        want = 1 if op == "merge" else floor
        assert stats["ops"].get(op, 0) >= want, (op, stats["ops"])


FAIL_RUNS = int(os.environ.get("HANGAR_CRASH_FAIL_RUNS", "120"))


@pytest.mark.slow
def test_full_disk_and_io_errors_at_io_events(tmp_path):
    """ENOSPC / EIO (and short writes) at the N-th I/O event instead of a kill:
    the operation fails with an OSError (never a raw sqlite3 error), the writer
    closes and reopens once space returns, and every acknowledged sample reads
    back bit for bit (the checks after a kill, fsck and a new writer included)."""
    stats = campaign(tmp_path, timed=False, kills_wanted=FAIL_RUNS, seed=SEED + 3, fail=True)
    print(
        f"\nfailed operations survived: {stats['kills']} (runs {stats['runs']}, "
        f"injected faults {stats.get('injected', 0)}, errnos {stats.get('errnos')})"
    )
    for k, v in sorted(stats["where"].items()):
        print(f"  {v:4d}  {k}")
    assert stats["kills"] >= FAIL_RUNS
    assert stats["errnos"] <= {errno.ENOSPC, errno.EIO}, stats["errnos"]
    for op in ("stage", "commit"):
        assert stats["ops"].get(op, 0) >= 1, (op, stats["ops"])


@pytest.mark.slow
def test_kill_inside_merges(tmp_path):
    """SIGKILL at the N-th I/O event of a merge: merges write few objects, so the
    campaign above lands in one rarely; here every kill does."""
    stats = campaign(
        tmp_path, timed=False, kills_wanted=MERGE_KILLS, seed=SEED + 2, focus=["merge"]
    )
    print(
        f"\nmerge kills survived: {stats['kills']} "
        f"(runs {stats['runs']}, completed without a kill {stats['completed']}, "
        f"fsck warned of leftover files after {stats['warned']})"
    )
    for k, v in sorted(stats["where"].items()):
        print(f"  {v:4d}  {k}")
    assert stats["kills"] >= MERGE_KILLS and set(stats["ops"]) == {"merge"}


@pytest.mark.slow
def test_kill_at_random_times(tmp_path):
    """SIGKILL (whole process group, git subprocesses too) after a random delay."""
    stats = campaign(tmp_path, timed=True, kills_wanted=TIMED_KILLS, seed=SEED + 1)
    print(
        f"\ntimed kills survived: {stats['kills']} "
        f"(runs {stats['runs']}, completed before the kill {stats['completed']}, "
        f"fsck warned of leftover files after {stats['warned']})"
    )
    for k, v in sorted(stats["where"].items()):
        print(f"  {v:4d}  {k}")
    assert stats["kills"] >= TIMED_KILLS


# ---- the staging journal, cut at chosen points ---------------------------------------
def _staged(repo: Repository) -> dict[str, Any]:
    co = repo.checkout(write=True, branch=repo._writer_branch())
    try:
        return {k: co.arraysets["small"][k].tobytes() for k in co.arraysets["small"]}
    finally:
        co.close()


def _journal_lines(repo: Repository) -> list[bytes]:
    return repo._journal_path().read_bytes().splitlines(keepends=True)


def test_torn_last_line_is_dropped(tmp_path):
    repo, _ = new_repository(tmp_path / "r")
    co = repo.checkout(write=True)
    co.arraysets["small"]["x1"] = gen("small", 11)
    co.arraysets["small"]["x2"] = gen("small", 12)
    co.close()
    lines = _journal_lines(repo)
    for cut in range(1, len(lines[-1])):
        repo._journal_path().write_bytes(b"".join(lines[:-1]) + lines[-1][:cut])
        got = _staged(repo)
        assert "x1" in got and "x2" not in got, cut
        assert verify(repo).ok
    # and the repaired journal takes new lines
    co = repo.checkout(write=True)
    co.arraysets["small"]["x3"] = gen("small", 13)
    co.close()
    assert {"x1", "x3"} <= set(_staged(repo))


def test_batch_cut_between_lines_is_dropped_whole(tmp_path):
    repo, _ = new_repository(tmp_path / "r")
    co = repo.checkout(write=True)
    co.arraysets["small"]["before"] = gen("small", 1)
    n_before = len(_journal_lines(repo))
    with co.arraysets as asets:  # samples of two arraysets, a removal, metadata
        for i in range(5):
            asets["small"][f"b{i}"] = gen("small", 100 + i)
        del asets["small"]["before"]
        asets["big"]["b-big"] = gen("big", 3)
        co.metadata["b-meta"] = "x"
    co.close()
    lines = _journal_lines(repo)
    assert lines[n_before].startswith(b"T\t")  # the batch header
    assert len(lines) - n_before >= 4
    for keep in range(n_before, len(lines)):  # cut after each line of the batch
        repo._journal_path().write_bytes(b"".join(lines[:keep]))
        got = _staged(repo)
        assert set(got) == {"m0", "m1", "m2", "keep", "before"}, keep
    repo._journal_path().write_bytes(b"".join(lines))
    assert set(_staged(repo)) == {"m0", "m1", "m2", "keep"} | {f"b{i}" for i in range(5)}


@pytest.mark.parametrize("moved", [False, True])
def test_commit_cut_between_its_steps(tmp_path, moved):
    """A journal ending in its commit marker rolls forward if the ref moved, else back."""
    repo, m = new_repository(tmp_path / "r")
    git = repo._git_repo()
    co = repo.checkout(write=True)
    co.arraysets["small"]["c1"] = gen("small", 21)
    journal = co._journal
    before = repo._journal_path().read_bytes()
    sha = co.commit("to be cut")
    co.close()
    # rebuild the moment between "C <sha>" and the ref move (or the journal reset)
    repo._journal_path().write_bytes(before + journal._line(("C", sha)).encode())
    if not moved:
        git.references.create("refs/hangar/heads/master", git.get(m.heads["master"]).id, force=True)
    co = repo.checkout(write=True)
    if moved:
        assert co.commit_hash == sha and co.diff.status() == "CLEAN"
    else:
        assert co.commit_hash == m.heads["master"]
        assert co.diff.status() == "DIRTY" and "c1" in co.arraysets["small"]
        assert co.commit("again") != m.heads["master"]
    co.close()
    assert verify(repo, full=True).ok


def test_stale_ref_lock_does_not_block_the_next_writer(tmp_path):
    repo, _ = new_repository(tmp_path / "r")
    lock = Path(repo._git_repo().path) / "refs" / "hangar" / "heads" / "master.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))  # left by a process long gone
    co = repo.checkout(write=True)
    co.arraysets["small"]["after-lock"] = gen("small", 5)
    co.commit("a commit despite the stale lock")
    co.close()
    assert not lock.exists()
