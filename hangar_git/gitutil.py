"""Thin helpers over pygit2: where hangar's state lives, identity, refs.

Hangar never touches the user's HEAD, index or work tree: data history lives
on ``refs/hangar/heads/<branch>`` and hangar's local state in
``<common git dir>/hangar/``.
"""

from __future__ import annotations

import hashlib
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


#: the way out named by errors about a broken ref
REPAIR_HINT = " (`git hangar fsck --repair` moves it back to its last whole commit)"

_TYPE_NAMES = {
    ObjectType.TREE: "a tree",
    ObjectType.BLOB: "a blob",
    ObjectType.TAG: "an annotated tag",
}


def move_branch(repo: pygit2.Repository, name: str, target: str, message: str) -> None:
    """Point hangar branch ``name`` at commit ``target``, logging the move.

    Every move is appended to the branch's reflog
    (``git reflog refs/hangar/heads/<name>``), as git logs its own branches:
    it keeps earlier heads reachable for ``git gc`` and lets
    :func:`hangar_git.fsck.repair_branches` find the last good head of a
    damaged branch.
    """
    ref = branch_ref(name)
    log = common_dir(repo) / "logs" / ref
    if not log.exists():
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
    repo.create_reference_direct(ref, pygit2.Oid(hex=target), True, message=message)


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
        raise CorruptRecordError(
            f"ref {refname} is symbolic (to {target}), not a commit{REPAIR_HINT}"
        )
    try:
        kind = repo.odb.read_header(target)[0]
    except (KeyError, ValueError, pygit2.GitError):
        raise CorruptRecordError(
            f"ref {refname} points at a missing object {target}{REPAIR_HINT}"
        ) from None
    if kind != ObjectType.COMMIT:
        what = _TYPE_NAMES.get(kind, "no commit")
        raise CorruptRecordError(
            f"ref {refname} points at {what} ({target}), not a commit{REPAIR_HINT}"
        )
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


_IDENTITY_KEYS = ("user.name", "user.email")


def _identity_from(configs: list[pygit2.Config]) -> tuple[str | None, str | None]:
    """The first ``user.name`` and ``user.email`` found in ``configs``, in order."""
    out: list[str | None] = [None, None]
    for cfg in configs:
        for i, key in enumerate(_IDENTITY_KEYS):
            if out[i] is None:
                try:
                    out[i] = cfg[key]
                except KeyError:
                    pass
    return out[0], out[1]


def _outer_configs() -> list[pygit2.Config] | None:
    """The global and system config files as git reads them when the
    environment names them (``GIT_CONFIG_GLOBAL``; ``GIT_CONFIG_NOSYSTEM``),
    which libgit2 does not honour; None when it names none."""
    path = os.environ.get("GIT_CONFIG_GLOBAL")
    if path is None:
        return None
    out: list[pygit2.Config] = []
    try:
        if os.path.isfile(path):
            out.append(pygit2.Config(path))
    except (OSError, pygit2.GitError):
        pass
    if os.environ.get("GIT_CONFIG_NOSYSTEM", "").lower() not in ("1", "true", "yes", "on"):
        try:
            out.append(pygit2.Config.get_system_config())
        except (OSError, KeyError, pygit2.GitError):
            pass
    return out


def config_identity(repo: pygit2.Repository) -> tuple[str | None, str | None]:
    """``user.name`` and ``user.email`` from git config, None where unset.

    Read as git reads them: the repository's own config first, then the global
    file, which is ``GIT_CONFIG_GLOBAL`` when that is set (so an identity set
    only there is found, and a home ``.gitconfig`` it replaces is not).
    """
    outer = _outer_configs()
    if outer is None:
        return _identity_from([repo.config])
    local: list[pygit2.Config] = []
    try:
        local.append(pygit2.Config(str(common_dir(repo) / "config")))
    except (OSError, pygit2.GitError):
        pass
    return _identity_from(local + outer)


def config_identity_outside_repo() -> tuple[str | None, str | None]:
    """``user.name`` and ``user.email`` a new repository would see: from the
    global (``GIT_CONFIG_GLOBAL`` when set), XDG and system git config files,
    in that order of precedence."""
    outer = _outer_configs()
    if outer is not None:
        return _identity_from(outer)
    configs: list[pygit2.Config] = []
    for get in (
        pygit2.Config.get_global_config,
        pygit2.Config.get_xdg_config,
        pygit2.Config.get_system_config,
    ):
        try:
            configs.append(get())
        except (OSError, KeyError, pygit2.GitError):
            continue
    return _identity_from(configs)


def code_head(repo: pygit2.Repository) -> str | None:
    """The user's code commit (git ``HEAD``), None when unborn or bare."""
    try:
        if repo.head_is_unborn:
            return None
        return str(repo.head.target)
    except (pygit2.GitError, KeyError):
        return None


class ObjectBatch:
    """Git objects written for one commit, held in memory until published.

    While a batch is open for a repository (:func:`open_batch`), the object
    writers here and in :mod:`hangar_git.records.objpack` hash and keep the
    objects instead of writing loose files, and :func:`read_raw` sees them.
    ``records.objpack.publish`` then writes them all as one pack guarded by a
    ``.keep`` file, so that ``git gc --prune=now`` running beside the commit
    can never delete an object the branch is about to name.
    """

    def __init__(self) -> None:
        self.objects: dict[bytes, tuple[int, bytes]] = {}
        #: the ``.keep`` file of the published pack, removed when the batch ends
        self.keep: Path | None = None

    def add(self, kind: int, data: bytes) -> bytes:
        """Hold one object (``kind`` is git's pack type number); returns its raw id."""
        oid = object_id(kind, data)
        self.objects.setdefault(oid, (kind, data))
        return oid

    def get(self, oid: bytes) -> bytes | None:
        """Data of a held object, or None."""
        held = self.objects.get(oid)
        return held[1] if held is not None else None


