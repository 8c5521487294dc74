"""fsck: every kind of damage is found, and named down to the sample and commit."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import warnings

import click
import numpy as np
import pygit2
import pytest
from click.testing import CliRunner

from hangar_git import FormatVersionError, IntegrityError, MissingPayloadError
from hangar_git.fsck import STAGING, verify
from hangar_git.gitutil import read_raw, write_blob, write_tree
from hangar_git.records.layout import (
    FORMAT_VERSION,
    MODE_BLOB,
    MODE_LINK,
    MODE_TREE,
    parse_tree,
    serialize_tree,
)
from hangar_git.store.digest import array_digest
from hangar_git.store.packs import HEADER_SIZE


def small(i: int) -> np.ndarray:
    return np.arange(i, i + 12, dtype=np.int32)


def big(i: int) -> np.ndarray:
    return np.random.default_rng(i).random((91, 91))  # > 64 KiB: a block of its own


@pytest.fixture
def history(repo):
    """master: c1 (s 0..19, b 0..2), c2 (s 0..29 minus 5, b 0..2); dev from c1: s 100..104."""
    co = repo.checkout(write=True)
    s = co.arraysets.init_arrayset("s", shape=(12,), dtype=np.int32)
    b = co.arraysets.init_arrayset("b", shape=(91, 91), dtype=np.float64)
    with s, b:
        for i in range(20):
            s[i] = small(i)
        for i in range(3):
            b[i] = big(i)
    c1 = co.commit("one")
    with s:
        for i in range(20, 30):
            s[i] = small(i)
        del s[5]
        s["dup"] = small(7)  # the same payload as s[7]
    c2 = co.commit("two")
    co.close()
    repo.create_branch("dev", c1)
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["s"] as s:
        for i in range(100, 105):
            s[i] = small(i)
    c3 = co.commit("dev")
    co.close()
    repo.checkout(write=True).close()  # the staging area back on master
    return repo, {"c1": c1, "c2": c2, "c3": c3}


def contents(repo, commit):
    co = repo.checkout(commit=commit)
    out = {(n, k) for n in co.arraysets for k in co.arraysets[n]}
    co.close()
    return out


def flip(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


def loc_of(repo, arr):
    r = repo._store.reader()
    try:
        return r.locate(array_digest(arr))
    finally:
        r.close()


def test_clean_repository(history):
    repo, _ = history
    rep = verify(repo, full=True)
    assert rep.ok, rep.summary()
    assert rep.commits == 3
    assert rep.samples == (20 + 3) + (30 + 3) + (25 + 3)
    assert rep.payloads == 20 + 3 + 10 + 5  # distinct payloads
    assert not rep.damaged and not rep.remote_references
    assert repo.verify().ok


def read_failures(repo, commits):
    """{commit: {(aset, key)}} of the samples whose read raises IntegrityError.

    Every other sample must read back exactly what was stored.
    """
    fails = {}
    for sha in commits:
        co = repo.checkout(commit=sha)
        for n in co.arraysets:
            for enc, d in co.view.iter_items(n):
                k = int(enc[2:]) if enc[0] == "i" else enc[2:]
                try:
                    arr = co.arraysets[n][k]
                except IntegrityError as exc:
                    assert f"sample {n}[" in str(exc)
                    fails.setdefault(sha, set()).add((n, k))
                else:
                    assert array_digest(arr) == d
        co.close()
    return fails


def test_flipped_payload_byte_names_each_sample_of_each_commit(history):
    repo, c = history
    loc = loc_of(repo, small(7))
    # the block holding s[7] holds other small samples too: all of them are damaged
    flip(repo._store.pack_path(loc.pack), loc.boff + HEADER_SIZE + 3)
    rep = verify(repo)
    assert not rep.ok
    got = rep.damaged_samples()
    assert got == read_failures(repo, c.values())
    assert ("s", "dup") in got[c["c2"]] and ("s", 7) in got[c["c2"]]
    assert ("s", 7) in got[c["c1"]] and ("s", 7) in got[c["c3"]]
    assert all(n == "s" for v in got.values() for n, _ in v)
    assert all(".pack" in s.problem for s in rep.damaged)


def test_flipped_big_payload_only_that_sample(history):
    repo, c = history
    loc = loc_of(repo, big(1))
    flip(repo._store.pack_path(loc.pack), loc.boff + loc.blen - 10)
    rep = verify(repo)
    assert rep.damaged_samples() == {c["c1"]: {("b", 1)}, c["c2"]: {("b", 1)}, c["c3"]: {("b", 1)}}
    co = repo.checkout(commit=c["c2"])
    with pytest.raises(IntegrityError, match=r"sample b\[1\].*\.pack"):
        co.arraysets["b"][1]
    with pytest.raises(IntegrityError, match=r"sample b\[1\]"):
        co.arraysets["b"].get_batch([0, 1, 2])
    assert (co.arraysets["b"][0] == big(0)).all() and (co.arraysets["b"][2] == big(2)).all()
    co.close()


def test_missing_pack(history):
    repo, c = history
    for n in repo._store.pack_numbers():
        repo._store.pack_path(n).unlink()
    rep = verify(repo)
    assert all("missing" in s.problem for s in rep.damaged)
    assert {k for v in rep.damaged_samples().values() for k in v} == (
        contents(repo, c["c2"]) | contents(repo, c["c3"]) | contents(repo, c["c1"])
    )
    co = repo.checkout(commit=c["c1"])
    loc = loc_of(repo, small(0))
    pack = re.escape(str(repo._store.pack_path(loc.pack)))
    # the error names the sample and the file, singly and in a batch
    with pytest.raises(IntegrityError, match=rf"sample s\[0\] .*pack file {pack} is missing"):
        co.arraysets["s"][0]
    with pytest.raises(IntegrityError, match=rf"sample s\[\d+\] .*{pack} is missing"):
        co.arraysets["s"].get_batch([0, 1])
    co.close()


def test_truncated_pack(history):
    repo, c = history
    loc = loc_of(repo, big(2))
    path = repo._store.pack_path(loc.pack)
    size = path.stat().st_size
    cut = loc.boff + loc.blen // 2
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    rep = verify(repo)
    r = repo._store.reader()
    gone = set()
    for sha in c.values():
        co = repo.checkout(commit=sha)
        for n in co.arraysets:
            for k, d in co.view.iter_items(n):
                loc2 = r.locate(d)
                if loc2.pack == loc.pack and loc2.boff + loc2.blen > cut:
                    from hangar_git.naming import decode_key

                    gone.add((sha, n, decode_key(k)))
        co.close()
    r.close()
    assert cut < size and gone
    assert {(s.commit, s.arrayset, s.key) for s in rep.damaged} == gone


def test_deleted_index_entry_is_damage_without_a_remote(history):
    repo, c = history
    w = repo._store.writer()
    assert w.remove([array_digest(small(3))]) == 1
    w.close()
    rep = verify(repo)
    assert rep.damaged_samples() == {sha: {("s", 3)} for sha in c.values()}
    assert "missing" in rep.damaged[0].problem
    co = repo.checkout(commit=c["c2"])
    with pytest.raises(IntegrityError, match=r"s\['3'\]|s\[3\]"):
        co.arraysets["s"][3]
    co.close()


def test_absent_payload_of_a_remote_commit_is_a_remote_reference(history):
    repo, c = history
    git = repo._git_repo()
    git.references.create("refs/hangar/remotes/origin/master", pygit2.Oid(hex=c["c1"]))
    w = repo._store.writer()
    w.remove([array_digest(small(3)), array_digest(small(25))])
    w.close()
    rep = verify(repo)
    # small(3) is in c1, which origin has: a remote reference in every commit naming it;
    # small(25) only in the local commit c2: lost
    assert {(s.commit, s.key) for s in rep.remote_references} == {
        (c["c1"], 3),
        (c["c2"], 3),
        (c["c3"], 3),
    }
    assert rep.damaged_samples() == {c["c2"]: {("s", 25)}}
    co = repo.checkout(commit=c["c2"])
    with pytest.raises(MissingPayloadError):
        co.arraysets["s"][3]
    co.close()
    w = repo._store.writer()  # fetch the lost one back: clean again, remote refs apart
    from hangar_git.store import payload_from_array

    w.add(payload_from_array(small(25)))
    w.close()
    rep = verify(repo)
    assert rep.ok and len(rep.remote_references) == 3


def test_damaged_block_row(history):
    repo, c = history
    loc = loc_of(repo, big(0))
    con = sqlite3.connect(repo._store.index_path)
    con.execute("UPDATE blocks SET boff = boff + 8 WHERE pack=? AND boff=?", (loc.pack, loc.boff))
    con.commit()
    con.close()
    rep = verify(repo)
    assert rep.damaged_samples() == {sha: {("b", 0)} for sha in c.values()}
    co = repo.checkout(commit=c["c1"])
    with pytest.raises(IntegrityError, match=r"b\[0\]"):
        co.arraysets["b"][0]
    assert (co.arraysets["b"][1] == big(1)).all()
    co.close()


def test_damaged_kind_row(history):
    """A kind header changed to another valid one never yields wrong-shaped arrays."""
    repo, c = history
    con = sqlite3.connect(repo._store.index_path)
    con.execute("UPDATE kinds SET kind='<i4|11' WHERE kind='<i4|12'")
    con.commit()
    con.close()
    rep = verify(repo)
    got = rep.damaged_samples()
    assert got == read_failures(repo, c.values())
    assert {n for v in got.values() for n, _ in v} == {"s"}
    assert sum(len(v) for v in got.values()) == rep.samples - 9  # all but the 3 x 3 "b"
    assert all("kind row" in s.problem for s in rep.damaged)


def test_damaged_index_segment(history):
    repo, c = history
    con = sqlite3.connect(repo._store.index_path)
    sid, blob = con.execute("SELECT id, entries FROM segments ORDER BY id LIMIT 1").fetchone()
    blob = bytearray(blob)
    blob[5] ^= 0xFF
    con.execute("UPDATE segments SET entries=? WHERE id=?", (bytes(blob), sid))
    con.commit()
    con.close()
    rep = verify(repo)
    assert not rep.ok
    for s in rep.damaged:
        assert f"segment {sid}" in s.problem
    # every sample reported damaged fails to read, every other one reads
    bad = rep.damaged_samples()
    for sha in c.values():
        co = repo.checkout(commit=sha)
        for n in co.arraysets:
            for k in co.arraysets[n]:
                if (n, k) in bad.get(sha, set()):
                    with pytest.raises(IntegrityError):
                        co.arraysets[n][k]
                else:
                    co.arraysets[n][k]
        co.close()
    assert verify(repo, full=True).store


def test_unreadable_index_file(history):
    repo, c = history
    path = repo._store.index_path
    for p in path.parent.glob("index.sqlite-*"):
        p.unlink()
    path.write_bytes(b"\0" * 100 + path.read_bytes()[100:])
    with pytest.raises(IntegrityError, match="index"):
        co = repo.checkout(commit=c["c1"])
        co.arraysets["s"][0]
    rep = verify(repo)
    assert rep.store and "index" in rep.store[0]
    assert len({s.commit for s in rep.damaged}) == 3 and all(
        "index" in s.problem for s in rep.damaged
    )
    assert len(rep.damaged) == rep.samples


def test_staged_samples_are_checked(history):
    repo, _ = history
    co = repo.checkout(write=True)
    co.arraysets["b"]["new"] = big(50)
    co.close()
    loc = loc_of(repo, big(50))
    flip(repo._store.pack_path(loc.pack), loc.boff + HEADER_SIZE + 100)
    rep = verify(repo)
    assert rep.damaged_samples() == {STAGING: {("b", "new")}}


def _craft(repo, branch, mutate):
    """Commit a copy of master's head tree changed by ``mutate(root entries)`` on ``branch``."""
    git = repo._git_repo()
    head = git.references["refs/hangar/heads/master"].target
    root = parse_tree(read_raw(git, git.get(head).tree_id.raw))
    mutate(git, root)
    tree = write_tree(git, serialize_tree(root))
    sig = pygit2.Signature("t", "t@example.org")
    sha = git.create_commit(None, sig, sig, "crafted", pygit2.Oid(raw=tree), [head])
    git.references.create(f"refs/hangar/heads/{branch}", sha)
    return str(sha)


