"""A data remote in a local folder (or a mounted network share).

A folder shared with others can hold what an object store cannot: named
pipes, devices, symlinks out of the folder. Only regular files within the
root are ever opened (:func:`hangar_git.safe_paths.open_regular`, through
:func:`~hangar_git.remotes.bounded.read_local` and
:func:`~hangar_git.remotes.bounded.read_local_ranges`); a symlink to a
regular file inside the root reads as that file, anything else is listed as
unsafe and refused. Writes go to a temporary file beside their name, then
are renamed into place, so a reader never sees half an object; a failed
write leaves no temporary behind. Folders are made when first written to.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from ...errors import IntegrityError
from ...safe_paths import UnsafePathError, open_regular
from .. import bounded
from .fsspec_store import FsspecStore


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class LocalStore(FsspecStore):
    """Objects as files under a local folder: regular files only, written by rename.

    See :class:`~hangar_git.remotes.backends.base.RemoteStore` for the verbs
    and the parameters.
    """

    special_files = True
    renames_into_place = True

    def _read(self, path: str, limit: int) -> bytes:
        try:
            return bounded.read_local(_absolute(path), _absolute(self.root), limit)
        except UnsafePathError as exc:
            raise IntegrityError(f"remote object {path}: {exc}") from None

    def _read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes | BaseException]:
        # regular files only, never a pipe or a link out of the root
        return bounded.read_local_ranges(
            _absolute(self.root), [(_absolute(p), s, e) for p, s, e in ranges]
        )

    def get_file(self, name: str, dst: Path, limit: int) -> int:
        """Copy regular file ``name`` into new file ``dst`` (see :meth:`RemoteStore.get_file`)."""
        path = self.path(name)
        self.count()
        try:
            fd = open_regular(_absolute(path), _absolute(self.root))
        except UnsafePathError as exc:
            raise IntegrityError(f"remote object {path}: {exc}") from None
        with os.fdopen(fd, "rb") as src:
            done = bounded.copy_to_new_file(src, os.fstat(fd).st_size, dst, limit, path)
        self.count(0, received=done)
        return done

    def reach(self) -> None:
        """Nothing beyond the listing: a folder not written yet is an empty remote."""

    def put(self, name: str, data: bytes) -> None:
        """Write ``name`` beside, then rename it into place (see :meth:`RemoteStore.put`)."""
        path = self.path(name)
        self.count(sent=len(data))
        self._into_place(path, lambda tmp: self.fs.pipe_file(tmp, data))

    def put_file(self, name: str, src: Path) -> None:
        """Copy ``src`` beside ``name``, then rename it into place."""
        path = self.path(name)
        self.count(sent=src.stat().st_size)
        self._into_place(path, lambda tmp: self.fs.put_file(str(src), tmp))

    def _into_place(self, path: str, write: Callable[[str], object]) -> None:
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            try:
                write(tmp)
            except FileNotFoundError:  # its folder is not there yet
                self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
                write(tmp)
            self.fs.mv(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


__all__ = ["LocalStore"]
