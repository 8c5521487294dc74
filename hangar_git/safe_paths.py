"""Paths named from outside: the one checked way to turn a name into a file.

Nothing from outside decides a path on disk without this module: a sample
key or arrayset name read from records someone else pushed (export), an
object name in a data remote's listing, a pack id, a fetched file's name.
Each such name must be a plain single path component (no separator, not
``.`` or ``..``, no NUL or control character, not absolute, no drive), and
the path made from it must resolve inside its folder, symlinks included:
a link planted in the target folder that points elsewhere is refused, not
followed.

Refusals raise :class:`UnsafePathError`, a
:class:`~hangar_git.errors.CorruptRecordError` (so a ``ValueError`` and a
:class:`~hangar_git.errors.HangarError`), before anything is written.

Reads of a data remote that is a local folder go through
:func:`open_regular`: only regular files are opened (a named pipe, device or
socket planted in a shared folder would block or feed a read forever), a
symlink that leads out of the remote's root is refused, and the file is
opened non-blocking and checked with ``fstat`` after opening, so a file
swapped for a pipe between the check and the open is refused too.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import CorruptRecordError

#: longest file name accepted (bytes, as most file systems allow)
MAX_COMPONENT_BYTES = 255
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\:]")
_HEX40 = re.compile(r"[0-9a-f]{40}")


class UnsafePathError(CorruptRecordError):
    """A name from outside is not a plain file name, or its path leaves its folder."""


def check_component(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a plain single path component.

    Parameters
    ----------
    name : str
        The name (a file name, without any folder).
    what : str
        What it names, for the message (``'sample key'``, ``'pack id'`` ...).

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    UnsafePathError
        If ``name`` is not a str, is empty, ``.`` or ``..``, holds a path
        separator (``/``, ``\\``), a drive colon, NUL or a control character,
        or is longer than :data:`MAX_COMPONENT_BYTES` bytes.
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"{what} {name!r} is not a file name (a {type(name).__name__})")
    if name in ("", ".", "..") or _BAD_CHARS.search(name):
        raise UnsafePathError(
            f"{what} {name!r} is not a plain file name (a path separator, '.', '..', "
            "a drive, or a control character): refused, nothing written"
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePathError(f"{what} {name!r} is not valid UTF-8: refused") from None
    if size > MAX_COMPONENT_BYTES:
        raise UnsafePathError(f"{what} {name[:40]!r}... is longer than {MAX_COMPONENT_BYTES} bytes")
    return name


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def child_path(root: str | os.PathLike[str], name: str, *, what: str = "name") -> Path:
    """The path of file ``name`` directly in folder ``root``, checked.

    ``name`` must pass :func:`check_component`, and the path, with every
    symlink resolved (an existing entry of that name included), must stay
    directly in ``root`` (itself resolved: a folder the user named through
    a link is fine).

    Parameters
    ----------
    root : path-like
        The target folder (it need not exist yet).
    name : str
        File name, suffix included.
    what : str
        What it names, for the message.

    Returns
    -------
    pathlib.Path
        ``<resolved root>/<name>``.

    Raises
    ------
    UnsafePathError
        If ``name`` is not a plain component, or the path resolves outside
        ``root`` (a symlink there pointing elsewhere).
    """
    check_component(name, what)
    base = Path(os.path.realpath(root))
    path = base / name
    real = os.path.realpath(path)
    if os.path.dirname(real) != str(base) and not (
        os.path.islink(path) and _inside(real, str(base))
    ):
        raise UnsafePathError(
            f"{what} {name!r} leads outside {base} (to {real}): refused, nothing written"
        )
    return path


def open_new(path: str | os.PathLike[str], mode: int = 0o644) -> int:
    """Create ``path`` for writing, refusing an existing entry or a symlink there.

    Returns
    -------
    int
        A file descriptor open for writing (the caller closes it).

    Raises
    ------
    FileExistsError
        If anything (a file, or a link planted there) is at ``path``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)


def check_pack_id(pack_id: object) -> str:
    """Return ``pack_id`` if it is a content name (40 lowercase hex digits).

    Raises
    ------
    UnsafePathError
        Otherwise.
    """
    if not isinstance(pack_id, str) or not _HEX40.fullmatch(pack_id):
        raise UnsafePathError(f"pack id {pack_id!r} is not 40 hex digits: refused")
    return pack_id


def is_pack_id(pack_id: object) -> bool:
    """True when ``pack_id`` is 40 lowercase hex digits."""
    return isinstance(pack_id, str) and _HEX40.fullmatch(pack_id) is not None


def is_regular_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when ``path``, its symlinks resolved, is a regular file under ``root``."""
    real = os.path.realpath(path)
    if not _inside(real, os.path.realpath(root)):
        return False
    try:
        return stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        return False


class NotRegularFileError(UnsafePathError, OSError):
    """A remote path is not a regular file (a pipe, device, socket or folder),
    or a symlink leading out of the remote's root."""


def open_regular(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> int:
    """Open a local file for reading only if it is a regular file (in ``root``).

    The file is checked with ``stat`` first and opened with ``O_NONBLOCK``
    (opening a named pipe never waits for a writer), then checked again
    with ``fstat`` on the descriptor, so a file swapped in between is
    caught; ``O_NONBLOCK`` is cleared before returning.

    Parameters
    ----------
    path : path-like
        The file.
    root : path-like, optional
        When given, ``path`` with its symlinks resolved must lie under it.

    Returns
    -------
    int
        A file descriptor open for reading (the caller closes it).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    NotRegularFileError
        (an :class:`UnsafePathError` and an ``OSError``) if it is not a
        regular file, or resolves outside ``root``.
    """
    p = os.fspath(path)
    if root is not None:
        real = os.path.realpath(p)
        base = os.path.realpath(root)
        if not _inside(real, base):
            raise NotRegularFileError(f"{p} leads outside the remote's root {base} (to {real})")
    if not stat.S_ISREG(os.stat(p).st_mode):
        raise NotRegularFileError(f"{p} is not a regular file: refused")
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{p} is not a regular file: refused")
        try:
            import fcntl

            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        except ImportError:  # pragma: no cover - not POSIX
            pass
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = [
    "MAX_COMPONENT_BYTES",
    "NotRegularFileError",
    "UnsafePathError",
    "check_component",
    "check_pack_id",
    "child_path",
    "is_pack_id",
    "is_regular_within",
    "open_new",
    "open_regular",
]
