"""`git hangar` with git's spelling: branch, checkout -b, tag, log -n, remote, pull,
clone of code and data, status against the remote, ls, rm, meta.

Run through the installed ``git hangar`` in real git repositories with a bare
origin (the isolated git config of tests/conftest.py), as test_cli.py does.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from hangar_git import Repository

NAME = ["--name", "Bea", "--email", "bea@example.org"]

try:
    from .test_cli import assert_one_line_error, cli, cli_env, hangar, write_npy
except ImportError:  # run as a top-level module
    from test_cli import (  # type: ignore[no-redef]
        assert_one_line_error,
        cli,
        cli_env,
        hangar,
        write_npy,
    )


def git(cwd: Path, *args: str) -> str:
    res = subprocess.run(
        ["git", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, check=True
    )
    return res.stdout


def refs(cwd: Path) -> str:
    return git(cwd, "for-each-ref", "refs/hangar/")


def open_repo(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def jsonout(cwd: Path, *args: str):
    return json.loads(hangar(cwd, *args, "--json").stdout)


@pytest.fixture
def arrays(tmp_path: Path) -> dict[str, Path]:
    return write_npy(tmp_path / "npy", {f"k{i}": np.full(3, i, np.int16) for i in range(6)})


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare origin holding one code commit on main."""
    bare = tmp_path / "origin.git"
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=cli_env()
    )
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "train.py").write_text("print('train')\n")
    git(seed, "add", "train.py")
    git(seed, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "code")
    git(seed, "push", "-q", str(bare), "main")
    return bare


@pytest.fixture
def first(tmp_path: Path, origin: Path, arrays: dict[str, Path]) -> Path:
    """A clone of origin's code with hangar data: master = k0, k1 (pushed), data URL set."""
    a = tmp_path / "a"
    git(tmp_path, "clone", "-q", str(origin), str(a))
    hangar(a, "init", "--name", "Ada", "--email", "ada@example.org")
    hangar(a, "add", "imgs", str(arrays["k0"]), str(arrays["k1"]))
    hangar(a, "commit", "-m", "first")
    hangar(a, "remote", "add", "origin", "--data", str(tmp_path / "data"))
    hangar(a, "push")
    return a


# ---- branches, checkout, log ------------------------------------------------------------
def test_branch_with_git_spelling(written_repo):
    path = Path(written_repo.path)
    head = written_repo.branch_commit("master")
    assert hangar(path, "branch").stdout == "* master\n"
    assert "Created branch 'feature/x'" in hangar(path, "branch", "feature/x").stdout
    hangar(path, "branch", "old", head[:7])
    assert hangar(path, "branch").stdout.splitlines() == ["  feature/x", "* master", "  old"]
    rows = jsonout(path, "branch")
    assert {r["name"]: r["commit"] for r in rows} == dict.fromkeys(
        ["feature/x", "master", "old"], head
    )
    # a name that cannot sit beside another, or leave refs/hangar/heads: nothing changes
    before = refs(path)
    for bad in ("feature", "feature/x/y", "a/../b", "/x", "x/", "a//b", "a/.git", "-d"):
        res = hangar(path, "branch", "--", bad, ok=False)
        assert res.returncode == 1, (bad, res.stderr)
        assert res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1
    assert refs(path) == before
    # -d refuses work no other branch holds; -D deletes it
    hangar(path, "checkout", "feature/x")
    cli(path, "meta", "set", "who", "x")
    hangar(path, "commit", "-m", "on feature")
    hangar(path, "checkout", "master")
    assert_one_line_error(
        hangar(path, "branch", "-d", "feature/x", ok=False), 1, "holds commits no other branch"
    )
    assert "Deleted branch 'old'" in hangar(path, "branch", "-d", "old").stdout
    assert "Deleted branch 'feature/x'" in hangar(path, "branch", "-D", "feature/x").stdout
    assert hangar(path, "branch").stdout == "* master\n"
    # the earlier spelling still works
    hangar(path, "branch", "create", "list")
    assert "  list" in hangar(path, "branch", "list").stdout
    hangar(path, "branch", "delete", "list")
    assert_one_line_error(hangar(path, "branch", "a", "b", "c", ok=False), 2, "at most")


