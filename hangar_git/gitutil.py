"""Thin helpers over pygit2: where hangar's state lives, identity, refs.

Hangar never touches the user's HEAD, index or work tree: data history lives
on ``refs/hangar/heads/<branch>`` and hangar's local state in
``<common git dir>/hangar/``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from .errors import CorruptRecordError
from .naming import check_branch_name

HEADS = "refs/hangar/heads/"
REMOTES = "refs/hangar/remotes/"

pygit2.settings.cache_object_limit(ObjectType.TREE, 64 * 1024)
pygit2.settings.cache_max_size(256 * 1024 * 1024)

_HEX_RE = re.compile(r"[0-9a-fA-F]{4,40}")


def discover(path: str | os.PathLike[str]) -> str | None:
    """Path of the git dir of the repository containing ``path``, if any."""
    try:
        found = pygit2.discover_repository(str(path))
    except (KeyError, pygit2.GitError):
        return None
    return found


def common_dir(repo: pygit2.Repository) -> Path:
    """The common git dir (shared by linked worktrees)."""
    gitdir = Path(repo.path)
    cd = gitdir / "commondir"
    if cd.is_file():
        target = Path(cd.read_text().strip())
        return (gitdir / target).resolve() if not target.is_absolute() else target
    return gitdir


def branch_ref(name: str) -> str:
    return HEADS + check_branch_name(name)


def branch_head(repo: pygit2.Repository, name: str) -> str | None:
    """Commit hash at the head of hangar branch ``name``, None if unborn.

    Raises
    ------
    CorruptRecordError
        If the branch ref is symbolic or points at anything but a commit
        (a tree, a blob, an annotated tag, a missing object).
    """
    return ref_commit(repo, HEADS + name)


_TYPE_NAMES = {
    ObjectType.TREE: "a tree",
    ObjectType.BLOB: "a blob",
    ObjectType.TAG: "an annotated tag",
}


def ref_commit(repo: pygit2.Repository, refname: str) -> str | None:
    """Commit hash a hangar ref points at, None when the ref does not exist.

    Raises
    ------
    CorruptRecordError
        If the ref is symbolic or points at anything but a commit.
    """
    try:
        ref = repo.references.get(refname)
    except (ValueError, pygit2.GitError) as exc:
        raise CorruptRecordError(f"ref {refname} is unreadable: {exc}") from None
    if ref is None:
        return None
    target = ref.target
    if not isinstance(target, pygit2.Oid):
        raise CorruptRecordError(f"ref {refname} is symbolic (to {target}), not a commit")
    try:
        kind = repo.odb.read_header(target)[0]
    except (KeyError, ValueError, pygit2.GitError):
        raise CorruptRecordError(f"ref {refname} points at a missing object {target}") from None
    if kind != ObjectType.COMMIT:
        what = _TYPE_NAMES.get(kind, "no commit")
        raise CorruptRecordError(f"ref {refname} points at {what} ({target}), not a commit")
    return str(target)


def list_branches(repo: pygit2.Repository, remotes: bool = False) -> list[str]:
    """Names of hangar branches (``remote/branch`` for remote-tracking ones)."""
    out = []
    for name in repo.references:
        if name.startswith(HEADS):
            out.append(name[len(HEADS) :])
        elif remotes and name.startswith(REMOTES):
            out.append(name[len(REMOTES) :])
    return sorted(out)


def resolve_commit(repo: pygit2.Repository, spec: str) -> str:
    """Full hash of a commit given by (a unique prefix of) its hash.

    Raises
    ------
    ValueError
        If no hangar commit matches.
    """
    if not isinstance(spec, str) or not _HEX_RE.fullmatch(spec):
        raise ValueError(f"not a commit hash: {spec!r}")
    try:
        obj = repo.revparse_single(spec) if len(spec) < 40 else repo.get(spec)
    except (KeyError, ValueError, pygit2.GitError):
        obj = None
    if obj is None or obj.type != ObjectType.COMMIT:
        raise ValueError(f"no commit {spec!r} in this repository")
    return str(obj.id)


def signature(name: str, email: str) -> pygit2.Signature:
    offset = -(time.altzone if time.localtime().tm_isdst > 0 else time.timezone) // 60
    return pygit2.Signature(name, email, int(time.time()), offset)


def config_identity(repo: pygit2.Repository) -> tuple[str | None, str | None]:
    """``user.name`` and ``user.email`` from git config, None where unset."""
    cfg = repo.config
    out: list[str | None] = []
    for key in ("user.name", "user.email"):
        try:
            out.append(cfg[key])
        except KeyError:
            out.append(None)
    return out[0], out[1]


def config_identity_outside_repo() -> tuple[str | None, str | None]:
    """``user.name`` and ``user.email`` a new repository would see: from the
    global, XDG and system git config files (in that order of precedence)."""
    out: list[str | None] = [None, None]
    for get in (
        pygit2.Config.get_global_config,
        pygit2.Config.get_xdg_config,
        pygit2.Config.get_system_config,
    ):
        try:
            cfg = get()
        except (OSError, KeyError, pygit2.GitError):
            continue
        for i, key in enumerate(("user.name", "user.email")):
            if out[i] is None:
                try:
                    out[i] = cfg[key]
                except KeyError:
                    pass
    return out[0], out[1]


def code_head(repo: pygit2.Repository) -> str | None:
    """The user's code commit (git ``HEAD``), None when unborn or bare."""
    try:
        if repo.head_is_unborn:
            return None
        return str(repo.head.target)
    except (pygit2.GitError, KeyError):
        return None


