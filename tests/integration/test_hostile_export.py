"""Export of records someone else pushed: no name may write outside the output folder.

A commit is crafted from raw git trees (sample keys ``s:../../x/rel`` and
``s:/abs/path``, an arrayset named ``../../pwn``), pushed with plain ``git
push``, fetched the way users fetch, and exported in every format, through
the API and the CLI. The refusal must be clean (a ValueError) and the bytes
written outside the output folder must be 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hangar_git.cli import main
from hangar_git.io_formats import export_arrays
from hangar_git.safe_paths import UnsafePathError, check_component, child_path

try:
    from .hostile_support import bytes_under, files_under, git_push_ref, hostile_commit
    from .remotes_support import bare_repo, empty_clone_target, make_repo
except ImportError:
    from hostile_support import (  # type: ignore[no-redef]
        bytes_under,
        files_under,
        git_push_ref,
        hostile_commit,
    )
    from remotes_support import bare_repo, empty_clone_target, make_repo  # type: ignore


@pytest.fixture
def world(tmp_path: Path):
    """Alice pushes legit data; Mallory pushes hostile commits with plain git;
    Bob clones and fetches them. Exports go to ``zone/a/b/out``; the escapes
    aim at ``zone``, whose bytes outside ``out`` must stay 0."""
    alice = make_repo(tmp_path / "alice", n=4)
    bare = bare_repo(tmp_path / "origin.git")
    data = tmp_path / "data"
    alice.remote.add("origin", str(bare), data=str(data))
    alice.remote.push("origin", "master")
    git = alice._git_repo()
    base = str(git.references["refs/hangar/heads/master"].target)
    zone = tmp_path / "zone"
    out = zone / "a" / "b" / "out"
    evil_keys = {
        "s:../../../escaped_rel": "i:0",
        "s:" + str(zone / "escaped_abs"): "i:1",
        "s:..": "i:2",
    }
    keys_commit = hostile_commit(git, base, "images", evil_keys)
    git_push_ref(Path(git.path), bare, keys_commit, "evil-keys")
    aset_commit = hostile_commit(git, base, "labels", {}, rename_arrayset="../../../pwn")
    git_push_ref(Path(git.path), bare, aset_commit, "evil-aset")

    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=str(data))
    bob.remote.fetch("origin", "evil-keys")
    bob.remote.fetch("origin", "evil-aset")
    bob.remote.fetch_data("origin", "master")
    zone.mkdir()
    return bob, out, zone, {"keys": keys_commit, "aset": aset_commit}


def _outside(zone: Path, out: Path) -> list[Path]:
    return [p for p in files_under(zone) if out not in p.parents]


def _export(repo, commit: str, arrayset: str, out: Path, fmt: str) -> None:
    co = repo.checkout(commit=commit)
    try:
        names = list(co.arraysets.keys())
        name = next(n for n in names if n == arrayset or n.endswith(arrayset))
        export_arrays(co.arraysets[name], out, fmt, overwrite=True)
    finally:
        co.close()


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5"])
def test_hostile_sample_keys_cannot_escape_export(world, fmt):
    bob, out, zone, commits = world
    with pytest.raises(ValueError, match=r"plain file name|refused|invalid|malformed"):
        _export(bob, commits["keys"], "images", out, fmt)
    assert _outside(zone, out) == []
    assert bytes_under(zone) - bytes_under(out) == 0
    assert not (zone / "escaped_abs.npy").exists()


@pytest.mark.parametrize("fmt", ["npz", "hdf5"])
def test_hostile_arrayset_name_cannot_escape_export(world, fmt):
    bob, out, zone, commits = world
    with pytest.raises(ValueError, match=r"plain file name|refused|invalid|malformed"):
        _export(bob, commits["aset"], "pwn", out, fmt)
    assert _outside(zone, out) == []
    assert bytes_under(zone) == 0


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5"])
def test_cli_export_of_hostile_keys_refused_cleanly(world, fmt):
    bob, out, zone, commits = world
    old = os.getcwd()
    os.chdir(bob.path)
    try:
        res = CliRunner().invoke(
            main,
            ["export", "images", commits["keys"], "-o", str(out), "--format", fmt, "--overwrite"],
            prog_name="git hangar",
        )
    finally:
        os.chdir(old)
    assert res.exit_code != 0
    assert any(w in res.output for w in ("plain file name", "invalid", "malformed")), res.output
    assert "Traceback" not in res.output
    assert _outside(zone, out) == []
    assert bytes_under(zone) - bytes_under(out) == 0


class _HostileReader:
    """What a checkout would hand export if hostile names got past the records
    layer: the path-level check must hold on its own."""

    def __init__(self, name: str, keys: list) -> None:
        self.name = name
        self._keys = keys

    def keys(self):
        return iter(self._keys)

    def items(self):
        for k in self._keys:
            yield k, np.arange(4, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._keys)


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5"])
@pytest.mark.parametrize(
    "name,keys",
    [
        ("images", ["ok", "../../../escaped_rel"]),
        ("images", ["ok", "ABS"]),
        ("images", [".."]),
        ("../../../pwn", ["ok"]),
        ("/abs/pwn", ["ok"]),
    ],
)
def test_export_path_check_holds_without_record_validation(tmp_path, fmt, name, keys):
    zone = tmp_path / "zone"
    out = zone / "a" / "b" / "out"
    zone.mkdir()
    keys = [str(zone / "escaped_abs") if k == "ABS" else k for k in keys]
    if name.startswith("/"):
        name = str(zone / "pwn")
    if fmt == "npy" and all(k == "ok" for k in keys):
        # .npy files are named after their keys only: the hostile arrayset name
        # decides no path, and the export writes its one file inside ``out``
        files = export_arrays(_HostileReader(name, keys), out, fmt, overwrite=True)  # type: ignore
        assert files == [out.resolve() / "ok.npy"]
        assert files_under(zone) == [out / "ok.npy"]
        return
    with pytest.raises(UnsafePathError, match="plain file name"):
        export_arrays(_HostileReader(name, keys), out, fmt, overwrite=True)  # type: ignore
    assert files_under(zone) == []
    assert bytes_under(zone) == 0


def test_legit_export_still_writes_every_sample(world):
    bob, out, zone, _ = world
    co = bob.checkout()
    try:
        files = export_arrays(co.arraysets["images"], out, "npy")
        assert len(files) == 4 and all(f.parent == out.resolve() for f in files)
        np.testing.assert_array_equal(np.load(files[0]), co.arraysets["images"][0])
    finally:
        co.close()
    assert _outside(zone, out) == []


def test_symlink_planted_in_output_folder_is_not_followed(world, tmp_path):
    """A link in the output folder, as a target or as the temporary name
    beside it, pointing outside: refused or replaced, never written through."""
    bob, out, zone, _ = world
    out.mkdir(parents=True)
    victim = zone / "victim.bin"
    victim.write_bytes(b"precious")
    (out / "0.npy").symlink_to(victim)
    (out / f".1.npy.tmp-{os.getpid()}").symlink_to(zone / "through_tmp.bin")
    (out / f".images.npz.tmp-{os.getpid()}").symlink_to(zone / "through_tmp.bin")
    co = bob.checkout()
    try:
        with pytest.raises(UnsafePathError, match="leads outside"):
            export_arrays(co.arraysets["images"], out, "npy", overwrite=True)
        (out / "0.npy").unlink()
        export_arrays(co.arraysets["images"], out, "npy", overwrite=True)
        export_arrays(co.arraysets["images"], out, "npz", overwrite=True)
    finally:
        co.close()
    assert victim.read_bytes() == b"precious"
    assert not (zone / "through_tmp.bin").exists()
    assert _outside(zone, out) == [victim]


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "../x", "/abs", "a\\b", "c:x", "nul\x00", "tab\tx", "x" * 256],
)
def test_check_component_refuses(name):
    with pytest.raises(UnsafePathError):
        check_component(name)


def test_child_path_accepts_plain_names(tmp_path):
    assert child_path(tmp_path, "img_001.npy") == tmp_path.resolve() / "img_001.npy"
    (tmp_path / "inner").mkdir()
    (tmp_path / "link.npy").symlink_to(tmp_path / "inner" / "x.npy")
    assert child_path(tmp_path, "link.npy") == tmp_path.resolve() / "link.npy"
    (tmp_path / "out.npy").symlink_to("/etc/passwd")
    with pytest.raises(UnsafePathError):
        child_path(tmp_path, "out.npy")
