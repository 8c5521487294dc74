"""The objects an in-process push sends are exactly those git would send.

Over random histories (two branches of random change sets from a base,
then a merge of the two when it is clean), with values from a small pool and
change sets that toggle keys so that trees repeat across commits (a sample
removed and set back, the same arrayset on both sides),
:func:`hangar_git.remotes.git_local.missing_objects` for the merge (or the
branch tips) is what ``git rev-list --objects`` lists against what the
remote has: everything, for an empty remote; at least all
but the base's, for a remote holding the base commit.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pygit2
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git import MergeConflictError
from hangar_git.remotes import git_local

try:
    from .test_history_property import SETTINGS, commit_changes, history_changes, new_repo
except ImportError:
    from test_history_property import (  # type: ignore[no-redef]
        SETTINGS,
        commit_changes,
        history_changes,
        new_repo,
    )


#: change sets that set or remove keys 3 and 7 (absent from the base) with one
#: value: a history of them often comes back to an earlier tree
TOGGLES = st.lists(
    st.fixed_dictionaries(
        {
            "x": st.dictionaries(
                st.sampled_from([3, 7]), st.sampled_from([None, 0]), min_size=1, max_size=2
            ),
            "y": st.just({}),
            "meta": st.just({}),
            "y_op": st.just("keep"),
            "z_op": st.none(),
            "z_val": st.just(0),
        }
    ),
    min_size=1,
    max_size=4,
)


def _rev_list(git: pygit2.Repository, tips: list[str], has: str | None) -> set[str]:
    cmd = ["git", f"--git-dir={git.path}", "rev-list", "--objects", *tips]
    out = subprocess.run(cmd + ([f"^{has}"] if has else []), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return {line.split()[0] for line in out.stdout.splitlines()}


def _sent(git: pygit2.Repository, theirs: pygit2.Repository, tips: list[str]) -> set[str]:
    objects, ids = git_local.missing_objects(git, theirs, [pygit2.Oid(hex=t) for t in tips])
    assert len(ids) == len(set(ids)) == len(objects)  # each object once
    return {i.hex() for i in ids}


def test_a_push_sends_what_git_would_over_random_histories(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    repo, base = new_repo(tmp_path / "src")
    git = repo.git_repository()
    empty = pygit2.init_repository(str(tmp_path / "empty.git"), bare=True)
    holding = pygit2.init_repository(str(tmp_path / "base.git"), bare=True)
    subprocess.run(
        ["git", f"--git-dir={git.path}", "push", "-q", holding.path, f"{base}:refs/heads/base"],
        check=True,
        capture_output=True,
    )
    counter = itertools.count()

    @settings(SETTINGS, max_examples=30)
    @given(
        a=st.one_of(history_changes(4), TOGGLES),
        b=st.one_of(history_changes(3), TOGGLES),
        merge=st.booleans(),
    )
    def check(a: list[dict], b: list[dict], merge: bool) -> None:
        i = next(counter)
        for name, changes in ((f"a{i}", a), (f"b{i}", b)):
            repo.create_branch(name, base_commit=base)
            commit_changes(repo, name, changes)
        tips = [repo.branch_commit(f"a{i}"), repo.branch_commit(f"b{i}")]
        if merge and len(set(tips)) == 2:
            try:
                tips = [repo.merge("m", master_branch=f"a{i}", dev_branch=f"b{i}")]
            except MergeConflictError:
                pass
        everything = _rev_list(git, tips, None)
        assert _sent(git, empty, tips) == everything
        # all the remote lacks; an object it has may go again (one the commits
        # moved to another path: the walk asks the remote about commits only)
        assert _rev_list(git, tips, base) <= _sent(git, holding, tips) <= everything

    check()
