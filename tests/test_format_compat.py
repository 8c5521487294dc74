"""Repositories written in every released record format open and read bit for bit.

The fixtures in ``tests/fixtures`` were written by ``make_fixtures.py``; each
comes with a manifest of its branch heads and, per commit, its samples (dtype,
shape, SHA-256 of the bytes) and metadata. A failure here means a change broke
reading data already in users' repositories.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hangar_git import Repository
from hangar_git.gitutil import branch_head, list_branches, read_raw
from hangar_git.records.layout import FORMAT_VERSION, parse_tree

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_fixtures import array_for, sample_line  # noqa: E402

ARCHIVES = sorted(FIXTURES.glob("format*-*.tar.gz"))


def test_fixtures_exist_for_the_current_format():
    formats = {int(p.name.split("-")[0][len("format") :]) for p in ARCHIVES}
    assert formats == set(range(1, FORMAT_VERSION + 1))
    for p in ARCHIVES:
        assert p.stat().st_size < 100_000, f"{p.name}: keep fixtures small"


def open_fixture(archive: Path, tmp_path: Path) -> tuple[Repository, dict]:
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    manifest = json.loads(archive.with_name(archive.name.replace(".tar.gz", ".json")).read_text())
    return Repository(tmp_path / archive.name.replace(".tar.gz", "")), manifest


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_reads_bit_for_bit(archive, tmp_path):
    repo, manifest = open_fixture(archive, tmp_path)
    fmt = manifest["format"]
    git = repo._git_repo()
    assert {b: branch_head(git, b) for b in list_branches(git)} == manifest["heads"]
    for sha, want in manifest["commits"].items():
        root = parse_tree(read_raw(git, git.get(sha).tree_id.raw))
        assert json.loads(read_raw(git, root["hangar.json"][1])) == {"hangar_git_format": fmt}
        co = repo.checkout(commit=sha)
        lines = []
        for aset in sorted(co.arraysets):
            keys = sorted(co.arraysets[aset], key=lambda k: (isinstance(k, str), k))
            got = co.arraysets[aset].get_batch(keys)
            for key, arr in zip(keys, got, strict=True):
                single = co.arraysets[aset][key]
                assert single.tobytes() == arr.tobytes()
                line = sample_line(aset, key, arr)
                lines.append(line)
                exp = array_for(aset, "a2" if _after_second(git, sha, aset, key) else key)
                assert arr.dtype == exp.dtype and arr.shape == exp.shape
                assert arr.tobytes() == exp.tobytes(), f"{archive.name} {sha} {aset}[{key!r}]"
        assert len(lines) == want["count"]
        assert hashlib.sha256(json.dumps(lines).encode()).hexdigest() == want["all"]
        if "samples" in want:
            assert lines == want["samples"]
        meta = sorted([[k, v] for k, v in co.metadata.items()], key=lambda t: str(t[0]))
        assert meta == want["metadata"]
        co.close()
    rep = repo.verify(full=True)
    assert rep.ok, rep.summary()
    assert rep.commits == len(manifest["commits"])


def _after_second(git, sha: str, aset: str, key) -> bool:
    """In the basic fixture, images['a'] holds array_for('images', 'a2') from 'second' on."""
    if aset != "images" or key != "a":
        return False
    seen = [sha]
    while seen:
        c = git.get(seen.pop())
        if c.message.startswith("second"):
            return True
        seen.extend(str(p) for p in c.parent_ids)
    return False


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_writes_on_top_of_an_old_repository(archive, tmp_path):
    repo, _ = open_fixture(archive, tmp_path)
    co = repo.checkout(write=True, branch="master")
    name = sorted(co.arraysets)[0]
    aset = co.arraysets[name]
    before = {k: aset[k].tobytes() for k in aset}
    proto = aset[next(iter(aset))]
    aset["added-later"] = np.zeros_like(proto)
    sha = co.commit("on top of a format-1 repository")
    co.close()
    rc = repo.checkout(commit=sha)
    after = rc.arraysets[name]
    assert {k: after[k].tobytes() for k in after if k != "added-later"} == before
    rc.close()
    assert repo.verify(full=True).ok