def read_raw(repo: pygit2.Repository, oid: bytes | str | pygit2.Oid) -> bytes:
    """Raw data of an object by id."""
    if isinstance(oid, bytes):
        oid = pygit2.Oid(raw=oid)
    elif isinstance(oid, str):
        oid = pygit2.Oid(hex=oid)
    try:
        return repo.odb.read(oid)[1]
    except (KeyError, pygit2.GitError):
        raise CorruptRecordError(f"git object {oid} is missing") from None


def write_tree(repo: pygit2.Repository, data: bytes) -> bytes:
    return repo.odb.write(ObjectType.TREE, data).raw


def write_blob(repo: pygit2.Repository, data: bytes) -> bytes:
    return repo.odb.write(ObjectType.BLOB, data).raw


EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")


def has_remote_source(repo: pygit2.Repository) -> bool:
    """True when a payload absent here may be on a remote.

    That is: the repository has remote-tracking hangar refs, or a data remote
    configured (``remote.<name>.hangar-data``). Without either, a payload a
    commit references but the store lacks is lost, not remote.
    """
    if any(name.startswith(REMOTES) for name in repo.references):
        return True
    try:
        return any(
            e.name.startswith("remote.") and e.name.endswith(".hangar-data") for e in repo.config
        )
    except (pygit2.GitError, OSError):
        return False


def clear_stale_ref_locks(repo: pygit2.Repository, grace: float = 1.0) -> list[Path]:
    """Remove ref lock files a killed process left on hangar branches.

    A ``refs/hangar/heads/<branch>.lock`` left by a process killed while it
    moved a branch would block every later commit on that branch. Call this
    only while holding the writer lock (the only holder of those locks for
    more than an instant); a lock younger than ``grace`` seconds is given
    that long to go away first. Returns the lock files removed.
    """
    root = common_dir(repo) / "refs" / "hangar" / "heads"
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for lock in root.rglob("*.lock"):
        deadline = time.monotonic() + grace
        try:
            while time.time() - lock.stat().st_mtime < grace and time.monotonic() < deadline:
                time.sleep(0.02)
            lock.unlink()
        except FileNotFoundError:
            continue
        removed.append(lock)
    return removed