def test_checkout_b_log_n_and_startpoints(written_repo):
    path = Path(written_repo.path)
    first = written_repo.branch_commit("master")
    cli(path, "meta", "set", "n", "2")
    hangar(path, "commit", "-m", "second")
    out = hangar(path, "checkout", "-b", "topic/old", first[:8]).stdout
    assert out == f"Switched to a new branch 'topic/old' at {first[:8]}\n"
    assert jsonout(path, "status")["branch"] == "topic/old"
    # Python and the command line agree on the current branch ...
    repo = open_repo(path)
    assert repo.writer_branch == "topic/old"
    co = repo.checkout(write=True, branch=repo.writer_branch)
    co.close()
    # ... and the default of checkout(write=True), master as in the reference, says so
    with pytest.warns(UserWarning, match="moved the current branch from 'topic/old'"):
        co = repo.checkout(write=True)
    co.close()
    assert hangar(path, "status").stdout.startswith("On branch master ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit branch, or no move: no warning
        repo.checkout(write=True).close()
        repo.checkout(write=True, branch="topic/old").close()
        repo.checkout(write=True, branch="master").close()
    hangar(path, "checkout", "topic/old")
    assert "Already on 'topic/old'" in hangar(path, "checkout", "topic/old").stdout
    # staged work on the current branch: -b refuses and creates nothing
    cli(path, "meta", "set", "x", "1")
    assert_one_line_error(hangar(path, "checkout", "-b", "new", ok=False), 1, "uncommitted changes")
    assert "new" not in open_repo(path).list_branches()
    hangar(path, "reset")
    hangar(path, "checkout", "master")
    # log -n N and log STARTPOINT
    lines = hangar(path, "log", "-n", "1").stdout.splitlines()
    assert len(lines) == 1 and "second" in lines[0]
    assert len(hangar(path, "log").stdout.splitlines()) == 2
    assert "second" not in hangar(path, "log", "topic/old").stdout
    assert [len(jsonout(path, "log", "-n", "1")["order"])] == [1]
    assert_one_line_error(hangar(path, "log", "-n", "0", ok=False), 2)


def test_startpoints_take_ancestry_suffixes(written_repo):
    path = Path(written_repo.path)
    first = written_repo.branch_commit("master")
    cli(path, "meta", "set", "about", "second")
    cli(path, "commit", "-m", "second")
    assert cli(path, "log", "-n", "1", "master~1").stdout.split()[1] == first
    assert cli(path, "show", "master^:aset/3").stdout.startswith("aset['3'] at ")
    cli(path, "branch", "old", "master~")
    assert written_repo.branch_commit("old") == first
    assert "metadata: 1 mutated" in cli(path, "diff", "master~1", "master").stdout
    err = assert_one_line_error(cli(path, "show", "master~2:aset/3", ok=False), 1)
    assert "unknown branch, tag or commit 'master~2'" in err


def test_version_has_no_short_v(tmp_path):
    work = tmp_path
    from hangar_git import __version__

    assert hangar(work, "--version").stdout == f"git hangar version {__version__}\n"
    assert hangar(work, "-v", ok=False).returncode == 2


# ---- tags ---------------------------------------------------------------------------------
def test_tags_from_the_command_line(written_repo):
    path = Path(written_repo.path)
    first = written_repo.branch_commit("master")
    cli(path, "meta", "set", "about", "changed")
    hangar(path, "commit", "-m", "second")
    assert hangar(path, "tag", "v1", first[:10]).stdout == f"Tagged {first[:8]} as 'v1'\n"
    hangar(path, "tag", "release/latest")
    second = written_repo.branch_commit("master")
    assert jsonout(path, "tag") == [
        {"name": "release/latest", "commit": second},
        {"name": "v1", "commit": first},
    ]
    # a tag is a STARTPOINT
    assert hangar(path, "meta", "get", "about", "v1").stdout == "fixture\n"
    assert jsonout(path, "summary", "v1")["commit"] == first
    assert jsonout(path, "log", "v1")["order"] == [first]
    assert jsonout(path, "log")["tags"] == {first: ["v1"], second: ["release/latest"]}
    assert_one_line_error(hangar(path, "checkout", "v1", ok=False), 1, "is a tag", "-b")
    hangar(path, "checkout", "-b", "from-tag", "v1")
    assert open_repo(path).branch_commit("from-tag") == first
    # existing or clashing tags are not moved; nothing changes
    before = refs(path)
    assert_one_line_error(hangar(path, "tag", "v1", ok=False), 1, "already exists")
    assert_one_line_error(hangar(path, "tag", "v1/rc", ok=False), 1, "clashes")
    assert_one_line_error(hangar(path, "tag", "a..b", ok=False), 1, "invalid tag name")
    assert refs(path) == before
    assert f"Deleted tag 'v1' (was {first[:8]})" in hangar(path, "tag", "-d", "v1").stdout
    assert_one_line_error(hangar(path, "tag", "-d", "v1", ok=False), 1, "no tag named 'v1'")


# ---- remotes, clone, pull, status ------------------------------------------------------
def test_two_clones_pull_each_others_work_and_tags(tmp_path, origin, first, arrays):
    # a full clone: the code and the data records
    b = tmp_path / "b"
    out = hangar(tmp_path, "clone", str(origin), str(b), "--data", str(tmp_path / "data"), *NAME)
    assert "cloned code and data records" in out.stdout
    assert (b / "train.py").read_text() == "print('train')\n"
    assert git(b, "log", "--format=%s").strip() == "code"
    assert hangar(b, "ls", "imgs").stdout.splitlines() == ["k0", "k1"]
    assert {r["where"] for r in jsonout(b, "ls", "imgs", "--long")} == {"remote"}
    # b: new work and a tag, pushed
    hangar(b, "add", "imgs", str(arrays["k2"]))
    hangar(b, "commit", "-m", "from b")
    hangar(b, "tag", "b-v1")
    assert jsonout(b, "status")["tracking"]["ahead"] == 1
    assert "1 tag sent to origin: b-v1" in hangar(b, "push").stdout
    # a: pull brings b's commit, its tag and its payloads
    st = jsonout(first, "status")
    assert st["tracking"] == {
        "upstream": "origin/master",
        "commit": st["head"],
        "ahead": 0,
        "behind": 0,
    }
    out = hangar(first, "pull").stdout
    assert "Fast-forward 'master'" in out and "1 tag from origin: b-v1" in out
    assert "fetched 1 payload " in out
    assert hangar(first, "ls", "imgs").stdout.splitlines() == ["k0", "k1", "k2"]
    assert {r["where"] for r in jsonout(first, "ls", "imgs", "--long")} == {"local"}
    assert [t["name"] for t in jsonout(first, "tag")] == ["b-v1"]
    # a and b both commit: b pulls a merge, with a's tag
    hangar(first, "add", "imgs", str(arrays["k3"]))
    hangar(first, "commit", "-m", "from a")
    hangar(first, "tag", "a-v1")
    hangar(first, "push")
    cli(b, "meta", "set", "by", "b")
    hangar(b, "commit", "-m", "meta from b")
    hangar(b, "fetch")
    st = jsonout(b, "status")["tracking"]
    assert (st["ahead"], st["behind"]) == (1, 1)
    assert "have diverged" in hangar(b, "status").stdout
    out = hangar(b, "pull").stdout
    assert "Merged origin/master into 'master'" in out
    assert hangar(b, "ls", "imgs").stdout.splitlines() == ["k0", "k1", "k2", "k3"]
    assert hangar(b, "meta", "get", "by").stdout == "b\n"
    assert [t["name"] for t in jsonout(b, "tag")] == ["a-v1", "b-v1"]
    hangar(b, "push")
    hangar(first, "pull")
    assert open_repo(first).branch_commit("master") == open_repo(b).branch_commit("master")
    # a tag both sides have at different commits is kept, and said so
    hangar(first, "tag", "-d", "a-v1")
    hangar(first, "tag", "a-v1", "b-v1")
    res = hangar(first, "fetch")
    assert "tag 'a-v1' left as it is" in res.stderr
    assert open_repo(first).list_tags()["a-v1"] == open_repo(first).list_tags()["b-v1"]


def test_clone_without_data_url_then_set_it(tmp_path, origin, first):
    b = tmp_path / "b"
    out = hangar(tmp_path, "clone", str(origin), str(b), *NAME).stdout
    assert "fetch-data" not in out and "set-data origin URL" in out
    assert hangar(b, "remote").stdout == "origin\n"
    assert hangar(b, "remote", "-v").stdout == f"origin\t{origin}\t-\n"
    out = hangar(b, "pull").stdout
    assert "no data URL" in out
    # `remote add` of the cloned origin sets its data URL, as its help says
    hangar(b, "remote", "add", "origin", "--data", str(tmp_path / "data"))
    assert jsonout(b, "remote") == [
        {"name": "origin", "address": str(origin), "data": str(tmp_path / "data")}
    ]
    # another data URL through add is refused; set-data changes it
    assert_one_line_error(
        hangar(b, "remote", "add", "origin", "--data", str(tmp_path / "x"), ok=False),
        1,
        "remote set-data",
    )
    hangar(b, "remote", "set-data", "origin", str(tmp_path / "moved"))
    assert jsonout(b, "remote")[0]["data"] == str(tmp_path / "moved")
    hangar(b, "remote", "set-data", "origin", str(tmp_path / "data"))
    assert "fetched 2 payloads" in hangar(b, "pull").stdout
    assert_one_line_error(
        hangar(b, "remote", "set-data", "nope", "/x", ok=False), 1, "no remote named 'nope'"
    )


def test_clone_data_only_and_into_a_full_directory(tmp_path, origin, first):
    c = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(origin), str(c))
    assert_one_line_error(
        hangar(tmp_path, "clone", str(origin), str(c), *NAME, ok=False), 1, "--data-only"
    )
    out = hangar(c, "clone", "--data-only", str(origin), ".", *NAME).stdout
    assert "cloned data records" in out
    assert hangar(c, "ls", "imgs").stdout.splitlines() == ["k0", "k1"]
    assert (c / "train.py").exists()
    # a failed clone leaves nothing behind
    res = hangar(tmp_path, "clone", str(tmp_path / "no.git"), str(tmp_path / "d"), *NAME, ok=False)
    assert res.returncode == 1 and not (tmp_path / "d").exists()


