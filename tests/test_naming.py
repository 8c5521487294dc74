"""Name validation and key encoding: no user name escapes its place, and a
refused name leaves the repository exactly as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar_git.naming import (
    MAX_NAME_LEN,
    check_arrayset_name,
    check_branch_name,
    check_remote_name,
    check_tag_name,
    decode_key,
    encode_key,
    is_key_like,
)

#: names no arrayset, branch, sample or metadata key may have
BAD_NAMES = [
    "a/b",
    "/abs",
    "a\\b",
    "..",
    ".",
    "...",
    "../x",
    "a b",
    " lead",
    "trail ",
    "tab\t",
    "new\nline",
    "é",
    "ünïcödé",
    "日本",
    "a\x00b",
    "\x00",
    ".git",
    ".GIT",
    ".git.",
    ".git..",
    "x" * (MAX_NAME_LEN + 1),
    "",
    "a:b",
    "a*b",
    "a?b",
    "a~1",
    "a^b",
    "a@{1}",
    "a[0]",
]
NON_STR = [None, 1, 1.5, b"bytes", ["a"], ("a",)]
#: refused as arrayset and branch names, fine as (prefixed) sample/metadata keys
DOT_NAMES = ["..", ".", "...", ".git", ".GIT", ".git.", ".git.."]
BAD_KEYS = [n for n in BAD_NAMES if n not in DOT_NAMES]


def state(repo) -> tuple:
    """What a refused name must leave unchanged: staging journal and refs."""
    hdir = Path(repo._hdir)
    refs = subprocess.run(
        ["git", "for-each-ref"], cwd=repo.path, capture_output=True, text=True
    ).stdout
    return (
        (hdir / "staging" / "journal").read_bytes(),
        refs,
        sorted(p.name for p in (hdir / "store" / "packs").iterdir()),
    )


# --------------------------------------------------------------------------
# unit: validators
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", BAD_NAMES + NON_STR)
@pytest.mark.parametrize(
    "check", [check_arrayset_name, check_branch_name, check_remote_name, check_tag_name]
)
def test_validators_refuse(check, name):
    if name == "a/b" and check in (check_branch_name, check_tag_name):
        return  # a branch or tag may have parts, as git's feature/x (see below)
    with pytest.raises(ValueError):
        check(name)


#: branch and tag names with parts that must never be accepted: each part is a name
BAD_PARTED = ["a/", "/a", "a//b", "a/..", "../a", "a/.", "a/.x", "a/-x", "a/b.lock", "a/x."]
BAD_PARTED += ["a/.git", "a/.GIT", "a/b c", "a/é", "a/b:c", "a\\b/c", "a/" + "x" * MAX_NAME_LEN]


@pytest.mark.parametrize("name", ["feature/x", "a/b/c", "team-1/v1.2_x"])
def test_branch_and_tag_names_may_have_parts(name):
    assert check_branch_name(name) == name
    assert check_tag_name(name) == name
    with pytest.raises(ValueError):
        check_remote_name(name)  # "origin/x" must stay a remote-tracking branch
    with pytest.raises(ValueError):
        check_arrayset_name(name)


@pytest.mark.parametrize("name", BAD_PARTED)
def test_parted_names_are_checked_part_by_part(name):
    with pytest.raises(ValueError):
        check_branch_name(name)
    with pytest.raises(ValueError):
        check_tag_name(name)


@pytest.mark.parametrize("name", ["a", "A-b_c.d", "x" * MAX_NAME_LEN, "0", "train_images", "v1.2"])
def test_validators_accept(name):
    assert check_arrayset_name(name) == name
    assert check_branch_name(name) == name
    assert check_remote_name(name) == name


@pytest.mark.parametrize("name", ["-x", "x.lock", "a..b", ".hidden", "dot."])
def test_branch_and_remote_names_follow_git_ref_rules(name):
    with pytest.raises(ValueError):
        check_branch_name(name)
    with pytest.raises(ValueError):
        check_remote_name(name)


def test_encode_key_prefixes_type():
    assert encode_key("abc") == "s:abc"
    assert encode_key(12) == "i:12"
    assert encode_key("12") == "s:12"
    assert encode_key(0) == "i:0"
    assert encode_key("..") == "s:.."
    assert encode_key(".git") == "s:.git"
    assert encode_key(np.int64(3).item()) == "i:3"


@pytest.mark.parametrize("key", [*BAD_KEYS, -1, True, False, 1.0, None, b"k", ("a",), np.int64(1)])
def test_encode_key_refuses(key):
    with pytest.raises(ValueError):
        encode_key(key)


@pytest.mark.parametrize("key", DOT_NAMES)
def test_dot_names_are_valid_keys(key):
    # the type prefix makes them safe tree names
    assert decode_key(encode_key(key)) == key


def test_is_key_like():
    assert is_key_like("a") and is_key_like(3)
    assert not is_key_like(True) and not is_key_like(1.0) and not is_key_like(None)


@given(
    st.one_of(
        st.integers(min_value=0, max_value=2**80),
        st.text(alphabet="abcXYZ019-._", min_size=1, max_size=MAX_NAME_LEN),
    )
)
def test_key_roundtrip(key):
    enc = encode_key(key)
    assert decode_key(enc) == key
    assert type(decode_key(enc)) is type(key)
    assert "/" not in enc and "\x00" not in enc and enc not in (".", "..", ".git")


@given(st.integers(min_value=0, max_value=10**6))
def test_str_and_int_encodings_differ(n):
    assert encode_key(n) != encode_key(str(n))


# --------------------------------------------------------------------------
# through the API: a clear ValueError, and nothing changed
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", BAD_NAMES + NON_STR)
def test_bad_arrayset_name_changes_nothing(written_repo, name):
    co = written_repo.checkout(write=True)
    before = state(written_repo)
    with pytest.raises(ValueError):
        co.arraysets.init_arrayset(name, shape=(2,), dtype=np.uint8)
    with pytest.raises(ValueError):
        co.arraysets.init_arrayset(name, prototype=np.zeros(2, np.uint8))
    assert state(written_repo) == before
    assert co.diff.status() == "CLEAN"
    assert sorted(co.arraysets) == ["aset"]
    co.close()


@pytest.mark.parametrize("name", [*BAD_KEYS, -1, True, 1.5, None, b"k"])
def test_bad_sample_and_metadata_keys_change_nothing(written_repo, name):
    co = written_repo.checkout(write=True)
    aset = co.arraysets["aset"]
    before = state(written_repo)
    with pytest.raises(ValueError):
        aset[name] = np.zeros((5, 7), np.float32)
    with pytest.raises(ValueError), aset:
        aset.add(np.zeros((5, 7), np.float32), name)
    with pytest.raises(ValueError):
        aset.update({name: np.zeros((5, 7), np.float32)})
    with pytest.raises(ValueError):
        co.metadata[name] = "value"
    assert state(written_repo) == before
    assert co.diff.status() == "CLEAN"
    assert len(aset) == 10
    co.close()


@pytest.mark.parametrize(
    "name",
    [
        *(n for n in BAD_NAMES if n != "a/b"),
        *BAD_PARTED,
        *("-x", "x.lock", ".hidden", "dot."),
        *NON_STR,
    ],
)
def test_bad_branch_name_changes_nothing(written_repo, name):
    repo = written_repo
    before = state(repo)
    with pytest.raises(ValueError):
        repo.create_branch(name)
    with pytest.raises(ValueError):
        repo.checkout(write=True, branch=name)
    with pytest.raises(ValueError):
        repo.checkout(branch=name)
    assert not repo.writer_lock_held
    assert state(repo) == before
    assert repo.list_branches() == ["master"]


def test_bad_branch_name_is_refused_up_front(repo):
    # an invalid name must fail at checkout, not half-way through a commit
    for name in (".dev", "dev.", "a..b"):
        with pytest.raises(ValueError):
            repo.checkout(write=True, branch=name)
    co = repo.checkout(write=True)
    co.metadata["k"] = "v"
    first = co.commit("first on master")
    co.close()
    for name in (".dev", "dev.", "a..b"):
        with pytest.raises(ValueError):
            repo.create_branch(name)
    repo.create_branch("dev", first)
    co = repo.checkout(write=True, branch="dev")
    co.metadata["k"] = "w"
    sha = co.commit("first on dev")
    co.close()
    assert repo.log(branch="dev", return_contents=True)["head"] == sha


def test_reserved_arrayset_names_keep_git_fsck_clean(repo):
    co = repo.checkout(write=True)
    for name in (".hidden", "a.", "x..y"):
        co.arraysets.init_arrayset(name, shape=(1,), dtype=np.uint8)[0] = np.ones(1, np.uint8)
    co.commit("odd but legal names")
    co.close()
    res = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=repo.path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
