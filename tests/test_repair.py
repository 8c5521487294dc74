"""`git hangar fsck --repair`: branch refs naming a lost commit go back to the
last whole commit of their reflog, and the staging area on them keeps its
changes; what cannot be restored is noted, never guessed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pygit2
import pytest
from click.testing import CliRunner

from hangar_git import Repository
from hangar_git.cli import main
from hangar_git.errors import CorruptRecordError, WriterLockError
from hangar_git.gitutil import HEADS
from hangar_git.repair import LOST_REFS, damaged_refs


def _pack_of(repo_path: Path, sha: str) -> Path:
    """The pack file holding object ``sha`` (each commit is written as one pack)."""
    for idx in (repo_path / ".git" / "objects" / "pack").glob("*.idx"):
        with idx.open("rb") as f:
            listing = subprocess.run(["git", "show-index"], stdin=f, capture_output=True).stdout
        if sha.encode() in listing:
            return idx.with_suffix(".pack")
    raise AssertionError(f"{sha} is in no pack")


def _lose_commit(repo_path: Path, sha: str) -> Repository:
    """Delete the pack a commit was written as: its objects are gone, as after
    an old race with `git gc --prune=now` or a disk that lost the file.
    Returns the repository opened anew (an open one still maps the pack)."""
    pack = _pack_of(repo_path, sha)
    for suffix in (".pack", ".idx"):
        pack.with_suffix(suffix).unlink()
    return Repository(repo_path)


def _three_commits(repo) -> list[str]:
    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("a", shape=(2,), dtype=np.int64)
    shas = []
    for i in range(3):
        aset[i] = np.full(2, i)
        shas.append(co.commit(f"commit {i}"))
    co.close()
    return shas


def _master(repo_path: Path) -> str:
    git = pygit2.Repository(str(repo_path))
    return str(git.references[HEADS + "master"].target)


def test_lost_head_goes_back_to_its_last_whole_commit(repo, repo_path):
    shas = _three_commits(repo)
    repo = _lose_commit(repo_path, shas[2])
    with pytest.raises(CorruptRecordError, match=r"fsck --repair"):
        repo.checkout(write=True)
    report = repo.repair()
    (fixed,) = report.refs
    assert (fixed.ref, fixed.broken, fixed.restored) == (HEADS + "master", shas[2], shas[1])
    assert "missing" in fixed.problem
    assert _master(repo_path) == shas[1]
    assert "-> " + shas[1] in report.summary()
    co = repo.checkout(write=True)
    assert sorted(co.arraysets["a"].keys()) == [0, 1]
    co.arraysets["a"][5] = np.full(2, 5)
    sha = co.commit("after the repair")
    co.close()
    assert pygit2.Repository(str(repo_path))[sha].parent_ids == [pygit2.Oid(hex=shas[1])]
    assert repo.verify().ok
    assert repo.repair().summary() == "nothing to repair"


def test_staged_changes_on_a_lost_head_are_kept(repo, repo_path):
    shas = _three_commits(repo)
    co = repo.checkout(write=True)
    co.arraysets["a"][9] = np.full(2, 9)
    co.metadata["note"] = "staged"
    co.close()
    repo = _lose_commit(repo_path, shas[2])
    report = repo.repair()
    assert report.journal_copy is not None and Path(report.journal_copy).exists()
    co = repo.checkout(write=True)
    assert co.arraysets["a"][9].tolist() == [9, 9]
    assert co.metadata["note"] == "staged"
    assert 2 not in co.arraysets["a"]  # the lost commit's sample is gone with it
    sha = co.commit("staged work, kept")
    co.close()
    reader = repo.checkout(commit=sha)
    assert sorted(reader.arraysets["a"].keys()) == [0, 1, 9]
    reader.close()


def test_ref_without_a_whole_commit_in_its_reflog_is_deleted_and_noted(repo, repo_path):
    shas = _three_commits(repo)
    git = pygit2.Repository(str(repo_path))
    # a branch set by another tool, without a reflog, at a blob
    blob = git.create_blob(b"not a commit")
    git.references.create(HEADS + "odd", blob)
    report = repo.repair()
    (fixed,) = report.refs
    assert fixed.restored is None and fixed.broken == str(blob)
    assert HEADS + "odd" not in pygit2.Repository(str(repo_path)).references
    lost = (repo_path / ".git" / "hangar" / LOST_REFS).read_text()
    assert f"{HEADS}odd\t{blob}" in lost
    assert _master(repo_path) == shas[2]  # sound refs are untouched


def test_dry_run_changes_nothing(repo, repo_path):
    shas = _three_commits(repo)
    repo = _lose_commit(repo_path, shas[2])
    journal = repo._journal_path().read_bytes()
    report = repo.repair(dry_run=True)
    assert report.refs[0].restored == shas[1]
    assert "dry run" in report.summary()
    assert _master(repo_path) == shas[2]
    assert repo._journal_path().read_bytes() == journal
    assert damaged_refs(pygit2.Repository(str(repo_path)))


def test_repair_is_refused_beside_a_write_checkout(repo):
    _three_commits(repo)
    co = repo.checkout(write=True)
    try:
        with pytest.raises(WriterLockError):
            repo.repair()
    finally:
        co.close()


def test_cli_fsck_repair(repo, repo_path, monkeypatch):
    shas = _three_commits(repo)
    repo = _lose_commit(repo_path, shas[2])
    monkeypatch.chdir(repo_path)
    runner = CliRunner()
    broken = runner.invoke(main, ["fsck"])
    assert broken.exit_code != 0
    dry = runner.invoke(main, ["fsck", "--repair", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"{shas[2]} -> {shas[1]}" in dry.output and "dry run" in dry.output
    assert _master(repo_path) == shas[2]
    fixed = runner.invoke(main, ["fsck", "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert f"{shas[2]} -> {shas[1]}" in fixed.output
    assert _master(repo_path) == shas[1]
    assert runner.invoke(main, ["fsck", "--dry-run"]).exit_code == 2


def test_lost_payload_index_is_rebuilt(repo, repo_path, monkeypatch):
    """index.sqlite deleted (or cut short): fsck --repair rebuilds it from the
    packs' manifests and every sample reads back; the old file is kept."""
    shas = _three_commits(repo)
    store = repo_path / ".git" / "hangar" / "store"
    index = store / "index.sqlite"
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    for side in ("-wal", "-shm"):
        (store / f"index.sqlite{side}").unlink(missing_ok=True)
    broken = Repository(repo_path)
    monkeypatch.chdir(repo_path)
    res = CliRunner().invoke(main, ["fsck", "--repair"])
    assert res.exit_code == 0, res.output
    assert "payload index rebuilt" in res.output
    assert list(store.glob("index.sqlite.broken-*"))
    with broken.checkout(commit=shas[2]) as co:
        assert [co.arraysets["a"][k].tolist() for k in range(3)] == [[0, 0], [1, 1], [2, 2]]
    assert Repository(repo_path).repair().summary() == "nothing to repair"