def test_fetch_data_of_single_keys(tmp_path, origin, first):
    b = tmp_path / "b"
    hangar(tmp_path, "clone", str(origin), str(b), "--data", str(tmp_path / "data"), *NAME)
    out = hangar(b, "fetch-data", "origin", "master", "-d", "imgs", "k1").stdout
    assert out == "fetched 1 payload of 'imgs'\n"
    where = {r["key"]: r["where"] for r in jsonout(b, "ls", "imgs", "--long")}
    assert where == {"k0": "remote", "k1": "local"}
    assert_one_line_error(
        hangar(b, "fetch-data", "origin", "master", "-d", "imgs", "k1", "nope", ok=False),
        1,
        "no sample 'nope'",
    )
    assert_one_line_error(hangar(b, "fetch-data", "origin", "master", "k1", ok=False), 2)


def test_fetch_data_defaults_to_the_default_remote_and_the_current_branch(tmp_path, origin, first):
    b = tmp_path / "b"
    hangar(tmp_path, "clone", str(origin), str(b), "--data", str(tmp_path / "data"), *NAME)
    assert {r["where"] for r in jsonout(b, "ls", "imgs", "--long")} == {"remote"}
    out = jsonout(b, "fetch-data")
    assert out["remote"] == "origin" and out["commit"] == open_repo(b).branch_commit("master")
    assert {r["where"] for r in jsonout(b, "ls", "imgs", "--long")} == {"local"}
    assert hangar(b, "fetch-data").stdout.startswith("nothing fetched for master ")
    hangar(b, "remote", "rm", "origin")  # git's other spelling of remove
    assert_one_line_error(hangar(b, "fetch-data", ok=False), 1, "not set up for data")


