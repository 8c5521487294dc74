"""Hostile records: git objects crafted by hand, then used through the API.

Each test writes raw trees, blobs and commits with the repository's object
database (or pushes them to a bare repository and fetches them with
``git fetch``), points a branch at them, and drives read, diff, merge and
summary over them: only documented errors, raised before anything is
written, and the user's own branch unchanged and readable afterwards.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import numpy as np
import pygit2
import pytest
from pygit2.enums import ObjectType
from raw_records import Raw, blob, entries, head, raw_tree, sorted_raw

from hangar_git import make_numpy_loader
from hangar_git.errors import CorruptRecordError, FormatVersionError, HangarError
from hangar_git.gitutil import HEADS
from hangar_git.metadata import MAX_VALUE_BYTES
from hangar_git.records import changelog
from hangar_git.records.layout import MODE_BLOB, MODE_LINK, MODE_TREE


def commit(git: pygit2.Repository, tree: bytes, parents: list[str], ref: str | None = None) -> str:
    sig = pygit2.Signature("Mallory", "m@example.org")
    sha = git.create_commit(
        None, sig, sig, "hostile", pygit2.Oid(raw=tree), [pygit2.Oid(hex=p) for p in parents]
    )
    if ref is not None:
        git.references.create(ref, sha, force=True)
    return str(sha)


def with_aset_samples(
    git: pygit2.Repository,
    root_oid: bytes,
    aset: str,
    samples: bytes | None,
    schema: bytes | None = None,
) -> bytes:
    """Root ``root_oid`` with arrayset ``aset``'s samples (and schema) replaced."""
    root = entries(git, root_oid)
    asets = entries(git, root[b"arraysets"][1])
    at = entries(git, asets[aset.encode()][1])
    if samples is not None:
        at[b"samples"] = (MODE_TREE, samples)
    if schema is not None:
        at[b"schema"] = (MODE_BLOB, schema)
    asets[aset.encode()] = (MODE_TREE, raw_tree(git, sorted_raw(at)))
    root[b"arraysets"] = (MODE_TREE, raw_tree(git, sorted_raw(asets)))
    return raw_tree(git, sorted_raw(root))


@pytest.fixture
def setup(mine_and_dev):
    """The user's repository (see the ``mine_and_dev`` fixture) and its git."""
    return mine_and_dev, mine_and_dev._git_repo()


def dev_root(git: pygit2.Repository) -> bytes:
    return git.get(head(git, "dev")).tree_id.raw


def hostile_dev(git: pygit2.Repository, tree: bytes) -> str:
    """Commit ``tree`` on top of dev's head and point dev at it."""
    return commit(git, tree, [head(git, "dev")], HEADS + "dev")


def assert_master_intact(repo, before: str) -> None:
    git = repo._git_repo()
    assert head(git) == before
    co = repo.checkout()
    try:
        assert sorted(co.arraysets["nums"].keys()) == [0, 1, 2, 3, 4, 100]
        assert co.arraysets["nums"][100].tolist() == [100, 100]
        assert co.metadata["about"] == "mine"
    finally:
        co.close()


def drive(repo, branch: str = "dev") -> list[BaseException]:
    """Read, diff, summary and merge ``branch``; the errors they raised."""
    errors: list[BaseException] = []

    def attempt(fn: Callable[[], object]) -> None:
        try:
            fn()
        except HangarError as exc:
            errors.append(exc)

    def read() -> None:
        if "/" in branch:  # remote-tracking: read its commit
            git = repo._git_repo()
            sha = str(git.references["refs/hangar/remotes/" + branch].target)
            co = repo.checkout(commit=sha)
        else:
            co = repo.checkout(branch=branch)
        try:
            for name in co.arraysets:
                aset = co.arraysets[name]
                _ = (aset.dtype, aset.shape, len(aset))
                for k in aset:
                    aset[k]
            _ = (len(co.metadata), list(co.metadata.keys()), dict(co.metadata.items()))
        finally:
            co.close()

    def diff() -> None:
        co = repo.checkout()
        try:
            co.diff.branch(branch)
        finally:
            co.close()

    attempt(read)
    attempt(diff)
    if "/" in branch:
        sha = str(repo._git_repo().references["refs/hangar/remotes/" + branch].target)
        attempt(lambda: repo.summary(commit=sha, return_contents=True))
    else:
        attempt(lambda: repo.summary(branch=branch, return_contents=True))
    attempt(lambda: repo.merge("merge hostile", "master", branch))
    return errors