def test_newer_record_format_is_refused_and_reported(history):
    repo, _ = history

    def newer(git, root):
        root["hangar.json"] = (
            MODE_BLOB,
            write_blob(git, json.dumps({"hangar_git_format": FORMAT_VERSION + 1}).encode()),
        )

    sha = _craft(repo, "future", newer)
    with pytest.raises(FormatVersionError, match=f"format {FORMAT_VERSION + 1}"):
        repo.checkout(branch="future")
    with pytest.raises(FormatVersionError):
        repo.checkout(commit=sha)
    rep = verify(repo)
    assert [(r.commit, r.path) for r in rep.records] == [(sha, "hangar.json")]
    assert "newer" in rep.records[0].problem
    assert not rep.ok

    def missing(git, root):
        del root["hangar.json"]

    sha2 = _craft(repo, "nofmt", missing)
    with pytest.raises(FormatVersionError):
        repo.checkout(branch="nofmt")
    assert any(r.commit == sha2 for r in verify(repo).records)


def test_malformed_records_are_reported(history):
    repo, _ = history

    def bad_key(git, root):
        asets = parse_tree(read_raw(git, root["arraysets"][1]))
        sub = parse_tree(read_raw(git, asets["s"][1]))
        leaf_tree = dict(parse_tree(read_raw(git, sub["samples"][1])))
        leaf_tree["s:a b"] = (MODE_LINK, b"\x01" * 20)  # ' ' is no key character
        sub["samples"] = (
            MODE_TREE,
            write_tree(git, serialize_tree({k: v for k, v in leaf_tree.items()})),
        )
        sub["junk"] = (MODE_BLOB, write_blob(git, b"x"))
        asets["s"] = (MODE_TREE, write_tree(git, serialize_tree(sub)))
        asets["bad/name"[:3]] = (MODE_BLOB, write_blob(git, b"x"))
        root["arraysets"] = (MODE_TREE, write_tree(git, serialize_tree(asets)))
        root["extra"] = (MODE_BLOB, write_blob(git, b"x"))

    sha = _craft(repo, "bad", bad_key)
    rep = verify(repo)
    paths = {r.path for r in rep.records if r.commit == sha}
    assert "extra" in paths
    assert "arraysets/s" in paths  # the junk entry
    assert "arraysets/bad" in paths  # not a tree
    assert any(
        r.path.startswith("arraysets/s/samples") and "'s:a b'" in r.problem for r in rep.records
    )
    assert all(r.commit == sha for r in rep.records)


