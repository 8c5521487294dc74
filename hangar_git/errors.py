"""Exception types raised by hangar-git.

Every error derives from the builtin type the reference documents for the
situation (``ValueError``, ``KeyError``, ``PermissionError`` ...), so code
written against Hangar keeps working, and from :class:`HangarError`, so a
caller can catch everything hangar-git raises in one clause.
"""

from __future__ import annotations


class HangarError(Exception):
    """Base class of every error raised by hangar-git."""


class NotInitializedError(HangarError, RuntimeError):
    """The directory holds no hangar repository; call ``Repository.init()``."""


class WriterLockError(HangarError, PermissionError):
    """Another write-enabled checkout holds the writer lock."""


class ClosedError(HangarError, ReferenceError, PermissionError):
    """The checkout (or an object obtained from it) was closed.

    A ``ReferenceError``, as the reference's invalidated handles raise, and
    a ``PermissionError``, as its closed checkouts raise: either clause
    catches it.
    """


class IntegrityError(HangarError, RuntimeError):
    """Stored bytes do not match their checksum or digest."""


class MissingPayloadError(HangarError, FileNotFoundError):
    """A sample's payload is not stored on this machine (a remote reference)."""


class FormatVersionError(HangarError, RuntimeError):
    """The repository was written by a newer, unknown record format."""


class MergeConflictError(HangarError, ValueError):
    """A merge found conflicts; nothing was changed.

    Parameters
    ----------
    message : str
        What conflicts, for people.
    conflicts : dict, optional
        The conflicts, shaped as ``co.diff.branch()`` returns them (see
        :func:`hangar_git.diffref.reference_conflicts`); kept as
        :attr:`conflicts`.

    Attributes
    ----------
    conflicts : dict or None
        The conflicts found, for a program to act on.
    """

    def __init__(self, message: str, conflicts: object = None) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class CorruptRecordError(HangarError, ValueError):
    """Records read from git are malformed or hostile (a bad name, key, mode,
    schema, format version or size); nothing was read from or written for them."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (what a one-line report shows).

    Parameters
    ----------
    exc : BaseException
        The error.

    Returns
    -------
    str
        The first line of ``str(exc)``, or the error's type name when the
        message is empty.
    """
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