# --------------------------------------------------------------------------
# 1. merge commits nothing hostile
# --------------------------------------------------------------------------
def _leaf_with(git, root_oid: bytes, extra: Raw, keep: bool = True) -> bytes:
    """nums' flat samples leaf of ``root_oid`` plus ``extra`` raw entries (in
    sorted place unless ``keep`` is False: then appended)."""
    root = entries(git, root_oid)
    at = entries(git, entries(git, root[b"arraysets"][1])[b"nums"][1])
    leaf = entries(git, at[b"samples"][1])
    if keep:
        for m, n, o in extra:
            leaf[n] = (m, o)
        return raw_tree(git, sorted_raw(leaf))
    return raw_tree(git, sorted_raw(leaf) + extra)


DIGEST = bytes(range(20))

HOSTILE_LEAF_ENTRIES = {
    "dotdot": [(MODE_LINK, b"..", DIGEST)],
    "alias_i00": [(MODE_LINK, b"i:00", DIGEST)],
    "alias_i07": [(MODE_LINK, b"i:07", DIGEST)],
    "space": [(MODE_LINK, b"i: 7", DIGEST)],
    "negative": [(MODE_LINK, b"i:-5", DIGEST)],
    "bad_prefix": [(MODE_LINK, b"q:zz", DIGEST)],
    "slash_name": [(MODE_LINK, b"s:a/b", DIGEST)],
    "non_utf8": [(MODE_LINK, b"s:\xff\xfe", DIGEST)],
    "blob_mode": [(MODE_BLOB, b"i:9", DIGEST)],
    "exec_mode": [(b"100755", b"i:9", DIGEST)],
    "dotgit": [(MODE_LINK, b".git", DIGEST)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LEAF_ENTRIES))
def test_merge_refuses_hostile_sample_entries(setup, case):
    """The entry as dev's only change: the merge would take dev's samples
    tree whole (master did not touch... nums? it did: a leaf-level merge)."""
    repo, git = setup
    before = head(git)
    leaf = _leaf_with(git, dev_root(git), HOSTILE_LEAF_ENTRIES[case])
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", leaf))
    with pytest.raises(CorruptRecordError):
        repo.merge("merge hostile", "master", "dev")
    assert_master_intact(repo, before)
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


def test_merge_refuses_dotdot_taken_whole(setup):
    """Dev changes an arrayset master never touched: the merge would take
    dev's arrayset tree whole, unread, before the fix."""
    repo, git = setup
    before = head(git)
    root = entries(git, dev_root(git))
    at = entries(git, entries(git, root[b"arraysets"][1])[b"floats"][1])
    leaf = entries(git, at[b"samples"][1])
    leaf[b".."] = (MODE_LINK, DIGEST)
    tree = raw_tree(git, sorted_raw(leaf))
    hostile_dev(git, with_aset_samples(git, dev_root(git), "floats", tree))
    with pytest.raises(CorruptRecordError):
        repo.merge("merge hostile", "master", "dev")
    assert_master_intact(repo, before)


def test_fast_forward_refuses_hostile_records(setup):
    """A fast-forward moves the branch to dev's records: they are checked first."""
    repo, git = setup
    mine = head(git)
    leaf = _leaf_with(git, git.get(mine).tree_id.raw, [(MODE_LINK, b"..", DIGEST)])
    tree = with_aset_samples(git, git.get(mine).tree_id.raw, "nums", leaf)
    commit(git, tree, [mine], HEADS + "ahead")
    with pytest.raises(CorruptRecordError):
        repo.merge("ff", "master", "ahead")
    assert_master_intact(repo, mine)


