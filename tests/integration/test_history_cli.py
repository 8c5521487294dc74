"""``git hangar cherry-pick|revert|purge``, ``diff --key`` and ``show X:A/K`` from the shell."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pygit2
import pytest

try:
    from .test_cli import assert_one_line_error, cli, hangar, open_repo
except ImportError:
    from test_cli import assert_one_line_error, cli, hangar, open_repo  # type: ignore[no-redef]


def fill(v: int) -> np.ndarray:
    return np.full(4, v, np.int16)


@pytest.fixture
def branched(repo):
    """master and dev from a base of 'imgs' k0..k4; dev: k0 -> 200 then d1 added;
    master: k0 -> 100 (a conflict with dev's first commit)."""
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("imgs", shape=4, dtype=np.int16)
    for i in range(5):
        a[f"k{i}"] = fill(i)
    co.metadata["who"] = "base"
    co.commit("base")
    co.close()
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["imgs"]["k0"] = fill(200)
    first = co.commit("dev k0")
    co.arraysets["imgs"]["d1"] = fill(7)
    second = co.commit("dev d1")
    co.close()
    co = repo.checkout(write=True, branch="master")
    co.arraysets["imgs"]["k0"] = fill(100)
    co.commit("master k0")
    co.close()
    repo.dev_commits = (first, second)
    return repo


def test_cherry_pick_and_conflicts(branched):
    path = Path(branched.path)
    first, second = branched.dev_commits
    out = cli(path, "cherry-pick", second[:10])
    assert re.search(rf"Applied {second[:8]}\w* on 'master': [0-9a-f]{{8}}", out.stdout), out.stdout
    assert "[7, 7, 7, 7]" in cli(path, "show", "master:imgs/d1").stdout
    before = open_repo(path).branch_commit("master")
    res = cli(path, "cherry-pick", first, ok=False)
    assert res.returncode == 1
    head, *rest = res.stderr.splitlines()
    assert (
        head.startswith(f"error: cherry-pick of {first[:8]}")
        and "nothing changed: 1 conflict" in head
    )
    assert rest == ["  sample imgs['k0']: changed on both sides to different values (t3)"]
    assert open_repo(path).branch_commit("master") == before
    cli(path, "cherry-pick", first, "--strategy", "theirs", "-m", "take dev k0")
    assert "[200, 200, 200, 200]" in cli(path, "show", "master:imgs:k0").stdout
    assert "Nothing to do" in cli(path, "cherry-pick", first).stdout
    assert_one_line_error(cli(path, "cherry-pick", "nope", ok=False), 1, "nope")


def test_revert_and_revert_of_revert(branched):
    path = Path(branched.path)
    repo = open_repo(path)
    cli(path, "checkout", "dev")
    _, second = branched.dev_commits
    out = cli(path, "revert", second)
    assert f"Reverted {second[:8]}" in out.stdout
    res = cli(path, "show", "dev:imgs/d1", ok=False)
    assert res.returncode == 1 and "no sample" in res.stderr
    cli(path, "revert", repo.branch_commit("dev"))
    assert "[7, 7, 7, 7]" in cli(path, "show", "dev:imgs/d1").stdout
    msg = repo.git_repository()[repo.branch_commit("dev")].message
    assert msg.startswith('Revert "Revert "dev d1""')


def test_diff_key_shows_both_sides_and_base(branched):
    path = Path(branched.path)
    out = hangar(path, "diff", "master", "dev", "--key", "imgs/k0").stdout.splitlines()
    assert out[0] == "imgs['k0']"
    assert re.match(r"  merge base  [0-9a-f]{10}  shape \(4,\), dtype int16$", out[1]), out
    assert out[2].endswith(
        "shape (4,), dtype int16; vs merge base: 4 of 4 elements differ, max abs diff 100"
    )
    assert out[3].startswith("  dev ") and out[3].endswith("max abs diff 200")
    assert out[4] == "  master vs dev: 4 of 4 elements differ, max abs diff 100"
    one = cli(path, "diff", "dev", "--key", "imgs/d1").stdout
    assert "master vs dev: added" in one and "vs merge base: added" in one
    assert_one_line_error(
        cli(path, "diff", "master", "dev", "--key", "imgs", ok=False), 1, "ARRAYSET/KEY"
    )
    assert_one_line_error(cli(path, "diff", "--key", "imgs/k0", ok=False), 1, "two STARTPOINTs")


def test_purge_from_the_shell(branched, tmp_path):
    path = Path(branched.path)
    repo = open_repo(path)
    cli(path, "merge", "dev", "--strategy", "ours")
    heads = {b: repo.branch_commit(b) for b in ("master", "dev")}
    cli(path, "tag", "v1", "dev")
    dry = cli(path, "purge", "imgs", "d1", "--dry-run").stdout
    assert "would rewrite" in dry and {b: repo.branch_commit(b) for b in heads} == heads
    assert f"  {heads['dev']} -> " in dry and re.search(r"^  payload [0-9a-f]{40}$", dry, re.M)
    assert "refs/hangar/tags/v1" in dry
    out = cli(path, "purge", "imgs", "d1", "k1", "--meta", "who").stdout
    for b in ("master", "dev"):
        new = repo.branch_commit(b)
        assert new != heads[b]
        assert f"refs/hangar/heads/{b}: {heads[b][:10]} -> {new[:10]}" in out
    assert "git push <remote> +refs/hangar/heads/dev:refs/hangar/heads/dev" in out
    assert "+refs/hangar/tags/v1:refs/hangar/tags/v1" in out and "expired the reflogs" in out
    assert "d1" not in cli(path, "diff", "v1", "dev", "--name-only").stdout
    assert "expired the reflogs" in out and "pruned unreachable git objects" in out
    for b in ("master", "dev"):
        res = cli(path, "show", f"{b}:imgs/d1", ok=False)
        assert res.returncode == 1
    assert "[100, 100, 100, 100]" in cli(path, "show", "master:imgs/k0").stdout
    fresh = pygit2.Repository(repo.git_repository().path)
    assert all(fresh.get(c) is None for c in heads.values())
    assert "ok" in cli(path, "fsck").stdout.lower()
    assert "Nothing to purge" in cli(path, "purge", "imgs", "d1").stdout
    assert cli(path, "purge", "imgs", "5", ok=False).returncode == 2  # int or str?
    assert cli(path, "purge", "imgs", ok=False).returncode == 2


def test_purge_deletes_remote_tracking_refs_and_data_remote_payloads(branched, tmp_path):
    path = Path(branched.path)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    cli(path, "remote", "add", "origin", str(remote), "--data", str(tmp_path / "data"))
    cli(path, "push", "origin", "dev")
    cli(path, "fetch", "origin", "dev")
    tracking = "refs/hangar/remotes/origin/dev"
    assert tracking in open_repo(path).git_repository().references
    before = open_repo(path).branch_commit("dev")
    assert_one_line_error(
        cli(path, "purge", "imgs", "d1", "--data-remote", "nope", ok=False), 1, "nope"
    )
    assert open_repo(path).branch_commit("dev") == before  # refused before any change
    out = cli(path, "purge", "imgs", "d1", "--data-remote", "origin").stdout
    assert "data remote 'origin': removed 1 payload (1 pack rewritten)" in out
    assert f"{tracking}: delete" in out
    assert tracking not in open_repo(path).git_repository().references
    assert "git push origin +refs/hangar/heads/dev:refs/hangar/heads/dev" in out
    assert "git push <remote>" not in out


def test_schema_changes_from_the_shell(branched):
    path = Path(branched.path)
    out = cli(path, "schema", "imgs", "--variable-shape", "--max-shape", "8").stdout
    assert re.match(r"Changed arrayset 'imgs' on 'master': [0-9a-f]{8}", out)
    cli(path, "schema", "imgs", "--rename", "pictures")
    res = cli(path, "schema", "pictures", "--dtype", "int8", ok=False)
    assert_one_line_error(res, 1, "can lose values")
    assert "--force" in res.stderr
    cli(path, "schema", "pictures", "--dtype", "float32")
    shown = cli(path, "show", "master:pictures/k0").stdout
    assert "dtype float32" in shown and "[100., 100., 100., 100.]" in shown
    res = cli(path, "schema", "pictures", "--max-shape", "2", ok=False)
    assert_one_line_error(res, 1, "raised")
    assert cli(path, "schema", "pictures", "--max-shape", "x", ok=False).returncode == 2
    assert "imgs['k0'] at dev" in cli(path, "show", "dev:imgs/k0").stdout  # dev keeps its schema


def test_merge_of_a_widened_schema_with_samples_added_on_the_other_branch(branched):
    path = Path(branched.path)
    cli(path, "checkout", "dev")
    cli(path, "schema", "imgs", "--variable-shape", "--max-shape", "8")
    diff = cli(path, "diff", "master", "dev").stdout
    assert "schema changed: imgs: 1 added, 1 mutated" in diff
    assert "arrayset 'imgs'" not in diff and "Conflicts a merge would meet (1)" in diff  # k0 only
    cli(path, "checkout", "master")
    out = cli(path, "merge", "dev", "--strategy", "ours").stdout  # k0: changed on both
    assert out.startswith("Merged 'dev' into 'master'"), out
    summary = cli(path, "summary").stdout
    assert "schema_is_var: True" in summary and "schema_max_shape: (8,)" in summary
    assert "[7, 7, 7, 7]" in cli(path, "show", "master:imgs/d1").stdout
    assert "[100, 100, 100, 100]" in cli(path, "show", "master:imgs/k0").stdout


@pytest.mark.parametrize(
    "args",
    [
        ("diff", "master", "dev", "--key", "imgs/k0"),
        ("cherry-pick", "dev"),
        ("revert", "master"),
        ("purge", "imgs", "k1"),
    ],
)
def test_a_history_tool_imports_no_remote_code(branched, tmp_path, args):
    """Each tool imports its own module of ``hangar_git.history_tools``, not
    the data-remote purge (the remotes and fsspec: a third of a second),
    which a purge imports only with --data-remote."""
    import sys

    probe = (  # runs git-hangar ARGS, then prints the modules imported by then
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('\\n'.join(sys.modules)))\n"
        "del sys.argv[0]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    script = Path(__file__).resolve().parents[2] / "git-hangar"
    res = subprocess.run(
        [sys.executable, "-c", probe, str(script), "-q", *args],
        cwd=branched.path,
        capture_output=True,
        text=True,
        check=True,
    )
    mods = set(res.stdout.split())
    assert "hangar_git.history_tools" in mods
    never = {"fsspec", "hangar_git.remotes", "hangar_git.history_tools.remote_purge"}
    assert not never & mods, never & mods


def test_an_arrayset_conflict_says_no_strategy_resolves_it(branched):
    path = Path(branched.path)
    _, second = branched.dev_commits  # adds d1 under the fixed shape
    cli(path, "schema", "imgs", "--dtype", "int32")
    res = cli(path, "cherry-pick", second, ok=False)
    head = res.stderr.splitlines()[0]
    assert "no --strategy resolves arrayset (schema) conflicts" in head, res.stderr
    assert "arrayset 'imgs'" in res.stderr


def test_revert_conflict_from_the_shell(branched):
    path = Path(branched.path)
    first, _ = branched.dev_commits  # dev: k0 -> 200
    co = branched.checkout(write=True, branch="dev")
    co.arraysets["imgs"]["k0"] = fill(300)
    co.commit("dev k0 again")
    co.close()
    cli(path, "checkout", "dev")
    before = open_repo(path).branch_commit("dev")
    res = cli(path, "revert", first, ok=False)
    assert res.returncode == 1 and res.stderr.startswith(f"error: revert of {first[:8]}")
    assert "  sample imgs['k0']: changed on both sides to different values (t3)" in res.stderr
    assert open_repo(path).branch_commit("dev") == before
    cli(path, "revert", first, "--strategy", "theirs")
    assert "[0, 0, 0, 0]" in cli(path, "show", "dev:imgs/k0").stdout  # as before `first`
