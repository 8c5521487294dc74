"""Metadata: str -> str labels with the reference's key and value rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar_git.metadata import MetadataReader, MetadataWriter


def journal(repo) -> bytes:
    return (Path(repo._hdir) / "staging" / "journal").read_bytes()


def test_add_get_remove_roundtrip(repo):
    co = repo.checkout(write=True)
    md = co.metadata
    assert isinstance(md, MetadataWriter) and md.iswriteable
    assert len(md) == 0
    assert md.add("hello", "world") == "hello"
    md["n"] = "1"
    md[7] = "seven"
    assert md["hello"] == "world" and md.get("n") == "1" and md[7] == "seven"
    assert "hello" in md and 7 in md and "7" not in md and "nope" not in md
    assert len(md) == 3
    assert sorted(md.keys(), key=repr) == sorted(["hello", "n", 7], key=repr)
    assert sorted(md.values()) == ["1", "seven", "world"]
    assert dict(md.items()) == {"hello": "world", "n": "1", 7: "seven"}
    assert sorted(md, key=repr) == sorted(["hello", "n", 7], key=repr)
    md["n"] = "2"  # overwrite
    assert md["n"] == "2"
    assert md.remove("hello") == "hello"
    del md[7]
    assert list(md.keys()) == ["n"]
    with pytest.raises(KeyError):
        md["hello"]
    with pytest.raises(KeyError):
        md.remove("hello")
    with pytest.raises(KeyError):
        del md["never"]
    sha = co.commit("meta")
    co.close()
    rc = repo.checkout(commit=sha)
    rmd = rc.metadata
    assert isinstance(rmd, MetadataReader) and not rmd.iswriteable
    assert dict(rmd.items()) == {"n": "2"}
    with pytest.raises(KeyError):
        rmd["hello"]
    rc.close()


def test_str_and_int_keys_distinct(repo):
    co = repo.checkout(write=True)
    co.metadata["1"] = "str"
    co.metadata[1] = "int"
    assert co.metadata["1"] == "str" and co.metadata[1] == "int"
    assert len(co.metadata) == 2
    sha = co.commit("c")
    co.close()
    rc = repo.checkout(commit=sha)
    assert rc.metadata["1"] == "str" and rc.metadata[1] == "int"
    rc.close()


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "a" * 100_000,
        "line1\nline2\ttab\r\x00end",
        "!@#$%^&*()[]{}<>/\\'\"`~|;:,.?",
        "\x7f",
    ],
)
def test_any_ascii_value_roundtrips(repo, value):
    co = repo.checkout(write=True)
    co.metadata["k"] = value
    assert co.metadata["k"] == value
    sha = co.commit("c")
    co.close()
    rc = repo.checkout(commit=sha)
    assert rc.metadata["k"] == value
    rc.close()


@pytest.mark.parametrize("value", ["héllo", "日本", "\u00a0", b"bytes", 1, 1.5, None, ["a"]])
def test_bad_values_refused(repo, value):
    co = repo.checkout(write=True)
    co.metadata["keep"] = "v"
    before = journal(repo)
    with pytest.raises(ValueError):
        co.metadata["k"] = value
    with pytest.raises(ValueError):
        co.metadata.add("k", value)
    assert "k" not in co.metadata
    assert journal(repo) == before
    co.close()


@pytest.mark.parametrize(
    "key", ["", "has space", "tab\t", "a/b", "é", "a\x00", "k" * 201, -1, True, 2.0, None, b"k"]
)
def test_bad_keys_refused(repo, key):
    co = repo.checkout(write=True)
    before = journal(repo)
    with pytest.raises(ValueError):
        co.metadata[key] = "v"
    with pytest.raises(ValueError):
        co.metadata.add(key, "v")
    with pytest.raises(ValueError):
        co.metadata.get(key)
    with pytest.raises(ValueError):
        co.metadata.remove(key)
    assert key not in co.metadata
    assert journal(repo) == before
    assert co.diff.status() == "CLEAN"
    co.close()


def test_metadata_changes_tracked_in_status(written_repo):
    co = written_repo.checkout(write=True)
    co.metadata["about"] = "fixture"  # same value: no change
    assert co.diff.status() == "CLEAN"
    co.metadata["about"] = "other"
    assert co.diff.status() == "DIRTY"
    co.metadata["about"] = "fixture"
    assert co.diff.status() == "CLEAN"
    del co.metadata["about"]
    assert co.diff.staged().meta.removals == ("about",)
    co.commit("removed")
    assert len(co.metadata) == 0
    co.close()


def test_repr(written_repo):
    co = written_repo.checkout(write=True)
    r = repr(co.metadata)
    assert "Hangar Metadata" in r and "Writeable: True" in r and "Number of Keys: 1" in r
    co.close()
    rc = written_repo.checkout()
    assert "Writeable: False" in repr(rc.metadata)
    rc.close()
