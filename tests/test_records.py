"""Unit tests of the record layer: raw tree encoding, fan-out, the staging
journal and the incremental tree build."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git.records import build as build_mod
from hangar_git.records.build import build_root, build_samples, write_samples
from hangar_git.records.layout import (
    FORMAT_BLOB,
    MODE_BLOB,
    MODE_LINK,
    MODE_TREE,
    choose_fanout,
    fanout_of_names,
    key_hash_hex,
    leaf_path,
    parse_links,
    parse_tree,
    serialize_links,
    serialize_tree,
)
from hangar_git.records.snapshot import SampleRecords, TreeRecords
from hangar_git.records.staging import Journal, StagedAset


@pytest.fixture
def git(tmp_path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "g"), bare=True)


def digest(i: int | str) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=20).digest()


def records(n: int, prefix: str = "i:") -> dict[str, bytes]:
    return {f"{prefix}{i}": digest(i) for i in range(n)}


# --------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------
def test_serialize_tree_matches_git_treebuilder(git):
    blob = git.create_blob(b"x")
    sub = git.TreeBuilder()
    sub.insert("f", blob, pygit2.enums.FileMode.BLOB)
    sub_oid = sub.write()
    link = pygit2.Oid(raw=digest(1))
    entries = {
        "a": (MODE_TREE, sub_oid.raw),  # tree "a" sorts as "a/"
        "a.b": (MODE_BLOB, blob.raw),
        "a-c": (MODE_BLOB, blob.raw),
        "a0": (MODE_BLOB, blob.raw),
        "s:k": (MODE_LINK, link.raw),
        "i:10": (MODE_LINK, link.raw),
        "i:9": (MODE_LINK, link.raw),
    }
    raw = serialize_tree(entries)
    tb = git.TreeBuilder()
    modes = {
        MODE_TREE: pygit2.enums.FileMode.TREE,
        MODE_BLOB: pygit2.enums.FileMode.BLOB,
        MODE_LINK: pygit2.enums.FileMode.COMMIT,
    }
    for name, (mode, oid) in entries.items():
        tb.insert(name, pygit2.Oid(raw=oid), modes[mode])
    expect = tb.write()
    ours = git.odb.write(pygit2.enums.ObjectType.TREE, raw)
    assert ours == expect
    assert parse_tree(raw) == entries


def test_serialize_links_matches_serialize_tree():
    recs = records(50) | records(5, "s:")
    assert serialize_links(recs) == serialize_tree({k: (MODE_LINK, v) for k, v in recs.items()})
    assert parse_links(serialize_links(recs)) == recs


@pytest.mark.parametrize(
    "raw", [b"garbage", b"160000 name\x00short", b"100644 a\x00" + b"x" * 20 + b"trailing"]
)
def test_parse_tree_refuses_malformed(raw):
    with pytest.raises(ValueError):
        parse_tree(raw)


def test_parse_links_refuses_non_links():
    raw = serialize_tree({"s:x": (MODE_BLOB, digest(0))})
    with pytest.raises(ValueError):
        parse_links(raw)


def test_leaf_path_and_key_hash():
    assert leaf_path("s:abc", ()) == ()
    h = key_hash_hex("s:abc")
    assert len(h) == 8 and int(h, 16) >= 0
    assert leaf_path("s:abc", (2,)) == (h[:2],)
    assert leaf_path("s:abc", (3,)) == (h[:3],)
    assert leaf_path("s:abc", (2, 2)) == (h[:2], h[2:4])
    assert key_hash_hex("s:abc") == key_hash_hex("s:abc") != key_hash_hex("i:abc")


def test_fanout_of_names():
    assert fanout_of_names(["s:a", "i:1"]) is None
    assert fanout_of_names(["0a", "ff"]) == 2
    assert fanout_of_names(["abc"]) == 3
    assert fanout_of_names([]) is None


def test_choose_fanout_steps_and_hysteresis():
    assert choose_fanout(0, None) == ()
    assert choose_fanout(1024, None) == ()
    assert choose_fanout(1025, None) == (2,)
    assert choose_fanout(262_144, None) == (2,)
    assert choose_fanout(262_145, None) == (2, 1)
    assert choose_fanout(5_000_000, None) == (2, 2)
    # grows at once, shrinks only well below the bound
    assert choose_fanout(1025, ()) == (2,)
    assert choose_fanout(1000, (2,)) == (2,)
    assert choose_fanout(256, (2,)) == (2,)
    assert choose_fanout(255, (2,)) == ()
    assert choose_fanout(200_000, (2, 1)) == (2, 1)
    assert choose_fanout(10, (2, 1)) == ()
    # a layout no step uses (older repositories) is replaced by the step's own
    assert choose_fanout(200_000, (3,)) == (2,)


# --------------------------------------------------------------------------
# build: whole trees, incremental updates, fan-out changes
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 1000, 1025, 3000])
def test_write_samples_roundtrip(git, n):
    recs = records(n)
    oid = write_samples(git, recs)
    sr = SampleRecords(git, oid)
    assert sr.fanout == choose_fanout(n, None)
    assert dict(sr.items()) == recs
    assert len(sr) == n
    assert sr.estimate_count() == n if not sr.fanout else sr.estimate_count() > 0
    for k in ("i:0", f"i:{n - 1}"):
        assert sr.get(k) == recs[k]
    assert sr.get("i:-5") is None
    assert write_samples(git, {}) is None


def test_incremental_build_equals_full_build(git):
    recs = records(3000)
    base_oid = write_samples(git, recs)
    base = SampleRecords(git, base_oid)
    changes: dict[str, bytes | None] = {"i:5": None, "i:17": digest("x"), "s:new": digest("n")}
    new_oid = build_samples(git, base, changes)
    expect = dict(recs)
    del expect["i:5"]
    expect["i:17"] = digest("x")
    expect["s:new"] = digest("n")
    assert new_oid == write_samples(git, expect, base.fanout)
    assert dict(SampleRecords(git, new_oid).items()) == expect
    assert build_samples(git, base, {}) == base_oid


def test_small_change_rebuilds_only_changed_subtrees(git, monkeypatch):
    base = SampleRecords(git, write_samples(git, records(5000)))
    assert base.fanout == (2,)
    calls = []
    real = build_mod.write_tree

    def counting(repo, data):
        calls.append(len(data))
        return real(repo, data)

    monkeypatch.setattr(build_mod, "write_tree", counting)
    changes: dict[str, bytes | None] = {f"i:{i}": digest(-i) for i in range(10)}
    build_samples(git, base, changes)
    leaves = {leaf_path(k, base.fanout) for k in changes}
    assert len(calls) == len(leaves) + 1  # changed leaves + the top of samples/


def test_fanout_grows_and_shrinks_through_builds(git):
    recs = records(1000)
    s = SampleRecords(git, write_samples(git, recs))
    assert s.fanout == ()
    grow = {f"s:g{i}": digest(f"g{i}") for i in range(100)}
    s2 = SampleRecords(git, build_samples(git, s, grow))
    assert s2.fanout == (2,)
    assert dict(s2.items()) == recs | grow
    # shrink below a quarter of the bound: back to flat
    removals: dict[str, bytes | None] = {k: None for k in list(recs)[:900]}
    removals |= {k: None for k in grow}
    s3 = SampleRecords(git, build_samples(git, s2, removals))
    assert s3.fanout == ()
    assert dict(s3.items()) == {k: v for k, v in recs.items() if k not in removals}
    # remove everything: no samples tree at all
    assert build_samples(git, s3, {k: None for k in dict(s3.items())}) is None


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_build_samples_matches_model(tmp_path_factory, data):
    git = pygit2.init_repository(str(tmp_path_factory.mktemp("g")), bare=True)
    n = data.draw(st.sampled_from([0, 5, 300, 1100]))
    model = records(n)
    s = SampleRecords(git, write_samples(git, model))
    for _ in range(data.draw(st.integers(1, 4))):
        keys = st.one_of(
            st.sampled_from(sorted(model) or ["i:0"]),
            st.integers(0, 5000).map(lambda i: f"i:{i}"),
            st.text("abc", min_size=1, max_size=4).map(lambda t: "s:" + t),
        )
        changes = data.draw(
            st.dictionaries(keys, st.one_of(st.none(), st.integers(0, 50).map(digest)), max_size=40)
        )
        oid = build_samples(git, s, changes)
        for k, d in changes.items():
            if d is None:
                model.pop(k, None)
            else:
                model[k] = d
        s = SampleRecords(git, oid)
        assert dict(s.items()) == model
        assert len(s) == len(model)


def test_build_root_layout(git):
    base = TreeRecords(git, None)
    schema = '{"dtype":"|u1"}'
    asets = {
        "imgs": StagedAset(
            created=True, schema=schema, samples={"i:0": digest(0), "s:a": digest(1)}
        ),
        "gone": StagedAset(removed=True),
    }
    root = build_root(git, base, asets, {"s:about": "hello", "i:1": None})
    tree = git[pygit2.Oid(raw=root)]
    assert sorted(e.name for e in tree) == ["arraysets", "hangar.json", "metadata"]
    assert tree["hangar.json"].data == FORMAT_BLOB
    assert tree["arraysets/imgs/schema"].data == schema.encode()
    samples = tree["arraysets/imgs/samples"]
    assert {e.name: e.filemode for e in samples} == {
        "i:0": pygit2.enums.FileMode.COMMIT,
        "s:a": pygit2.enums.FileMode.COMMIT,
    }
    assert samples["i:0"].id.raw == digest(0)
    assert tree["metadata/s:about"].data == b"hello"
    tr = TreeRecords(git, root)
    assert tr.arrayset_names() == ["imgs"]
    assert tr.metadata() == {"s:about": "hello"}
    # a second build with no change to imgs reuses its tree object
    root2 = build_root(git, tr, {}, {"s:about": "changed"})
    tr2 = TreeRecords(git, root2)
    assert tr2.aset_oid("imgs") == tr.aset_oid("imgs")
    assert tr2.metadata() == {"s:about": "changed"}
    # removing the last metadata key drops the metadata tree
    root3 = build_root(git, tr2, {}, {"s:about": None})
    assert "metadata" not in TreeRecords(git, root3).root


def test_tree_records_sample_digest(git):
    asets = {
        "imgs": StagedAset(
            created=True, schema='{"dtype":"|u1"}', samples={"i:0": digest(0), "i:1": digest(1)}
        )
    }
    tr = TreeRecords(git, build_root(git, TreeRecords(git, None), asets, {}))
    assert tr.sample_digest("imgs", "i:1") == digest(1)
    assert tr.sample_digest("imgs", "i:0") == tr.samples("imgs").get("i:0") == digest(0)
    assert tr.sample_digest("imgs", "i:2") is None
    with pytest.raises(KeyError):
        tr.sample_digest("no such arrayset", "i:0")


def test_tree_records_refuse_unknown_format(git):
    from hangar_git.errors import FormatVersionError

    blob = git.create_blob(b'{"hangar_git_format": 99}')
    tb = git.TreeBuilder()
    tb.insert("hangar.json", blob, pygit2.enums.FileMode.BLOB)
    with pytest.raises(FormatVersionError):
        TreeRecords(git, tb.write().raw)
    plain = git.TreeBuilder().write()
    with pytest.raises(FormatVersionError):
        TreeRecords(git, plain.raw)


# --------------------------------------------------------------------------
# staging journal
# --------------------------------------------------------------------------
def _fill(j: Journal) -> None:
    j.record("S", "imgs", '{"x":1}')
    j.record("A", "imgs", "s:a", digest(1).hex())
    j.record("A", "imgs", "i:2", digest(2).hex())
    j.record("D", "imgs", "s:a")
    j.record("M", "s:k", b"value".hex())
    j.record("X", "s:gone")
    j.record("R", "old")


def _state(j: Journal) -> tuple:
    return (
        j.branch,
        j.base,
        {k: (v.created, v.removed, v.schema, dict(v.samples)) for k, v in j.asets.items()},
        dict(j.meta),
        j.pending_commit,
    )


def test_journal_replays_to_same_state(tmp_path):
    p = tmp_path / "journal"
    j = Journal.open(p, "dev", "a" * 40)
    _fill(j)
    state = _state(j)
    j.close()
    j2 = Journal.open(p, "master", None)  # header wins over the arguments
    assert _state(j2) == state
    assert j2.branch == "dev" and j2.base == "a" * 40
    assert j2.asets["imgs"].samples == {"s:a": None, "i:2": digest(2)}
    assert j2.meta == {"s:k": "value", "s:gone": None}
    assert j2.asets["old"].removed and j2.has_entries
    j2.close()


def test_journal_batching_writes_on_sync(tmp_path):
    p = tmp_path / "journal"
    j = Journal.open(p, "master", None)
    size0 = p.stat().st_size
    j.batching = 1
    j.record("M", "s:k", b"v".hex())
    assert p.stat().st_size == size0
    j.sync()
    assert p.stat().st_size > size0
    j.close()


def test_journal_drops_torn_tail(tmp_path):
    p = tmp_path / "journal"
    j = Journal.open(p, "master", None)
    _fill(j)
    state = _state(j)
    j.close()
    with open(p, "ab") as fh:
        fh.write(b"A\timgs\ts:torn\t" + digest(9).hex()[:10].encode())  # no CRC, no newline
    j = Journal.open(p, "master", None)
    assert _state(j) == state
    data = p.read_bytes()  # the torn piece is gone from the file
    assert b"s:torn" not in data and data.endswith(b"\n")
    j.record("M", "s:after", b"x".hex())
    j.close()
    j = Journal.open(p, "master", None)
    assert j.meta["s:after"] == "x"
    j.close()


def test_journal_keeps_every_intact_line_of_damaged_file(tmp_path):
    p = tmp_path / "journal"
    j = Journal.open(p, "master", None)
    j.record("M", "s:one", b"1".hex())
    j.record("M", "s:two", b"2".hex())
    j.record("M", "s:three", b"3".hex())
    j.close()
    lines = p.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"s:two", b"s:tw0")  # CRC no longer matches
    p.write_bytes(b"\n".join(lines))
    with pytest.warns(RuntimeWarning, match="damaged"):
        j = Journal.open(p, "master", None)
    # only the damaged line's change is lost: the intact line after it is kept
    assert j.meta == {"s:one": "1", "s:three": "3"}
    kept = [q for q in tmp_path.iterdir() if q.name.startswith("journal.damaged-")]
    assert len(kept) == 1
    j.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        j = Journal.open(p, "master", None)  # rewritten: clean now
    assert j.meta == {"s:one": "1", "s:three": "3"}
    j.close()


def test_journal_unreadable_header_is_set_aside(tmp_path):
    p = tmp_path / "journal"
    p.write_text("nonsense\n")
    with pytest.warns(RuntimeWarning, match="set aside as"):
        j = Journal.open(p, "master", None)
    assert j.meta == {} and not j.asets and j.set_aside is not None  # restarted
    j.close()
    (kept,) = tmp_path.glob("journal.unreadable-*")
    assert kept.read_text() == "nonsense\n"


def test_journal_reset_and_pending_commit(tmp_path):
    p = tmp_path / "journal"
    j = Journal.open(p, "master", None)
    _fill(j)
    j.record("C", "b" * 40)
    assert j.pending_commit == "b" * 40
    j.close()
    j = Journal.open(p, "master", None)
    assert j.pending_commit == "b" * 40
    j.reset("master", "b" * 40)
    assert not j.has_entries and j.pending_commit is None and j.base == "b" * 40
    j.close()
    j = Journal.open(p, "x", None)
    assert (j.branch, j.base, j.has_entries) == ("master", "b" * 40, False)
    assert not list(Path(tmp_path).glob("*.tmp"))
    j.close()


def test_journal_rewrite_is_atomic_replace(tmp_path, monkeypatch):
    p = tmp_path / "journal"
    j = Journal.open(p, "master", None)
    _fill(j)
    j.close()
    before = p.read_bytes()
    j = Journal.open(p, "master", None)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        j.reset("master", "c" * 40)
    monkeypatch.undo()
    assert p.read_bytes() == before  # the old journal is intact
    j.close()


@pytest.mark.parametrize("fanout", [(2, 1), (3,), (2, 2)])
def test_every_layout_reads_back_and_updates_in_place(git, fanout):
    """Layouts are read from the tree's shape: (2, 1) is the one used past
    262,144 samples, (3,) the one older repositories may hold."""
    recs = records(3000)
    oid = write_samples(git, recs, fanout)
    sr = SampleRecords(git, oid)
    assert sr.fanout == fanout
    assert dict(sr.items()) == recs
    assert sr.get("i:1234") == recs["i:1234"]
    changes = {"i:5": digest("new"), "i:6": None, "i:99999": digest("x")}
    new = SampleRecords(git, build_samples(git, sr, changes))
    expect = dict(recs)
    expect.update({"i:5": digest("new"), "i:99999": digest("x")})
    del expect["i:6"]
    assert dict(new.items()) == expect


def test_journal_batch_header_cut_before_its_lines_does_not_swallow_the_next(tmp_path):
    """A writer killed right after a batch's ``T n`` line leaves a header with
    no lines; the next batch (of n lines too) must replay as its own, not as
    the cut one's lines, and the empty header must go from the file."""
    p = tmp_path / "journal"
    j = Journal.open(p, "master", None)
    j.record("M", "s:first", b"1".hex())
    j.close()
    with open(p, "a") as fh:  # the header of a batch of 2, then the kill
        fh.write(Journal._line(("T", "2")))
    j = Journal.open(p, "master", None)
    assert p.read_bytes().count(b"T\t2") == 0  # the cut header is dropped at once
    j.batching = 1
    j.record("M", "s:a", b"2".hex())
    j.record("M", "s:b", b"3".hex())
    j.sync()  # a batch: T 2 and its two lines
    j.close()
    j = Journal.open(p, "master", None)
    assert j.meta == {"s:first": "1", "s:a": "2", "s:b": "3"}
    j.close()