def test_duplicate_and_unsorted_entries_are_refused(setup):
    repo, git = setup
    before = head(git)
    # i:3 twice, and entries out of git's order
    dup = _leaf_with(git, dev_root(git), [(MODE_LINK, b"i:3", DIGEST)], keep=False)
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", dup))
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


def test_absurd_nesting_is_refused_without_recursion_error(setup):
    repo, git = setup
    before = head(git)
    node = raw_tree(git, [(MODE_LINK, b"i:1", DIGEST)])
    for _ in range(3000):
        node = raw_tree(git, [(MODE_TREE, b"0", node)])
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", node))
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


def test_key_in_the_wrong_leaf_is_refused(setup):
    """A fan-out leaf holding a key its hash puts elsewhere (a second copy of
    a key, invisible to look-ups) is refused."""
    repo, git = setup
    co = repo.checkout(write=True, branch="dev")
    big = co.arraysets.init_arrayset("big", shape=(1,), dtype=np.uint8)
    with big:
        for i in range(1100):
            big[i] = np.array([i % 256], np.uint8)
    co.commit("fanned out")
    co.close()
    root = entries(git, dev_root(git))
    at = entries(git, entries(git, root[b"arraysets"][1])[b"big"][1])
    top = entries(git, at[b"samples"][1])
    name, (mode, leaf_oid) = next(iter(sorted(top.items())))
    leaf = entries(git, leaf_oid)
    other = next(k for n, (_, o) in top.items() if n != name for k in entries(git, o))
    leaf[other] = (MODE_LINK, DIGEST)
    top[name] = (mode, raw_tree(git, sorted_raw(leaf)))
    tree = with_aset_samples(git, dev_root(git), "big", raw_tree(git, sorted_raw(top)))
    hostile_dev(git, tree)
    co = repo.checkout(branch="dev")
    with pytest.raises(CorruptRecordError, match="does not belong"):
        list(co.arraysets["big"].keys())
    co.close()


@pytest.mark.parametrize("extra", [b"zz", b"fff"])
def test_a_malformed_top_fan_out_level_is_refused(setup, extra):
    """A fanned-out samples tree whose top level holds a name that is not a
    fan-out name (checked when the level is first used, not when the tree
    is opened) is refused by every read that lists or finds keys."""
    repo, git = setup
    co = repo.checkout(write=True, branch="dev")
    big = co.arraysets.init_arrayset("big", shape=(1,), dtype=np.uint8)
    big.add_stacked(np.zeros((1100, 1), np.uint8), list(range(1100)))
    co.commit("fanned out")
    co.close()
    root = entries(git, dev_root(git))
    at = entries(git, entries(git, root[b"arraysets"][1])[b"big"][1])
    top = entries(git, at[b"samples"][1])
    top[extra] = next(iter(top.values()))  # after the first entry, in sorted place
    tree = with_aset_samples(git, dev_root(git), "big", raw_tree(git, sorted_raw(top)))
    hostile_dev(git, tree)
    co = repo.checkout(branch="dev")
    with pytest.raises(CorruptRecordError, match="fan-out"):
        list(co.arraysets["big"].keys())
    with pytest.raises(CorruptRecordError, match="fan-out"):
        co.arraysets["big"][7]
    co.close()


def test_format_99_is_not_merged_nor_restamped(setup):
    repo, git = setup
    before = head(git)
    root = entries(git, dev_root(git))
    root[b"hangar.json"] = (MODE_BLOB, blob(git, b'{"hangar_git_format": 99}'))
    leaf = _leaf_with(git, dev_root(git), [])
    del leaf
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    with pytest.raises(FormatVersionError):
        repo.merge("merge hostile", "master", "dev")
    assert_master_intact(repo, before)


