"""Appending blocks to pack files durably: :class:`PackAppender`.

The writer of the pack store (:class:`.packs.PackWriter`) hands finished
blocks to its appender, which gives each its place (pack number and offset)
at once, writes them to the pack in batches, syncs them with the manifest
records naming them (:mod:`.manifest`), and moves to a new pack once the
current one reaches :data:`PACK_LIMIT`.

A failed write or sync (a full disk, an I/O error) cuts the pack back to
its last good length and keeps the blocks queued at the offsets they were
given, so a later write puts them there; when the pack cannot be cut back,
the appender forgets what it held and calls its ``on_lost`` callback, so the
writer forgets the index entries pointing there too (the calls that queued
them failed: nothing acknowledged is lost).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from . import durable
from .durable import FILE_MODE, fsync_fd, start_writeback, truncate_to, write_all
from .manifest import ManifestWriter

if TYPE_CHECKING:
    from .packs import PackStore

#: a pack file is closed for appends once it grows past this size
PACK_LIMIT = 2 * 1024**3


#: parts one ``writev`` call is given (Linux's ``IOV_MAX``; POSIX promises 16 at least)
_IOV_MAX = 1024 if not hasattr(os, "sysconf") else max(16, min(1024, os.sysconf("SC_IOV_MAX")))


def write_parts(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` (bytes-like of unsigned bytes) one after the other to
    ``fd`` (opened for appending), up to :data:`_IOV_MAX` of them per system
    call (``writev``): a block written from a caller's rows is two parts, its
    header and its bytes, and a call per part costs a third of the time of
    writing 47 MB of them.

    Raises
    ------
    OSError
        As :func:`.durable.write_all`: part of ``parts`` may have reached the
        file, the caller truncates it back.
    """
    if not hasattr(os, "writev"):  # pragma: no cover - not POSIX
        for part in parts:
            write_all(fd, part)
        return
    i, k = 0, len(parts)
    while i < k:
        batch = parts[i : i + _IOV_MAX]
        if not any(len(p) for p in batch):
            i += len(batch)
            continue
        done = os.writev(fd, batch)
        if done <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        for part in batch:  # past the parts written whole; the rest of one cut short
            i += 1
            size = len(part)
            if done < size:
                write_all(fd, memoryview(part)[done:])
                break
            done -= size


