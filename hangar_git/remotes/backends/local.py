"""A data remote in a local folder (or a mounted network share), on plain ``os`` calls.

A folder shared with others can hold what an object store cannot: named
pipes, devices, symlinks out of the folder. Only regular files within the
root are ever opened (:func:`hangar_git.safe_paths.open_regular`, through
:func:`~hangar_git.remotes.bounded.read_local` and
:func:`~hangar_git.remotes.bounded.read_local_ranges`); a symlink to a
regular file inside the root reads as that file, anything else is listed as
unsafe and refused. Writes go to a temporary file beside their name, then
are renamed into place, so a reader never sees half an object; a failed
write leaves no temporary behind. Each file is synced to the disk before the
rename names it, and the rename after (its folder synced), so the records a
push sends after its packs never name a pack a power cut could take back
(``HANGAR_FSYNC=0`` turns the syncs off, as for the local store). Folders
are made when first written to.

Nothing here imports fsspec: a push to or fetch from a folder does not pay
for it (about 0.1 s in a fresh process). :class:`LocalFiles` holds the few
file operations the store makes, under the names fsspec gives them, so a
test can cut one as it cuts an fsspec filesystem's.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import IntegrityError
from ...safe_paths import UnsafePathError, open_regular
from ...store.durable import fsync_dir, fsync_fd, start_writeback, write_all
from .. import bounded
from .base import ObjectStream, RemoteStore


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


#: buffers handed to one ``writev`` call (Linux takes 1024 at most)
_IOV_MAX = 512


def write_parts(fd: int, parts: Sequence[bytes | memoryview]) -> int:
    """Write ``parts`` one after the other to ``fd``, many per system call; the bytes written.

    Raises
    ------
    OSError
        What the system reported (part of the bytes may have been written).
    """
    total = 0
    for lo in range(0, len(parts), _IOV_MAX):
        batch = parts[lo : lo + _IOV_MAX]
        want = sum(len(p) for p in batch)
        done = os.writev(fd, batch) if want else 0
        if done < want:  # a short write: the rest one buffer at a time
            for p in batch:
                if done >= len(p):
                    done -= len(p)
                    continue
                write_all(fd, memoryview(p)[done:])
                done = 0
        total += want
    return total


def local_root(url: str) -> str | None:
    """The folder of data URL ``url`` when it names a local one, else None.

    Parameters
    ----------
    url : str
        A data URL: a path, ``file://`` or ``local://`` (absolute), or any
        other fsspec URL (chained ``a::b`` URLs count as other).

    Returns
    -------
    str or None
        The folder as an absolute path (not checked to exist).
    """
    if "::" in url:
        return None
    for prefix in ("file://", "local://"):
        if url.startswith(prefix):
            url = url[len(prefix) :]
            break
    else:
        if "://" in url:
            return None
    return os.path.abspath(os.path.expanduser(url)) if url else None


class LocalFiles:
    """The file operations of a :class:`LocalStore`, each one ``os`` call or two.

    Named and shaped as fsspec's ``LocalFileSystem`` methods of the same
    names (only what the store uses).
    """

    protocol = ("file", "local")

    def ls(self, path: str, detail: bool = True) -> list[dict[str, Any]]:
        """The entries of folder ``path`` as fsspec details (name, size, type, islink).

        ``type`` is ``'file'``, ``'directory'`` or ``'other'`` without
        following links (a link is ``'other'``, with ``islink`` set and the
        size of what it points to). A folder that is not there gives
        ``FileNotFoundError``.
        """
        out: list[dict[str, Any]] = []
        with os.scandir(path) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                    link = stat.S_ISLNK(st.st_mode)
                    if stat.S_ISDIR(st.st_mode):
                        kind = "directory"
                    elif stat.S_ISREG(st.st_mode):
                        kind = "file"
                    else:
                        kind = "other"
                    size = st.st_size
                    if link:
                        try:
                            size = entry.stat(follow_symlinks=True).st_size
                        except OSError:
                            size = 0
                except FileNotFoundError:  # removed meanwhile
                    continue
                out.append({"name": entry.path, "size": size, "type": kind, "islink": link})
        return out

    def exists(self, path: str) -> bool:
        """True when there is a file or folder at ``path`` (links followed)."""
        return os.path.exists(path)

    def pipe_file(self, path: str, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Write ``data`` as the new file ``path`` (replacing one there); a
        list of pieces is written one after the other, none of them copied."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_parts(fd, [data] if isinstance(data, bytes | memoryview) else data)
            fsync_fd(fd)  # on the disk before a rename names it
        finally:
            os.close(fd)

    def put_file(self, src: str, dst: str) -> None:
        """Copy local file ``src`` to ``dst`` (synced to the disk)."""
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            fsync_fd(fd)
        finally:
            os.close(fd)

    def makedirs(self, path: str, exist_ok: bool = True) -> None:
        """Make folder ``path`` and its parents."""
        os.makedirs(path, exist_ok=exist_ok)

    def mv(self, src: str, dst: str) -> None:
        """Rename ``src`` over ``dst`` (atomic within one file system), the
        rename synced to the disk (its folder is)."""
        os.replace(src, dst)
        fsync_dir(os.path.dirname(dst) or ".")

    def rm_file(self, path: str) -> None:
        """Remove file ``path`` (``FileNotFoundError`` when it is not there)."""
        os.unlink(path)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Nothing: listings are never cached here."""


