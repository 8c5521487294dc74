"""Hostile objects for the remote tests, built by the tests themselves: git
commits whose records name files outside their place, pushed with plain
``git push`` the way anyone with push access could."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2

from hangar_git.records.layout import MODE_TREE, parse_tree, serialize_links, serialize_tree


def _write_tree(git: pygit2.Repository, entries: dict[str, tuple[bytes, bytes]]) -> bytes:
    return git.odb.write(pygit2.enums.ObjectType.TREE, serialize_tree(entries)).raw


def _read_tree(git: pygit2.Repository, oid: bytes) -> dict[str, tuple[bytes, bytes]]:
    return parse_tree(git.odb.read(pygit2.Oid(raw=oid))[1])


def hostile_commit(
    git: pygit2.Repository,
    base_commit: str,
    arrayset: str,
    extra_keys: dict[str, str],
    rename_arrayset: str | None = None,
) -> str:
    """A child of ``base_commit`` whose flat ``arrayset`` leaf also holds the
    encoded keys of ``extra_keys`` (``{hostile encoded key: existing encoded
    key whose digest it reuses}``), and optionally with the arrayset renamed
    to ``rename_arrayset`` (a tree entry name that may hold ``/``)."""
    commit = git.get(base_commit)
    root = _read_tree(git, commit.tree_id.raw)
    asets = _read_tree(git, root["arraysets"][1])
    aset = _read_tree(git, asets[arrayset][1])
    from hangar_git.records.layout import parse_links

    links = parse_links(git.odb.read(pygit2.Oid(raw=aset["samples"][1]))[1])
    for bad, like in extra_keys.items():
        links[bad] = links[like]
    samples = git.odb.write(pygit2.enums.ObjectType.TREE, serialize_links(links)).raw
    aset["samples"] = (MODE_TREE, samples)
    aset_oid = _write_tree(git, aset)
    if rename_arrayset is not None:
        del asets[arrayset]
        asets[rename_arrayset] = (MODE_TREE, aset_oid)
    else:
        asets[arrayset] = (MODE_TREE, aset_oid)
    root["arraysets"] = (MODE_TREE, _write_tree(git, asets))
    root.pop("changes", None)  # a hint only: the trees are the truth
    tree = _write_tree(git, root)
    sig = pygit2.Signature("Mallory", "mallory@example.org")
    oid = git.create_commit(None, sig, sig, "innocent update", pygit2.Oid(raw=tree), [commit.id])
    return str(oid)


def git_push_ref(git_dir: Path, bare: Path, commit: str, branch: str) -> None:
    """Point ``refs/hangar/heads/<branch>`` at ``commit`` and push it with plain git."""
    ref = f"refs/hangar/heads/{branch}"
    subprocess.run(["git", "--git-dir", str(git_dir), "update-ref", ref, commit], check=True)
    subprocess.run(
        ["git", "--git-dir", str(git_dir), "push", "-q", str(bare), f"{ref}:{ref}"],
        check=True,
        capture_output=True,
    )


def bytes_under(root: Path) -> int:
    """Bytes of every file below ``root`` (0 when it does not exist)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def files_under(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _, fs in os.walk(root) for f in fs)
