"""Tags from Python: ``create_tag``, ``list_tags``, ``remove_tag``, ``checkout(commit=TAG)``,
tags as STARTPOINTs, and the current branch that Python and the command line share."""

from __future__ import annotations

import subprocess
import warnings

import pytest


def commit_meta(repo, key, value, branch="master"):
    co = repo.checkout(write=True, branch=branch)
    try:
        co.metadata[key] = value
        return co.commit(f"{key}={value}")
    finally:
        co.close()


def refs(repo) -> str:
    res = subprocess.run(
        ["git", "for-each-ref", "refs/hangar/"], cwd=repo.path, capture_output=True, text=True
    )
    return res.stdout


def test_create_list_remove_and_read_a_tag(written_repo):
    repo = written_repo
    first = repo.branch_commit("master")
    second = commit_meta(repo, "about", "second")
    assert repo.create_tag("v1", first[:8]) == first
    assert repo.create_tag("release/latest") == second  # default: the current head
    assert repo.list_tags() == {"release/latest": second, "v1": first}
    with repo.checkout(commit="v1") as co:
        assert co.commit_hash == first and co.metadata["about"] == "fixture"
    assert repo.resolve_startpoint("v1").commit == first
    assert repo.create_tag("from-tag", "release/latest") == second
    # a tag never moves with its branch
    commit_meta(repo, "about", "third")
    assert repo.list_tags()["release/latest"] == second
    assert repo.remove_tag("v1") == first
    assert "v1" not in repo.list_tags()
    assert repo.branch_commit("master") != first  # the commit stays on its branch


@pytest.mark.parametrize(
    "name", ["", "a..b", "/x", "x/", "a//b", ".x", "x.lock", "a b", "é", None, 3, "a/.git"]
)
def test_bad_tag_names_change_nothing(written_repo, name):
    before = refs(written_repo)
    with pytest.raises(ValueError):
        written_repo.create_tag(name)
    with pytest.raises(ValueError):
        written_repo.remove_tag(name)
    assert refs(written_repo) == before


def test_tags_are_not_moved_or_clashed(written_repo):
    repo = written_repo
    repo.create_tag("v1")
    second = commit_meta(repo, "k", "v")
    before = refs(repo)
    with pytest.raises(ValueError, match="already exists"):
        repo.create_tag("v1", second)
    with pytest.raises(ValueError, match="clashes"):
        repo.create_tag("v1/rc", second)
    with pytest.raises(ValueError):
        repo.create_tag("x", "0" * 40)
    with pytest.raises(ValueError, match="no tag"):
        repo.remove_tag("nope")
    assert refs(repo) == before


def test_branch_names_with_parts(written_repo):
    repo = written_repo
    repo.create_branch("feature/x")
    sha = commit_meta(repo, "k", "x", branch="feature/x")
    assert repo.branch_commit("feature/x") == sha
    assert repo.resolve_startpoint("feature/x").commit == sha
    with repo.checkout(branch="feature/x") as co:
        assert co.metadata["k"] == "x"
    assert "feature/x" in repo.list_branches()


def test_the_default_writer_says_when_it_moves_the_current_branch(written_repo):
    repo = written_repo
    repo.create_branch("dev")
    commit_meta(repo, "k", "dev", branch="dev")
    assert repo.writer_branch == "dev"  # what `git hangar status` shows too
    with pytest.warns(UserWarning, match="from 'dev' to 'master'"):
        co = repo.checkout(write=True)
    co.close()
    assert repo.writer_branch == "master"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repo.checkout(write=True).close()  # already on master: nothing to say
        repo.checkout(write=True, branch="dev").close()  # asked for by name
        repo.checkout().close()  # readers move nothing


def test_create_branch_refuses_a_name_clashing_with_another_branch(written_repo):
    repo = written_repo
    repo.create_branch("feature/x")
    with pytest.raises(ValueError, match="clashes"):
        repo.create_branch("feature")
    with pytest.raises(ValueError, match="clashes"):
        repo.create_branch("feature/x/y")
    assert "feature" not in repo.list_branches()
