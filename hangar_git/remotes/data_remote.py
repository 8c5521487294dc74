"""Packs on a data remote: which are there, what they hold, sending and reading them.

:class:`DataRemote` works on a backend (:mod:`.backends`: a local folder,
any fsspec filesystem) and knows the remote's layout (:mod:`.layout`) and
pack format (:mod:`.packformat`). It reads the indexes of the complete packs
(each once: they are immutable, and cached on this machine), answers where
each payload is (:meth:`DataRemote.lookup`), uploads sealed packs, and reads
block ranges. Which payloads a push or fetch moves is decided above, in
:mod:`.transfer`; large payloads travel as objects of their own
(:mod:`.large`).

A pack counts as present only once its index is there with the size it
states for both objects: uploads send the pack first, then its index, so a
transfer cut in the middle leaves at worst a pack without an index, which
the next push of the same payloads overwrites.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FormatVersionError, IntegrityError
from ..safe_paths import is_pack_id
from . import bounded
from .backends import RemoteStore, open_store
from .backends.base import ObjectStream
from .layout import (
    FORMAT_VERSION,
    MARKER,
    PACKS,
    Listing,
    index_object,
    landed,
    large_in_listing,
    pack_object,
)
from .lookup import RemoteLookup
from .packformat import PackIndex, decode_index

if TYPE_CHECKING:
    from .packbuilder import SealedPack


def _in_packs(name: str) -> str:
    return f"{PACKS}/{name}"


class DataRemote:
    """A data remote: packs on a backend, with a local cache of their indexes.

    Parameters
    ----------
    url : str
        The fsspec URL of the remote's root.
    cache_dir : pathlib.Path or None
        Where immutable pack indexes read from the remote are kept, so each
        is downloaded once.
    options : mapping, optional
        Extra fsspec storage options (never credentials: those come from the
        environment or the backend's own configuration files).

    Attributes
    ----------
    store : RemoteStore
        The backend (:func:`~hangar_git.remotes.backends.open_store`).
    large : dict of bytes to int
        Large payloads held as objects of their own: ``{digest: object size}``.
    damaged : list of str
        Packs the last refresh ignored: an object of the wrong size, an
        index that fails its checks, or one that is not a regular file
        (their payloads count as absent, so a push sends them again).
    unsafe : set of str
        Names in the last listing that are not regular files (never read).

    Raises
    ------
    ImportError
        If the URL's protocol needs a package that is not installed.
    """

    def __init__(
        self, url: str, cache_dir: Path | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        self.store: RemoteStore = open_store(url, options)
        self.cache_dir = cache_dir
        self._indexes: dict[str, PackIndex] = {}
        #: indexes of the packs this object sent, decoded when first needed
        self._sent: dict[str, bytes] = {}
        self._lookup: RemoteLookup | None = None
        self.large: dict[bytes, int] = {}
        self.damaged: list[str] = []
        self.unsafe: set[str] = set()
        #: hangar-data.json holds the known format (True), was not there when
        #: last read (False), or was not read yet (None)
        self._marker: bool | None = None

    # ---- the backend's face ----------------------------------------------
    @property
    def fs(self) -> Any:
        """The fsspec filesystem of the backend."""
        return self.store.fs

    @property
    def root(self) -> str:
        """The remote's root on :attr:`fs`."""
        return self.store.root

    @property
    def requests(self) -> int:
        """Requests sent (see :class:`~hangar_git.remotes.backends.RemoteStore`)."""
        return self.store.requests

    @property
    def bytes_sent(self) -> int:
        """Bytes sent."""
        return self.store.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Bytes received."""
        return self.store.bytes_received

    # ---- listing -------------------------------------------------------
    def ping(self) -> None:
        """Reach the remote: list its packs (a remote not written yet is empty).

        Raises
        ------
        ConnectionError
            If it cannot be reached or read (network, credentials, no bucket).
        """
        try:
            self.list_packs()
            self.store.reach()
        except ConnectionError:
            raise
        except Exception as exc:  # backends raise their own types (botocore, aiohttp ...)
            raise ConnectionError(f"data remote {self.url} cannot be reached: {exc}") from exc

    def list_packs(self) -> dict[str, int]:
        """``{name: size}`` of the objects under ``packs/`` (one listing).

        The size is -1 when the backend does not report one; names that are
        not regular files are left out, and kept in :attr:`unsafe`.
        """
        out, self.unsafe = self.store.list_dir(PACKS)
        return out

    def refresh(self) -> dict[str, PackIndex]:
        """Read the indexes of every complete pack (new ones only) and return them.

        A pack counts only when both its objects are listed with the sizes its
        index gives, and its index passes its checks; the others are listed
        in :attr:`damaged` and their payloads count as absent.

        Raises
        ------
        FormatVersionError
            If the remote's format marker is unknown (see :meth:`check_marker`).
        """
        listing = self.list_packs()
        self.large = large_in_listing(listing)
        self.check_marker()
        self._decode_sent()
        before = set(self._indexes)
        # a pack whose index or body is a pipe, device or link out of the root
        self.damaged = sorted(
            stem
            for stem, _, ext in (n.rpartition(".") for n in self.unsafe)
            if ext in ("idx", "pack") and is_pack_id(stem)
        )
        ids = [pid for pid in _complete_packs(listing) if pid not in self.damaged]
        for pid in set(self._indexes) - set(ids):
            del self._indexes[pid]
        fresh: list[str] = []
        for pid in ids:
            if pid not in self._indexes:
                idx = self._cached_index(pid)
                if idx is None:
                    fresh.append(pid)
                else:
                    self._indexes[pid] = idx
        for pid, data in self._read_indexes(fresh, listing):
            idx = _parse_index(pid, data)
            if idx is None or data is None:
                self.damaged.append(pid)
                continue
            self._store_cached_index(pid, data)
            self._indexes[pid] = idx
        for pid, idx in list(self._indexes.items()):
            if not _sizes_match(listing, pid, idx):
                del self._indexes[pid]
                self.damaged.append(pid)
        if set(self._indexes) != before:
            self._lookup = None
        return self._indexes

    def _read_indexes(
        self, pack_ids: Sequence[str], listing: Listing
    ) -> list[tuple[str, bytes | None]]:
        """``(pack id, index bytes or None)`` for each pack index to read.

        An index listed over :data:`~hangar_git.remotes.bounded.MAX_INDEX_BYTES`
        is not read; the others are read with a bound (their listed size,
        else that maximum) in ranged reads. None stands for refused (too
        large, larger than listed, or not a regular file); an index removed
        meanwhile is left out.
        """
        out: list[tuple[str, bytes | None]] = []
        todo: list[tuple[str, int]] = []
        for pid in pack_ids:
            size = listing.get(index_object(pid), -1)
            if size > bounded.MAX_INDEX_BYTES:
                out.append((pid, None))  # refused before a byte is read
            else:
                todo.append((pid, size if size >= 0 else bounded.MAX_INDEX_BYTES))
        if not todo:
            return out
        blobs = self.store.get_ranges(
            [(_in_packs(index_object(pid)), 0, lim + 1) for pid, lim in todo]
        )
        for (pid, lim), data in zip(todo, blobs, strict=True):
            if isinstance(data, FileNotFoundError) or data is None:
                continue  # removed meanwhile: ignore this pack
            if isinstance(data, BaseException) or len(data) > lim:
                out.append((pid, None))
                continue
            out.append((pid, bytes(data)))
        return out

    def _cached_index(self, pid: str) -> PackIndex | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / index_object(pid)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            return decode_index(pid, data)
        except IntegrityError:
            path.unlink(missing_ok=True)
            return None

    def _store_cached_index(self, pid: str, data: bytes) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".{pid}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.cache_dir / index_object(pid))

    def lookup(self) -> RemoteLookup:
        """Where each payload of every known pack is (rebuilt after a refresh)."""
        if self._lookup is None:
            self._decode_sent()
            self._lookup = RemoteLookup(self._indexes)
        return self._lookup

    def _decode_sent(self) -> None:
        """Take the indexes of the packs sent into :attr:`_indexes` (built
        here, so they decode; a push that asks nothing more never does)."""
        for pid, data in self._sent.items():
            self._indexes[pid] = decode_index(pid, data)
        self._sent.clear()

    # ---- the format marker -------------------------------------------------
    def check_marker(self) -> bool:
        """Read ``hangar-data.json`` (once per object) and refuse an unknown format.

        Returns
        -------
        bool
            True when the marker is there (a remote not written yet has none).

        Raises
        ------
        FormatVersionError
            If it names a format other than
            :data:`~hangar_git.remotes.layout.FORMAT_VERSION`, is not a
            format marker, or cannot be read as a regular file of at most
            :data:`~hangar_git.remotes.bounded.MAX_MARKER_BYTES` (nothing is
            read or written then).
        """
        if not self._marker:  # read again while absent: another pusher may write it
            self._marker = self._read_marker()
        return self._marker

    def _read_marker(self) -> bool:
        try:
            data = self.store.get(MARKER, bounded.MAX_MARKER_BYTES)
        except FileNotFoundError:
            return False
        except IntegrityError as exc:
            raise FormatVersionError(
                f"the data remote {self.url} has an unreadable {MARKER}: {exc}"
            ) from None
        try:
            found = json.loads(data)["hangar_git_data_format"]
        except (ValueError, KeyError, TypeError):
            raise FormatVersionError(
                f"the data remote {self.url} has a {MARKER} that is not a hangar-git data "
                "format marker: refused (is this URL the right data remote?)"
            ) from None
        if type(found) is not int or found != FORMAT_VERSION:
            raise FormatVersionError(
                f"the data remote {self.url} holds data format {found!r}; this hangar-git "
                f"reads and writes format {FORMAT_VERSION} only: upgrade hangar-git (nothing "
                "was read or written)"
            )
        return True

    def ensure_marker(self) -> None:
        """Write ``hangar-data.json`` at the root when it is not there yet.

        Raises
        ------
        FormatVersionError
            If the one there names an unknown format (nothing is written).
        """
        if self._marker is None:  # False: found absent by this object's last read
            self.check_marker()
        if self._marker:
            return
        self.store.put(MARKER, json.dumps({"hangar_git_data_format": FORMAT_VERSION}).encode())
        self._marker = True

    # ---- packs -------------------------------------------------------------
    def open_pack_stream(self) -> ObjectStream | None:
        """A stream to write a pack's body ahead as it is built (then
        :meth:`upload` with it); None when the backend takes a pack in one
        request (an object store)."""
        return self.store.open_stream(PACKS)

    def upload(self, pack: SealedPack) -> None:
        """Send a pack, then its index (the index makes the pack visible).

        When its body was written ahead to ``pack.stream`` (its first
        ``pack.streamed`` parts), the rest follow there, then it is named.
        """
        name = _in_packs(pack_object(pack.pack_id))
        if pack.stream is None:
            self.store.put_parts(name, pack.parts)
        else:
            pack.stream.write(pack.parts[pack.streamed :])
            pack.stream.finish(name)
        self.store.put(_in_packs(index_object(pack.pack_id)), pack.index)
        self._sent[pack.pack_id] = pack.index
        self._store_cached_index(pack.pack_id, pack.index)
        self._lookup = None

    def verify_uploaded(self, packs: Sequence[SealedPack]) -> list[str]:
        """Names of the uploaded objects that are missing or of the wrong size (one listing)."""
        if not packs:
            return []
        listing = self.list_packs()
        bad = []
        for p in packs:
            for name, size in (
                (pack_object(p.pack_id), p.size),
                (index_object(p.pack_id), len(p.index)),
            ):
                if not landed(listing, name, size):
                    bad.append(name)
        return bad

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Bytes of ``(pack id, start, end)`` ranges, read concurrently where possible.

        Raises
        ------
        IntegrityError
            If a range cannot be read (its pack is gone, or not a regular file).
        """
        if not ranges:
            return []
        out = self.store.get_ranges([(_in_packs(pack_object(p)), s, e) for p, s, e in ranges])
        result = []
        for (pid, s, e), data in zip(ranges, out, strict=True):
            if isinstance(data, BaseException):
                raise IntegrityError(
                    f"remote pack {pid} of {self.url} cannot be read at {s}-{e}: {data}"
                )
            result.append(data)
        return result

    def remove_objects(self, names: Iterable[str]) -> None:
        """Delete objects under ``packs/`` (used by tests and repair tools)."""
        self.store.delete([_in_packs(n) for n in names])


def _parse_index(pid: str, data: bytes | None) -> PackIndex | None:
    """The index read for ``pid``; None when refused unread or malformed."""
    if data is None:  # too large, not a regular file, or larger than listed
        return None
    try:
        return decode_index(pid, data)
    except IntegrityError:
        return None


def _complete_packs(listing: Listing) -> list[str]:
    """Ids of the packs whose body and index are both listed, sorted."""
    return sorted(
        n[:-4]
        for n in listing
        if n.endswith(".idx") and is_pack_id(n[:-4]) and pack_object(n[:-4]) in listing
    )


def _sizes_match(listing: Listing, pid: str, idx: PackIndex) -> bool:
    """True when both objects of a pack are listed with the sizes its index gives."""
    return landed(listing, pack_object(pid), idx.pack_size) and (
        not idx.index_size or landed(listing, index_object(pid), idx.index_size)
    )


__all__ = ["DataRemote"]
