"""Change logs: each commit's list of changed samples, and diffs composed from them.

The property test builds random histories (several commits per branch,
samples added, changed and removed, arraysets removed and re-created,
merges in between) and checks that every diff composed from change logs
equals the diff that walks the record trees, and that every log matches
the records it describes.
"""

from __future__ import annotations

import contextlib
import warnings
from unittest import mock

import numpy as np
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git import Repository
from hangar_git.fsck import verify
from hangar_git.gitutil import read_raw, write_blob, write_tree
from hangar_git.records import changelog
from hangar_git.records.changelog import CHANGES_NAME, ChangeLog, encode, parse
from hangar_git.records.layout import MODE_BLOB, parse_tree, serialize_tree
from hangar_git.store import array_digest


def walk_only():
    """Diffs walk the record trees, as if no commit had a change log."""
    return mock.patch.object(changelog, "USE_LOGS", False)


@contextlib.contextmanager
def count_logged():
    """Counts diffs that were composed from change logs."""
    seen = {"logged": 0}
    saved = changelog.logged_changes

    def counting(*args):
        got = saved(*args)
        seen["logged"] += got is not None
        return got

    changelog.logged_changes = counting
    try:
        yield seen
    finally:
        changelog.logged_changes = saved


def new_repo(path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Log", user_email="log@example.org")
    return repo


def v(x: int) -> np.ndarray:
    return np.array([x, 1], np.int64)


def test_encode_parse_roundtrip_and_malformed_logs():
    log = ChangeLog(
        "a" * 40, {"gone"}, [("x", "i:1", None, b"\x01" * 20), ("x", "s:k", b"\x02" * 20, None)]
    )
    back = parse(encode(log))
    assert back.parent == log.parent and back.unlogged == {"gone"}
    assert sorted(back.rows) == sorted(log.rows)
    for bad in (
        b"",
        b"{}\n",
        b'{"parent": "x", "unlogged": []}\n',
        b"not json\n",
        b'{"parent": null, "unlogged": []}',
    ):
        with pytest.raises(ValueError, match="malformed change log"):
            parse(bad)


def test_rows_as_written_are_parsed_without_a_json_call_each(monkeypatch):
    # a log of 300 rows costs one JSON parse (its header), not 301
    rows = [
        ("x", f"i:{i}", None if i % 3 else bytes([i % 256]) * 20, bytes(20)) for i in range(300)
    ]
    raw = encode(ChangeLog("a" * 40, set(), rows))
    calls = []
    loads = changelog.json.loads
    monkeypatch.setattr(changelog.json, "loads", lambda s: calls.append(s) or loads(s))
    assert sorted(parse(raw).rows) == sorted(rows)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("row", "want"),
    [
        # written otherwise than encode writes them: parsed as JSON, the same rows
        (b'["x","i:1",null,null]', ("x", "i:1", None, None)),
        (b'["x", "\\u0069:1", null, null]', ("x", "i:1", None, None)),
        (b'["x", "s:k", "' + b"AB" * 20 + b'", null]', ("x", "s:k", b"\xab" * 20, None)),
        (b'["x", "s:k", null, "' + b"0a0a " * 8 + b'"]', ("x", "s:k", None, b"\n" * 16)),
        (b'["x", "i:1", null, null] ', ("x", "i:1", None, None)),
        # refused either way
        (b'[".git", "i:1", null, null]', None),
        (b'["..", "i:1", null, null]', None),
        (b'["x", "i:01", null, null]', None),
        (b'["x", "k", null, null]', None),
        (b'["' + b"n" * 201 + b'", "i:1", null, null]', None),
        (b'["x", "i:1", "' + b"a" * 38 + b'", null]', None),
        (b'["x", "i:1", null]', None),
        (b'["x", "i:1\\u0000", null, null]', None),
        (b'["x", "i:1", null, "' + b"g" * 40 + b'"]', None),
    ],
)
def test_rows_are_checked_the_same_however_written(row, want):
    good = b'["x", "i:7", null, "' + b"0" * 40 + b'"]'
    for lines in ([row], [good, row], [row, good]):
        raw = b"\n".join([b'{"parent": null, "unlogged": []}', *lines, b""])
        if want is None:
            with pytest.raises(ValueError, match="malformed change log"):
                parse(raw)
        else:
            assert want in parse(raw).rows
            assert len(parse(raw).rows) == len(lines)