# ---- samples and metadata ----------------------------------------------------------------
def test_ls_rm_and_meta(written_repo):
    path = Path(written_repo.path)
    assert hangar(path, "ls").stdout == "aset\n"
    assert hangar(path, "ls", "--long").stdout == "aset\t10 samples\t5x7\tfloat32\n"
    keys = hangar(path, "ls", "aset").stdout.split()
    assert sorted(keys) == [str(i) for i in range(10)]
    row = jsonout(path, "ls", "aset", "--long")[0]
    assert row == {"key": "0", "shape": [5, 7], "dtype": "float32", "where": "local"}
    # rm: every key checked first
    before = jsonout(path, "status")["changes"]
    assert_one_line_error(
        hangar(path, "rm", "aset", "1", "nope", ok=False), 1, "'nope'", "nothing removed"
    )
    assert jsonout(path, "status")["changes"] == before
    assert "Removed 2 samples from 'aset'" in hangar(path, "rm", "aset", "1", "2").stdout
    hangar(path, "commit", "-m", "rm")
    assert len(hangar(path, "ls", "aset").stdout.split()) == 8
    assert_one_line_error(hangar(path, "rm", "aset", ok=False), 2)
    # metadata
    assert hangar(path, "meta", "list").stdout == "about\tfixture\n"
    assert "Set 'who'" in hangar(path, "meta", "set", "who", "me").stdout
    hangar(path, "meta", "set", "--int", "7", "seven")
    hangar(path, "commit", "-m", "meta")
    assert jsonout(path, "meta", "list") == [
        {"key": 7, "value": "seven"},
        {"key": "about", "value": "fixture"},
        {"key": "who", "value": "me"},
    ]
    assert hangar(path, "meta", "get", "7").stdout == "seven\n"
    assert_one_line_error(hangar(path, "meta", "get", "nope", ok=False), 1, "no key 'nope'")
    hangar(path, "meta", "rm", "who", "7")
    hangar(path, "rm", "-r", "aset")
    hangar(path, "commit", "-m", "gone")
    assert hangar(path, "ls").stdout == ""
    assert hangar(path, "meta", "list").stdout == "about\tfixture\n"


