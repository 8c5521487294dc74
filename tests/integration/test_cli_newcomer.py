"""Issue 16 checked as a newcomer would: the gaps a second pass over the issue found.

``diff --json`` lists keys as the Python diff does, a remote without a data URL
says how to set one, counts of one are singular, ``init`` and ``clone`` take
``--json``, transfer reports carry every field, completion answers zsh and fish.
Run through the installed ``git hangar`` in real git repositories with a bare
origin (the isolated git config of tests/conftest.py), with the fixtures of
test_cli_git_style.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np

from hangar_git.remotes.transfer import TransferReport

try:
    from .test_cli import assert_one_line_error, cli_env, hangar, write_npy
    from .test_cli_git_style import NAME, arrays, first, git, jsonout, open_repo, origin, refs
except ImportError:  # run as a top-level module
    from test_cli import assert_one_line_error, cli_env, hangar, write_npy  # type: ignore[no-redef]
    from test_cli_git_style import (  # type: ignore[no-redef]
        NAME,
        arrays,
        first,
        git,
        jsonout,
        open_repo,
        origin,
        refs,
    )

__all__ = ["arrays", "first", "origin"]  # fixtures of test_cli_git_style, used here


# ---- diff --json: the keys, as Python gives them -----------------------------------------
def test_diff_json_lists_the_keys_python_gives(repo, tmp_path):
    path = Path(repo.path)
    co = repo.checkout(write=True)
    nums = co.arraysets.init_arrayset("nums", shape=2, dtype=np.int64)
    for i in range(4):
        nums[i] = np.full(2, i, np.int64)
    co.metadata["about"] = "base"
    base = co.commit("base")
    nums[7] = np.zeros(2, np.int64)  # added
    del nums[1]  # removed
    nums[2] = np.full(2, 20, np.int64)  # mutated
    co.metadata["who"] = "me"
    head = co.commit("second")
    co.close()
    out = jsonout(path, "diff", base, head)
    assert out["to_side"]["samples"]["nums"] == {"added": [7], "removed": [1], "mutated": [2]}
    assert out["to_side"]["metadata"] == {"added": ["who"], "removed": [], "mutated": []}
    # the same fields and values as the Python result
    py = repo.diff(base, head)[0].records.dev
    assert out["to_side"]["samples"]["nums"]["added"] == list(py.samples["nums"].additions)
    # --stat --json: only the counts
    stat = jsonout(path, "diff", base, head, "--stat")["to_side"]
    assert stat["samples"]["nums"] == {"added": 1, "removed": 1, "mutated": 1}
    # the staged changes, with str and int keys
    write_npy(tmp_path / "in", {"9": np.ones(2, np.int64)})
    hangar(path, "add", "nums", str(tmp_path / "in" / "9.npy"))
    hangar(path, "meta", "set", "about", "changed")
    staged = jsonout(path, "diff")
    assert staged["samples"]["nums"] == {"added": [9], "removed": [], "mutated": []}
    assert staged["metadata"]["mutated"] == ["about"] and staged["to"] == "staged"
    # one metadata key, one arrayset, one sample: no plural "(s)"
    assert hangar(path, "diff", "--stat").stdout.splitlines()[-1] == (
        " 1 arrayset changed, 1 sample, 1 metadata key"
    )


# ---- a remote without a data URL -----------------------------------------------------------
def test_no_data_url_says_how_to_set_one(tmp_path, origin, first, arrays):
    b = tmp_path / "b"
    hangar(tmp_path, "clone", str(origin), str(b), *NAME)
    hint = "`git hangar remote set-data origin URL`"
    assert_one_line_error(hangar(b, "fetch-data", "origin", "master", ok=False), 1, hint)
    res = hangar(b, "fetch-data", "origin", "master", "-d", "imgs", "k0", ok=False)
    assert_one_line_error(res, 1, hint)
    # a push with payloads to send: refused before anything moves
    hangar(b, "add", "imgs", str(arrays["k2"]))
    hangar(b, "commit", "-m", "from b")
    remote_before = git(origin, "for-each-ref", "refs/hangar/")
    res = hangar(b, "push", ok=False)
    assert_one_line_error(res, 1, hint, "payloads to send")
    assert git(origin, "for-each-ref", "refs/hangar/") == remote_before
    # and set-data is the way out
    hangar(b, "remote", "set-data", "origin", str(tmp_path / "data"))
    hangar(b, "push")
    assert open_repo(first).list_branches() == ["master"]
    hangar(first, "pull")
    assert hangar(first, "ls", "imgs").stdout.split() == ["k0", "k1", "k2"]


# ---- counts of one -----------------------------------------------------------------------
def test_counts_of_one_are_singular(tmp_path):
    # in a fresh repository, so that which packs gc compacts depends on this test alone
    write_npy(tmp_path / "one", {"x": np.full((5, 7), 99, np.float32)})
    rng = np.random.default_rng(0)
    four = tmp_path / "four.npz"
    np.savez(four, **{f"k{i}": rng.random((5, 7)).astype(np.float32) for i in range(4)})
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    hangar(fresh, "init", *NAME)
    hangar(fresh, "add", "one", str(tmp_path / "one" / "x.npy"))
    hangar(fresh, "commit", "-m", "one")
    out = hangar(fresh, "fsck").stdout.splitlines()
    assert out[0] == "checked 1 commit, 1 sample record, 1 payload (quick check)"
    hangar(fresh, "add", "one", str(four))
    hangar(fresh, "reset")  # four payloads referenced by nothing, beside one committed
    out = hangar(fresh, "gc").stdout.splitlines()
    assert out[0] == "removed 4 unreferenced payloads"
    assert out[1] == "compacted 1 pack (1 live payload moved), deleted 1 pack"


# ---- --json on init and clone, and every field of a transfer -------------------------------
def test_init_and_clone_print_json(tmp_path, origin, first):
    bare = tmp_path / "nogit"
    bare.mkdir()
    made = jsonout(bare, "init", *NAME)
    assert made == {
        "path": str(bare / ".git" / "hangar"),
        "git_dir": str(bare / ".git") + "/",
        "git_initialized": True,
    }
    assert jsonout(bare, "status")["branch"] == "master"
    out = jsonout(tmp_path, "clone", str(origin), "b", "--data", str(tmp_path / "data"), *NAME)
    assert out == {
        "path": str(tmp_path / "b"),
        "branch": "master",
        "remote": "origin",
        "address": str(origin),
        "data": str(tmp_path / "data"),
        "code": True,
    }
    assert (tmp_path / "b" / "train.py").exists()
    assert refs(tmp_path / "b") != ""


def test_transfer_json_has_every_report_field(tmp_path, origin, first, arrays):
    hangar(first, "add", "imgs", str(arrays["k3"]))
    hangar(first, "commit", "-m", "k3")
    pushed = jsonout(first, "push")["payloads"]
    fields = {f.name for f in dataclasses.fields(TransferReport)}
    assert set(pushed) == fields
    assert pushed["payloads"] == 1 and pushed["bytes_sent"] > 0 and pushed["absent"] == []
    b = tmp_path / "b"
    hangar(tmp_path, "clone", str(origin), str(b), "--data", str(tmp_path / "data"), *NAME)
    fetched = jsonout(b, "fetch-data", "origin", "master")["payloads"]
    assert set(fetched) == fields and fetched["payloads"] == 3
    assert jsonout(b, "pull")["payloads"]["skipped"] == 3


# ---- branch -v, shell completion -------------------------------------------------------------
def test_branch_v_keeps_one_column_for_the_commits(tmp_path, origin, first):
    hangar(first, "branch", "a-rather-long/branch-name")
    hangar(first, "fetch")
    lines = hangar(first, "branch", "-v").stdout.splitlines()
    assert len(lines) == 3
    columns = {line.index(open_repo(first).branch_commit("master")[:8]) for line in lines}
    assert len(columns) == 1, lines


def test_completion_answers_zsh_and_fish(tmp_path):
    """The scripts of `help --completion zsh|fish` call git-hangar back with
    _GIT_HANGAR_COMPLETE=zsh_complete|fish_complete; these are its answers."""
    env = cli_env()
    zsh = dict(env, _GIT_HANGAR_COMPLETE="zsh_complete", COMP_WORDS="git-hangar remote s")
    zsh["COMP_CWORD"] = "2"
    out = subprocess.run(["git-hangar"], env=zsh, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.splitlines()[:2] == ["plain", "set-data"], out.stdout
    fish = dict(env, _GIT_HANGAR_COMPLETE="fish_complete", COMP_WORDS="git-hangar chec")
    fish["COMP_CWORD"] = "chec"
    out = subprocess.run(["git-hangar"], env=fish, capture_output=True, text=True, cwd=tmp_path)
    # one completion, checkout, with its short help (click's wording, not checked): click
    # 8.5 writes "plain,checkout<TAB>HELP", 8.4 (CI's preinstalled click) three lines
    lines = out.stdout.splitlines()
    assert lines[0].split("\t")[0] in ("plain,checkout", "plain"), out.stdout
    values = {line.split("\t")[0].removeprefix("plain,") for line in lines[:2]}
    assert "checkout" in values and len(lines) <= 3, out.stdout


# ---- log draws the tags ----------------------------------------------------------------------
def test_log_shows_the_tags_of_each_commit(written_repo):
    path = Path(written_repo.path)
    first = written_repo.branch_commit("master")
    hangar(path, "meta", "set", "n", "2")
    hangar(path, "commit", "-m", "second : with a colon")
    second = written_repo.branch_commit("master")
    hangar(path, "tag", "v1", first)
    hangar(path, "tag", "release/a", first)
    hangar(path, "tag", "v2")
    lines = hangar(path, "log").stdout.splitlines()
    assert lines == [
        f"* {second} (tag: v2) (master) : second : with a colon",
        f"* {first} (tag: release/a) (tag: v1) : initial",
    ]
    assert hangar(path, "log", "-n", "1", "v1").stdout.splitlines() == [lines[1]]


# ---- git clone first, then hangar: init, remote add of the existing origin, pull ------------
def test_git_clone_then_init_remote_add_and_pull(tmp_path, origin, first):
    c = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(origin), str(c))
    hangar(c, "init", *NAME)
    out = hangar(c, "remote", "add", "origin", "--data", str(tmp_path / "data")).stdout
    assert f"records {origin}" in out and "data " in out  # the git remote is reused
    head = open_repo(first).branch_commit("master")
    out = hangar(c, "pull").stdout.splitlines()
    assert out == [
        f"Branch 'master' set up at {head[:8]} from origin/master",
        out[1],
    ] and out[1].startswith("fetched 2 payloads ")
    assert [r["where"] for r in jsonout(c, "ls", "imgs", "--long")] == ["local", "local"]
    assert "up to date with 'origin/master'" in hangar(c, "status").stdout


# ---- plain git and the data refs (docs/operations.md#plain-git-and-the-data-refs) ----------
def test_plain_git_fetch_follows_the_data_branches_and_git_push_never_sends_them(
    tmp_path, origin, first, arrays
):
    b = tmp_path / "b"
    hangar(tmp_path, "clone", str(origin), str(b), "--data", str(tmp_path / "data"), *NAME)
    # a plain `git push` of the code leaves the remote's data branch where it was
    hangar(b, "add", "imgs", str(arrays["k2"]))
    hangar(b, "commit", "-m", "from b")
    (b / "notes.txt").write_text("code change\n")
    git(b, "add", "notes.txt")
    git(b, "-c", "user.name=B", "-c", "user.email=b@e", "commit", "-qm", "notes")
    before = git(origin, "for-each-ref", "refs/hangar/")
    git(b, "push", "-q", "origin", "main")
    assert git(origin, "for-each-ref", "refs/hangar/") == before
    assert git(origin, "log", "-1", "--format=%s", "main").strip() == "notes"
    hangar(b, "push")
    # a plain `git fetch` updates the data remote-tracking branches: status sees it
    git(first, "fetch", "-q", "origin")
    assert jsonout(first, "status")["tracking"]["behind"] == 1
    assert open_repo(first).branch_commit("master") != open_repo(b).branch_commit("master")
    hangar(first, "pull")
    assert hangar(first, "ls", "imgs").stdout.split() == ["k0", "k1", "k2"]


# ---- no remote to default to: what to do ------------------------------------------------------
def test_no_default_remote_says_what_to_do(tmp_path, origin, first):
    lone = tmp_path / "lone"
    lone.mkdir()
    hangar(lone, "init", *NAME)
    for cmd in ("push", "pull", "fetch"):
        res = hangar(lone, cmd, ok=False)
        assert_one_line_error(res, 1, "no remote yet", "`git hangar remote add NAME GIT_URL")
    c = tmp_path / "c"  # a plain `git clone`: its origin is no hangar remote yet
    git(tmp_path, "clone", "-q", str(origin), str(c))
    hangar(c, "init", *NAME)
    assert hangar(c, "remote").stdout == ""
    res = hangar(c, "pull", ok=False)
    assert_one_line_error(
        res, 1, "git remote 'origin'", "`git hangar remote add origin --data URL`"
    )
    hangar(first, "remote", "add", "backup", str(origin))
    hangar(first, "remote", "remove", "origin")
    hangar(first, "remote", "add", "mirror", str(origin))
    res = hangar(first, "push", ok=False)
    assert_one_line_error(res, 1, "several remotes (backup, mirror)", "name one")


# ---- add -b moves the current branch only when it stages, and says so --------------------
def test_add_b_says_it_moved_and_a_failed_add_moves_nothing(written_repo, tmp_path):
    path = Path(written_repo.path)
    hangar(path, "branch", "dev")
    files = write_npy(tmp_path / "in", {"f64": np.zeros((5, 7)), "ok": np.ones((5, 7), np.float32)})
    res = hangar(path, "add", "-b", "dev", "aset", str(files["f64"]), ok=False)
    assert_one_line_error(res, 1, "float64")
    assert jsonout(path, "status")["branch"] == "master"  # refused: still where it was
    assert open_repo(path).writer_branch == "master"
    out = hangar(path, "add", "-b", "dev", "aset", str(files["ok"])).stdout.splitlines()
    assert out[0] == "Switched to branch 'dev'"
    assert out[1].startswith("Staged 1 array into 'aset' on branch dev")
    assert jsonout(path, "status")["branch"] == "dev"
    # staged work on dev: a failing add there leaves it, and the branch, alone
    res = hangar(path, "add", "-b", "dev", "aset", str(files["f64"]), ok=False)
    assert res.returncode == 1
    st = jsonout(path, "status")
    assert st["branch"] == "dev" and st["changes"]["samples"]["aset"]["added"] == 1


# ---- add lists every array that does not fit, not only the first -----------------------------
def test_add_lists_every_array_that_does_not_fit(written_repo, tmp_path):
    path = Path(written_repo.path)
    folder = tmp_path / "mixed"
    write_npy(
        folder,
        {
            "a": np.zeros((5, 7), np.float32),
            "b": np.zeros((5, 7), np.float64),
            "c": np.zeros((5, 7), np.int8),
            "d": np.zeros((3, 3), np.float32),
        },
    )
    res = hangar(path, "add", "aset", str(folder), ok=False)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0] == "error: 3 arrays do not fit (listed below); nothing staged"
    assert [line.split()[0] for line in lines[1:]] == [str(folder / f"{k}.npy") for k in "bcd"]
    assert "has shape (3, 3)" in lines[3]
    # into a new arrayset: each array that differs from the first one
    res = hangar(path, "add", "fresh", str(folder), ok=False)
    assert res.stderr.splitlines()[0] == "error: 3 arrays do not fit (listed below); nothing staged"
    assert jsonout(path, "status")["status"] == "CLEAN"
    assert "fresh" not in hangar(path, "ls").stdout.split()
    # one that does not fit: the one-line error it always was
    res = hangar(path, "add", "aset", str(folder / "b.npy"), ok=False)
    assert_one_line_error(res, 1, "has dtype float64")