def test_a_log_composes_alone_as_a_chain_does():
    # one log of one arrayset (the quick path) nets as the general loop does:
    # rows whose digests agree dropped, a key listed twice composed in order
    # when the rows follow on, refused when they do not
    from hangar_git.records.changelog import _compose

    a, b, c = (bytes([n]) * 20 for n in (1, 2, 3))

    def net(*rows):
        return _compose([ChangeLog("p" * 40, {"u"}, list(rows))])

    assert net(("x", "i:1", a, b), ("x", "i:2", c, c)) == ({"x": {"i:1": (a, b)}}, {"u"})
    assert net(("x", "i:1", a, b), ("x", "i:1", b, c)) == ({"x": {"i:1": (a, c)}}, {"u"})
    assert net(("x", "i:1", a, b), ("x", "i:1", b, a)) == ({}, {"u"})
    assert net(("x", "i:1", a, b), ("x", "i:1", a, c)) is None
    assert net(("x", "i:1", None, b), ("y", "i:1", a, None)) == (
        {"x": {"i:1": (None, b)}, "y": {"i:1": (a, None)}},
        {"u"},
    )
    assert net() == ({}, {"u"})


def test_a_commit_logs_its_sample_changes(tmp_path):
    repo = new_repo(tmp_path)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", prototype=v(0))
    a[1], a[2] = v(1), v(2)
    first = co.commit("first")
    a[1] = v(10)  # changed
    del a[2]  # removed
    a[3] = v(3)  # added
    a[4] = v(4)
    del a[4]  # added and removed again: no change
    co.arraysets.init_arrayset("b", prototype=v(0))
    second = co.commit("second")
    co.close()
    git = repo._git_repo()
    log = changelog.read(git, git.get(second).tree_id)
    assert log is not None and log.parent == first and log.unlogged == {"b"}
    rows = {(r[0], r[1]): (r[2] is None, r[3] is None) for r in log.rows}
    assert rows == {
        ("a", "i:1"): (False, False),
        ("a", "i:2"): (False, True),
        ("a", "i:3"): (True, False),
    }
    first_log = changelog.read(git, git.get(first).tree_id)
    assert first_log is not None and first_log.parent is None and first_log.unlogged == {"a"}
    assert changelog.verify(git, git.get(second)) == []


def test_large_commits_carry_no_log_and_merges_log_what_they_bring(tmp_path, monkeypatch):
    monkeypatch.setattr(changelog, "CHANGES_MAX", 5)
    repo = new_repo(tmp_path)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", prototype=v(0))
    a[0] = v(0)
    co.commit("base")
    repo.create_branch("dev")
    with a:
        for i in range(10):
            a[i] = v(i + 1)
    big = co.commit("ten changes")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["a"][99] = v(99)
    co.commit("dev")
    co.close()
    co = repo.checkout(write=True, branch="master")
    merged = co.merge("merge dev", "dev")
    co.close()
    git = repo._git_repo()
    assert changelog.read(git, git.get(big).tree_id) is None
    assert len(git.get(merged).parent_ids) == 2
    log = changelog.read(git, git.get(merged).tree_id)  # not master's log: the merge's
    assert log is not None and log.parent == big and log.unlogged == set()
    assert [(r[0], r[1], r[2]) for r in log.rows] == [("a", "i:99", None)]
    assert changelog.verify(git, git.get(merged)) == []
    assert verify(repo, full=True).ok


def _craft_log(repo, branch: str, log: bytes) -> str:
    """A commit on ``branch``: its head's records with the change log ``log``."""
    git = repo._git_repo()
    head = git.references[f"refs/hangar/heads/{branch}"].target
    root = parse_tree(read_raw(git, git.get(head).tree_id.raw))
    root[CHANGES_NAME] = (MODE_BLOB, write_blob(git, log))
    tree = write_tree(git, serialize_tree(root))
    sig = pygit2.Signature("t", "t@example.org")
    sha = git.create_commit(None, sig, sig, "crafted", pygit2.Oid(raw=tree), [head])
    git.references.create(f"refs/hangar/heads/{branch}", sha, force=True)
    return str(sha)


