"""Records pushed to a local repository (a path or ``file://``) go through the
``git`` executable when there is one, through libgit2 otherwise, with the
same outcome: the branch and its objects land, a branch the remote moved
on is refused, the pushing repository's hooks are not run
(hangar_git/remotes/git_transport.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pygit2
import pytest

from hangar_git.remotes import PushRejectedError
from hangar_git.remotes import git_transport as gt

try:
    from .remotes_support import bare_repo, empty_clone_target, make_repo, remote_heads
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        bare_repo,
        empty_clone_target,
        make_repo,
        remote_heads,
    )


@pytest.fixture(params=["git", "libgit2"])
def pusher(request, monkeypatch):
    """Which pushes to a local repository: the git executable, or libgit2 (no git found)."""
    if request.param == "libgit2":
        real = gt.shutil.which
        monkeypatch.setattr(gt.shutil, "which", lambda n, *a, **k: None if n == "git" else real(n))
    return request.param


def _callbacks(repo) -> gt.Callbacks:
    return gt.Callbacks(repo.path)


@pytest.mark.parametrize("as_url", [False, True])
def test_push_lands_the_branch_and_its_objects(tmp_path, pusher, as_url):
    repo = make_repo(tmp_path / "alice", n=50)
    bare = bare_repo(tmp_path / "origin.git")
    address = bare.as_uri() if as_url else str(bare)
    repo.remote.add("origin", address, data=str(tmp_path / "data"))
    repo.remote.push("origin", "master")
    head = str(repo.git_repository().references["refs/hangar/heads/master"].target)
    assert remote_heads(bare)["refs/hangar/heads/master"] == head
    theirs = pygit2.Repository(str(bare))
    for obj in repo.git_repository().walk(pygit2.Oid(hex=head)):
        assert theirs.get(obj.tree_id) is not None  # the records arrived with the commit
    clone = empty_clone_target(tmp_path / "bob")
    clone.clone("Bob", "bob@example.org", address, data=str(tmp_path / "data"))
    clone.remote.fetch_data("origin", "master")
    with clone.checkout() as co:
        assert len(co.arraysets["images"]) == 50


def test_a_branch_the_remote_moved_on_is_refused(tmp_path, pusher):
    alice = make_repo(tmp_path / "alice", n=10)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    alice.remote.push("origin", "master")
    first = remote_heads(bare)["refs/hangar/heads/master"]
    co = alice.checkout(write=True)
    co.arraysets["images"][99] = np.ones((8, 8), np.uint8)
    co.commit("on")
    co.close()
    alice.remote.push("origin", "master")
    moved = remote_heads(bare)["refs/hangar/heads/master"]
    git = alice.git_repository()  # back to the first commit: pushing it is not a fast-forward
    git.references.create("refs/hangar/heads/master", pygit2.Oid(hex=first), force=True)
    with pytest.raises(PushRejectedError, match="rejected"):
        gt.push(git, "origin", "master", _callbacks(alice))
    assert remote_heads(bare)["refs/hangar/heads/master"] == moved


def test_the_pushing_repositorys_hooks_are_not_run(tmp_path, pusher):
    repo = make_repo(tmp_path / "alice", n=5)
    hook = Path(repo.git_repository().path) / "hooks" / "pre-push"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    bare = bare_repo(tmp_path / "origin.git")
    repo.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    repo.remote.push("origin", "master")
    assert "refs/hangar/heads/master" in remote_heads(bare)


def test_a_directory_that_is_no_repository_is_a_connection_error(tmp_path, pusher):
    repo = make_repo(tmp_path / "alice", n=5)
    (tmp_path / "plain").mkdir()
    repo.remote.add("origin", str(tmp_path / "plain"), data=str(tmp_path / "data"))
    with pytest.raises(ConnectionError):
        gt.push(repo.git_repository(), "origin", "master", _callbacks(repo))


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("{d}", True),
        ("file://{d}", True),
        ("{d}/missing", False),
        ("ssh://host/{d}", False),
        ("https://host/repo.git", False),
        ("git://127.0.0.1/repo.git", False),
        ("host:repo.git", False),
        ("user@host:repo.git", False),
        ("", False),
    ],
)
def test_which_addresses_are_local_repositories(tmp_path, address, local):
    d = str(tmp_path)
    got = gt.local_repository_path(address.format(d=d))
    assert got == (d if local else None)
    assert os.path.isdir(d)


def test_a_local_directory_named_like_an_option_is_passed_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = tmp_path / "--upload-pack=touch pwned"
    odd.mkdir()
    got = gt.local_repository_path("--upload-pack=touch pwned")
    assert got == str(odd)  # absolute, so git never reads it as an option
