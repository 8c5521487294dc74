"""Records pushed to a local repository (a path or ``file://``) are written
in-process, with the outcome libgit2's push (kept for other addresses) has:
the branch and its objects land, a branch the remote moved on is refused,
the pushing repository's hooks are not run; no ``git`` process is started,
only the objects the remote lacks are sent, and a ref moved meanwhile is
refused, never overwritten (hangar_git/remotes/git_transport.py,
hangar_git/remotes/git_local.py)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pygit2
import pytest

from hangar_git.remotes import PushRejectedError, git_local
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


@pytest.fixture(params=["in-process", "libgit2"])
def pusher(request, monkeypatch):
    """Which pushes to a local repository: this process, or libgit2 (as for any other address)."""
    if request.param == "libgit2":
        monkeypatch.setattr(gt, "local_repository_path", lambda url: None)
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


def _head(repo, branch: str = "master") -> str:
    return str(repo.git_repository().references[f"refs/hangar/heads/{branch}"].target)


def test_a_local_push_starts_no_process_and_sends_only_what_is_missing(tmp_path, monkeypatch):
    alice = make_repo(tmp_path / "alice", n=300)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=str(tmp_path / "data"))

    def no_process(*a, **k):
        raise AssertionError(f"a process was started: {a}")

    with monkeypatch.context() as m:
        m.setattr(gt.subprocess, "run", no_process)
        m.setattr(gt.subprocess, "Popen", no_process)
        alice.remote.push("origin", "master")
    first = _head(alice)
    assert remote_heads(bare)["refs/hangar/heads/master"] == first
    theirs = pygit2.Repository(str(bare))
    git = alice.git_repository()
    assert git_local.missing_objects(git, theirs, [pygit2.Oid(hex=first)]) == ([], [])
    co = alice.checkout(write=True)
    co.arraysets["images"][7] = np.ones((8, 8), np.uint8)
    co.commit("one change")
    co.close()
    _objs, ids = git_local.missing_objects(git, theirs, [pygit2.Oid(hex=_head(alice))])
    assert ids[0] == bytes.fromhex(_head(alice))  # the new commit, then only its new trees
    listed = subprocess.run(  # what git itself would send
        ["git", f"--git-dir={git.path}", "rev-list", "--objects", _head(alice), f"^{first}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(i.hex() for i in ids) == sorted(w for w in listed if len(w) == 40)
    all_objs = sum(1 for _ in theirs.odb)
    assert 1 < len(ids) < all_objs
    rolled = []
    monkeypatch.setattr(git_local, "roll_up_packs", lambda r: rolled.append(r.path))
    alice.remote.push("origin", "master")
    assert remote_heads(bare)["refs/hangar/heads/master"] == _head(alice)
    assert sum(1 for _ in theirs.odb) == all_objs + len(ids)
    assert rolled == [theirs.path]  # a pack a push: rolled together past a limit
    assert theirs.descendant_of(pygit2.Oid(hex=_head(alice)), pygit2.Oid(hex=first))


def _removed_and_set_back(path: Path):
    """A repository of three commits: 5 samples, sample 4 removed, sample 4 set back."""
    repo = make_repo(path, n=5)
    with repo.checkout() as co:
        back = co.arraysets["images"][4]
    for message in ("drop 4", "4 is back"):
        co = repo.checkout(write=True)
        if message == "drop 4":
            co.arraysets["images"].remove(4)
        else:
            co.arraysets["images"][4] = back
        co.commit(message)
        co.close()
    return repo


def test_a_tree_a_later_commit_shares_with_an_earlier_one_is_sent_whole(tmp_path, pusher):
    # the third commit's arraysets tree is the first's; the objects under it
    # that the second commit shares must travel too
    alice = _removed_and_set_back(tmp_path / "alice")
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    alice.remote.push("origin", "master")
    fsck = subprocess.run(
        ["git", f"--git-dir={bare}", "fsck", "--connectivity-only", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=str(tmp_path / "data"))
    assert bob.verify().ok


def test_a_push_that_would_leave_the_remote_incomplete_moves_no_ref(tmp_path, monkeypatch):
    # the check git's receive-pack makes: were an object not sent (here: the
    # commits gathered children first, the old bug), no ref moves
    alice = _removed_and_set_back(tmp_path / "alice")
    bare = bare_repo(tmp_path / "origin.git")
    monkeypatch.setattr(git_local, "_parents_first", lambda commits: commits)
    with pytest.raises(ValueError, match="the remote would lack object"):
        git_local.push_refs(
            alice.git_repository(), str(bare), ["refs/hangar/heads/master:refs/hangar/heads/master"]
        )
    assert remote_heads(bare) == {}


def test_a_ref_moved_while_a_local_push_runs_is_refused_not_overwritten(tmp_path, monkeypatch):
    alice = make_repo(tmp_path / "alice", n=10)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    alice.remote.push("origin", "master")
    first = _head(alice)
    co = alice.checkout(write=True)
    co.arraysets["images"][99] = np.ones((8, 8), np.uint8)
    co.commit("on")
    co.close()
    theirs = pygit2.Repository(str(bare))
    sig = pygit2.Signature("Bob", "bob@example.org")
    other = theirs.create_commit(
        None, sig, sig, "bob's", theirs[pygit2.Oid(hex=first)].tree_id, [pygit2.Oid(hex=first)]
    )
    real = git_local.missing_objects

    def and_bob_pushes(*a, **k):  # between reading the remote's ref and moving it
        theirs.references["refs/hangar/heads/master"].set_target(other)
        return real(*a, **k)

    monkeypatch.setattr(git_local, "missing_objects", and_bob_pushes)
    with pytest.raises(PushRejectedError, match="moved meanwhile"):
        gt.push(alice.git_repository(), "origin", "master", _callbacks(alice))
    assert remote_heads(bare)["refs/hangar/heads/master"] == str(other)


def test_a_local_push_refuses_commits_it_does_not_know_and_never_moves_a_tag(tmp_path):
    alice = make_repo(tmp_path / "alice", n=10)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    alice.remote.push("origin", "master")
    first = _head(alice)
    theirs = pygit2.Repository(str(bare))
    sig = pygit2.Signature("Bob", "bob@example.org")
    tree = theirs[pygit2.Oid(hex=first)].tree_id
    bobs = theirs.create_commit(None, sig, sig, "bob's", tree, [pygit2.Oid(hex=first)])
    theirs.references["refs/hangar/heads/master"].set_target(bobs)
    theirs.references.create("refs/hangar/tags/v1", bobs)
    git = alice.git_repository()
    git.references.create("refs/hangar/tags/v1", pygit2.Oid(hex=first))
    got = git_local.push_refs(
        git,
        str(bare),
        [
            "refs/hangar/heads/master:refs/hangar/heads/master",
            "refs/hangar/tags/v1:refs/hangar/tags/v1",
        ],
    )
    assert got == {
        "refs/hangar/heads/master": "fetch first",
        "refs/hangar/tags/v1": "already exists",
    }
    assert remote_heads(bare)["refs/hangar/heads/master"] == str(bobs)
    assert str(theirs.references["refs/hangar/tags/v1"].target) == str(bobs)


def test_tree_children_follow_trees_and_blobs_never_gitlinks():
    oid = [bytes([i]) * 20 for i in range(4)]
    tree = (
        b"160000 a\0"
        + oid[0]
        + b"40000 b\0"
        + oid[1]
        + b"160000 c\0"
        + oid[2]
        + b"100644 d \xff\0"
        + oid[3]
        + b"160000 e\0"
        + b"40000 \0" * 2
        + b"x" * 6
    )
    assert git_local.tree_children(tree) == [(True, b"b", oid[1]), (False, b"d \xff", oid[3])]
    assert git_local.tree_children(b"") == []
    with pytest.raises(ValueError, match="malformed"):
        git_local.tree_children(b"40000 b\0" + oid[1][:19])
    with pytest.raises(ValueError, match="malformed"):
        git_local.tree_children(b"160000 a" + oid[0])


def test_the_objects_just_sent_are_taken_as_there_and_their_trees_read_once(tmp_path):
    """check_connected asks the remote only for what the objects sent name
    besides themselves (those are in the pack just written there), and takes
    a tree's names as missing_objects read them (not parsed again): what is
    named and is neither sent nor there is still refused."""
    alice = make_repo(tmp_path / "alice", n=10)
    empty = pygit2.Repository(str(bare_repo(tmp_path / "empty.git")))
    git = alice.git_repository()
    named: dict[bytes, list[bytes]] = {}
    objects, ids = git_local.missing_objects(git, empty, [pygit2.Oid(hex=_head(alice))], named)
    trees = [i for (kind, _), i in zip(objects, ids, strict=True) if kind == 2]
    assert trees and set(named) == set(trees)
    for (kind, data), oid in zip(objects, ids, strict=True):
        if kind == 2:
            assert named[oid] == [cid for _, _, cid in git_local.tree_children(data)]
    git_local.check_connected(empty, objects, ids, named)  # nothing asked of the empty remote
    with pytest.raises(ValueError, match="would lack object"):
        git_local.check_connected(empty, objects)  # not said to be sent: asked, and absent
    stray = b"\x01" * 20
    with pytest.raises(ValueError, match=stray.hex()):
        git_local.check_connected(empty, objects, ids, {**named, trees[0]: [stray]})