@pytest.mark.parametrize(
    "fmt",
    [
        b"[2]",
        b"2",
        b"{}",
        b'{"hangar_git_format": "2"}',
        b'{"hangar_git_format": 0}',
        b'{"hangar_git_format": true}',
        b"\xff\xfe",
        b"{not json",
    ],
)
def test_bad_format_blob_is_corrupt(setup, fmt):
    repo, git = setup
    before = head(git)
    root = entries(git, dev_root(git))
    root[b"hangar.json"] = (MODE_BLOB, blob(git, fmt))
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


def test_tree_where_a_blob_belongs_and_missing_objects(setup):
    repo, git = setup
    before = head(git)
    root = entries(git, dev_root(git))
    root[b"hangar.json"] = (MODE_BLOB, root[b"arraysets"][1])  # a tree, as a blob entry
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    root = entries(git, dev_root(git))
    hostile_dev(
        git,
        with_aset_samples(
            git, git.get(head(git, "dev")).parents[0].tree_id.raw, "nums", b"\x01" * 20
        ),
    )
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


def test_schema_is_a_tree_or_has_extra_root_entries(setup):
    repo, git = setup
    before = head(git)
    root = entries(git, dev_root(git))
    root[b"extra"] = (MODE_BLOB, blob(git, b"x"))
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    assert all(isinstance(e, CorruptRecordError) for e in drive(repo))
    base = git.get(head(git, "dev")).parents[0].tree_id.raw
    hostile_dev(
        git, with_aset_samples(git, base, "nums", None, schema=entries(git, base)[b"arraysets"][1])
    )
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


# --------------------------------------------------------------------------
# 2. a lying change log is not believed
# --------------------------------------------------------------------------
def test_lying_change_log_is_not_believed(setup):
    repo, git = setup
    before = head(git)
    dev = head(git, "dev")
    droot = git.get(dev).tree_id.raw
    # the tree replaces i:1 (with i:3's payload), the log claims i:2 changed
    root = entries(git, droot)
    at = entries(git, entries(git, root[b"arraysets"][1])[b"nums"][1])
    leaf = entries(git, at[b"samples"][1])
    leaf[b"i:1"] = leaf[b"i:3"]
    tree = with_aset_samples(git, droot, "nums", raw_tree(git, sorted_raw(leaf)))
    lie = changelog.ChangeLog(dev, set(), [("nums", "i:2", leaf[b"i:2"][1], leaf[b"i:3"][1])])
    root = entries(git, tree)
    root[b"changes"] = (MODE_BLOB, blob(git, changelog.encode(lie)))
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    co = repo.checkout()
    try:
        changes, _ = co.diff.branch("dev")
    finally:
        co.close()
    assert changes.dev.samples["nums"].mutations == (1,)
    assert changes.incoming.samples["nums"].mutations == (1,)
    assert head(git) == before


def test_oversized_change_log_is_never_read(setup, monkeypatch):
    """A ``changes`` blob larger than any log could be is skipped from its
    header: it is never inflated (read_raw is never asked for it)."""
    repo, git = setup
    dev = head(git, "dev")
    droot = git.get(dev).tree_id.raw
    big = b"\n" * (changelog.max_log_bytes(10) + 1)
    big_oid = blob(git, big)
    root = entries(git, droot)
    root[b"changes"] = (MODE_BLOB, big_oid)
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    real = changelog.read_raw

    def spy(repo_, oid):
        raw = oid.raw if isinstance(oid, pygit2.Oid) else oid
        assert raw != big_oid, "the oversized log was inflated"
        return real(repo_, oid)

    monkeypatch.setattr(changelog, "read_raw", spy)
    assert changelog.read(git, git.get(head(git, "dev")).tree_id) is None
    co = repo.checkout()
    try:
        changes, _ = co.diff.branch("dev")
    finally:
        co.close()
    assert changes.dev.samples == {}