_BATCHES: dict[int, ObjectBatch] = {}
#: git's pack type numbers
TYPE_COMMIT, TYPE_TREE, TYPE_BLOB = 1, 2, 3
_PACK_TYPE_NAMES = {TYPE_COMMIT: b"commit", TYPE_TREE: b"tree", TYPE_BLOB: b"blob"}


def object_id(kind: int, data: bytes) -> bytes:
    """Raw SHA-1 id of a git object of pack type ``kind``."""
    return hashlib.sha1(_PACK_TYPE_NAMES[kind] + b" %d\x00" % len(data) + data).digest()


def open_batch(repo: pygit2.Repository) -> ObjectBatch:
    """Start holding the objects written for ``repo`` (see :class:`ObjectBatch`)."""
    if id(repo) in _BATCHES:
        raise RuntimeError("an object batch is already open for this repository")
    batch = _BATCHES[id(repo)] = ObjectBatch()
    return batch


def close_batch(repo: pygit2.Repository) -> None:
    """Stop holding objects for ``repo``; later writes go to git directly."""
    _BATCHES.pop(id(repo), None)


def open_batch_of(repo: pygit2.Repository) -> ObjectBatch | None:
    """The batch open for ``repo``, if any."""
    return _BATCHES.get(id(repo)) if _BATCHES else None


def _held(repo: pygit2.Repository, oid: bytes | str | pygit2.Oid) -> tuple[int, bytes] | None:
    batch = open_batch_of(repo)
    if batch is None:
        return None
    return batch.objects.get(oid if isinstance(oid, bytes) else bytes.fromhex(str(oid)))


def odb_read(repo: pygit2.Repository, oid: bytes | str | pygit2.Oid) -> tuple[int, bytes]:
    """``(type, data)`` of an object, held ones included (see :class:`ObjectBatch`).

    Raises git's own errors (``KeyError``, ``GitError``) for a missing object.
    """
    held = _held(repo, oid)
    if held is not None:
        return held
    return repo.odb.read(_as_oid(oid))  # type: ignore[no-any-return]


def odb_read_header(repo: pygit2.Repository, oid: bytes | str | pygit2.Oid) -> tuple[int, int]:
    """``(type, size)`` of an object without inflating it, held ones included."""
    held = _held(repo, oid)
    if held is not None:
        return held[0], len(held[1])
    return repo.odb.read_header(_as_oid(oid))  # type: ignore[no-any-return]


def _as_oid(oid: bytes | str | pygit2.Oid) -> pygit2.Oid:
    if isinstance(oid, bytes):
        return pygit2.Oid(raw=oid)
    if isinstance(oid, str):
        return pygit2.Oid(hex=oid)
    return oid


def read_raw(repo: pygit2.Repository, oid: bytes | str | pygit2.Oid) -> bytes:
    """Raw data of an object by id (held ones included)."""
    try:
        return odb_read(repo, oid)[1]
    except (KeyError, pygit2.GitError):
        raise CorruptRecordError(f"git object {_as_oid(oid)} is missing") from None


def write_tree(repo: pygit2.Repository, data: bytes) -> bytes:
    """Write a raw tree object (into the open batch, if any); returns its raw id."""
    batch = open_batch_of(repo)
    if batch is not None:
        return batch.add(TYPE_TREE, data)
    return repo.odb.write(ObjectType.TREE, data).raw


def write_commit_object(
    repo: pygit2.Repository,
    sig: pygit2.Signature,
    message: str,
    tree: bytes,
    parents: list[str],
) -> str:
    """Write a commit object (into the open batch, if any); returns its hex id."""
    batch = open_batch_of(repo)
    if batch is None:
        parent_oids = [pygit2.Oid(hex=p) for p in parents]
        return str(repo.create_commit(None, sig, sig, message, pygit2.Oid(raw=tree), parent_oids))
    return batch.add(TYPE_COMMIT, commit_bytes(sig, message, tree, parents)).hex()


def commit_bytes(sig: pygit2.Signature, message: str, tree: bytes, parents: list[str]) -> bytes:
    """The raw commit object libgit2 writes for these fields (author = committer).

    Built here because libgit2 formats a commit only when its tree already
    is in the object database, and a held commit's tree is not yet.
    """
    off = sig.offset
    stamp = b"%s <%s> %d %s%02d%02d" % (
        sig.raw_name,
        sig.raw_email,
        sig.time,
        b"-" if off < 0 else b"+",
        abs(off) // 60,
        abs(off) % 60,
    )
    lines = [b"tree " + tree.hex().encode()]
    lines += [b"parent " + p.encode("ascii") for p in parents]
    lines += [b"author " + stamp, b"committer " + stamp]
    return b"\n".join(lines) + b"\n\n" + message.encode("utf-8")


def write_blob(repo: pygit2.Repository, data: bytes) -> bytes:
    """Write a blob object (into the open batch, if any); returns its raw id."""
    batch = open_batch_of(repo)
    if batch is not None:
        return batch.add(TYPE_BLOB, data)
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
