"""RepositoryCore's public forms for the other layers: the commit identity,
the staging journal's path, telling two repository objects on one repository
apart from objects on different ones, and the open write checkouts."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from hangar_git import NotInitializedError, Repository
from hangar_git.live_writers import live_writers


def open_repo(path: Path | str) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def git(cwd: Path, *args: str) -> None:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, (args, res.stderr)


def test_identity_is_the_one_given_to_init(repo):
    assert repo.identity() == ("Test User", "test@example.org")


def test_identity_falls_back_to_git_config(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.name", "Config Person")
    git(tmp_path, "config", "user.email", "config@example.org")
    repo = open_repo(tmp_path)
    repo.init()
    assert repo.identity() == ("Config Person", "config@example.org")
    git(tmp_path, "config", "--unset", "user.email")
    with pytest.raises(ValueError, match=r"user\.email"):
        repo.identity()


def test_public_forms_refuse_before_init(tmp_path):
    repo = open_repo(tmp_path)
    with pytest.raises(NotInitializedError):
        repo.identity()
    with pytest.raises(NotInitializedError):
        repo.staging_journal_path()


def test_staging_journal_path_is_the_journal_a_writer_stages_in(repo):
    path = repo.staging_journal_path()
    assert path.parent == Path(repo.git_repository().path) / "hangar" / "staging"
    co = repo.checkout(write=True)
    try:
        co.metadata["k"] = "v"
        co.commit("one")
        co.metadata["k2"] = "staged"
        before = path.read_bytes()
        co.metadata["k3"] = "more"
        assert path.read_bytes() != before  # the staged change went there
    finally:
        co.close()


def test_same_as_tells_repositories_apart(tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    for d in (one, other):
        d.mkdir()
        open_repo(d).init(user_name="A", user_email="a@example.org")
    (one / "sub").mkdir()
    a, a_sub, b = open_repo(one), open_repo(one / "sub"), open_repo(other)
    assert a.same_as(a) and a.same_as(a_sub) and a_sub.same_as(a)
    assert not a.same_as(b) and not b.same_as(a)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not a.same_as(open_repo(plain))  # not initialised: never the same


def test_same_as_across_linked_work_trees(tmp_path):
    main = tmp_path / "main"
    main.mkdir()
    git(main, "init", "-q", "-b", "main")
    git(
        main,
        "-c",
        "user.name=A",
        "-c",
        "user.email=a@e.org",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "c",
    )
    git(main, "worktree", "add", "-q", str(tmp_path / "linked"), "-b", "other")
    repo = open_repo(main)
    repo.init(user_name="A", user_email="a@example.org")
    linked = open_repo(tmp_path / "linked")
    assert linked.initialized and linked.same_as(repo)


def test_live_writers_and_writer_checkout_from_another_object(repo, tmp_path):
    co = repo.checkout(write=True)
    try:
        assert co in live_writers()
        again = open_repo(repo.path)
        assert again.writer_checkout() is co  # another object on the same repository
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        other = open_repo(stranger)
        other.init(user_name="A", user_email="a@example.org")
        assert other.writer_checkout() is None
        with pytest.raises(PermissionError):
            again.init(user_name="X", user_email="x@example.org", remove_old=True)
        aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int8)
        aset["x"] = np.zeros(2, np.int8)
        with pytest.warns(ResourceWarning):
            assert again.force_release_writer_lock() is True
        assert co.closed and co not in live_writers()
    finally:
        co.close()
    assert not repo.writer_lock_held
