"""gc: reclaims what nothing references, keeps everything else, and never
breaks a reader or a later writer."""

from __future__ import annotations

import subprocess

import click
import numpy as np
import pygit2
import pytest
from click.testing import CliRunner

from hangar_git import IntegrityError, WriterLockError
from hangar_git.gc import gc
from hangar_git.store.digest import array_digest


def arr(i: int, n: int = 9000) -> np.ndarray:
    return np.random.default_rng(i).random(n)  # 72 KB: a block of its own


def pack_bytes(repo) -> int:
    return sum(repo._store.pack_path(n).stat().st_size for n in repo._store.pack_numbers())


def stored(repo) -> set[bytes]:
    r = repo._store.reader()
    try:
        return {d for d, _ in r.all_locations()}
    finally:
        r.close()


@pytest.fixture
def two_branches(repo):
    """master: keep 0..4 (committed); dev: 100..129 (committed), then dev is deleted."""
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(9000,), dtype=np.float64)
    with a:
        for i in range(5):
            a[i] = arr(i)
    c1 = co.commit("keep")
    co.close()
    repo.create_branch("dev", c1)
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["a"] as a:
        for i in range(100, 130):
            a[i] = arr(i)
    c2 = co.commit("dev")
    co.close()
    repo.checkout(write=True).close()
    return repo, c1, c2


def test_nothing_to_reclaim_changes_nothing(written_repo):
    before = stored(written_repo)
    rep = gc(written_repo)
    assert rep.payloads_removed == 0 and not rep.packs_deleted
    assert stored(written_repo) == before
    assert written_repo.verify(full=True).ok


def test_reclaims_data_added_and_removed_before_any_commit(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(9000,), dtype=np.float64)
    a[0] = arr(0)
    c1 = co.commit("one")
    for i in range(1, 40):
        a[i] = arr(i)
    for i in range(1, 40):
        del a[i]  # written, then removed from the staging area: never committed
    a[99] = arr(99)  # staged, not committed: must stay
    co.close()
    big = pack_bytes(repo)
    dry = gc(repo, dry_run=True)
    assert dry.payloads_removed == 39 and dry.dry_run
    assert pack_bytes(repo) == big and len(stored(repo)) == 41
    rep = gc(repo)
    assert rep.payloads_removed == 39
    assert stored(repo) == {array_digest(arr(0)), array_digest(arr(99))}
    assert rep.bytes_after < big / 10 and pack_bytes(repo) == rep.bytes_after
    co = repo.checkout(write=True)
    assert (co.arraysets["a"][99] == arr(99)).all()
    co.commit("two")
    co.close()
    rc = repo.checkout(commit=c1)
    assert (rc.arraysets["a"][0] == arr(0)).all()
    rc.close()
    assert repo.verify(full=True).ok


def test_keeps_every_branch_and_remote_tracking_ref(two_branches):
    repo, _c1, c2 = two_branches
    git = repo._git_repo()
    git.references.create("refs/hangar/remotes/origin/dev", pygit2.Oid(hex=c2))
    repo.remove_branch("dev", force=True)
    rep = gc(repo)
    assert rep.payloads_removed == 0
    rc = repo.checkout(commit=c2)
    assert all((rc.arraysets["a"][i] == arr(i)).all() for i in range(100, 130))
    rc.close()
    git.references.delete("refs/hangar/remotes/origin/dev")
    rep = gc(repo)
    assert rep.payloads_removed == 30
    assert repo.verify(full=True).ok


def test_compaction_under_open_readers(two_branches):
    """Readers that located payloads before gc moved them still read them."""
    repo, c1, _c2 = two_branches
    # a reader that has read (pack open, entries cached) and one that has only located
    r1 = repo.checkout(commit=c1)
    assert (r1.arraysets["a"][0] == arr(0)).all()
    r2 = repo.checkout(commit=c1)
    r2.payloads.reader.locate_many([array_digest(arr(i)) for i in range(5)])
    # one that has loaded the index entries only (their block rows go away in gc)
    r4 = repo.checkout(commit=c1)
    r4.payloads.reader.lookup([array_digest(arr(i)) for i in range(5)])
    old_packs = repo._store.pack_numbers()
    repo.remove_branch("dev", force=True)
    rep = gc(repo, threshold=0.0)
    assert rep.packs_compacted and set(rep.packs_deleted) >= set(old_packs)
    assert not set(repo._store.pack_numbers()) & set(old_packs)
    for r in (r1, r2, r4):
        assert all((r.arraysets["a"][i] == arr(i)).all() for i in range(5))
        got = r.arraysets["a"].get_batch(list(range(5)))
        assert all((g == arr(i)).all() for i, g in enumerate(got))
    r3 = repo.checkout(commit=c1)
    assert all((r3.arraysets["a"][i] == arr(i)).all() for i in range(5))
    for r in (r1, r2, r3, r4):
        r.close()
    assert repo.verify(full=True).ok