# --------------------------------------------------------------------------
# 3. schemas, keys and payload kinds
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape",
    [[-4], [0], [10**12, 10**12], [1] * 200, ["2"], [2.0], [True]],
)
def test_hostile_schema_is_refused(setup, shape):
    repo, git = setup
    before = head(git)
    text = json.dumps(
        {"dtype": "<i8", "named_samples": True, "shape": shape, "variable_shape": False},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", None, schema=blob(git, text)))
    errors = drive(repo)
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


@pytest.mark.parametrize(
    "text",
    [
        b'{"named_samples":true,"shape":[2],"variable_shape":false}',
        b'{"dtype":"|O","named_samples":true,"shape":[2],"variable_shape":false}',
        b'{"dtype":"<i8","named_samples":1,"shape":[2],"variable_shape":false}',
        b'{"dtype": "<i8", "named_samples": true, "shape": [2], "variable_shape": false}',
        b"[]",
        b"\xff",
    ],
)
def test_malformed_schema_text_is_refused(setup, text):
    repo, git = setup
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", None, schema=blob(git, text)))
    co = repo.checkout(branch="dev")
    try:
        with pytest.raises(CorruptRecordError):
            _ = co.arraysets["nums"].dtype
    finally:
        co.close()


def test_aliased_keys_do_not_list_twice(setup):
    """``i:7``, ``i:07`` and ``i: 7`` once listed as [7, 7, 7]."""
    repo, git = setup
    leaf = _leaf_with(
        git, dev_root(git), [(MODE_LINK, n, DIGEST) for n in (b"i:7", b"i:07", b"i: 7")]
    )
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", leaf))
    co = repo.checkout(branch="dev")
    try:
        with pytest.raises(CorruptRecordError):
            list(co.arraysets["nums"].keys())
    finally:
        co.close()


def test_payload_of_another_kind_is_refused(setup):
    """nums is int64 (2,): a record pointing at floats' float32 (4,) payload
    is refused on every read path, loaders included."""
    repo, git = setup
    root = entries(git, dev_root(git))
    fleaf = entries(
        git, entries(git, entries(git, root[b"arraysets"][1])[b"floats"][1])[b"samples"][1]
    )
    leaf = _leaf_with(git, dev_root(git), [(MODE_LINK, b"i:2", fleaf[b"i:0"][1])])
    hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", leaf))
    co = repo.checkout(branch="dev")
    try:
        nums = co.arraysets["nums"]
        assert nums[1].tolist() == [1, 1]
        with pytest.raises(CorruptRecordError, match="does not allow"):
            nums[2]
        with pytest.raises(CorruptRecordError):
            nums.get_batch([0, 2])
        with pytest.raises(CorruptRecordError):
            list(nums.values())
        with pytest.raises(CorruptRecordError):
            dict(nums.items())
        with pytest.raises(CorruptRecordError):
            list(make_numpy_loader(nums, batch_size=5))
    finally:
        co.close()


# --------------------------------------------------------------------------
# 4. documented errors, not tracebacks
# --------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["tree", "blob", "tag", "missing"])
def test_branch_ref_at_a_non_commit(setup, target):
    repo, git = setup
    before = head(git)
    c = git.get(before)
    if target == "tree":
        oid = c.tree_id
    elif target == "blob":
        oid = pygit2.Oid(raw=blob(git, b"x"))
    elif target == "tag":
        sig = pygit2.Signature("t", "t@example.org")
        oid = git.create_tag("v1", c.id, ObjectType.COMMIT, sig, "a tag")
    else:
        oid = pygit2.Oid(hex="12" * 20)
    path = git.path + "refs/hangar/heads/evil"
    with open(path, "w") as fh:
        fh.write(f"{oid}\n")
    errors = drive(repo, "evil")
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    with pytest.raises(CorruptRecordError):
        repo.log(branch="evil")
    assert_master_intact(repo, before)


# --------------------------------------------------------------------------
# 5. sizes: metadata
# --------------------------------------------------------------------------
def test_metadata_value_size_limit_on_write(repo):
    co = repo.checkout(write=True)
    try:
        co.metadata["ok"] = "x" * MAX_VALUE_BYTES
        with pytest.raises(ValueError, match="exceeds the limit"):
            co.metadata["big"] = "x" * (MAX_VALUE_BYTES + 1)
    finally:
        co.close()


def test_oversized_metadata_value_refused_on_read_and_len_reads_no_value(setup, monkeypatch):
    repo, git = setup
    root = entries(git, dev_root(git))
    meta = entries(git, root[b"metadata"][1])
    meta[b"s:huge"] = (MODE_BLOB, blob(git, b"x" * (MAX_VALUE_BYTES + 1)))
    root[b"metadata"] = (MODE_TREE, raw_tree(git, sorted_raw(meta)))
    hostile_dev(git, raw_tree(git, sorted_raw(root)))
    from hangar_git.records import validate

    reads: list[str] = []
    real = validate.metadata_value

    def spy(repo_, oid, enc):
        reads.append(enc)
        return real(repo_, oid, enc)

    monkeypatch.setattr(validate, "metadata_value", spy)
    co = repo.checkout(branch="dev")
    try:
        assert len(co.metadata) == 2
        assert sorted(co.metadata.keys()) == ["about", "huge"]
        assert "huge" in co.metadata
        assert reads == []
        assert co.metadata["about"] == "mine"
        with pytest.raises(CorruptRecordError, match="more than"):
            co.metadata["huge"]
    finally:
        co.close()
    with pytest.raises(CorruptRecordError):
        repo.merge("m", "master", "dev")


# --------------------------------------------------------------------------
# through a real fetch
# --------------------------------------------------------------------------
def test_hostile_records_fetched_with_git_are_refused(setup, tmp_path):
    repo, git = setup
    before = head(git)
    leaf = _leaf_with(git, dev_root(git), [(MODE_LINK, b"i:00", DIGEST)])
    sha = commit(git, with_aset_samples(git, dev_root(git), "nums", leaf), [head(git, "dev")])
    bare = tmp_path / "remote.git"
    pygit2.init_repository(str(bare), bare=True)
    run = {"cwd": git.path, "check": True, "capture_output": True}
    subprocess.run(["git", "push", str(bare), f"{sha}:refs/hangar/heads/evil"], **run)
    # the hostile objects leave the user's repository: only the fetch brings them
    subprocess.run(
        ["git", "fetch", str(bare), "+refs/hangar/heads/*:refs/hangar/remotes/origin/*"], **run
    )
    assert str(git.references["refs/hangar/remotes/origin/evil"].target) == sha
    errors = drive(repo, "origin/evil")
    assert len(errors) == 4 and all(isinstance(e, CorruptRecordError) for e in errors), errors
    assert_master_intact(repo, before)


def test_write_checkout_on_hostile_records_commits_nothing(setup):
    """A write checkout of a branch whose records are hostile refuses to build
    on them: the commit fails before any ref moves."""
    repo, git = setup
    leaf = _leaf_with(git, dev_root(git), [(MODE_LINK, b"i:00", DIGEST)])
    sha = hostile_dev(git, with_aset_samples(git, dev_root(git), "nums", leaf))
    co = repo.checkout(write=True, branch="dev")
    try:
        with pytest.raises(CorruptRecordError):
            co.arraysets["nums"][7] = np.array([7, 7], np.int64)
            co.commit("on hostile records")
    finally:
        co.close()
    assert head(git, "dev") == sha


def test_write_side_bounds(repo):
    """What reads refuse, writes refuse too: absurd schemas and int keys."""
    from hangar_git.naming import encode_key

    co = repo.checkout(write=True)
    try:
        with pytest.raises(ValueError, match="more than the limit"):
            co.arraysets.init_arrayset("huge", shape=(10**12, 10**12), dtype=np.int64)
        with pytest.raises(ValueError, match="rank"):
            co.arraysets.init_arrayset("deep", shape=(1,) * 200, dtype=np.int64)
    finally:
        co.close()
    with pytest.raises(ValueError):
        encode_key(10**300)
    assert encode_key(10**199) == "i:" + str(10**199)
