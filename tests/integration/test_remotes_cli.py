"""The collaboration commands: ``remote``, ``push``, ``fetch``, ``fetch-data``, ``clone``.

Run through click's CliRunner on a group built here with
``hangar_git.cli.remotes.register``, and once through a real subprocess.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from hangar_git.cli import CONTEXT_SETTINGS, RootGroup, common, remotes

try:
    from .remotes_support import all_arrays, assert_same_data, bare_repo, make_repo, open_repo
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        all_arrays,
        assert_same_data,
        bare_repo,
        make_repo,
        open_repo,
    )

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def group() -> click.Group:
    g = RootGroup(name="git-hangar", context_settings=CONTEXT_SETTINGS)
    remotes.register(g)
    return g


def run(group: click.Group, cwd: Path, *args: str, ok: bool = True):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(group, list(args), prog_name="git hangar")
    finally:
        os.chdir(old)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_register_adds_the_commands(group):
    assert {"remote", "push", "fetch", "fetch-data", "clone"} <= set(group.commands)
    assert set(group.commands["remote"].commands) >= {"add", "list", "remove", "ping"}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("123", 123),
        ("1kb", 1000),
        ("2KiB", 2048),
        ("1.5GB", 1_500_000_000),
        ("64MiB", 64 << 20),
        (" 10 MB ", 10_000_000),
        ("7b", 7),
    ],
)
def test_parse_size(text, expected):
    assert remotes.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MB", "1.2.3", "-5", "12 parsecs"])
def test_parse_size_refuses(bad):
    with pytest.raises(click.BadParameter):
        remotes.parse_size(bad)


@pytest.mark.parametrize(
    "url,name",
    [
        ("/srv/git/team-data.git", "team-data"),
        ("git://127.0.0.1:9418/a/b.git", "b"),
        ("git@example.org:team/mnist.git", "mnist"),
        ("https://example.org/x/y/", "y"),
    ],
)
def test_default_clone_dir(url, name):
    assert remotes._default_dir(url) == name


def test_remote_add_list_remove(group, repo, tmp_path):
    path = Path(repo.path)
    bare = bare_repo(tmp_path / "o.git")
    res = run(
        group,
        path,
        "remote",
        "add",
        "origin",
        str(bare),
        "--data",
        str(tmp_path / "d"),
        "--data-option",
        "auto_mkdir=true",
    )
    assert "added remote origin" in res.output
    res = run(group, path, "remote", "list")
    assert res.output.splitlines() == [f"origin\t{bare}\t{tmp_path / 'd'}"]
    res = run(group, path, "remote", "ping", "origin")
    assert "reachable" in res.output
    # errors: one line, non-zero, nothing changed
    res = run(group, path, "remote", "add", "origin", str(bare), "--data", "x", ok=False)
    assert res.exit_code == 1
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    res = run(group, path, "remote", "add", "o2", str(bare), "--data-option", "secret=s", ok=False)
    assert res.exit_code == 1 and "credential" in res.output
    res = run(group, path, "remote", "add", "o3", str(bare), "--data-option", "novalue", ok=False)
    assert res.exit_code == 2
    assert [r.name for r in repo.remote.list_all()] == ["origin"]
    res = run(group, path, "remote", "ping", "nope", ok=False)
    assert res.exit_code == 1 and "no remote named 'nope'" in res.output
    run(group, path, "remote", "remove", "origin")
    assert run(group, path, "remote", "list").output == ""


def test_remote_add_reuses_git_remote_and_refuses_secrets(group, repo, tmp_path):
    path = Path(repo.path)
    bare = bare_repo(tmp_path / "code.git")
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=path, check=True)
    res = run(group, path, "remote", "add", "origin", "--data", str(tmp_path / "store"))
    assert f"records {bare}" in res.output
    res = run(group, path, "remote", "list")
    assert res.output.splitlines() == [f"origin\t{bare}\t{tmp_path / 'store'}"]
    cfg = subprocess.run(
        ["git", "config", "--get", "remote.origin.hangar-data"],
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert cfg.stdout.strip() == str(tmp_path / "store")
    for args in (
        ("o2", "https://alice:s3cret@git.example.org/d.git"),
        ("o3", str(bare), "--data", "sftp://bob:pw@files.example.org/d"),
    ):
        res = run(group, path, "remote", "add", *args, ok=False)
        assert res.exit_code == 1 and res.output.startswith("error: ")
        assert "password" in res.output and len(res.output.strip().splitlines()) == 1
    res = run(group, tmp_path, "clone", "https://alice:s3cret@git.example.org/d.git", ok=False)
    assert res.exit_code == 1 and "password" in res.output
    assert not (tmp_path / "d").exists()
    assert "s3cret" not in (path / ".git" / "config").read_text()
    run(group, path, "remote", "remove", "origin")
    res = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=path, capture_output=True, text=True
    )
    assert res.stdout.strip() == str(bare)  # the user's own git remote stays


def test_push_clone_fetch_data_commands(group, tmp_path):
    alice = make_repo(tmp_path / "alice", n=120)
    bare = bare_repo(tmp_path / "team.git")
    data = tmp_path / "data"
    run(group, tmp_path / "alice", "remote", "add", "origin", str(bare), "--data", str(data))
    res = run(group, tmp_path / "alice", "push", "origin", "master")
    assert "pushed master to origin" in res.output and "240 payloads" in res.output

    res = run(
        group,
        tmp_path,
        "clone",
        str(bare),
        "--data",
        str(data),
        "--name",
        "Bob",
        "--email",
        "bob@example.org",
    )
    assert "cloned" in res.output
    bob_path = tmp_path / "team"  # the directory named after the URL
    bob = open_repo(bob_path)
    assert bob.initialized and bob.list_branches() == ["master"]
    co = bob.checkout()
    assert len(co.arraysets["labels"].remote_reference_sample_keys) == 120
    co.close()

    res = run(group, bob_path, "fetch-data", "origin", "master", "-d", "labels", "--nbytes", "400B")
    assert "fetched 50 payloads" in res.output
    res = run(group, bob_path, "fetch-data", "origin", "origin/master", "--aset", "labels")
    assert "fetched 70 payloads" in res.output
    head = bob.log(return_contents=True)["head"]
    res = run(group, bob_path, "fetch-data", "origin", head[:10])
    assert "fetched 120 payloads" in res.output
    res = run(group, bob_path, "fetch-data", "origin", "master", "-a")
    assert "nothing fetched" in res.output
    assert_same_data(all_arrays(alice), all_arrays(bob))

    # alice adds work; bob fetches records, merges, gets the data
    co = alice.checkout(write=True)
    co.arraysets["labels"][500] = np.array([500], np.int64)
    new = co.commit("more")
    co.close()
    run(group, tmp_path / "alice", "push", "origin", "master")
    res = run(group, bob_path, "fetch", "origin", "master")
    assert f"origin/master -> {new[:8]}" in res.output
    res = run(group, bob_path, "fetch", "origin")  # every branch
    assert "origin/master" in res.output
    assert bob.merge("ff", "master", "origin/master") == new
    run(group, bob_path, "fetch-data", "origin", "master")
    assert_same_data(all_arrays(alice), all_arrays(bob))

    # errors are one clear line
    res = run(group, bob_path, "fetch-data", "origin", "nosuch", ok=False)
    assert res.exit_code == 1 and res.output.startswith("error: ")
    res = run(group, bob_path, "fetch-data", "origin", "master", "--nbytes", "lots", ok=False)
    assert res.exit_code == 2
    res = run(group, bob_path, "fetch", "nope", "master", ok=False)
    assert res.exit_code == 1 and "no remote" in res.output
    res = run(group, tmp_path, "clone", str(tmp_path / "missing.git"), "gone", ok=False)
    assert res.exit_code == 1 and "cannot reach" in res.output
    assert not (tmp_path / "gone").exists()
    res = run(group, tmp_path, "clone", str(bare), "carol", ok=False)
    assert res.exit_code == 1 and "no identity" in res.output  # none in git config here
    assert not (tmp_path / "carol").exists()  # and nothing is left behind


def test_push_rejected_says_fetch_and_merge(group, tmp_path):
    alice = make_repo(tmp_path / "alice", n=10)
    bare = bare_repo(tmp_path / "team.git")
    data = tmp_path / "data"
    alice.remote.add("origin", str(bare), data=str(data))
    alice.remote.push("origin", "master")
    run(
        group,
        tmp_path,
        "clone",
        str(bare),
        "bob",
        "--data",
        str(data),
        "--name",
        "Bob",
        "--email",
        "bob@example.org",
    )
    bob = open_repo(tmp_path / "bob")
    for repo, key in ((bob, 100), (alice, 200)):
        co = repo.checkout(write=True)
        co.arraysets["labels"][key] = np.array([key], np.int64)
        co.commit(f"add {key}")
        co.close()
    run(group, tmp_path / "bob", "push", "origin", "master")
    res = run(group, tmp_path / "alice", "push", "origin", "master", ok=False)
    assert res.exit_code == 1
    assert "rejected" in res.output and "git hangar fetch origin master" in res.output
    assert "merge origin/master" in res.output


def test_progress_bars_report_transfers(group, tmp_path, monkeypatch):
    seen: dict[str, list[int]] = {}

    @contextlib.contextmanager
    def recording(length, label):
        steps = seen.setdefault(label, [length])
        yield lambda n=1: steps.append(n)

    monkeypatch.setattr(common, "progress", recording)  # the bars of every transfer
    alice = make_repo(tmp_path / "alice", n=30)
    bare = bare_repo(tmp_path / "team.git")
    alice.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    run(group, tmp_path / "alice", "push", "origin", "master")
    total = 30 * 64 + 30 * 8
    assert seen["Sending payloads (bytes)"][0] == total
    assert sum(seen["Sending payloads (bytes)"][1:]) == total
    run(
        group,
        tmp_path,
        "clone",
        "--data-only",  # (a full clone of a local path hardlinks the records: nothing to receive)
        str(bare),
        "bob",
        "--data",
        str(tmp_path / "data"),
        "--name",
        "Bob",
        "--email",
        "bob@example.org",
    )
    assert "Receiving records" in seen
    run(group, tmp_path / "bob", "fetch-data", "origin", "master")
    assert sum(seen["Fetching payloads (bytes)"][1:]) == total


def test_commands_in_a_real_process(tmp_path):
    """``git hangar`` as a user runs it: the main group with these commands."""
    alice = make_repo(tmp_path / "alice", n=20)
    bare = bare_repo(tmp_path / "team.git")
    data = tmp_path / "data"
    launcher = (
        "import sys; from hangar_git.cli import main, remotes\n"
        "if 'push' not in main.commands: remotes.register(main)\n"
        "sys.argv[0] = 'git hangar'; main()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def hangar(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", launcher, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    alice.remote.add("origin", str(bare), data=str(data))
    r = hangar(tmp_path / "alice", "push", "origin", "master")
    assert r.returncode == 0, r.stderr
    assert "40 payloads" in r.stdout
    r = hangar(
        tmp_path,
        "clone",
        str(bare),
        "bob",
        "--data",
        str(data),
        "--name",
        "Bob",
        "--email",
        "bob@example.org",
    )
    assert r.returncode == 0, r.stderr
    r = hangar(tmp_path / "bob", "fetch-data", "origin", "master", "-d", "images")
    assert r.returncode == 0, r.stderr
    assert "fetched 20 payloads" in r.stdout
    bob = open_repo(tmp_path / "bob")
    co = bob.checkout()
    assert not co.arraysets["images"].contains_remote_references
    assert co.arraysets["labels"].contains_remote_references
    co.close()
    assert alice.initialized
