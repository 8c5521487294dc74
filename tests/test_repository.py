"""Repository: where hangar lives in git, init, identity, code-commit trailers,
branches, log and summary."""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pygit2
import pytest

import hangar_git
from hangar_git import NotInitializedError, Repository

HEX40 = re.compile(r"[0-9a-f]{40}")


def git(cwd: Path | str, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, (args, res.stderr)
    return res.stdout


def open_repo(path: Path | str) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def add_samples(
    repo: Repository, n: int = 3, aset: str = "data", branch: str = "master", msg: str = "data"
) -> str:
    co = repo.checkout(write=True, branch=branch)
    try:
        if aset not in co.arraysets:
            co.arraysets.init_arrayset(aset, shape=(4,), dtype=np.int64)
        a = co.arraysets[aset]
        start = len(a)
        with a:
            for i in range(start, start + n):
                a[i] = np.full(4, i, np.int64)
        return co.commit(msg)
    finally:
        co.close()


def work_tree_state(root: Path) -> dict:
    """Everything of the user's git state hangar must never touch."""
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".git" or not p.is_file():
            continue
        files[str(rel)] = p.read_bytes()
    return {
        "HEAD": (root / ".git" / "HEAD").read_text(),
        "head_sha": git(root, "rev-parse", "HEAD").strip(),
        "index": (root / ".git" / "index").read_bytes(),
        "status": git(root, "status", "--porcelain", "--untracked-files=all"),
        "files": files,
        "branches": git(root, "for-each-ref", "refs/heads"),
    }


@pytest.fixture
def code_repo(tmp_path: Path) -> Path:
    """A user's git repo: one code commit, a staged file, an untracked file and
    an unstaged modification."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('train')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "code v1")
    (root / "staged.py").write_text("staged = True\n")
    git(root, "add", "staged.py")
    (root / "untracked.txt").write_text("scratch\n")
    (root / "train.py").write_text("print('train v2')\n")
    return root


# --------------------------------------------------------------------------
# opening and init
# --------------------------------------------------------------------------
def test_repository_on_missing_directory_raises(tmp_path):
    with pytest.raises(OSError):
        Repository(tmp_path / "nope")


def test_repository_path_must_be_pathlike():
    with pytest.raises(TypeError):
        Repository(123)  # type: ignore[arg-type]


def test_uninitialized_repository_warns_and_refuses(tmp_path):
    with pytest.warns(UserWarning, match="init"):
        repo = Repository(tmp_path)
    assert not repo.initialized
    with pytest.raises(NotInitializedError):
        repo.checkout()
    with pytest.raises(RuntimeError):  # NotInitializedError is a RuntimeError
        repo.checkout(write=True)
    with pytest.raises(NotInitializedError):
        repo.list_branches()
    with pytest.raises(NotInitializedError):
        _ = repo.version


def test_exists_false_suppresses_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Repository(tmp_path, exists=False)


def test_init_creates_git_repo_in_plain_directory(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    repo = open_repo(d)
    hdir = repo.init(user_name="Ada", user_email="ada@example.org")
    assert (d / ".git").is_dir()
    assert Path(hdir) == d / ".git" / "hangar"
    assert Path(hdir).is_dir()
    assert repo.initialized
    assert repo.path == str(d)
    # hangar writes nothing in the work tree
    assert [p.name for p in d.iterdir()] == [".git"]
    # a fresh Repository object sees it, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Repository(d)
    assert again.initialized
    assert repr(again).startswith("<hangar_git.Repository")
    sha = add_samples(again)
    # the data commit is an ordinary git commit on refs/hangar/heads/master
    assert git(d, "rev-parse", "refs/hangar/heads/master").strip() == sha
    assert "data" in git(d, "log", "--format=%s", "refs/hangar/heads/master")
    # no code commit exists (HEAD unborn): no trailer
    spec = again.log(return_contents=True)["specs"][sha]
    assert spec["code_commit"] is None
    assert "Code-Commit" not in git(d, "log", "-1", "--format=%B", sha)


def test_init_twice_refuses_and_remove_old_reinitializes(repo):
    add_samples(repo)
    with pytest.raises(OSError):
        repo.init(user_name="X", user_email="x@example.org")
    assert repo.log(return_contents=True) is not None  # untouched
    repo.init(user_name="X", user_email="x@example.org", remove_old=True)
    assert repo.list_branches() == ["master"]
    assert repo.log() is None
    co = repo.checkout(write=True)
    assert len(co.arraysets) == 0
    co.close()


def test_remove_old_refused_while_writer_open(repo):
    co = repo.checkout(write=True)
    with pytest.raises(PermissionError):
        repo.init(user_name="X", user_email="x@example.org", remove_old=True)
    co.close()


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "<x>", 5])
def test_init_refuses_bad_identity(tmp_path, bad):
    repo = open_repo(tmp_path)
    with pytest.raises(ValueError):
        repo.init(user_name=bad, user_email="a@example.org")
    assert not repo.initialized


def test_init_without_identity_anywhere_refuses(tmp_path):
    # the isolated_git fixture leaves no user.name/user.email anywhere
    repo = open_repo(tmp_path)
    with pytest.raises(ValueError, match=r"user\.name"):
        repo.init()
    assert not repo.initialized
    assert list(tmp_path.iterdir()) == []  # refused before creating anything


def test_identity_from_global_config_for_a_new_git_repository(tmp_path, isolated_git, monkeypatch):
    # no GIT_CONFIG_GLOBAL: the global file is found where libgit2 looks (a set
    # GIT_CONFIG_GLOBAL replaces it, as in git: tests/test_gitutil.py)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    cfgdir = tmp_path / "globalcfg"
    cfgdir.mkdir()
    (cfgdir / ".gitconfig").write_text("[user]\n\tname = Global Person\n\temail = g@example.org\n")
    saved = pygit2.settings.search_path[pygit2.enums.ConfigLevel.GLOBAL]
    pygit2.settings.search_path[pygit2.enums.ConfigLevel.GLOBAL] = str(cfgdir)
    try:
        d = tmp_path / "new"
        d.mkdir()
        repo = open_repo(d)
        repo.init()  # no git repository yet: the identity comes from global config
        sha = add_samples(repo)
    finally:
        pygit2.settings.search_path[pygit2.enums.ConfigLevel.GLOBAL] = saved
    assert repo.log(return_contents=True)["specs"][sha]["commit_user"] == "Global Person"


def test_identity_from_local_git_config(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    git(d, "init", "-q")
    git(d, "config", "user.name", "Config Person")
    git(d, "config", "user.email", "config@example.org")
    repo = open_repo(d)
    repo.init()
    sha = add_samples(repo)
    spec = repo.log(return_contents=True)["specs"][sha]
    assert spec["commit_user"] == "Config Person"
    assert spec["commit_email"] == "config@example.org"
    commit = pygit2.Repository(str(d)).get(sha)
    assert commit.author.name == "Config Person"
    assert commit.committer.email == "config@example.org"


def test_explicit_identity_wins_over_git_config(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.name", "Config Person")
    git(tmp_path, "config", "user.email", "config@example.org")
    repo = open_repo(tmp_path)
    repo.init(user_name="Given Name", user_email="given@example.org")
    sha = add_samples(repo)
    spec = repo.log(return_contents=True)["specs"][sha]
    assert (spec["commit_user"], spec["commit_email"]) == ("Given Name", "given@example.org")


def test_version(repo):
    assert repo.version == hangar_git.__version__
    assert isinstance(repo.version, str)


# --------------------------------------------------------------------------
# inside a user's code repository
# --------------------------------------------------------------------------
def test_init_inside_code_repo_leaves_user_state_untouched(code_repo):
    before = work_tree_state(code_repo)
    repo = open_repo(code_repo)
    hdir = repo.init(user_name="Ada", user_email="ada@example.org")
    assert Path(hdir) == code_repo / ".git" / "hangar"
    assert work_tree_state(code_repo) == before

    c1 = add_samples(repo, 5, msg="first data")
    repo.create_branch("dev")
    c2 = add_samples(repo, 5, branch="dev", msg="dev data")
    co = repo.checkout(write=True)
    co.metadata["k"] = "v"
    co.arraysets["data"].remove(0)
    co.commit("meta")
    co.close()
    rc = repo.checkout(commit=c2)
    assert len(rc.arraysets["data"]) == 10
    rc.close()

    assert work_tree_state(code_repo) == before
    # user's git sees its own branch and log only
    assert git(code_repo, "log", "--format=%s").split("\n")[0] == "code v1"
    assert git(code_repo, "branch", "--list").strip() == "* main"
    assert git(code_repo, "rev-parse", "refs/hangar/heads/dev").strip() == c2
    assert c1 in git(code_repo, "log", "--format=%H", "refs/hangar/heads/master")
    fsck = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=code_repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


def test_code_commit_trailer_pairs_data_with_code(code_repo):
    repo = open_repo(code_repo)
    repo.init(user_name="Ada", user_email="ada@example.org")
    head1 = git(code_repo, "rev-parse", "HEAD").strip()
    d1 = add_samples(repo, msg="data on code v1")
    # the trailer is in the git commit message
    msg = git(code_repo, "log", "-1", "--format=%B", d1)
    assert f"Code-Commit: {head1}" in msg
    trailers = git(code_repo, "log", "-1", "--format=%(trailers:key=Code-Commit,valueonly)", d1)
    assert trailers.strip() == head1

    # the user commits code: the next data commit records the new HEAD
    git(code_repo, "commit", "-q", "-am", "code v2")
    head2 = git(code_repo, "rev-parse", "HEAD").strip()
    assert head2 != head1
    d2 = add_samples(repo, msg="data on code v2")

    specs = repo.log(return_contents=True)["specs"]
    assert specs[d1]["code_commit"] == head1
    assert specs[d2]["code_commit"] == head2
    # the message shown is the user's, without the trailer
    assert specs[d2]["commit_message"] == "data on code v2"
    summ = repo.summary(return_contents=True)
    assert summ["spec"]["code_commit"] == head2


def test_repository_opened_from_subdirectory(code_repo):
    sub = code_repo / "pkg" / "deep"
    sub.mkdir(parents=True)
    repo = open_repo(sub)
    repo.init(user_name="Ada", user_email="ada@example.org")
    assert repo.path == str(code_repo)
    assert (code_repo / ".git" / "hangar" / "config.json").is_file()
    add_samples(repo)
    assert open_repo(code_repo).initialized


def test_bare_git_repository(tmp_path):
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    repo = open_repo(bare)
    repo.init(user_name="Ada", user_email="ada@example.org")
    assert (bare / "hangar").is_dir()
    sha = add_samples(repo, 4)
    rc = repo.checkout(commit=sha)
    assert rc.arraysets["data"][3].tolist() == [3, 3, 3, 3]
    rc.close()


# --------------------------------------------------------------------------
# branches
# --------------------------------------------------------------------------
def test_list_branches_before_first_commit(repo):
    assert repo.list_branches() == ["master"]
    assert repo.log() is None
    with pytest.raises(RuntimeError, match="first commit"):  # as the reference raises
        repo.create_branch("dev")
    with pytest.raises(ValueError):
        repo.summary()
    with pytest.raises(ValueError):
        repo.checkout()


def test_create_branch_and_list(repo):
    c1 = add_samples(repo)
    assert repo.create_branch("testbranch") == "testbranch"
    assert repo.list_branches() == ["master", "testbranch"]
    c2 = add_samples(repo)
    assert repo.create_branch("old", base_commit=c1) == "old"
    assert repo.create_branch("short", base_commit=c1[:8]) == "short"
    assert repo.list_branches() == ["master", "old", "short", "testbranch"]
    heads = {b: repo.log(branch=b, return_contents=True)["head"] for b in repo.list_branches()}
    assert heads == {"master": c2, "old": c1, "short": c1, "testbranch": c1}
    # the refs are git refs in hangar's namespace
    assert git(repo.path, "rev-parse", "refs/hangar/heads/old").strip() == c1


def test_create_branch_errors(repo):
    c1 = add_samples(repo)
    repo.create_branch("dev")
    with pytest.raises(ValueError, match="exists"):
        repo.create_branch("dev")
    with pytest.raises(ValueError):
        repo.create_branch("x", base_commit="0" * 40)
    with pytest.raises(ValueError):
        repo.create_branch("x", base_commit="not-a-hash")
    # names with parts ("feature/x") are branch names; empty or hidden parts are not
    for bad in ("a b", "a//b", "a/", "a/.x", "..", "-x", "x.lock", ".x", "x.", "é", "", "a" * 201):
        with pytest.raises(ValueError):
            repo.create_branch(bad, base_commit=c1)
    assert repo.list_branches() == ["dev", "master"]


def test_create_branch_defaults_to_writer_branch_head(repo):
    add_samples(repo)
    repo.create_branch("dev")
    cdev = add_samples(repo, branch="dev")
    # the writer's last branch is dev: a new branch starts at dev's head
    repo.create_branch("from_dev")
    assert repo.log(branch="from_dev", return_contents=True)["head"] == cdev


def test_remove_branch(repo):
    c1 = add_samples(repo)
    repo.create_branch("merged")
    repo.create_branch("work")
    cw = add_samples(repo, branch="work")
    co = repo.checkout(write=True, branch="master")  # the writer leaves "work"
    co.close()
    # "merged" points at a commit master holds: removable
    assert repo.remove_branch("merged") == c1
    # "work" holds a commit no other branch has: refused, then forced
    with pytest.raises(ValueError, match="force"):
        repo.remove_branch("work")
    assert "work" in repo.list_branches()
    assert repo.remove_branch("work", force=True) == cw
    assert repo.list_branches() == ["master"]
    with pytest.raises(ValueError):
        repo.remove_branch("work")
    with pytest.raises(ValueError):
        repo.remove_branch("nope")


def test_remove_branch_refuses_writer_branch(repo):
    add_samples(repo)
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    with pytest.raises(ValueError):
        repo.remove_branch("dev", force=True)
    co.close()
    assert "dev" in repo.list_branches()


# --------------------------------------------------------------------------
# log and summary
# --------------------------------------------------------------------------
def test_log_graph_and_contents(repo, capsys):
    c1 = add_samples(repo, msg="first commit")
    repo.create_branch("testbranch")
    c2 = add_samples(repo, msg="second commit\n\nwith a body")
    capsys.readouterr()
    assert repo.log() is None
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"* {c2} (master) : second commit"
    assert out[1] == f"* {c1} (testbranch) : first commit"

    repo.log(show_time=True, show_user=True)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        rf"\* {c2} \(master\) \(\d\d\w{{3}}\d{{4}} \d\d:\d\d:\d\d\) \(Test User\) "
        r": second commit",
        out[0],
    ), out[0]

    repo.log(branch="testbranch")
    assert capsys.readouterr().out.splitlines() == [f"* {c1} (testbranch) : first commit"]
    repo.log(commit=c2)
    assert len(capsys.readouterr().out.splitlines()) == 2

    contents = repo.log(return_contents=True)
    assert capsys.readouterr().out == ""
    assert contents["head"] == c2
    assert contents["order"] == [c2, c1]
    assert contents["ancestors"] == {c2: [c1], c1: []}
    spec = contents["specs"][c2]
    assert spec["commit_message"] == "second commit\n\nwith a body"
    assert spec["commit_user"] == "Test User"
    assert spec["commit_email"] == "test@example.org"
    assert isinstance(spec["commit_time"], float)
    with pytest.raises(ValueError):
        repo.log(branch="nope")
    with pytest.raises(ValueError):
        repo.log(commit="f" * 40)


def test_summary(written_repo, capsys):
    repo = written_repo
    contents = repo.summary(return_contents=True)
    assert capsys.readouterr().out == ""
    head = repo.log(return_contents=True)["head"]
    assert contents["commit"] == head
    assert contents["arraysets"]["aset"]["num_samples"] == 10
    assert contents["arraysets"]["aset"]["shape"] == (5, 7)
    assert contents["arraysets"]["aset"]["named_samples"] is True
    assert contents["metadata"] == {"about": "fixture"}
    assert contents["spec"]["commit_message"] == "initial"
    assert contents["disk_usage"] > 0
    repo.summary()
    out = capsys.readouterr().out
    for needle in (
        f"Commit: {head}",
        "By: Test User",
        "Email: test@example.org",
        "Message: initial",
        "Arrayset Name: aset",
        "Num Arrays: 10",
        "schema_max_shape: (5, 7)",
        "Number of Keys: 1",
    ):
        assert needle in out, needle
    assert repo.summary(branch="master", return_contents=True)["commit"] == head
    assert repo.summary(commit=head[:10], return_contents=True)["commit"] == head


def test_writer_lock_held_property(repo):
    assert repo.writer_lock_held is False
    co = repo.checkout(write=True)
    assert repo.writer_lock_held is True
    co.close()
    assert repo.writer_lock_held is False


def test_checkout_argument_validation(written_repo):
    repo = written_repo
    with pytest.raises(ValueError):
        repo.checkout(write="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        repo.checkout(branch="nope")
    with pytest.raises(ValueError):
        repo.checkout(commit="deadbeef" * 5)
    with pytest.raises(ValueError):
        repo.checkout(write=True, commit=repo.log(return_contents=True)["head"])
    with pytest.raises(ValueError):
        repo.checkout(write=True, branch="nope")
    assert repo.writer_lock_held is False


def test_hangar_state_lives_under_git_dir(written_repo):
    root = Path(written_repo.path)
    hdir = root / ".git" / "hangar"
    assert (hdir / "config.json").is_file()
    assert (hdir / "store").is_dir()
    assert os.listdir(root) == [".git"]
