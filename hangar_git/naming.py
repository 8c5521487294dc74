"""Validation of user-supplied names and the encoding of sample keys.

Names end up as git tree entry names and as parts of file paths, so each one
is checked here before anything is written: nothing a user passes can escape
its place in the record tree or the store.
"""

from __future__ import annotations

import re

from .errors import CorruptRecordError

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
#: longest arrayset, branch, remote, sample or metadata name accepted
MAX_NAME_LEN = 200
# int keys are at most MAX_NAME_LEN digits: the bound fast paths check before writing "i:{key}"
INT_KEY_BOUND = 10**MAX_NAME_LEN

Key = str | int


def _check_text(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{kind} name must be str, not {type(name).__name__}: {name!r}")
    if not name or len(name) > MAX_NAME_LEN or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use 1-{MAX_NAME_LEN} ASCII letters, "
            "digits, '-', '.' or '_'"
        )
    # ".git." and ".git.." are ".git" to git fsck (hasDotgit) and to NTFS
    if name.strip(".") == "" or name.rstrip(".").lower() == ".git":
        raise ValueError(f"invalid {kind} name {name!r}: reserved")
    return name


def check_arrayset_name(name: object) -> str:
    """Return ``name`` if it is a valid arrayset name, else raise ValueError."""
    return _check_text("arrayset", name)


def _check_ref_name(kind: str, name: object) -> str:
    """A branch or tag name: ``/``-separated parts, each a valid git ref component.

    ``feature/x`` is accepted (as git users name branches); no part may be
    empty, start with ``.`` or ``-``, end with ``.`` or ``.lock``, or hold
    ``..``, so a name never leaves its place under ``refs/hangar/``.
    """
    if not isinstance(name, str):
        raise ValueError(f"{kind} name must be str, not {type(name).__name__}: {name!r}")
    if not name or len(name) > MAX_NAME_LEN:
        raise ValueError(f"invalid {kind} name {name!r}: use 1-{MAX_NAME_LEN} characters")
    for part in name.split("/"):
        try:
            _check_text(kind, part)
        except ValueError:
            raise ValueError(
                f"invalid {kind} name {name!r}: use ASCII letters, digits, '-', '.' or '_', "
                "in parts separated by single '/'"
            ) from None
        if part.endswith((".lock", ".")) or ".." in part or part.startswith(("-", ".")):
            raise ValueError(f"invalid {kind} name {name!r}")
    return name


def check_branch_name(name: object) -> str:
    """Return ``name`` if it is a valid branch name (``/`` allowed between parts), else raise
    ValueError."""
    return _check_ref_name("branch", name)


def check_tag_name(name: object) -> str:
    """Return ``name`` if it is a valid tag name (the rules of branch names), else raise
    ValueError."""
    return _check_ref_name("tag", name)


def check_remote_name(name: object) -> str:
    """Return ``name`` if it is a valid remote name, else raise ValueError."""
    name = _check_text("remote", name)
    if name.endswith((".lock", ".")) or ".." in name or name.startswith(("-", ".")):
        raise ValueError(f"invalid remote name {name!r}")
    return name


def encode_key(key: object, kind: str = "sample") -> str:
    """Encode a sample or metadata key as a tree entry name.

    ``'abc'`` becomes ``'s:abc'`` and ``12`` becomes ``'i:12'``, so the str
    ``'1'`` and the int ``1`` are distinct keys, and no key can be ``'.'``,
    ``'..'`` or ``'.git'`` as a tree name.

    Raises
    ------
    ValueError
        If the key is neither a valid str nor an int >= 0.
    """
    if type(key) is str:
        if not key or len(key) > MAX_NAME_LEN or not _NAME_RE.fullmatch(key):
            raise ValueError(
                f"invalid {kind} key {key!r}: use 1-{MAX_NAME_LEN} ASCII letters, "
                "digits, '-', '.' or '_', or an int >= 0"
            )
        return "s:" + key
    if isinstance(key, int) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"invalid {kind} key {key!r}: int keys must be >= 0")
        text = str(int(key))
        if len(text) > MAX_NAME_LEN:
            raise ValueError(f"invalid {kind} key: ints of more than {MAX_NAME_LEN} digits")
        return "i:" + text
    raise ValueError(f"{kind} key must be str or int >= 0, not {type(key).__name__}: {key!r}")


def decode_key(enc: str) -> Key:
    """Invert :func:`encode_key` (for keys read from records, which are
    checked to be canonical encodings before they get here).

    Raises
    ------
    CorruptRecordError
        If ``enc`` is not an encoded key.
    """
    head = enc[:2]
    if head == "i:":
        try:
            return int(enc[2:])
        except ValueError:
            pass
    elif head == "s:":
        return enc[2:]
    raise CorruptRecordError(f"malformed key record {enc[:80]!r}")


def is_key_like(key: object) -> bool:
    """True when ``key`` has a key's type (str, or int that is not bool)."""
    return type(key) is str or (isinstance(key, int) and not isinstance(key, bool))