# ---- output ------------------------------------------------------------------------------
class _FakeTerminal:
    """A stderr that says it is a terminal and records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_bar_is_throttled(monkeypatch):
    from types import SimpleNamespace

    from hangar_git.cli import common

    clock = [0.0]

    def tick() -> float:
        clock[0] += 0.001  # each item takes a millisecond
        return clock[0]

    term = _FakeTerminal()
    monkeypatch.setattr(common, "time", SimpleNamespace(monotonic=tick))
    monkeypatch.setattr(common.sys, "stderr", term)
    with common.progress(20_000, "Staging") as update:
        for _ in range(20_000):
            update(1)
    drawn = "".join(term.writes)
    assert "20000/20000" in drawn
    # 20 s of work at 10 redraws a second: about 200 redraws, not 20,000
    assert 100 <= drawn.count("Staging") <= 400, drawn.count("Staging")
    piped = _FakeTerminal()
    piped.isatty = lambda: False  # type: ignore[method-assign]
    monkeypatch.setattr(common.sys, "stderr", piped)
    with common.progress(10, "Staging") as update:
        update(10)
    assert piped.writes == []


def test_add_lists_every_bad_file_and_stages_nothing(written_repo, tmp_path):
    path = Path(written_repo.path)
    folder = tmp_path / "mixed"
    write_npy(folder, {"good": np.zeros((5, 7), np.float32)})
    (folder / "bad1.npy").write_bytes(b"not an array")
    (folder / "bad2.npy").write_bytes(b"\x93NUMPY broken")
    (tmp_path / "alone.npz").write_bytes(b"neither")
    res = hangar(path, "add", "aset", str(folder), str(tmp_path / "alone.npz"), ok=False)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0] == "error: 3 inputs cannot be imported (listed below); nothing staged"
    assert len(lines) == 4 and "bad1.npy" in lines[1] and "bad2.npy" in lines[2]
    assert "alone.npz" in lines[3]
    assert jsonout(path, "status")["status"] == "CLEAN"
    # one bad input: the one-line error it always was
    assert_one_line_error(hangar(path, "add", "aset", str(folder / "bad1.npy"), ok=False), 1)


def test_export_then_add_keeps_int_keys(repo, tmp_path):
    path = Path(repo.path)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("nums", shape=3, dtype=np.int16)
    for i in (0, 5, 12):
        a[i] = np.full(3, i, np.int16)
    co.commit("int keys")
    co.close()
    hangar(path, "export", "nums", "-o", str(tmp_path / "out"))
    # back into the same arrayset: its keys are ints, so are the new ones
    hangar(path, "rm", "nums", "5")
    hangar(path, "commit", "-m", "rm")
    hangar(path, "add", "nums", str(tmp_path / "out" / "5.npy"))
    hangar(path, "commit", "-m", "back")
    assert [r["key"] for r in jsonout(path, "ls", "nums", "--long")] == [0, 5, 12]
    # into a new arrayset: --int-keys says so
    hangar(path, "add", "copy", str(tmp_path / "out"), "--int-keys")
    hangar(path, "commit", "-m", "copy")
    assert [r["key"] for r in jsonout(path, "ls", "copy", "--long")] == [0, 5, 12]
    hangar(path, "add", "strs", str(tmp_path / "out"))
    hangar(path, "commit", "-m", "strs")
    assert [r["key"] for r in jsonout(path, "ls", "strs", "--long")] == ["0", "12", "5"]


def test_export_goes_past_absent_payloads(tmp_path, origin, first):
    b = tmp_path / "b"
    hangar(tmp_path, "clone", str(origin), str(b), "--data", str(tmp_path / "data"), *NAME)
    hangar(b, "fetch-data", "origin", "master", "-d", "imgs", "k1")
    res = hangar(b, "export", "imgs", "-o", str(tmp_path / "out"), ok=False)
    assert res.returncode == 1
    assert res.stdout == f"Exported 1 sample of 'imgs' at master to {tmp_path / 'out'}\n"
    assert res.stderr.splitlines() == [
        "error: 1 sample not exported: their payloads are not on this machine "
        "(`git hangar fetch-data REMOTE master -d imgs` brings them)",
        "  'k0'",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["k1.npy"]


def test_shell_completion_for_git_hangar_and_git_dash_hangar(written_repo, tmp_path):
    path = Path(written_repo.path)
    script = hangar(path, "help", "--completion", "bash").stdout
    # what git's bash completion does for `git hangar remote s<TAB>`: it calls
    # _git_hangar with the words typed so far in $words and the index in $cword
    driver = tmp_path / "complete.sh"
    driver.write_text(
        script
        + "\n"
        + "words=(git hangar remote s); cword=3; COMPREPLY=(); _git_hangar\n"
        + 'echo "git: ${COMPREPLY[*]}"\n'
        + "COMP_WORDS=(git-hangar br); COMP_CWORD=1; COMPREPLY=()\n"
        + "_git_hangar_completion git-hangar\n"
        + 'echo "dash: ${COMPREPLY[*]}"\n'
    )
    out = subprocess.run(
        ["bash", str(driver)], cwd=path, env=cli_env(), capture_output=True, text=True
    )
    assert out.stdout.splitlines() == ["git: set-data", "dash: branch"], out.stderr
    for shell in ("zsh", "fish"):
        assert "_GIT_HANGAR_COMPLETE" in hangar(path, "help", "--completion", shell).stdout


def test_shell_completion_offers_branches_tags_and_remotes(written_repo, tmp_path):
    path = Path(written_repo.path)
    written_repo.create_branch("feature/x")
    written_repo.create_branch("fix")
    written_repo.create_tag("v1")
    hangar(path, "remote", "add", "origin", str(tmp_path / "o.git"), "--data", str(tmp_path / "d"))
    hangar(path, "remote", "add", "backup", str(tmp_path / "b.git"), "--data", str(tmp_path / "e"))

    def offered(*words: str, cwd: Path = path) -> list[str]:
        """What `git-hangar WORDS<TAB>` offers, through click's bash protocol."""
        env = {**cli_env(), "_GIT_HANGAR_COMPLETE": "bash_complete"}
        env.update(COMP_WORDS=" ".join(["git-hangar", *words]), COMP_CWORD=str(len(words)))
        out = subprocess.run(["git-hangar"], cwd=cwd, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return [line.split(",", 1)[1] for line in out.stdout.splitlines() if line]

    assert offered("checkout", "f") == ["feature/x", "fix"]
    assert offered("log", "") == ["feature/x", "fix", "master", "v1"]
    assert offered("diff", "master", "v") == ["v1"]
    assert offered("branch", "") == ["feature/x", "fix", "master"]
    assert offered("branch", "new", "v") == ["v1"]
    assert offered("push", "") == ["backup", "origin"]
    assert offered("push", "origin", "m") == ["master"]
    assert offered("fetch-data", "origin", "") == ["feature/x", "fix", "master", "v1"]
    assert offered("remote", "remove", "o") == ["origin"]
    # outside a repository: nothing offered, and no error
    assert offered("log", "", cwd=tmp_path) == []


def test_json_on_the_commands_that_print_state(written_repo, tmp_path, arrays):
    path = Path(written_repo.path)

    def js(*args: str):
        return json.loads(cli(path, *args, "--json").stdout)

    added = js("add", "imgs", str(arrays["k0"]), str(arrays["k1"]))
    assert added == {
        "arrayset": "imgs",
        "added": 2,
        "replaced": 0,
        "created": True,
        "unchanged": 0,
        "total": 2,
        "branch": "master",
    }
    assert js("meta", "set", "who", "me") == {"key": "who", "value": "me", "branch": "master"}
    made = js("commit", "-m", "two")
    assert made["branch"] == "master" and made["commit"] == written_repo.branch_commit("master")
    assert sorted(made["changes"]["samples"]["imgs"]["added"]) == ["k0", "k1"]
    assert made["changes"]["metadata"]["added"] == ["who"]
    assert js("rm", "imgs", "k0") == {"arrayset": "imgs", "removed": ["k0"]}
    assert js("meta", "rm", "who") == {"removed": ["who"], "branch": "master"}
    reset = js("reset")
    assert reset == {"branch": "master", "base": made["commit"], "discarded": True}
    assert js("branch", "dev")["created"] is True
    assert js("checkout", "dev") == {"branch": "dev", "previous": "master", "created": False}
    cli(path, "meta", "set", "on", "dev")
    cli(path, "commit", "-m", "dev")
    cli(path, "checkout", "master")
    merged = js("merge", "dev")
    assert merged["result"] == "fast-forward" and merged["branch"] == "master"
    assert merged["head"] == written_repo.branch_commit("dev")
    out = js("export", "imgs", "-o", str(tmp_path / "ex"))
    assert out["exported"] == 2 and out["absent"] == []
    assert {"dry_run"} <= set(js("gc", "-n"))
    bare = tmp_path / "o.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=cli_env())
    assert js("remote", "add", "up", str(bare))["data"] is None
    assert js("remote", "ping", "up")["name"] == "up"
    assert js("remote", "remove", "up") == {"name": "up", "address": str(bare), "data": None}