def test_payload_that_does_not_fit_its_schema(history):
    repo, _ = history
    wrong = np.arange(12, dtype=np.int64)  # stored, but int64 where the schema says int32
    w = repo._store.writer()
    from hangar_git.store import payload_from_array

    w.add(payload_from_array(wrong))
    w.close()

    def link(git, root):
        asets = parse_tree(read_raw(git, root["arraysets"][1]))
        sub = parse_tree(read_raw(git, asets["s"][1]))
        leaf = dict(parse_tree(read_raw(git, sub["samples"][1])))
        leaf["s:wrong"] = (MODE_LINK, array_digest(wrong))
        from hangar_git.records.layout import serialize_links

        sub["samples"] = (
            MODE_TREE,
            write_tree(git, serialize_links({k: v[1] for k, v in leaf.items()})),
        )
        asets["s"] = (MODE_TREE, write_tree(git, serialize_tree(sub)))
        root["arraysets"] = (MODE_TREE, write_tree(git, serialize_tree(asets)))

    sha = _craft(repo, "wrongkind", link)
    rep = verify(repo)
    assert rep.damaged_samples() == {sha: {("s", "wrong")}}
    assert "does not fit" in rep.damaged[0].problem


def test_damaged_git_object_is_reported(history):
    repo, c = history
    git = repo._git_repo()
    # a dev-only tree, in the pack its commit was written as: damage its
    # compressed bytes (packs are read-only files)
    tree = str(git.get(c["c3"]).tree_id)
    packdir = repo._hdir.parent / "objects" / "pack"
    for idx in packdir.glob("*.idx"):
        listing = subprocess.run(
            ["git", "show-index"], stdin=idx.open("rb"), capture_output=True, check=True
        ).stdout.decode()
        offsets = {f[1]: int(f[0]) for f in (line.split() for line in listing.splitlines())}
        if tree in offsets:
            break
    else:
        raise AssertionError("the tree is in no pack")
    p = idx.with_suffix(".pack")
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[offsets[tree] + 4] ^= 0xFF
    p.write_bytes(bytes(data))
    rep = verify(repo, full=True)
    assert not rep.ok
    assert rep.git or any(r.commit == c["c3"] for r in rep.records)