class LocalStore(RemoteStore):
    """Objects as files under a local folder: regular files only, written by rename.

    See :class:`~hangar_git.remotes.backends.base.RemoteStore` for the verbs.

    Parameters
    ----------
    url : str
        The URL the store was opened from (for messages).
    fs : object, optional
        Not used: files are reached with plain ``os`` calls
        (:attr:`fs` is a :class:`LocalFiles`).
    root : str, optional
        The folder (default: the folder ``url`` names).
    """

    special_files = True
    renames_into_place = True

    def __init__(self, url: str, fs: Any = None, root: str | None = None) -> None:
        folder = root if root is not None else local_root(url)
        if folder is None:
            raise ValueError(f"{url!r} is not a local folder")
        super().__init__(url, LocalFiles(), _absolute(folder))

    # ---- reading -----------------------------------------------------------
    def list_dir(self, prefix: str) -> tuple[dict[str, int], set[str]]:
        """The objects directly under ``prefix`` (see :meth:`RemoteStore.list_dir`)."""
        path = self.path(prefix)
        self.count()
        try:
            listing = self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}, set()
        return bounded.sort_listing(listing, self.special_files, self.root)

    def get(self, name: str, limit: int) -> bytes:
        """Regular file ``name`` whole, at most ``limit`` bytes (see :meth:`RemoteStore.get`)."""
        path = self.path(name)
        self.count()
        try:
            data = bounded.read_local(path, self.root, limit)
        except UnsafePathError as exc:
            raise IntegrityError(f"remote object {path}: {exc}") from None
        self.count(0, received=len(data))
        return data

    def get_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes | BaseException]:
        """Bytes of ``(name, start, end)`` ranges (see :meth:`RemoteStore.get_ranges`)."""
        if not ranges:
            return []
        paths = {name: self.path(name) for name in {r[0] for r in ranges}}
        self.count(len(ranges))
        # regular files only, never a pipe or a link out of the root
        out = bounded.read_local_ranges(self.root, [(paths[n], s, e) for n, s, e in ranges])
        self.count(0, received=sum(len(d) for d in out if not isinstance(d, BaseException)))
        return out

    def get_file(self, name: str, dst: Path, limit: int) -> int:
        """Copy regular file ``name`` into new file ``dst`` (see :meth:`RemoteStore.get_file`)."""
        path = self.path(name)
        self.count()
        try:
            fd = open_regular(path, self.root)
        except UnsafePathError as exc:
            raise IntegrityError(f"remote object {path}: {exc}") from None
        with os.fdopen(fd, "rb") as src:
            done = bounded.copy_to_new_file(src, os.fstat(fd).st_size, dst, limit, path)
        self.count(0, received=done)
        return done

    def exists(self, name: str) -> bool:
        """True when object ``name`` is there."""
        path = self.path(name)
        self.count()
        return bool(self.fs.exists(path))

    def reach(self) -> None:
        """Nothing beyond the listing: a folder not written yet is an empty remote."""

    # ---- writing -----------------------------------------------------------
    def put(self, name: str, data: bytes) -> None:
        """Write ``name`` beside, then rename it into place (see :meth:`RemoteStore.put`)."""
        path = self.path(name)
        self.count(sent=len(data))
        self._into_place(path, lambda tmp: self.fs.pipe_file(tmp, data))

    def put_parts(self, name: str, parts: Sequence[bytes | memoryview]) -> None:
        """Write the ``parts`` beside ``name`` one after the other (not joined),
        then rename the file into place (see :meth:`RemoteStore.put_parts`)."""
        path = self.path(name)
        self.count(sent=sum(len(p) for p in parts))
        self._into_place(path, lambda tmp: self.fs.pipe_file(tmp, parts))

    def put_file(self, name: str, src: Path) -> None:
        """Copy ``src`` beside ``name``, then rename it into place."""
        path = self.path(name)
        self.count(sent=src.stat().st_size)
        self._into_place(path, lambda tmp: self.fs.put_file(str(src), tmp))

    def open_stream(self, folder: str) -> ObjectStream:
        """A new file under ``folder``, written piece by piece beside its final
        name and renamed into place by :meth:`ObjectStream.finish`."""
        return _FileStream(self, self.path(folder))

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

    def delete(self, names: Iterable[str]) -> None:
        """Remove objects, one request each (see :meth:`RemoteStore.delete`)."""
        for path in [self.path(n) for n in names]:
            self.count()
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass


class _FileStream(ObjectStream):
    """A temporary file in the folder of the objects it becomes (so the
    rename that names it is atomic), opened when first written to."""

    _serial = 0

    def __init__(self, store: LocalStore, folder: str) -> None:
        _FileStream._serial += 1
        self.store, self.folder = store, folder
        self.tmp = f"{folder}/stream.{os.getpid()}.{threading.get_ident()}.{self._serial}.tmp"
        self.fd: int | None = None
        self.size = 0
        self.done = False

    def write(self, parts: Sequence[bytes | memoryview]) -> None:
        if self.done:
            raise ValueError("this stream is finished")
        if self.fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            try:
                self.fd = os.open(self.tmp, flags, 0o666)
            except FileNotFoundError:  # its folder is not there yet
                self.store.fs.makedirs(self.folder, exist_ok=True)
                self.fd = os.open(self.tmp, flags, 0o666)
        start = self.size
        self.size += write_parts(self.fd, parts)
        # the disk starts on these bytes now: the sync before the rename waits less
        start_writeback(self.fd, start, self.size - start)

    def _close(self) -> None:
        if self.fd is not None and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def finish(self, name: str) -> int:
        self.write([])  # an empty object is a file too
        assert self.fd is not None
        fsync_fd(self.fd)  # on the disk before the rename names it
        self._close()
        self.store.count(sent=self.size)
        self.store.fs.mv(self.tmp, self.store.path(name))
        self.done = True
        return self.size

    def abort(self) -> None:
        self._close()
        if not self.done:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.done = True


__all__ = ["LocalFiles", "LocalStore", "local_root", "write_parts"]
