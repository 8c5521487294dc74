"""The interface of a data remote's backend: named byte objects under one root.

A backend knows nothing of packs, indexes or payloads: it stores immutable
objects named by ``/``-separated relative names (``hangar-data.json``,
``packs/<id>.pack`` ...) under its root, and offers a handful of verbs --
:meth:`~RemoteStore.put`, :meth:`~RemoteStore.get` (whole, bounded),
:meth:`~RemoteStore.get_ranges`, :meth:`~RemoteStore.list_dir`,
:meth:`~RemoteStore.exists`, :meth:`~RemoteStore.delete`, and their file
forms :meth:`~RemoteStore.put_file` and :meth:`~RemoteStore.get_file` --
each counted in :attr:`~RemoteStore.requests` and the byte counters.

Every verb refuses a name that could leave the root (``..``, an absolute
path, an empty part, a backslash ...) with
:class:`~hangar_git.safe_paths.UnsafePathError` (a ``ValueError``) before any
request. Reads are bounded: :meth:`~RemoteStore.get` and
:meth:`~RemoteStore.get_file` refuse an object over their ``limit`` with
:class:`~hangar_git.errors.IntegrityError` without taking more than
``limit + 1`` bytes of it.

Capability flags tell the layers above, and the conformance tests
(``tests/integration/remote_conformance.py``), what a backend is:

- :attr:`~RemoteStore.special_files`: symlinks, named pipes and devices can
  appear under the root (a local folder); only regular files within the
  root are ever read, the others are listed as unsafe.
- :attr:`~RemoteStore.renames_into_place`: a write goes to a temporary
  object beside its name, then is renamed (a file system); otherwise each
  put is one request the service applies whole (an object store).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...safe_paths import check_component


class RemoteStore(ABC):
    """Objects under one root of a data remote, reached through fsspec.

    Parameters
    ----------
    url : str
        The URL the store was opened from (for messages).
    fs : fsspec.AbstractFileSystem
        The filesystem objects are reached through.
    root : str
        The root's path on ``fs`` (a trailing ``/`` is dropped).

    Attributes
    ----------
    requests : int
        Requests sent (a listing, a read or a write each count one; a
        ranged read of several ranges counts one per range).
    bytes_sent, bytes_received : int
        Bytes moved.
    """

    #: symlinks, named pipes and devices can appear under the root
    special_files: ClassVar[bool] = False
    #: writes go to a temporary object, then are renamed into place
    renames_into_place: ClassVar[bool] = False

    def __init__(self, url: str, fs: Any, root: str) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.requests = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._lock = threading.Lock()

    # ---- accounting and names ----------------------------------------------
    def count(self, n: int = 1, sent: int = 0, received: int = 0) -> None:
        """Add ``n`` requests and the bytes they moved to the counters (thread-safe)."""
        with self._lock:
            self.requests += n
            self.bytes_sent += sent
            self.bytes_received += received

    def path(self, name: str) -> str:
        """The full path on :attr:`fs` of object ``name``.

        Parameters
        ----------
        name : str
            A relative name: parts separated by ``/``, each a plain file name.

        Raises
        ------
        hangar_git.safe_paths.UnsafePathError
            If any part is empty, ``.`` or ``..``, or holds a backslash, a
            drive colon or a control character (the name could leave the root).
        """
        for part in name.split("/"):
            check_component(part, "remote object name part")
        return f"{self.root}/{name}" if self.root else name

    @abstractmethod
    def reach(self) -> None:
        """Check that the root can be reached beyond a listing (a bucket's existence).

        Raises
        ------
        FileNotFoundError
            If it cannot (backends may raise their own errors too).
        """

    # ---- reading -----------------------------------------------------------
    @abstractmethod
    def list_dir(self, prefix: str) -> tuple[dict[str, int], set[str]]:
        """The objects directly under ``prefix``, in one request.

        Returns
        -------
        sizes : dict of str to int
            ``{name: size}`` (names without the prefix; size -1 when the
            backend gives none); folders are left out.
        unsafe : set of str
            Names that are not regular files within the root (never read).
            A prefix that does not exist gives two empty results.
        """

    @abstractmethod
    def get(self, name: str, limit: int) -> bytes:
        """The whole object ``name``, of at most ``limit`` bytes.

        Raises
        ------
        FileNotFoundError
            If it is not there.
        IntegrityError
            If it is larger than ``limit``, or not a regular file within the root.
        """

    @abstractmethod
    def get_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes | BaseException]:
        """The bytes ``[start, end)`` of each ``(name, start, end)``, concurrently where possible.

        A range past an object's end is cut short. A range that cannot be
        read gives its exception in its place (``FileNotFoundError`` when
        its object is not there) instead of raising.
        """

    @abstractmethod
    def get_file(self, name: str, dst: Path, limit: int) -> int:
        """Copy object ``name`` (at most ``limit`` bytes) into the new local file ``dst``.

        Its stated size is checked first, and the copy stops as soon as it
        passes ``limit``; on any failure ``dst`` is removed.

        Returns
        -------
        int
            Bytes copied.

        Raises
        ------
        FileNotFoundError
            If it is not there.
        IntegrityError
            If it is larger than ``limit``, or not a regular file within the root.
        """

    @abstractmethod
    def exists(self, name: str) -> bool:
        """True when object ``name`` is there."""

    # ---- writing -----------------------------------------------------------
    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Write object ``name``: a reader sees the old object or the whole new one."""

    def put_parts(self, name: str, parts: Sequence[bytes | memoryview]) -> None:
        """Write object ``name`` whose bytes are ``parts`` one after the other, as :meth:`put`.

        This default joins them and puts the whole; a backend that can write
        pieces (a file) overrides it and copies nothing.
        """
        self.put(name, b"".join(parts))

    def open_stream(self, folder: str) -> ObjectStream | None:
        """A new object under ``folder`` to write piece by piece, named when
        finished (see :class:`ObjectStream`); None when this backend sends
        an object in one request (an object store): then use :meth:`put_parts`.
        """
        return None

    @abstractmethod
    def put_file(self, name: str, src: Path) -> None:
        """Write object ``name`` from local file ``src``, streamed, as :meth:`put`."""

    @abstractmethod
    def delete(self, names: Iterable[str]) -> None:
        """Remove objects (one request each); one that is not there is no error."""


class ObjectStream(ABC):
    """An object being written piece by piece, invisible until :meth:`finish`
    names it (a file renamed into place); :meth:`abort` leaves nothing."""

    @abstractmethod
    def write(self, parts: Sequence[bytes | memoryview]) -> None:
        """Append ``parts``, one after the other."""

    @abstractmethod
    def finish(self, name: str) -> int:
        """Make the bytes written object ``name`` (replacing one there); their count."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written (nothing is left behind); no error when finished."""


__all__ = ["ObjectStream", "RemoteStore"]