class PackAppender:
    """Appends blocks to the store's current pack file.

    Parameters
    ----------
    store : PackStore
        The store whose packs are appended to.
    on_lost : callable
        Called when queued blocks had to be forgotten (see the module notes).

    Attributes
    ----------
    pack : int
        Number of the pack blocks go to.
    manifest : ManifestWriter
        The manifest records of the blocks queued; synced with the pack.
    """

    def __init__(self, store: PackStore, on_lost: Callable[[], None]) -> None:
        self.store = store
        self._on_lost = on_lost
        numbers = store.pack_numbers()
        pack = numbers[-1] if numbers else 1
        path = store.pack_path(pack)
        if path.exists() and path.stat().st_size >= PACK_LIMIT:
            pack += 1
        self.pack = pack
        self._fd = self._open(pack)
        self._size = self._synced_size = os.fstat(self._fd).st_size
        self._out: list[bytes | memoryview] = []
        self._out_bytes = 0
        #: blocks written since the last sync (written again if it fails)
        self._written: list[bytes | memoryview] = []
        self.manifest = ManifestWriter(store.packs_dir)

    def _open(self, pack: int) -> int:
        return os.open(
            self.store.pack_path(pack), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE
        )

    @property
    def end(self) -> int:
        """Offset in :attr:`pack` the next queued block gets."""
        return self._size + self._out_bytes

    @property
    def queued_bytes(self) -> int:
        """Bytes of blocks queued and not yet written."""
        return self._out_bytes

    def make_room(self, kind_ids: Mapping[str, int]) -> None:
        """Move to the next pack when the current one is full (``kind_ids``
        name the kinds in its manifest)."""
        if self._size + self._out_bytes >= PACK_LIMIT:
            self.write_out()
            self.rotate(kind_ids)

    def queue(self, block: bytes) -> int:
        """Queue ``block`` at :attr:`end` of :attr:`pack`; returns that offset."""
        boff = self._size + self._out_bytes
        self._out.append(block)
        self._out_bytes += len(block)
        return boff

    def queue_parts(self, parts: Sequence[bytes | memoryview]) -> int:
        """:meth:`queue` of one block given in ``parts`` (bytes-like of
        unsigned bytes), written one after the other, never joined; returns
        the block's offset."""
        boff = self._size + self._out_bytes
        for part in parts:
            self._out.append(part)
            self._out_bytes += len(part)
        return boff

    def drop_last(self, parts: Sequence[bytes | memoryview]) -> None:
        """Take back ``parts``, the last queued with :meth:`queue_parts`, when
        they are still queued (a failed write keeps them so, unless it had to
        forget everything): nothing else was queued after them."""
        k = len(parts)
        tail = self._out[-k:] if k and len(self._out) >= k else []
        if tail and all(a is b for a, b in zip(tail, parts, strict=True)):
            del self._out[-k:]
            self._out_bytes -= sum(len(p) for p in parts)

    def rotate(self, kind_ids: Mapping[str, int]) -> None:
        """Seal and sync the current pack, and move to the next number."""
        self.manifest.seal(self.pack, kind_ids)  # written by the sync
        self.sync()  # its blocks are indexed later, from another pack's flush
        fd = self._open(self.pack + 1)
        os.close(self._fd)
        self.pack += 1
        self._fd = fd
        self._size = self._synced_size = os.fstat(fd).st_size

    def switch_to(self, pack: int) -> None:
        """Append to pack ``pack`` from now on (nothing may be queued)."""
        fd = self._open(pack)
        os.close(self._fd)
        self.pack, self._fd = pack, fd
        self._size = self._synced_size = os.fstat(fd).st_size

    def full(self) -> bool:
        """True when the current pack has reached :data:`PACK_LIMIT`."""
        return self._size >= PACK_LIMIT

    def write_out(self) -> None:
        """Append the queued blocks to the pack (not synced: see :meth:`sync`).

        On failure (a full disk, an I/O error) the pack is cut back to its
        length before the call and the blocks stay queued at the offsets they
        were given, so a later call writes them there; if the pack cannot be
        cut back, everything queued is forgotten (see :meth:`forget`).
        """
        if not self._out:
            return
        try:
            write_parts(self._fd, self._out)  # no joined copy of them all
        except BaseException:
            if truncate_to(self._fd, self._size) != self._size:
                self._on_lost()
            raise
        start_writeback(self._fd, self._size, self._out_bytes)  # while the caller goes on
        self._size += self._out_bytes
        self._written += self._out
        self._out.clear()
        self._out_bytes = 0

    def sync(self) -> None:
        """Sync the blocks written since the last sync to the disk.

        If the sync fails, the system may have dropped those bytes: the pack
        is cut back to its synced length and they are queued again, to be
        written anew by the next :meth:`write_out` (or everything queued is
        forgotten, if the pack cannot be cut back).
        """
        if not self._written and not self.manifest:
            return
        try:
            with self.manifest.synced():  # the records of these blocks, synced alongside
                fsync_fd(self._fd)
        except BaseException:
            if truncate_to(self._fd, self._synced_size) == self._synced_size:
                self._out[:0] = self._written
                self._out_bytes += sum(len(b) for b in self._written)
                self._size = self._synced_size
                self._written.clear()
            else:
                self._on_lost()
            raise
        self._written.clear()
        self._synced_size = self._size

    def sync_always(self) -> None:
        """Sync what was written whatever ``HANGAR_FSYNC`` says (gc: the old
        copies of the bytes are about to go), then :meth:`sync`."""
        if not durable.FSYNC:
            self._written.clear()
            os.fsync(self._fd)
            self._synced_size = self._size
        self.sync()

    def own_queued(self) -> None:
        """Replace the queued (and written, not yet synced) blocks that are
        views of someone else's memory by copies: a later write or rewrite
        then writes the bytes they held now, whatever becomes of that memory."""
        self._out[:] = [b if type(b) is bytes else bytes(b) for b in self._out]
        self._written[:] = [b if type(b) is bytes else bytes(b) for b in self._written]

    def forget(self) -> None:
        """Drop every queued and unsynced block and manifest record; later
        blocks go after the pack's real end."""
        self._out.clear()
        self._out_bytes = 0
        self._written.clear()
        self.manifest.discard()
        try:
            self._size = os.fstat(self._fd).st_size
        except OSError:
            pass
        self._synced_size = self._size

    def close(self) -> None:
        """Close the pack file and the manifest (call :meth:`sync` first)."""
        os.close(self._fd)
        self.manifest.close()