def test_a_log_that_lies_is_found_by_fsck_and_not_trusted_by_diffs(tmp_path):
    repo = new_repo(tmp_path)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", prototype=v(0))
    a[1] = v(1)
    base = co.commit("base")
    repo.create_branch("dev")
    a[1] = v(2)
    co.commit("master changes 1")
    co.close()
    # dev's tip claims to change key 1 but its records are the base's
    lie = ChangeLog(base, set(), [("a", "i:1", array_digest(v(1)), b"\x05" * 20)])
    _craft_log(repo, "dev", encode(lie))
    rep = verify(repo, full=True)
    assert not rep.ok and any(CHANGES_NAME in issue.path for issue in rep.records)
    rc = repo.checkout(branch="master")
    with count_logged():
        got = rc.diff.branch("dev")
    with walk_only():
        want = rc.diff.branch("dev")
    rc.close()
    assert got == want  # the trees contradict the log: it is not used


@st.composite
def histories(draw):
    """Operations on two branches: lists of commits, each a list of changes."""
    kind = st.sampled_from(["set"] * 6 + ["del"] * 3 + ["meta", "recreate"])
    op = st.tuples(kind, st.sampled_from("ab"), st.integers(0, 40), st.integers(0, 3))
    commit = st.lists(op, min_size=1, max_size=6)
    side = st.lists(commit, min_size=0, max_size=4)
    return draw(side), draw(side), draw(st.booleans())


def apply(co, ops) -> None:
    for kind, name, key, val in ops:
        if kind == "meta":
            co.metadata[key % 4] = f"m{val}"
            continue
        asets = co.arraysets
        if kind == "recreate":
            if name in asets:
                asets.remove_aset(name)
            asets.init_arrayset(name, prototype=v(0))
            continue
        if name not in asets:
            asets.init_arrayset(name, prototype=v(0))
        aset = asets[name]
        if kind == "set":
            aset[key] = v(val)
        elif key in aset:
            del aset[key]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
def test_diffs_from_logs_equal_diffs_from_walking_the_trees(tmp_path_factory, history):
    ours, theirs, merge_midway = history
    repo = new_repo(tmp_path_factory.mktemp("h"))
    co = repo.checkout(write=True)
    for name in "ab":
        aset = co.arraysets.init_arrayset(name, prototype=v(0))
        for k in range(0, 40, 3):
            aset[k] = v(k % 4)
    commits = [co.commit("base")]
    repo.create_branch("dev")
    co.close()
    for branch, side in (("master", ours), ("dev", theirs)):
        co = repo.checkout(write=True, branch=branch)
        for i, ops in enumerate(side):
            apply(co, ops)
            if co.diff.status() == "DIRTY":
                commits.append(co.commit(f"{branch} {i}"))
            if merge_midway and branch == "dev" and i == 0:
                co.close()
                mc = repo.checkout(write=True, branch="master")
                with contextlib.suppress(ValueError):
                    commits.append(mc.merge("midway", "dev"))
                mc.close()
                co = repo.checkout(write=True, branch="dev")
        co.close()
    git = repo._git_repo()
    for sha in commits:
        assert changelog.verify(git, git.get(sha)) == [], sha
    pairs = [("master", "dev")] + [(commits[i], commits[-1 - i]) for i in range(len(commits) // 2)]
    for one, two in pairs:
        rc = repo.checkout(branch=one) if one == "master" else repo.checkout(commit=one)
        try:
            got = rc.diff.branch(two) if two == "dev" else rc.diff.commit(two)
            with walk_only():
                want = rc.diff.branch(two) if two == "dev" else rc.diff.commit(two)
        finally:
            rc.close()
        assert got == want, (one, two)


def test_diff_of_branches_a_few_commits_apart_uses_the_logs(tmp_path):
    repo = new_repo(tmp_path)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", prototype=v(0))
    for k in range(50):
        a[k] = v(k)
    co.commit("base")
    repo.create_branch("dev")
    for i in range(3):
        a[i] = v(100 + i)
        co.commit(f"master {i}")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["a"][7] = v(7)  # the same value: no change
    co.arraysets["a"][8] = v(-8)
    co.commit("dev")
    co.close()
    rc = repo.checkout(branch="master")
    with count_logged() as seen:
        changes, conflicts = rc.diff.branch("dev")
    rc.close()
    assert seen["logged"] == 2  # both sides composed from logs
    assert changes.master.samples["a"].mutations == (0, 1, 2)
    assert changes.dev.samples["a"].mutations == (8,)
    assert changes.incoming.samples["a"].mutations == (8,)
    assert not conflicts["conflict_found"]