def test_pack_numbers_are_never_reused(two_branches):
    repo, _c1, _c2 = two_branches
    top = max(repo._store.pack_numbers())
    repo.remove_branch("dev", force=True)
    gc(repo, threshold=0.0)
    after = repo._store.pack_numbers()
    assert min(after) > top
    co = repo.checkout(write=True)
    co.arraysets["a"][7] = arr(7)
    co.commit("more")
    co.close()
    assert min(repo._store.pack_numbers()) > top
    # everything dead: the newest pack is replaced by an empty one, not reused
    co = repo.checkout(write=True)
    co.arraysets["a"][8] = arr(8)
    co.reset_staging_area()
    gc(repo, threshold=0.0)
    newest = max(repo._store.pack_numbers())
    assert newest > max(after)
    assert repo.verify(full=True).ok


def test_refused_while_a_writer_is_open(written_repo):
    co = written_repo.checkout(write=True)
    with pytest.raises(WriterLockError):
        gc(written_repo)
    with pytest.raises(PermissionError):
        written_repo.gc(dry_run=True)
    co.close()
    assert written_repo.gc().payloads_removed == 0
    # and gc itself leaves no lock behind
    written_repo.checkout(write=True).close()


def test_refused_while_a_writer_is_open_in_another_process(written_repo):
    code = (
        "import sys, time, warnings; warnings.simplefilter('ignore');"
        "from hangar_git import Repository;"
        f"co = Repository({written_repo.path!r}).checkout(write=True);"
        "print('open', flush=True); time.sleep(30)"
    )
    p = subprocess.Popen(["python", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "open"
        with pytest.raises(WriterLockError):
            written_repo.gc()
    finally:
        p.kill()
        p.wait()
    assert written_repo.gc().payloads_removed == 0


def test_refuses_to_drop_anything_when_records_are_damaged(two_branches):
    repo, c1, _c2 = two_branches
    repo.remove_branch("dev", force=True)
    git = repo._git_repo()
    # a branch whose commit names a tree that is not there: what it references is unknown
    data = f"tree {'1' * 40}\nparent {c1}\nauthor t <t@e> 0 +0000\ncommitter t <t@e> 0 +0000\n\nx\n"
    bad = git.odb.write(pygit2.enums.ObjectType.COMMIT, data.encode())
    git.references.create("refs/hangar/heads/broken", bad)
    before = stored(repo)
    with pytest.raises(IntegrityError, match="fsck"):
        gc(repo)
    assert stored(repo) == before
    assert not repo.verify().ok
    repo.checkout(write=True).close()  # no lock left behind


def test_damaged_pack_is_left_in_place(two_branches):
    repo, c1, _c2 = two_branches
    repo.remove_branch("dev", force=True)
    r = repo._store.reader()
    loc = r.locate(array_digest(arr(2)))
    r.close()
    with open(repo._store.pack_path(loc.pack), "r+b") as fh:
        fh.seek(loc.boff + loc.blen - 5)
        fh.write(b"\xff\xff\xff")
    rep = gc(repo, threshold=0.0)
    assert rep.skipped and loc.pack in repo._store.pack_numbers()
    fs = repo.verify()
    assert {(s.arrayset, s.key) for s in fs.damaged} == {("a", 2)}
    rc = repo.checkout(commit=c1)
    for i in (0, 1, 3, 4):
        assert (rc.arraysets["a"][i] == arr(i)).all()
    with pytest.raises(IntegrityError):
        rc.arraysets["a"][2]
    rc.close()


def test_git_objects_are_repacked(written_repo):
    co = written_repo.checkout(write=True)
    for i in range(5):
        co.metadata[f"k{i}"] = str(i)
        co.commit(f"c{i}")
    co.close()

    def counts() -> tuple[int, int]:
        """(loose objects, packs): each commit is written as a pack of its own."""
        out = subprocess.run(
            ["git", "count-objects", "-v"],
            cwd=written_repo.path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out.split("count: ")[1].split()[0]), int(out.split("packs: ")[1].split()[0])

    assert counts()[1] >= 6
    rep = gc(written_repo)
    assert rep.git == "repacked" and counts() == (0, 1)
    assert written_repo.verify(full=True).ok


def test_bad_arguments(written_repo):
    with pytest.raises(ValueError):
        gc(written_repo, dry_run="yes")
    with pytest.raises(ValueError):
        gc(written_repo, threshold=2)
    with pytest.raises(ValueError):
        written_repo.gc(dry_run=1)
    with pytest.raises(ValueError):
        written_repo.verify(full="no")


def test_cli_gc(two_branches, monkeypatch):
    from hangar_git.cli import CONTEXT_SETTINGS, RootGroup, maint

    @click.group(cls=RootGroup, context_settings=CONTEXT_SETTINGS)
    def grp() -> None:
        pass

    maint.register(grp)
    repo, _c1, _c2 = two_branches
    repo.remove_branch("dev", force=True)
    monkeypatch.chdir(repo.path)
    runner = CliRunner()
    res = runner.invoke(grp, ["gc", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would remove 30 unreferenced payloads" in res.output
    assert len(stored(repo)) == 35
    co = repo.checkout(write=True)
    res = runner.invoke(grp, ["gc"])
    assert res.exit_code == 1
    assert res.output.startswith("error: ") and "writer lock" in res.output
    assert len(res.output.strip().splitlines()) == 1
    co.close()
    res = runner.invoke(grp, ["gc"])
    assert res.exit_code == 0 and "removed 30 unreferenced payloads" in res.output
    assert len(stored(repo)) == 5
    res = runner.invoke(grp, ["gc", "-q"])
    assert res.exit_code == 0 and res.output == ""


def test_large_payloads_reclaimed_while_a_reader_reads(repo, monkeypatch):
    from hangar_git.store import chunked

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("l", shape=(9000,), dtype=np.float64)
    a.update({i: arr(i) for i in range(2)})
    keep = co.commit("keep")
    co.close()
    repo.create_branch("dev", keep)
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["l"].update({i: arr(i) for i in range(10, 13)})
    dev = co.commit("dev")
    co.close()
    repo.checkout(write=True).close()
    files = chunked.LargeFiles(repo._store.large_dir)
    assert len(files.numbers()) == 5
    reader = repo.checkout(commit=dev)
    np.testing.assert_array_equal(reader.arraysets["l"][10, :5], arr(10)[:5])  # file open
    repo.remove_branch("dev", force=True)
    rep = gc(repo)
    assert rep.large_files_deleted == 3 and len(files.numbers()) == 2
    assert rep.bytes_reclaimed > 3 * 9000 * 8 * 0.9
    np.testing.assert_array_equal(reader.arraysets["l"][10], arr(10))  # still readable
    reader.close()
    with repo.checkout() as co:
        np.testing.assert_array_equal(co.arraysets["l"][1], arr(1))
    assert repo.verify().ok
    assert gc(repo).large_files_deleted == 0


def test_dry_run_estimate_never_exceeds_what_is_there(repo):
    """Compressible payloads: the estimate of a compacted pack stays under
    the pack's stored size (the raw size of its live items would not)."""
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("z", shape=(50_000,), dtype=np.float64)
    with a:
        for i in range(20):
            a[i] = np.full(50_000, float(i))  # compresses to almost nothing
    co.commit("keep")
    with a:
        for i in range(20, 60):
            a[i] = np.full(50_000, float(i))
    for i in range(20, 60):
        del a[i]
    co.close()
    dry = gc(repo, dry_run=True)
    assert dry.payloads_removed == 40
    assert dry.bytes_after <= dry.bytes_before
    rep = gc(repo)
    assert rep.bytes_after <= dry.bytes_after * 1.5 + 4096
