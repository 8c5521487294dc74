"""`git hangar`: the real executable, driven through git in subprocesses.

Every test works in temporary git repositories with an isolated git config
(HOME, GIT_CONFIG_GLOBAL and GIT_CONFIG_NOSYSTEM from tests/conftest.py).
Error paths that need no subprocess use click's CliRunner on the same
``main`` object, but each command is run at least once for real.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import shutil
import site
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hangar_git import Repository
from hangar_git.cli import main, render_manpage

ROOT = Path(__file__).resolve().parents[2]
NAME = ["--name", "Test User", "--email", "test@example.org"]


def entry_point_dir() -> Path:
    """Folder of the installed ``git-hangar`` console script (the launcher as a fallback)."""
    here = Path(sys.executable).parent
    if (here / "git-hangar").exists():
        return here
    found = shutil.which("git-hangar")
    return Path(found).parent if found else ROOT


def cli_env(extra_path: list[Path] | None = None) -> dict[str, str]:
    env = dict(os.environ)  # HOME, GIT_CONFIG_* already isolated by conftest
    for k in ("MANPATH", "GIT_DIR", "GIT_WORK_TREE", "HANGAR_GIT_DEBUG"):
        env.pop(k, None)
    env.update({"PAGER": "cat", "MANPAGER": "cat", "GIT_PAGER": "cat", "COLUMNS": "100"})
    dirs = [str(p) for p in (extra_path or [])] + [str(entry_point_dir())]
    env["PATH"] = os.pathsep.join([*dirs, env.get("PATH", "")])
    return env


def hangar(
    cwd: Path, *args: str, ok: bool = True, env: dict[str, str] | None = None, **kw
) -> subprocess.CompletedProcess:
    res = subprocess.run(
        ["git", "hangar", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        **kw,
    )
    if ok:
        assert res.returncode == 0, f"git hangar {' '.join(args)}: {res.stderr}"
    return res


@dataclass
class Ran:
    """Outcome of an in-process run (same fields as a CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def cli(cwd: Path, *args: str, ok: bool = True) -> Ran:
    """Run the same ``main`` in this process with click's CliRunner, in ``cwd``."""
    with contextlib.chdir(cwd):
        res = CliRunner().invoke(main, list(args), prog_name="git hangar")
    ran = Ran(res.exit_code, res.stdout, res.stderr)
    if ok:
        assert ran.returncode == 0, f"git hangar {' '.join(args)}: {ran.stderr}"
    return ran


def assert_one_line_error(res: subprocess.CompletedProcess | Ran, code: int, *needles: str) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def open_repo(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def write_npy(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, arr in arrays.items():
        np.save(folder / f"{key}.npy", arr)
        out[key] = folder / f"{key}.npy"
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty git work tree."""
    d = tmp_path / "work"
    d.mkdir()
    subprocess.run(["git", "init", "-q", str(d)], check=True, env=cli_env())
    return d


@pytest.fixture
def branched(repo) -> Repository:
    """master and dev diverged from a common commit: 'imgs' k0..k9 (int16, shape 4).

    master: k0 -> 100, adds m1, metadata 'who' = 'master'.
    dev:    k0 -> 200 (a conflict with master), k1 -> 201, adds d1, 'who' = 'dev'.
    """

    def fill(v: int) -> np.ndarray:
        return np.full(4, v, np.int16)

    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("imgs", shape=4, dtype=np.int16)
    with a:
        for i in range(10):
            a[f"k{i}"] = fill(i)
    co.commit("base")
    co.close()
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["imgs"]["k0"] = fill(200)
    co.arraysets["imgs"]["k1"] = fill(201)
    co.arraysets["imgs"]["d1"] = fill(7)
    co.metadata["who"] = "dev"
    co.commit("dev work")
    co.close()
    co = repo.checkout(write=True, branch="master")
    co.arraysets["imgs"]["k0"] = fill(100)
    co.arraysets["imgs"]["m1"] = fill(8)
    co.metadata["who"] = "master"
    co.commit("master work")
    co.close()
    return repo


# ---- the scripted session ------------------------------------------------------------
@pytest.mark.slow
def test_scripted_session_byte_for_byte(work, tmp_path):
    rng = np.random.default_rng(7)
    inputs = write_npy(
        tmp_path / "data",
        {f"img{i:04d}": rng.integers(0, 255, (8, 8), dtype=np.uint8) for i in range(1000)},
    )
    dev_inputs = write_npy(
        tmp_path / "dev_data",
        {
            **{f"img{i:04d}": rng.integers(0, 255, (8, 8), dtype=np.uint8) for i in range(0, 20)},
            **{f"new{i:03d}": rng.integers(0, 255, (8, 8), dtype=np.uint8) for i in range(30)},
        },
    )
    (tmp_path / "data" / "notes.txt").write_text("not an array")

    out = hangar(work, "init", *NAME)
    assert "Initialized empty hangar repository" in out.stdout
    out = hangar(work, "add", "images", str(tmp_path / "data"))
    assert "1000 added" in out.stdout and "new arrayset" in out.stdout
    assert "passed over 1 file" in out.stderr  # notes.txt

    status = json.loads(hangar(work, "status", "--json").stdout)
    assert status["status"] == "DIRTY" and status["branch"] == "master"
    assert status["changes"]["samples"]["images"] == {"added": 1000, "removed": 0, "mutated": 0}
    assert status["writer_lock"] == {"held": False, "holder": None}

    out = hangar(work, "commit", "-m", "Import 1000 images")
    first = re.match(r"\[master ([0-9a-f]{8})\] Import 1000 images", out.stdout)
    assert first, out.stdout
    hangar(work, "-q", "branch", "create", "dev")
    assert hangar(work, "checkout", "-q", "dev").stdout == ""
    out = hangar(work, "add", "images", str(tmp_path / "dev_data"), "-q")
    assert out.stdout == "" and out.stderr == ""
    hangar(work, "commit", "-m", "Relabel 20, add 30", "-q")
    hangar(work, "checkout", "master")

    d = json.loads(hangar(work, "diff", "master", "dev", "--json", "--stat").stdout)
    assert d["merge_base"] == d["from"]
    assert d["to_side"]["samples"]["images"] == {"added": 30, "removed": 0, "mutated": 20}
    d = json.loads(hangar(work, "diff", "master", "dev", "--json").stdout)  # the keys
    assert [len(v) for v in d["to_side"]["samples"]["images"].values()] == [30, 0, 20]
    assert d["conflicts"]["conflict_found"] is False

    out = hangar(work, "merge", "dev")
    assert "Fast-forward" in out.stdout

    log = json.loads(hangar(work, "log", "--json").stdout)
    assert len(log["order"]) == 2
    assert sorted(log["branches"][log["order"][0]]) == ["dev", "master"]
    assert log["order"][1].startswith(first.group(1))
    summary = json.loads(hangar(work, "summary", "--json").stdout)
    assert summary["arraysets"]["images"]["num_samples"] == 1030

    out = hangar(work, "export", "images", "-o", str(tmp_path / "exported"))
    assert "Exported 1030 samples" in out.stdout
    exported = sorted((tmp_path / "exported").iterdir())
    assert len(exported) == 1030
    expect = {**inputs, **dev_inputs}
    for f in exported:
        assert f.read_bytes() == expect[f.stem].read_bytes(), f.name
    # the user's git state is untouched: no code commit, clean index
    res = subprocess.run(
        ["git", "status", "--porcelain"], cwd=work, capture_output=True, text=True, env=cli_env()
    )
    assert res.stdout == ""


# ---- merge and diff ------------------------------------------------------------------------
def test_diff_and_conflicting_merge(branched):
    path = Path(branched.path)
    before = branched.log(branch="master", return_contents=True)["head"]

    out = hangar(path, "diff", "dev")
    assert "On master since the merge base" in out.stdout
    assert "imgs: 1 added, 1 mutated" in out.stdout  # master: m1 added, k0 changed
    assert "imgs: 1 added, 2 mutated" in out.stdout  # dev: d1 added, k0 k1 changed
    assert "sample imgs['k0']: changed on both sides to different values (t3)" in out.stdout
    assert "metadata 'who'" in out.stdout

    names = cli(path, "diff", "master", "dev", "--name-only").stdout
    assert "A\timgs/d1" in names and "M\timgs/k1" in names
    stat = cli(path, "diff", "master", "dev", "--stat").stdout
    assert re.search(r"imgs\s+\|\s+3 \+~~", stat), stat

    res = hangar(path, "merge", "dev", ok=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    first, *rest = res.stderr.splitlines()
    assert first.startswith(
        "error: merge of 'dev' into 'master' aborted, nothing changed: 2 conflicts"
    )
    assert sorted(rest) == sorted(
        [
            "  metadata 'who': added on both sides with different values (t1)",
            "  sample imgs['k0']: changed on both sides to different values (t3)",
        ]
    )
    assert branched.log(branch="master", return_contents=True)["head"] == before

    out = hangar(path, "merge", "dev", "-m", "take theirs", "--strategy", "theirs")
    sha = re.search(r"Merged 'dev' into 'master': ([0-9a-f]{8})", out.stdout).group(1)
    contents = open_repo(path).log(branch="master", return_contents=True)
    head = contents["head"]
    assert head.startswith(sha) and len(contents["ancestors"][head]) == 2
    assert contents["specs"][head]["commit_message"] == "take theirs"
    shown = cli(path, "show", "master:imgs:k0").stdout
    assert "[200, 200, 200, 200]" in shown
    graph = cli(path, "log").stdout
    assert "|\\" in graph and "(master)" in graph and "take theirs" in graph
    out = cli(path, "merge", "dev")
    assert "Already up to date" in out.stdout


def test_merge_strategy_ours_keeps_our_values(branched):
    path = Path(branched.path)
    out = hangar(path, "merge", "dev", "--strategy", "ours", "-q")
    assert out.stdout == "" and out.stderr == ""
    contents = open_repo(path).log(branch="master", return_contents=True)
    head = contents["head"]
    assert len(contents["ancestors"][head]) == 2
    assert contents["specs"][head]["commit_message"] == "Merge branch 'dev' into 'master'"
    assert "[100, 100, 100, 100]" in cli(path, "show", "master:imgs:k0").stdout  # ours
    # k1 changed on dev only: no conflict, theirs
    assert "[201, 201, 201, 201]" in cli(path, "show", "master:imgs:k1").stdout
    summary = json.loads(cli(path, "summary", "--json").stdout)
    assert summary["arraysets"]["imgs"]["num_samples"] == 12  # k0..k9, m1, d1
    log_dev = json.loads(cli(path, "log", "dev", "--json").stdout)
    assert head not in log_dev["order"] and len(log_dev["order"]) == 2


# ---- errors ------------------------------------------------------------------------------
def test_errors_are_one_line(work, tmp_path):
    empty = tmp_path / "nowhere"
    empty.mkdir()
    assert_one_line_error(hangar(empty, "status", ok=False), 1, "not a git repository")
    assert_one_line_error(
        hangar(work, "log", ok=False), 1, "not a hangar repository", "git hangar init"
    )
    # no identity anywhere: init says how to give one
    assert_one_line_error(cli(work, "init", ok=False), 1, "no identity", "user.name")
    subprocess.run(["git", "config", "user.name", "Cfg User"], cwd=work, check=True)
    subprocess.run(["git", "config", "user.email", "cfg@example.org"], cwd=work, check=True)
    cli(work, "init")
    assert_one_line_error(cli(work, "init", ok=False), 1, "already exists", "--overwrite")

    arr = write_npy(tmp_path / "in", {"a": np.ones(3, np.float32)})["a"]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert_one_line_error(
        hangar(work, "add", "bad name!", str(arr), ok=False), 1, "invalid arrayset name 'bad name!'"
    )
    assert_one_line_error(
        hangar(work, "add", "a", str(notes), ok=False), 1, "notes.txt is not an array file"
    )
    fake = tmp_path / "fake.npy"
    fake.write_text("plain text")
    assert_one_line_error(
        cli(work, "add", "a", str(fake), ok=False), 1, "fake.npy is not a valid .npy array"
    )
    assert_one_line_error(
        cli(work, "add", "a", str(tmp_path / "missing.npy"), ok=False),
        1,
        "missing.npy: No such file or directory",
    )
    assert_one_line_error(hangar(work, "checkout", "nope", ok=False), 1, "no branch named 'nope'")
    assert_one_line_error(
        cli(work, "log", "nope", ok=False), 1, "unknown branch, tag or commit 'nope'"
    )
    assert_one_line_error(cli(work, "commit", "-m", "x", ok=False), 1, "nothing to commit")
    # usage errors: exit status 2, still one line
    assert_one_line_error(
        hangar(work, "add", ok=False), 2, "Missing argument 'ARRAYSET'", "git hangar add -h"
    )
    assert_one_line_error(cli(work, "frobnicate", ok=False), 2, "No such command")
    # nothing was staged by any of the failures
    assert json.loads(cli(work, "status", "--json").stdout)["status"] == "CLEAN"


def test_writer_lock_held_by_another_process(written_repo, tmp_path):
    path = Path(written_repo.path)
    arr = write_npy(tmp_path / "in", {"z": np.zeros((5, 7), np.float32)})["z"]
    co = written_repo.checkout(write=True)
    try:
        co.metadata["pending"] = "yes"
        line = assert_one_line_error(
            hangar(path, "add", "aset", str(arr), ok=False),
            1,
            "the writer lock is held by",
            f"pid {os.getpid()}",
            "git hangar lock release --force",
        )
        assert "Traceback" not in line
        st = hangar(path, "status").stdout
        assert f"Writer lock: held by pid {os.getpid()}" in st
        assert "metadata: 1 added" in st  # read while the writer is open
        js = json.loads(cli(path, "status", "--json").stdout)
        assert js["writer_lock"]["held"] and js["writer_lock"]["holder"]["pid"] == os.getpid()
        assert_one_line_error(
            hangar(path, "lock", "release", ok=False), 1, f"pid {os.getpid()}", "--force"
        )
        assert written_repo.writer_lock_held
        assert "Writer lock released" in hangar(path, "lock", "release", "--force").stdout
        assert not written_repo.writer_lock_held
    finally:
        co.close()
    assert "The writer lock is free" in cli(path, "lock", "release").stdout


def test_unreadable_journal_way_out_from_the_shell(written_repo):
    """A journal a power cut left unreadable: status says what to run, reset
    sets it aside with a one-line warning, and the committed data is intact."""
    path = Path(written_repo.path)
    journal = written_repo._journal_path()
    journal.write_bytes(b"\x00garbage\n")
    assert_one_line_error(hangar(path, "status", ok=False), 1, "is unreadable", "git hangar reset")
    res = hangar(path, "reset")
    (warning,) = [line for line in res.stderr.splitlines() if line]
    assert warning.startswith("warning: staging journal ") and "set aside as " in warning
    assert "Nothing staged." in hangar(path, "status").stdout
    (kept,) = journal.parent.glob("journal.unreadable-*")
    assert kept.read_bytes() == b"\x00garbage\n"
    with written_repo.checkout() as co:  # committed data intact
        assert len(co.arraysets["aset"]) == 10 and co.metadata["about"] == "fixture"


def test_checkout_refuses_with_staged_changes_and_reset(written_repo, tmp_path):
    path = Path(written_repo.path)
    written_repo.create_branch("dev")
    arr = write_npy(tmp_path / "in", {"x": np.ones((5, 7), np.float32)})["x"]
    cli(path, "add", "aset", str(arr))
    assert_one_line_error(
        hangar(path, "checkout", "dev", ok=False), 1, "uncommitted changes on branch 'master'"
    )
    assert "Staging area reset" in hangar(path, "reset").stdout
    assert "Nothing staged" in cli(path, "reset").stdout
    assert "Switched to branch 'dev'" in hangar(path, "checkout", "dev").stdout
    assert "Already on 'dev'" in cli(path, "checkout", "dev").stdout
    # add --branch moves the staging area as checkout does
    cli(path, "add", "aset", str(arr), "--branch", "master")
    st = json.loads(cli(path, "status", "--json").stdout)
    assert st["branch"] == "master" and st["changes"]["samples"]["aset"]["added"] == 1


def test_init_creates_git_repo_and_overwrite(tmp_path, written_repo):
    plain = tmp_path / "plain"
    plain.mkdir()
    out = hangar(plain, "init", *NAME)
    assert out.stdout == (  # it says that it ran `git init` (issue 16)
        f"Initialized empty Git repository in {plain / '.git'}/ (no git here yet)\n"
        f"Initialized empty hangar repository in {plain / '.git' / 'hangar'}\n"
    )
    out = hangar(plain, "init", *NAME, "--overwrite")  # in a git repository: nothing to say
    assert out.stdout == f"Initialized empty hangar repository in {plain / '.git' / 'hangar'}\n"
    assert (plain / ".git").is_dir() and "Nothing staged." in hangar(plain, "status").stdout

    path = Path(written_repo.path)
    co = written_repo.checkout(write=True)  # the writer lock is held: no overwrite
    try:
        assert_one_line_error(
            cli(path, "init", *NAME, "--overwrite", ok=False), 1, "cannot overwrite", "writer lock"
        )
    finally:
        co.close()
    assert json.loads(cli(path, "summary", "--json").stdout)["arraysets"]["aset"]
    hangar(path, "init", "--name", "New Name", "--email", "new@example.org", "--overwrite")
    assert json.loads(cli(path, "branch", "list", "--json").stdout) == [
        {"name": "master", "commit": None, "remote": False, "current": True}
    ]
    assert_one_line_error(cli(path, "log", ok=False), 1, "branch 'master' has no commits yet")
    arr = write_npy(tmp_path / "in", {"a": np.ones(3, np.int8)})["a"]
    cli(path, "add", "fresh", str(arr))
    cli(path, "commit", "-m", "after overwrite")
    head = open_repo(path).log(return_contents=True)
    spec = head["specs"][head["head"]]
    assert spec["commit_user"] == "New Name" and spec["commit_email"] == "new@example.org"
    assert list(json.loads(cli(path, "summary", "--json").stdout)["arraysets"]) == ["fresh"]


def test_runs_anywhere_inside_the_work_tree(written_repo, tmp_path):
    path = Path(written_repo.path)
    deep = path / "src" / "deep"
    deep.mkdir(parents=True)
    assert hangar(deep, "status").stdout.startswith("On branch master at ")
    arr = write_npy(tmp_path / "in", {"sub": np.zeros((5, 7), np.float32)})["sub"]
    hangar(deep, "add", "aset", str(arr), "-q")
    # git -C, and a linked work tree of the same repository share the hangar data
    res = subprocess.run(
        ["git", "-C", str(deep), "hangar", "diff", "--name-only"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout == "A\taset/sub\n"
    hangar(path, "commit", "-m", "from a subfolder", "-q")
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "code"], cwd=path, check=True)
    subprocess.run([*git, "worktree", "add", "-q", str(tmp_path / "wt")], cwd=path, check=True)
    log = json.loads(hangar(tmp_path / "wt", "log", "--json").stdout)
    assert len(log["order"]) == 2
    out = hangar(tmp_path / "wt", "show", ":aset:sub").stdout
    assert "shape (5, 7), dtype float32" in out


def test_add_npy_npz_hdf5_and_folders(work, tmp_path):
    import h5py

    cli(work, "init", *NAME, "-q")
    data = tmp_path / "data"
    inputs = write_npy(data, {"a": np.arange(6, dtype=np.int16).reshape(2, 3)})
    np.savez(data / "pack.npz", m1=np.full((2, 3), 1, np.int16), m2=np.full((2, 3), 2, np.int16))
    with h5py.File(data / "more.h5", "w") as f:
        f["x"] = np.full((2, 3), 3, np.int16)
        f.create_group("grp")["y"] = np.full((2, 3), 4, np.int16)
    write_npy(data / "sub", {"deep": np.full((2, 3), 5, np.int16)})
    (data / "README").write_text("not an array")

    out = hangar(work, "add", "nums", str(data))
    assert "Staged 5 arrays into 'nums' (new arrayset)" in out.stdout
    assert "passed over 1 file not in .npy/.npz/HDF5 format" in out.stderr  # not "1 file(s)"
    assert "use -r" in out.stderr
    out = cli(work, "add", "nums", str(data), "-r", "-q")
    assert out.stdout == "" and out.stderr == ""
    cli(work, "commit", "-m", "formats", "-q")
    summary = json.loads(cli(work, "summary", "--json").stdout)["arraysets"]["nums"]
    assert summary["num_samples"] == 6
    assert summary["dtype"] == "int16" and summary["shape"] == [2, 3]
    for key, value in {"a": 0, "m1": 1, "m2": 2, "x": 3, "grp.y": 4, "deep": 5}.items():
        got = np.load(_show_npy(work, f"master:nums:{key}"))
        expect = np.arange(6).reshape(2, 3) if key == "a" else np.full((2, 3), value)
        np.testing.assert_array_equal(got, expect.astype(np.int16))
    assert _show_npy(work, "master:nums:a").getvalue() == inputs["a"].read_bytes()

    # every file is checked before anything is staged
    bad = tmp_path / "bad"
    write_npy(bad, {"ok": np.zeros((2, 3), np.int16)})
    (bad / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    assert_one_line_error(cli(work, "add", "nums", str(bad), ok=False), 1, "broken.npy")
    odd = write_npy(tmp_path / "odd", {"wide": np.zeros((2, 4), np.int16)})["wide"]
    assert_one_line_error(cli(work, "add", "nums", str(odd), ok=False), 1, "wide.npy")
    shapes = tmp_path / "shapes"
    write_npy(shapes, {"s3": np.zeros(3), "s4": np.zeros(4)})
    assert_one_line_error(cli(work, "add", "new", str(shapes), ok=False), 1, "--variable-shape")
    assert json.loads(cli(work, "status", "--json").stdout)["status"] == "CLEAN"
    cli(work, "add", "new", str(shapes), "--variable-shape")

    # 0-d arrays stay 0-d, through import, commit, show and export
    scalar = write_npy(tmp_path / "scalar", {"pi": np.array(3.14159)})["pi"]
    cli(work, "reset")
    cli(work, "add", "consts", str(scalar))
    cli(work, "commit", "-m", "a scalar")
    assert _show_npy(work, ":consts:pi").getvalue() == scalar.read_bytes()
    cli(work, "export", "consts", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "pi.npy").read_bytes() == scalar.read_bytes()


def _show_npy(cwd: Path, spec: str) -> io.BytesIO:
    """``git hangar show --npy SPEC`` (in-process): the .npy bytes it writes."""
    with contextlib.chdir(cwd):
        res = CliRunner().invoke(main, ["show", "--npy", spec])
    assert res.exit_code == 0, res.stderr
    return io.BytesIO(res.stdout_bytes)


def test_quiet_silences_informational_output(work, tmp_path):
    arrays = write_npy(tmp_path / "in", {"a": np.ones(3, np.int8), "b": np.zeros(3, np.int8)})
    steps = [
        ["init", *NAME],
        ["add", "v", str(arrays["a"])],
        ["commit", "-m", "one"],
        ["branch", "create", "dev"],
        ["checkout", "dev"],
        ["add", "v", str(arrays["b"])],
        ["reset"],
        ["reset"],
        ["add", "v", str(arrays["b"])],
        ["commit", "-m", "two"],
        ["checkout", "master"],
        ["merge", "dev"],
        ["merge", "dev"],
        ["export", "v", "-o", str(tmp_path / "out")],
        ["branch", "create", "gone"],
        ["branch", "delete", "gone"],
        ["lock", "release"],
        ["gc"],
        ["fsck"],
    ]
    for args in steps:
        res = cli(work, *args, "-q")
        assert (res.stdout, res.stderr) == ("", ""), args
    for args in (["reset"], ["gc"], ["fsck"], ["lock", "release"]):  # -q before the command
        res = cli(work, "-q", *args)
        assert (res.stdout, res.stderr) == ("", ""), args
        assert cli(work, *args).stdout != "", args  # and they do say something without it
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.npy", "b.npy"]
    # -q leaves what was asked for: the array that show prints, status, log
    shown = cli(work, "show", "-q", ":v:a").stdout
    assert shown == "[1, 1, 1]\n"
    assert "On branch master" in cli(work, "status", "-q").stdout


# ---- branches, show, export formats, summary -------------------------------------------
def test_branch_commands(branched):
    path = Path(branched.path)
    heads = {b: branched.log(branch=b, return_contents=True)["head"] for b in ("master", "dev")}
    rows = json.loads(hangar(path, "branch", "list", "--json").stdout)
    assert rows == [
        {"name": "dev", "commit": heads["dev"], "remote": False, "current": False},
        {"name": "master", "commit": heads["master"], "remote": False, "current": True},
    ]
    base = branched.log(branch="master", return_contents=True)["order"][-1]
    out = hangar(path, "branch", "create", "old", base[:7])
    assert f"Created branch 'old' at {base[:8]}" in out.stdout
    listing = cli(path, "branch", "list", "-v").stdout.splitlines()
    assert listing[0].startswith("  dev") and "dev work" in listing[0]
    assert listing[1].startswith("* master") and listing[2].startswith("  old")
    assert_one_line_error(cli(path, "branch", "create", "old", ok=False), 1, "already exists")
    assert_one_line_error(
        hangar(path, "branch", "delete", "dev", ok=False),
        1,
        "holds commits no other branch contains",
    )
    assert "Deleted branch 'old'" in cli(path, "branch", "delete", "old").stdout
    out = cli(path, "branch", "delete", "dev", "--force")
    assert f"(was {heads['dev'][:8]})" in out.stdout
    assert_one_line_error(
        cli(path, "branch", "delete", "master", ok=False), 1, "write checkout's branch"
    )


def test_show_summary_and_export_formats(written_repo, tmp_path):
    path = Path(written_repo.path)
    head = written_repo.log(return_contents=True)["head"]
    out = hangar(path, "show", f"{head[:6]}:aset:3").stdout
    assert out.splitlines()[0] == f"aset['3'] at {head[:8]}: shape (5, 7), dtype float32"
    assert "[3., 3., 3., 3., 3., 3., 3.]" in out
    raw = subprocess.run(
        ["git", "hangar", "show", "--npy", ":aset:7"],
        cwd=path,
        env=cli_env(),
        capture_output=True,
        check=True,
    ).stdout
    (tmp_path / "seven.npy").write_bytes(raw)
    np.testing.assert_array_equal(np.load(tmp_path / "seven.npy"), np.full((5, 7), 7, np.float32))
    assert_one_line_error(cli(path, "show", "master:aset:nope", ok=False), 1, "no sample 'nope'")
    assert_one_line_error(cli(path, "show", "master:aset", ok=False), 2, "STARTPOINT:ARRAYSET:KEY")

    text = hangar(path, "summary", "master").stdout
    assert "Arrayset Name: aset" in text and "Num Arrays: 10" in text

    hangar(path, "export", "aset", "master", "-o", str(tmp_path / "z"), "--format", "npz")
    with np.load(tmp_path / "z" / "aset.npz") as z:
        assert sorted(z.files, key=int) == [str(i) for i in range(10)]
        np.testing.assert_array_equal(z["4"], np.full((5, 7), 4, np.float32))
    cli(path, "export", "aset", "-o", str(tmp_path / "z"), "-f", "hdf5", "-q")
    import h5py

    with h5py.File(tmp_path / "z" / "aset.h5", "r") as f:
        assert len(f) == 10 and f["9"][0, 0] == 9
    assert_one_line_error(
        cli(path, "export", "aset", "-o", str(tmp_path / "z"), "-f", "npz", ok=False),
        1,
        "aset.npz exists",
        "--overwrite",
    )
    assert_one_line_error(
        cli(path, "export", "nope", "-o", str(tmp_path / "q"), ok=False),
        1,
        "no arrayset named 'nope'",
    )
    # round trip: the exported archive imports as a new arrayset
    cli(path, "add", "copy", str(tmp_path / "z" / "aset.npz"))
    cli(path, "commit", "-m", "copy")
    after = json.loads(cli(path, "summary", "--json").stdout)["arraysets"]
    assert after["copy"]["num_samples"] == 10
    assert after["copy"]["schema_hash"] == after["aset"]["schema_hash"]


def test_diff_of_staged_changes(written_repo, tmp_path):
    path = Path(written_repo.path)
    write_npy(
        tmp_path / "in", {"3": np.zeros((5, 7), np.float32), "new": np.ones((5, 7), np.float32)}
    )
    cli(path, "add", "aset", str(tmp_path / "in"))
    assert cli(path, "diff").stdout.strip() == "aset: 1 added, 1 mutated"
    names = cli(path, "diff", "--name-only").stdout.splitlines()
    assert names == ["A\taset/new", "M\taset/3"]
    js = json.loads(cli(path, "diff", "--json", "--name-only").stdout)
    assert js["samples"]["aset"] == {"added": ["new"], "removed": [], "mutated": ["3"]}


# ---- help, version, progress -------------------------------------------------------------
def test_help_and_version(work, tmp_path):
    out = hangar(work, "-h").stdout
    assert out.startswith("Usage: git hangar [OPTIONS] COMMAND [ARGS]...")
    for cmd in (
        "init",
        "status",
        "add",
        "commit",
        "checkout",
        "log",
        "summary",
        "branch",
        "diff",
        "merge",
        "export",
        "show",
        "lock",
        # the commands of their own issues, in their places in the tree
        "remote",
        "push",
        "fetch",
        "fetch-data",
        "clone",
        "fsck",
        "gc",
        # git's spelling (issue 16)
        "tag",
        "pull",
        "ls",
        "rm",
        "meta",
    ):
        assert re.search(rf"^  {re.escape(cmd)}\s", out, re.M), cmd
    for group, subs in {"meta": ("get", "set", "rm", "list"), "lock": ("release",)}.items():
        text = cli(work, group, "-h").stdout
        for sub in subs:
            assert re.search(rf"^  {sub}\s", text, re.M), (group, sub)
    assert "Usage: git hangar add [OPTIONS] ARRAYSET PATH..." in cli(work, "add", "-h").stdout
    # git routes only a --help right after `hangar`; after a command it is ours
    sub = hangar(work, "add", "--help").stdout
    assert sub.startswith("Usage: git hangar add [OPTIONS] ARRAYSET PATH...")
    bare = hangar(work, ok=False)  # no command: the help, as a usage error
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.startswith("Usage: git hangar [OPTIONS] COMMAND")
    assert "[NAME [STARTPOINT]]" in cli(work, "help", "branch").stdout
    from hangar_git import __version__

    assert hangar(work, "--version").stdout == f"git hangar version {__version__}\n"
    # the launcher at the top of the checkout runs the checkout's code
    launched = hangar(work, "--version", env=cli_env(extra_path=[ROOT]))
    assert launched.stdout == f"git hangar version {__version__}\n"


def _man_db() -> bool:
    """True when `man` is man-db, which finds <dir>/../share/man for each PATH entry."""
    if shutil.which("man") is None:
        return False
    res = subprocess.run(["man", "--version"], capture_output=True, text=True)
    return "man-db" in res.stdout + res.stderr or res.stdout.startswith("man ")


@pytest.mark.skipif(
    not _man_db(), reason="no man-db `man` here: git cannot show manual pages found via PATH"
)
def test_git_hangar_dash_dash_help_shows_the_manual(work, tmp_path):
    # git turns `git hangar --help` into `man git-hangar`. From a checkout on PATH,
    # man finds man/man1/git-hangar.1 next to the launcher:
    res = hangar(work, "--help", env=cli_env(extra_path=[ROOT]))
    assert "GIT-HANGAR(1)" in res.stdout and "git hangar add" in res.stdout
    assert "Stage arrays from .npy/.npz/HDF5 files" in res.stdout
    # An installed package puts the page in <prefix>/share/man/man1 (a wheel's data
    # files, or `git hangar help --install-man` after an editable install):
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    env = cli_env(extra_path=[prefix / "bin"])
    man1 = prefix / "share" / "man" / "man1"
    out = hangar(work, "help", "--install-man", "--to", str(man1), env=env).stdout
    assert out == f"Wrote {man1 / 'git-hangar.1'}; `git hangar --help` shows it\n"
    res = hangar(work, "--help", env=env)
    assert "GIT-HANGAR(1)" in res.stdout and "git hangar merge" in res.stdout
    # a folder man does not search: --install-man says how to make it searched
    elsewhere = tmp_path / "elsewhere" / "man1"
    out = hangar(work, "help", "--install-man", "--to", str(elsewhere)).stdout
    assert "where man does not look" in out
    assert f'MANPATH="{elsewhere.parent}:$MANPATH"' in out
    assert (elsewhere / "git-hangar.1").read_text() == render_manpage()


@pytest.mark.slow
def test_installed_package_puts_git_hangar_on_path(work, tmp_path):
    """A real install (into a venv) puts the `git-hangar` script on PATH and its
    manual page where `git hangar --help` finds it."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("hangar_git", "man"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # the dependencies and the build backend are this environment's (a venv's
    # --system-site-packages would be the base interpreter's instead): its
    # site-packages go on the new venv's path after the venv's own, through a
    # .pth file whose own .pth files are not read, so the editable install of
    # this checkout stays out; pip never uninstalls anything outside the venv
    inner = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(inner, "outer-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "-q", "--no-deps", "--no-index", "--no-build-isolation", str(src)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    script = venv / "bin" / "git-hangar"
    assert script.exists() and (venv / "share" / "man" / "man1" / "git-hangar.1").exists()
    env = cli_env()
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *env["PATH"].split(os.pathsep)[1:]])
    found = subprocess.run(
        ["git", "hangar", "--version"], cwd=work, env=env, capture_output=True, text=True
    )
    assert found.returncode == 0 and found.stdout.startswith("git hangar version ")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import hangar_git; print(hangar_git.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not this checkout
    hangar(work, "init", *NAME, env=env)
    assert "Nothing staged." in hangar(work, "status", env=env).stdout
    if _man_db():
        res = hangar(work, "--help", env=env)
        assert "GIT-HANGAR(1)" in res.stdout and "git hangar export" in res.stdout


def test_manpage_is_current():
    page = (ROOT / "man" / "man1" / "git-hangar.1").read_text()
    assert page == render_manpage(), (
        "man/man1/git-hangar.1 is out of date: regenerate it with "
        "`./git-hangar help --man > man/man1/git-hangar.1`"
    )


def run_with_tty_stderr(cwd: Path, *args: str) -> tuple[int, str, bytes]:
    """Run git hangar with stderr on a pseudo-terminal; returns rc, stdout, terminal bytes."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["git", "hangar", *args],
        cwd=cwd,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout = proc.stdout.read().decode()
    return proc.wait(), stdout, b"".join(chunks)


def test_progress_bars_on_a_terminal_only(written_repo, tmp_path):
    path = Path(written_repo.path)
    write_npy(tmp_path / "in", {f"p{i}": np.full((5, 7), i, np.float32) for i in range(40)})
    rc, stdout, tty = run_with_tty_stderr(path, "add", "aset", str(tmp_path / "in"))
    assert rc == 0 and "40 added" in stdout
    assert b"Staging into aset" in tty and b"40/40" in tty
    rc, stdout, tty = run_with_tty_stderr(path, "export", "aset", "-o", str(tmp_path / "o1"))
    assert rc == 0 and "Exported 10 samples" in stdout  # the committed ones
    assert b"Exporting aset" in tty and b"10/10" in tty
    rc, stdout, tty = run_with_tty_stderr(path, "export", "aset", "-o", str(tmp_path / "o"), "-q")
    assert rc == 0 and tty == b"" and stdout == ""
    piped = hangar(path, "export", "aset", "-o", str(tmp_path / "o2"))
    assert piped.stderr == "" and len(list((tmp_path / "o2").iterdir())) == 10
    piped = hangar(path, "add", "aset", str(tmp_path / "in"))
    assert piped.stderr == "" and "0 replaced, 40 unchanged" in piped.stdout
    write_npy(tmp_path / "in2", {"p1": np.full((5, 7), -1, np.float32)})
    piped = hangar(path, "add", "aset", str(tmp_path / "in2"))
    assert "0 added, 1 replaced" in piped.stdout and "unchanged" not in piped.stdout


@pytest.mark.parametrize("args", [["show", "--npy", ":big:x"], ["show", "--full", ":big:x"]])
def test_reader_that_stops_early_ends_the_command_quietly(repo, args):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("big", prototype=np.zeros((2000, 100)))["x"] = np.ones((2000, 100))
    co.commit("big")
    co.close()
    proc = subprocess.Popen(
        ["git", "hangar", *args],
        cwd=repo.path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert len(proc.stdout.read(16)) == 16  # like `| head -c 16`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() != 0 and err == ""


# ---- in-process checks of the command tree ------------------------------------------------
def test_every_command_takes_quiet():
    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, cmd in walk(main, []):
        assert any("--quiet" in getattr(p, "opts", ()) for p in cmd.params), path


def test_added_commands_get_quiet_and_error_handling(tmp_path, monkeypatch):
    import click

    @click.command("boom")
    def boom() -> None:
        raise KeyError("no such remote 'origin'")

    main.add_command(boom)
    try:
        monkeypatch.chdir(tmp_path)
        res = CliRunner().invoke(main, ["boom", "-q"])
        assert res.exit_code == 1
        assert res.stderr == "error: no such remote 'origin'\n"
    finally:
        main.commands.pop("boom")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["commit"], "Missing option '-m'"),
        (["merge", "dev", "--strategy", "mine"], "Invalid value for '-s' / '--strategy'"),
        (["export", "aset"], "Missing option '-o'"),
        (["export", "aset", "-o", "x", "--format", "csv"], "Invalid value for '-f' / '--format'"),
        (["show", "just-a-name"], "expected STARTPOINT:ARRAYSET:KEY"),
        (["meta"], None),  # (`branch` alone lists, as in git)
        (["log", "a", "b"], "Got unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, args)
    if needle is None:  # a group without its command: its help, on stderr, as a usage error
        assert res.exit_code == 2 and res.stdout == ""
        assert res.stderr.startswith("Usage: ") and "meta [OPTIONS] COMMAND" in res.stderr
        assert "Commands:" in res.stderr
        return
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


def test_internal_errors_are_one_line_unless_debugging(tmp_path, monkeypatch):
    import click

    @click.command("oops")
    def oops() -> None:
        raise TypeError("a bug")

    main.add_command(oops)
    try:
        monkeypatch.chdir(tmp_path)
        res = CliRunner().invoke(main, ["oops"])
        assert res.exit_code == 1
        assert res.stderr == (
            "error: internal error: TypeError: a bug "
            "(set HANGAR_GIT_DEBUG=1 to see the traceback)\n"
        )
        monkeypatch.setenv("HANGAR_GIT_DEBUG", "1")
        res = CliRunner().invoke(main, ["oops"])
        assert isinstance(res.exception, TypeError)
    finally:
        main.commands.pop("oops")
