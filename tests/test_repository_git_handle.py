"""The public handles on a repository's git side that remotes and clone use:
``Repository.git_repository_found``, ``hangar_dir`` and
``forget_git_repository`` (hangar_git/repository_core.py)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pygit2
import pytest

from hangar_git import Repository
from hangar_git.errors import NotInitializedError


def _open(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def test_outside_git_there_is_no_git_and_no_hangar_dir(tmp_path):
    r = _open(tmp_path)
    assert r.git_repository_found() is None and r.hangar_dir is None


def test_a_plain_git_repository_is_found_before_init(tmp_path):
    pygit2.init_repository(str(tmp_path))
    r = _open(tmp_path)
    found = r.git_repository_found()
    assert found is not None and Path(found.path).resolve() == (tmp_path / ".git").resolve()
    assert r.hangar_dir == Path(found.path).resolve() / "hangar"
    with pytest.raises(NotInitializedError):
        r.git_repository()


def test_after_init_the_hangar_dir_holds_the_store(repo):
    assert repo.git_repository_found() is repo.git_repository()
    assert repo.hangar_dir is not None and (repo.hangar_dir / "config.json").is_file()
    assert repo.payload_store.root == repo.hangar_dir / "store"


def test_forget_git_repository_after_removing_it(tmp_path):
    r = _open(tmp_path)
    r.init(user_name="A", user_email="a@example.org")
    shutil.rmtree(tmp_path / ".git")
    r.forget_git_repository()
    assert not r.has_git and not r.initialized
    assert r.git_repository_found() is None and r.hangar_dir is None
    r.init(user_name="A", user_email="a@example.org")  # usable again
    assert r.initialized and r.hangar_dir is not None