def test_corrupt_journal_reported(history):
    repo, _ = history
    co = repo.checkout(write=True)
    co.arraysets["s"]["x"] = small(200)
    co.close()
    path = repo._journal_path()
    path.write_bytes(b"garbage\n")
    rep = verify(repo)
    assert [r.commit for r in rep.records] == [STAGING]


# ---- the command line ------------------------------------------------------------
@pytest.fixture
def cli():
    from hangar_git.cli import CONTEXT_SETTINGS, RootGroup, maint

    @click.group(cls=RootGroup, context_settings=CONTEXT_SETTINGS)
    def grp() -> None:
        pass

    maint.register(grp)
    return grp


def test_cli_fsck(history, cli, monkeypatch):
    repo, c = history
    monkeypatch.chdir(repo.path)
    runner = CliRunner()
    res = runner.invoke(cli, ["fsck"])
    assert res.exit_code == 0, res.output
    assert "OK" in res.output and "3 commits" in res.output
    res = runner.invoke(cli, ["fsck", "--full", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["ok"] is True
    loc = loc_of(repo, big(1))
    flip(repo._store.pack_path(loc.pack), loc.boff + HEADER_SIZE + 7)
    res = runner.invoke(cli, ["fsck"])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert sum("damaged sample" in ln and "b[1]" in ln for ln in lines) == 3
    assert lines[-1].startswith("error: repository damaged: 3 samples")
    res = runner.invoke(cli, ["fsck", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.output[: res.output.rindex("}") + 1])
    assert {(d["commit"], d["arrayset"], d["key"]) for d in out["damaged"]} == {
        (sha, "b", 1) for sha in c.values()
    }


def test_cli_fsck_outside_a_repository(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["fsck"])
    assert res.exit_code == 1 and res.output.startswith("error: ")
    assert len(res.output.strip().splitlines()) == 1


def test_git_fsck_agrees(history):
    repo, _ = history
    res = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=repo.path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


def test_partial_clone_counts_remote_references_not_damage(history, tmp_path):
    """After a records-only clone, absent payloads are remote references; fetching
    them makes them local; losing a local-only one is damage."""
    repo, c = history
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    repo.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    repo.remote.push("origin", "master")
    clone_dir = tmp_path / "bob"
    clone_dir.mkdir()
    from hangar_git import Repository

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bob = Repository(clone_dir, exists=False)
    bob.clone("Bob", "bob@example.org", str(bare), data=str(tmp_path / "data"))
    rep = verify(bob, full=True)
    assert rep.ok, rep.summary()
    n_master = len(contents(repo, c["c2"])) + len(contents(repo, c["c1"]))
    assert len(rep.remote_references) == n_master and not rep.damaged
    bob.remote.fetch_data("origin", "master", arrayset_names=["b"])
    rep = verify(bob)
    assert rep.ok and {s.arrayset for s in rep.remote_references} == {"s"}
    # a local commit on top: inherited payloads stay remote references, new ones are local
    co = bob.checkout(write=True)
    co.arraysets["s"]["local"] = small(999)
    co.commit("local work")
    co.close()
    rep = verify(bob)
    assert rep.ok and not any(s.key == "local" for s in rep.remote_references)
    w = bob._store.writer()
    w.remove([array_digest(small(999))])
    w.close()
    rep = verify(bob)
    assert {(s.arrayset, s.key) for s in rep.damaged} == {("s", "local")}


def test_cli_maint_imports_first_without_a_cycle():
    """Importing the maintenance (or any other) command module before
    ``hangar_git.cli`` works (a fresh interpreter: the import order of this
    test session is not used)."""
    import subprocess
    import sys

    for first, command in (("maint", "fsck"), ("remotes", "push"), ("common", "gc")):
        code = (
            f"import hangar_git.cli.{first}, hangar_git.cli as c; "
            f"assert {command!r} in c.main.commands"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


def test_large_payloads_every_chunk_checked(repo, monkeypatch):
    from hangar_git.store import chunked

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    monkeypatch.setattr(chunked, "CHUNK_TARGET", 16 * 1024)
    arrays = {i: np.random.default_rng(i).random((96, 128)) for i in range(3)}
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("l", shape=(96, 128), dtype=np.float64).update(arrays)
    sha = co.commit("large")
    co.close()
    assert verify(repo).ok and verify(repo, full=True).ok
    r = repo._store.reader()
    o1 = r.large().open(r.locate(array_digest(arrays[1])).boff)
    o2 = r.large().open(r.locate(array_digest(arrays[2])).boff)
    r.close()
    flip(o1.path, o1.chunks[-1][0] + 7)  # the last chunk only
    o2.path.unlink()
    rep = verify(repo)
    assert rep.damaged_samples() == {sha: {("l", 1), ("l", 2)}}
    assert any(str(o1.path) in s.problem for s in rep.damaged)


# ---- leftovers: warnings, not damage -------------------------------------------------
KILLED_BEFORE_INDEX = """
import os, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
from hangar_git import Repository
from hangar_git.store import chunked, packs
chunked.THRESHOLD = 64 * 1024
real_place = packs.PackWriter._place_large
def place_then_die(self):
    real_place(self)
    os._exit(9)  # large files renamed into place; the index commit never happens
packs.PackWriter._place_large = place_then_die
co = Repository(sys.argv[1], exists=False).checkout(write=True)
co.arraysets["l"].update({i: np.full((96, 128), 100.0 + i) for i in range(2)})
"""


def test_unindexed_large_files_are_warnings_not_damage(repo, monkeypatch, tmp_path):
    """A writer killed between placing large payload files and indexing them
    leaves files nothing names: fsck warns (exit status 0) and gc removes them."""
    import sys

    from hangar_git.cli import CONTEXT_SETTINGS, RootGroup, maint
    from hangar_git.gc import gc
    from hangar_git.store import chunked

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    arrays = {i: np.random.default_rng(i).random((96, 128)) for i in range(2)}
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("l", shape=(96, 128), dtype=np.float64).update(arrays)
    sha = co.commit("large")
    co.close()
    files = chunked.LargeFiles(repo._store.large_dir)
    kept = set(files.numbers())
    assert len(kept) == 2 and verify(repo).warnings == []
    res = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_INDEX, repo.path], capture_output=True, text=True
    )
    assert res.returncode == 9, res.stderr
    orphans = sorted(set(files.numbers()) - kept)
    assert len(orphans) == 2
    tmp = files.tmp_dir / "0000000099.12345.tmp"  # a temporary file of a killed writer
    tmp.write_bytes(b"x" * 10)

    for full in (False, True):
        rep = verify(repo, full=full)
        assert rep.ok, rep.summary()
        assert not rep.damaged and not rep.store
        assert len(rep.warnings) == 3
        for n in orphans:
            assert sum(str(files.path(n)) in w and "no index entry" in w for w in rep.warnings) == 1
        assert any(str(tmp) in w and "temporary" in w for w in rep.warnings)
        assert not any(str(files.path(n)) in w for n in kept for w in rep.warnings)
        assert rep.summary().splitlines()[-1] == "OK"
        assert sum(ln.startswith("warning: ") for ln in rep.summary().splitlines()) == 3

    @click.group(cls=RootGroup, context_settings=CONTEXT_SETTINGS)
    def grp() -> None:
        pass

    maint.register(grp)
    monkeypatch.chdir(repo.path)
    res = CliRunner().invoke(grp, ["fsck"])
    assert res.exit_code == 0, res.output
    assert sum("warning: " in ln for ln in res.output.splitlines()) == 3
    res = CliRunner().invoke(grp, ["fsck", "--json"])
    assert res.exit_code == 0
    out = json.loads(res.output)
    assert out["ok"] is True and len(out["warnings"]) == 3

    dry = gc(repo, dry_run=True)
    assert dry.large_files_deleted == 2 and len(verify(repo).warnings) == 3
    rep = gc(repo)
    assert rep.large_files_deleted == 2
    assert set(files.numbers()) == kept and not tmp.exists()
    rep = verify(repo, full=True)
    assert rep.ok and rep.warnings == []
    with repo.checkout(commit=sha) as rc:
        assert all((rc.arraysets["l"][i] == arrays[i]).all() for i in range(2))


def test_indexed_but_unreferenced_large_file_is_no_warning(repo, monkeypatch):
    """A large payload of a deleted branch is garbage for gc, not a leftover."""
    from hangar_git.store import chunked

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("l", shape=(96, 128), dtype=np.float64)
    aset[0] = np.random.default_rng(0).random((96, 128))
    base = co.commit("one")
    co.close()
    repo.create_branch("dev", base)
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["l"][1] = np.random.default_rng(1).random((96, 128))
    co.commit("dev")
    co.close()
    repo.checkout(write=True).close()
    repo.remove_branch("dev", force=True)
    assert len(chunked.LargeFiles(repo._store.large_dir).numbers()) == 2
    rep = verify(repo)
    assert rep.ok and rep.warnings == []


def test_no_leftover_warning_when_the_index_cannot_be_listed(repo, monkeypatch):
    """With a damaged index segment any file might be named there: no guess."""
    from hangar_git.store import chunked

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("l", shape=(96, 128), dtype=np.float64).update(
        {i: np.random.default_rng(i).random((96, 128)) for i in range(2)}
    )
    co.commit("large")
    co.close()
    con = sqlite3.connect(repo._store.index_path)
    sid, blob = con.execute("SELECT id, entries FROM segments ORDER BY id LIMIT 1").fetchone()
    blob = bytearray(blob)
    blob[5] ^= 0xFF
    con.execute("UPDATE segments SET entries=? WHERE id=?", (bytes(blob), sid))
    con.commit()
    con.close()
    rep = verify(repo)
    assert not rep.ok and rep.warnings == []
