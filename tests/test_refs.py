"""STARTPOINTs with git's ancestry suffixes (``master~2``, ``v1^``, ``dev^2``) from
Python (the command line's: ``tests/integration/test_cli_git_style.py``)."""

from __future__ import annotations

import re
import subprocess

import pytest
from test_tags import commit_meta

from hangar_git.refs import UnknownStartpointError


@pytest.fixture
def history(written_repo):
    """master: initial -> second -> third; a merge of dev (one commit) into master on top.

    Returns the repository and the commits by name."""
    repo = written_repo
    c = {"initial": repo.branch_commit("master")}
    c["second"] = commit_meta(repo, "about", "second")
    c["third"] = commit_meta(repo, "about", "third")
    repo.create_branch("dev", c["second"])
    c["dev"] = commit_meta(repo, "side", "dev", branch="dev")
    c["merge"] = repo.merge("merge dev", master_branch="master", dev_branch="dev")
    repo.create_tag("v1", c["third"])
    return repo, c


@pytest.mark.parametrize(
    "spec, expect",
    [
        ("master^0", "merge"),
        ("master~", "third"),
        ("master^", "third"),
        ("master~1", "third"),
        ("master^1", "third"),
        ("master^2", "dev"),
        ("master^2~1", "second"),
        ("master~2", "second"),
        ("master~3", "initial"),
        ("master~~~", "initial"),
        ("master^^", "second"),
        ("v1~1", "second"),
        ("dev~1", "second"),
    ],
)
def test_ancestry_suffixes_walk_parents_as_git_does(history, spec, expect):
    repo, c = history
    sp = repo.resolve_startpoint(spec)
    assert sp.commit == c[expect]
    assert sp.branch is None  # named through a suffix: a commit, not a branch head
    # git itself agrees (the hangar refs are plain git refs)
    base = re.match(r"[^~^]+", spec).group()
    ref = ("refs/hangar/tags/" if base == "v1" else "refs/hangar/heads/") + base
    out = subprocess.run(
        ["git", "rev-parse", ref + spec[len(base) :]], cwd=repo.path, capture_output=True, text=True
    )
    assert out.stdout.strip() == c[expect]


def test_a_suffixed_commit_hash_and_a_read_checkout(history):
    repo, c = history
    assert repo.resolve_startpoint(c["merge"][:10] + "~2").commit == c["second"]
    with repo.checkout(commit="master~1") as co:
        assert co.commit_hash == c["third"] and co.metadata["about"] == "third"


@pytest.mark.parametrize(
    "spec", ["master~4", "master^3", "dev^2", "nope~1", "v1^^^^", "master~^~^"]
)
def test_a_missing_parent_or_base_is_an_unknown_startpoint(history, spec):
    repo, _ = history
    with pytest.raises(UnknownStartpointError, match="unknown branch, tag or commit"):
        repo.resolve_startpoint(spec)
