"""A commit's git objects reach the object database all at once, in a pack
that ``git gc --prune=now`` cannot delete before the branch names them."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pygit2
import pytest

from hangar_git import commits as commits_mod
from hangar_git.gitutil import HEADS, TYPE_BLOB, TYPE_TREE, commit_bytes
from hangar_git.records import objpack


def _gc_prune_now(path: Path) -> None:
    subprocess.run(["git", "gc", "--prune=now", "--quiet"], cwd=path, check=True)


def _loose_objects(path: Path) -> list[Path]:
    objects = path / ".git" / "objects"
    return [p for p in objects.glob("??/*") if p.is_file()]


@pytest.mark.parametrize("when", ["after_objects", "after_publish"])
def test_gc_prune_now_inside_a_commit_loses_nothing(repo, repo_path, monkeypatch, when):
    """`git gc --prune=now` run at either point inside a commit (after every
    object of the commit exists, and after they reach git but before the
    branch moves) prunes none of them: the commit lands and reads back."""
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.int64)
    aset[0] = np.arange(3)
    co.commit("first")
    for i in range(1, 40):
        aset[i] = np.full(3, i)
    co.metadata["m"] = "v"
    ran: list[str] = []
    if when == "after_objects":
        orig_write = commits_mod.write_commit_object

        def write_commit(*args, **kwargs):
            sha = orig_write(*args, **kwargs)
            _gc_prune_now(repo_path)
            ran.append(sha)
            return sha

        monkeypatch.setattr(commits_mod, "write_commit_object", write_commit)
    else:
        orig_publish = commits_mod.publish

        def publish(git, batch):
            orig_publish(git, batch)
            _gc_prune_now(repo_path)
            ran.append("gc")

        monkeypatch.setattr(commits_mod, "publish", publish)
    sha = co.commit("second")
    co.close()
    assert ran, "the injected gc did not run"
    monkeypatch.undo()
    reader = repo.checkout(commit=sha)
    assert reader.arraysets["a"][39].tolist() == [39, 39, 39]
    assert reader.metadata["m"] == "v"
    reader.close()
    git = pygit2.Repository(str(repo_path))
    assert str(git.references[HEADS + "master"].target) == sha
    # the keep file went away with the commit: a later gc treats the pack as git would
    assert not list((repo_path / ".git" / "objects" / "pack").glob("*.keep"))
    subprocess.run(["git", "fsck", "--no-dangling", "--strict"], cwd=repo_path, check=True)


def test_commit_writes_no_loose_objects(repo, repo_path):
    """Every object of a commit is in the kept pack, none loose for gc to take."""
    before = set(_loose_objects(repo_path))
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)[5] = np.arange(2)
    co.commit("one sample")
    co.close()
    assert set(_loose_objects(repo_path)) == before


def test_failed_commit_writes_nothing(repo, repo_path, monkeypatch):
    """A commit that fails before its objects are published leaves no object,
    no pack and no keep behind, and the staged work stays staged."""
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)
    aset[1] = np.arange(2)
    packdir = repo_path / ".git" / "objects" / "pack"
    packs_before = set(packdir.glob("*")) if packdir.exists() else set()
    loose_before = set(_loose_objects(repo_path))

    def broken(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(commits_mod, "write_commit_object", broken)
    with pytest.raises(OSError, match="disk went away"):
        co.commit("never")
    monkeypatch.undo()
    assert (set(packdir.glob("*")) if packdir.exists() else set()) == packs_before
    assert set(_loose_objects(repo_path)) == loose_before
    assert aset[1].tolist() == [0, 1]
    sha = co.commit("now")
    co.close()
    assert repo.checkout(commit=sha).arraysets["a"][1].tolist() == [0, 1]


def test_stale_keep_of_a_dead_writer_is_removed(repo, repo_path):
    """A writer killed after publishing leaves a keep file naming its pid; the
    next writer removes it (and leaves keeps of live processes and git's own)."""
    git = pygit2.Repository(str(repo_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    data = b"stale"
    oid = objpack.object_id(TYPE_BLOB, data)
    packdir = repo_path / ".git" / "objects" / "pack"
    objpack.write_pack(packdir, [(TYPE_BLOB, data)], [oid], keep=True)
    (keep,) = packdir.glob("*.keep")
    keep.chmod(0o644)
    keep.write_text(f"{objpack.KEEP_MARK} {pid}\n")
    users = packdir / "pack-0000000000000000000000000000000000000000.keep"
    users.write_text("kept by the user\n")
    repo.checkout(write=True).close()
    assert not keep.exists()
    assert users.exists()
    assert git.odb.read(pygit2.Oid(raw=oid))[1] == data


def test_commit_bytes_match_libgit2(tmp_path):
    """The commit object built for a held tree is the one libgit2 would write."""
    git = pygit2.init_repository(str(tmp_path / "r"))
    tree = git.TreeBuilder().write()
    for offset in (0, 330, -480):
        sig = pygit2.Signature("Zoë Q", "z@example.org", 1_700_000_000, offset)
        first = git.create_commit(None, sig, sig, "one ü\n\nbody\n", tree, [])
        second = git.create_commit(None, sig, sig, "two\n", tree, [first])
        assert git.odb.read(first)[1] == commit_bytes(sig, "one ü\n\nbody\n", tree.raw, [])
        assert git.odb.read(second)[1] == commit_bytes(sig, "two\n", tree.raw, [str(first)])


def _diverged(repo):
    """master and dev, each with a commit of its own since their base."""
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(3,), dtype=np.int64)
    aset[0] = np.arange(3)
    co.commit("base")
    repo.create_branch("dev")
    aset[1] = np.full(3, 1)
    co.commit("on master")
    co.close()
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["a"][2] = np.full(3, 2)
    co.arraysets["a"][1] = np.full(3, 7)
    co.commit("on dev")
    co.close()


def test_gc_prune_now_inside_a_merge_loses_nothing(repo, repo_path, monkeypatch):
    """A three-way merge's trees and commit are held too: a gc between their
    write and the branch move prunes none of them."""
    _diverged(repo)
    orig_publish = commits_mod.publish
    ran = []

    def publish(git, batch):
        _gc_prune_now(repo_path)  # before the objects reach git ...
        orig_publish(git, batch)
        _gc_prune_now(repo_path)  # ... and after, before the branch moves
        ran.append(len(batch.objects))

    monkeypatch.setattr(commits_mod, "publish", publish)
    co = repo.checkout(write=True)
    sha = co.merge("merge dev", "dev", strategy="theirs")
    co.close()
    monkeypatch.undo()
    assert ran
    reader = repo.checkout(commit=sha)
    assert [reader.arraysets["a"][k].tolist() for k in (0, 1, 2)] == [[0, 1, 2], [7] * 3, [2] * 3]
    reader.close()
    subprocess.run(["git", "fsck", "--no-dangling", "--strict"], cwd=repo_path, check=True)


def test_conflicting_merge_writes_no_object(repo, repo_path):
    """A merge that conflicts raises with nothing written: no pack, no loose object."""
    from hangar_git.errors import MergeConflictError

    _diverged(repo)
    packdir = repo_path / ".git" / "objects" / "pack"
    before = set(packdir.glob("*")), set(_loose_objects(repo_path))
    co = repo.checkout(write=True)
    with pytest.raises(MergeConflictError):
        co.merge("merge dev", "dev")
    co.close()
    assert (set(packdir.glob("*")), set(_loose_objects(repo_path))) == before


def test_many_small_commits_roll_their_packs_up(repo, repo_path, monkeypatch):
    """Past PACK_LIMIT packs a commit rolls the small ones together (a pack
    per commit would otherwise pile up and slow every lookup)."""
    monkeypatch.setattr(objpack, "PACK_LIMIT", 4)
    packdir = repo_path / ".git" / "objects" / "pack"
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)
    shas, counts = [], []
    for i in range(16):
        aset[i] = np.full(2, i)
        shas.append(co.commit(f"c{i}"))
        counts.append(len(list(packdir.glob("*.pack"))))
    co.close()
    assert max(counts) <= 5 and counts[-1] < 16, counts
    assert not list(packdir.glob("*.keep"))
    for i, sha in enumerate(shas):
        with repo.checkout(commit=sha) as reader:
            assert sorted(reader.arraysets["a"].keys()) == list(range(i + 1))
    subprocess.run(["git", "fsck", "--no-dangling", "--strict"], cwd=repo_path, check=True)


@pytest.mark.parametrize("fail_at", ["pack", "ref"])
def test_full_disk_inside_a_commit_loses_nothing(repo, repo_path, monkeypatch, fail_at):
    """ENOSPC while the commit's pack is written, or while its ref moves: the
    commit raises, leaves no temporary file and no keep, the branch stays
    where it was, and the same checkout commits once space returns."""
    import errno

    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)
    aset[0] = np.arange(2)
    first = co.commit("first")
    aset[1] = np.full(2, 1)
    packdir = repo_path / ".git" / "objects" / "pack"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_at == "pack":
        real_write_parts = objpack._write_parts

        def write_parts(fd, parts):  # a short write, then the disk is full
            data = b"".join(parts)
            real_write_parts(fd, [data[: len(data) // 2]])
            full()

        monkeypatch.setattr(objpack, "_write_parts", write_parts)
    else:
        monkeypatch.setattr(commits_mod, "move_branch", full)
    with pytest.raises(OSError) as err:
        co.commit("second")
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert not [p for p in packdir.iterdir() if p.name.startswith("tmp_")]
    assert not list(packdir.glob("*.keep"))
    git = pygit2.Repository(str(repo_path))
    assert str(git.references[HEADS + "master"].target) == first
    assert aset[1].tolist() == [1, 1]
    sha = co.commit("second, once space returned")
    co.close()
    with repo.checkout(commit=sha) as reader:
        assert reader.arraysets["a"][1].tolist() == [1, 1]
    assert repo.verify().ok


def test_a_large_pack_deflated_on_two_threads_is_what_git_reads(tmp_path):
    """Over 1 MiB of objects are deflated in two halves (one on a second
    thread): git verifies the pack and every object reads back, in order."""
    git = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    rng = np.random.default_rng(0)
    # half random (incompressible), half repetitive: 2.4 MiB in 120 objects
    datas = [
        bytes(rng.integers(0, 256, 20_000, dtype=np.uint8)) if i % 2 else bytes([i]) * 20_000
        for i in range(120)
    ]
    ids = [objpack.object_id(TYPE_BLOB, d) for d in datas]
    packdir = Path(git.path) / "objects" / "pack"
    objpack.write_pack(packdir, [(TYPE_BLOB, d) for d in datas], ids)
    (idx,) = packdir.glob("pack-*.idx")
    subprocess.run(["git", "verify-pack", str(idx)], check=True, capture_output=True)
    git = pygit2.Repository(git.path)
    assert [git.odb.read(pygit2.Oid(raw=oid))[1] for oid in ids] == datas


def test_trees_written_with_their_ids_make_the_pack_of_old(tmp_path):
    """tree_ids is object_id; write_trees given them writes the pack it writes
    without (the bytes of old: each object's header and deflated data, the
    SHA-1 of all after them), and git reads every tree back."""
    git = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    rng = np.random.default_rng(1)
    trees = [
        b"".join(b"160000 i:%d\x00" % (k * 1000 + j) + rng.bytes(20) for j in range(1 + k % 50))
        for k in range(80)
    ]
    ids = objpack.tree_ids(trees)
    assert ids == [objpack.object_id(TYPE_TREE, t) for t in trees]
    assert objpack.write_trees(git, trees, ids) == ids
    body = b"PACK" + struct.pack(">II", 2, len(trees))
    body += b"".join(objpack._header(TYPE_TREE, len(t)) + objpack._compress(t, 1) for t in trees)
    packdir = Path(git.path) / "objects" / "pack"
    (pack,) = packdir.glob("pack-*.pack")
    assert pack.read_bytes() == body + hashlib.sha1(body).digest()
    assert pack.name == f"pack-{hashlib.sha1(body).hexdigest()}.pack"
    (idx,) = packdir.glob("pack-*.idx")
    subprocess.run(["git", "verify-pack", str(idx)], check=True, capture_output=True)
    git = pygit2.Repository(git.path)
    assert [git.odb.read(pygit2.Oid(raw=oid))[1] for oid in ids] == trees


def _records(pack: bytes, idx_path: Path) -> dict[bytes, bytes]:
    """Each object's record in ``pack`` (header and zlib stream), by id, cut
    at the offsets ``git show-index`` lists."""
    out = subprocess.run(
        ["git", "show-index"], input=idx_path.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    lines = map(str.split, out.splitlines())
    rows = sorted((int(off), bytes.fromhex(oid)) for off, oid, *_ in lines)
    ends = [off for off, _ in rows[1:]] + [len(pack) - 20]
    return {oid: pack[off:end] for (off, oid), end in zip(rows, ends, strict=True)}


def _stream(record: bytes) -> bytes:
    """The zlib stream of a pack record (after its size-encoding header)."""
    i = 0
    while record[i] & 0x80:
        i += 1
    return record[i + 1 :]


def test_a_bulk_commits_trees_are_stored_uncompressed_and_git_reads_them(tmp_path, monkeypatch):
    """A pack holding STORED_TREES_FROM bytes of trees or more keeps each tree
    as stored deflate blocks (one tree longer than a block, in several); its
    blobs are still compressed; git verifies the pack and reads every object."""
    monkeypatch.setattr(objpack, "STORED_TREES_FROM", 50_000)
    git = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    rng = np.random.default_rng(2)
    trees = [
        b"".join(b"160000 i:%d\x00" % (k * 1000 + j) + rng.bytes(20) for j in range(1 + k % 60))
        for k in range(40)
    ]
    trees.append(b"".join(b"160000 i:%d\x00" % j + rng.bytes(20) for j in range(3000)))  # 3 blocks
    blob = b"a compressible blob " * 500
    objects = [(TYPE_TREE, t) for t in trees] + [(TYPE_BLOB, blob)]
    ids = [*objpack.tree_ids(trees), objpack.object_id(TYPE_BLOB, blob)]
    assert sum(map(len, trees)) >= objpack.STORED_TREES_FROM
    packdir = Path(git.path) / "objects" / "pack"
    objpack.write_pack(packdir, objects, ids)
    (pack,) = packdir.glob("pack-*.pack")
    (idx,) = packdir.glob("pack-*.idx")
    subprocess.run(["git", "verify-pack", str(idx)], check=True, capture_output=True)
    records = _records(pack.read_bytes(), idx)
    for oid, (_, data) in zip(ids, objects, strict=True):
        stream = _stream(records[oid])
        assert zlib.decompress(stream) == data
        stored = stream[2] & 0x06 == 0  # BTYPE 00 of the first block
        assert stored == (data is not blob)
    assert len(_stream(records[ids[-1]])) < len(blob) // 10
    git = pygit2.Repository(git.path)
    assert [git.odb.read(pygit2.Oid(raw=oid))[1] for oid in ids] == [d for _, d in objects]


def test_trees_of_a_small_pack_are_still_compressed(tmp_path):
    """Under STORED_TREES_FROM bytes of trees, a pack deflates them (a commit
    of a few changes keeps its records as small as before)."""
    git = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    trees = [b"".join(b"160000 i:%d\x00" % j + bytes(20) for j in range(50 + k)) for k in range(40)]
    ids = objpack.tree_ids(trees)
    packdir = Path(git.path) / "objects" / "pack"
    objpack.write_pack(packdir, [(TYPE_TREE, t) for t in trees], ids)
    (pack,) = packdir.glob("pack-*.pack")
    (idx,) = packdir.glob("pack-*.idx")
    records = _records(pack.read_bytes(), idx)
    for oid, t in zip(ids, trees, strict=True):
        stream = _stream(records[oid])
        assert zlib.decompress(stream) == t
        assert len(stream) < len(t) // 2


def test_a_pack_written_in_short_writes_is_whole(tmp_path, monkeypatch):
    """A gathered write that takes only part of what it was given (as a
    pipe or a signal may make it) is finished: the pack on the disk is the
    pack, git verifies it."""
    real = os.writev
    calls = []

    def short_writev(fd, parts):
        calls.append(len(parts))
        want = sum(map(len, parts))
        return real(fd, [b"".join(parts)[: max(1, want // 3)]])

    monkeypatch.setattr(objpack.os, "writev", short_writev)
    git = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    trees = [b"160000 i:%d\x00" % k + bytes(range(20)) for k in range(1500)]
    ids = objpack.tree_ids(trees)
    packdir = Path(git.path) / "objects" / "pack"
    objpack.write_pack(packdir, [(TYPE_TREE, t) for t in trees], ids)
    monkeypatch.undo()
    assert max(calls) > 1  # parts were gathered, and cut short
    (idx,) = packdir.glob("pack-*.idx")
    subprocess.run(["git", "verify-pack", str(idx)], check=True, capture_output=True)
    git = pygit2.Repository(git.path)
    assert [git.odb.read(pygit2.Oid(raw=oid))[1] for oid in ids] == trees
