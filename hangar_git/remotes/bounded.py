"""Bounded reads from a data remote: every size from outside is checked first.

A data remote may be shared with people who can write anything there. Each
size it states (a listing's object size, an index's column length, a
block's raw length, a large object's header) is checked against what the
records or the index promise, and against a sane limit, before memory or
disk is spent on it. Failures raise :class:`~hangar_git.errors.IntegrityError`
and leave nothing behind locally (temporary files are removed).

Local folders are read through :func:`hangar_git.safe_paths.open_regular`:
only regular files, never a symlink out of the remote's root, never a
blocking open of a named pipe. Object stores get read timeouts
(:func:`with_timeouts`), so a stalled server cannot hang a fetch.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FormatVersionError, IntegrityError
from ..safe_paths import UnsafePathError, is_regular_within, open_regular

if TYPE_CHECKING:
    from .data_transport import DataRemote

#: largest pack index accepted (a 64 MiB pack of 64-byte payloads has ~60 MiB)
MAX_INDEX_BYTES = 256 * 1024 * 1024
#: largest raw length of a pack block, unless a wanted payload is larger
MAX_BLOCK_RAW = 16 * 1024 * 1024
#: largest raw chunk of a large payload object (chunks are ~128 KiB)
MAX_CHUNK_BYTES = 64 * 1024 * 1024
#: largest payload accepted when the records give no bound
MAX_PAYLOAD_BYTES = 1 << 34
#: extra bytes a large object may hold beyond its raw payload (its header)
LARGE_OVERHEAD = 1 << 20
#: seconds an object store may take to connect, and to answer one read
CONNECT_TIMEOUT = 30
READ_TIMEOUT = 120
_COPY = 1 << 20


def with_timeouts(protocol: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with read and connect timeouts for ``protocol`` unless set.

    For ``s3`` (s3fs/botocore): ``config_kwargs`` ``connect_timeout`` and
    ``read_timeout``; for ``http(s)``: an aiohttp ``timeout``. Others are
    returned unchanged.
    """
    out = dict(options)
    if protocol in ("s3", "s3a"):
        cfg = dict(out.get("config_kwargs") or {})
        cfg.setdefault("connect_timeout", CONNECT_TIMEOUT)
        cfg.setdefault("read_timeout", READ_TIMEOUT)
        out["config_kwargs"] = cfg
    elif protocol in ("http", "https"):
        client = dict(out.get("client_kwargs") or {})
        if "timeout" not in client:
            import aiohttp

            client["timeout"] = aiohttp.ClientTimeout(
                sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
            )
        out["client_kwargs"] = client
    return out


def sort_listing(
    listing: list[dict[str, Any]], local: bool, root: str
) -> tuple[dict[str, int], set[str]]:
    """``({name: size}, {unsafe names})`` of a ``packs/`` listing (fsspec detail).

    Folders are left out. On a local remote, a symlink to a regular file
    inside ``root`` counts as that file; pipes, devices, sockets and links
    elsewhere are returned as unsafe and never opened. Sizes are -1 when the
    backend gives none.
    """
    out: dict[str, int] = {}
    unsafe: set[str] = set()
    base = root if root.startswith("/") else "/" + root
    for info in listing:
        kind = info.get("type", "file")
        if kind == "directory":
            continue
        full = str(info["name"]).rstrip("/")
        name = full.rsplit("/", 1)[-1]
        size = info.get("size")
        if kind != "file":
            if not (local and info.get("islink") and is_regular_within(full, base)):
                unsafe.add(name)
                continue
            size = os.stat(full).st_size
        out[name] = -1 if size is None else int(size)
    return out, unsafe


def read_indexes(
    remote: DataRemote, pack_ids: list[str], listing: Mapping[str, int]
) -> list[tuple[str, bytes | None]]:
    """``(pack id, index bytes or None)`` for each pack index to read.

    An index listed over :data:`MAX_INDEX_BYTES` is not read; the others are
    read with a bound (their listed size, else the maximum): ranged reads on
    an object store, regular files only on a local remote. None stands for
    refused (too large, larger than listed, or not a regular file); an index
    removed meanwhile is left out.
    """
    from .data_transport import PACKS

    out: list[tuple[str, bytes | None]] = []
    todo: list[tuple[str, int]] = []
    for pid in pack_ids:
        size = listing.get(f"{pid}.idx", -1)
        if size > MAX_INDEX_BYTES:
            out.append((pid, None))  # refused before a byte is read
        else:
            todo.append((pid, size if size >= 0 else MAX_INDEX_BYTES))
    if not todo:
        return out
    paths = [remote._path(PACKS, f"{pid}.idx") for pid, _ in todo]
    remote._count(len(paths))
    blobs: list[Any]
    if remote._is_local():
        blobs = read_local_ranges(
            remote, [(p, 0, lim + 1) for p, (_, lim) in zip(paths, todo, strict=True)]
        )
    else:  # ranged reads: never more than the listing promised
        blobs = remote.fs.cat_ranges(
            paths, [0] * len(paths), [lim + 1 for _, lim in todo], on_error="return"
        )
    for (pid, lim), data in zip(todo, blobs, strict=True):
        if isinstance(data, FileNotFoundError) or data is None:
            continue  # removed meanwhile: ignore this pack
        if isinstance(data, BaseException) or len(data) > lim:
            out.append((pid, None))
            continue
        remote._count(0, received=len(data))
        out.append((pid, bytes(data)))
    return out


def decompress(data: bytes | memoryview, expected: int, where: str) -> bytes:
    """zlib-decompress ``data`` into exactly ``expected`` bytes, never more.

    Raises
    ------
    IntegrityError
        If the stream is damaged, ends short, or holds more than ``expected``.
    """
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, expected)
        if not d.eof and d.decompress(d.unconsumed_tail, 1):
            raise IntegrityError(f"{where} holds more than the {expected} bytes it declares")
    except zlib.error as exc:
        raise IntegrityError(f"{where} is malformed: {exc}") from None
    if len(out) != expected or not d.eof or d.unused_data:
        raise IntegrityError(f"{where} does not hold the {expected} bytes it declares")
    return out


def check_size(size: int, limit: int, where: str) -> None:
    """Refuse an object of ``size`` bytes larger than ``limit``."""
    if size > limit:
        raise IntegrityError(f"{where} is {size} bytes, more than the {limit} it may hold: refused")


def read_marker(remote: DataRemote, path: str, version: int) -> bool:
    """Read a data remote's format marker and refuse any format but ``version``.

    Returns
    -------
    bool
        True when the marker is there and names ``version``; False when there
        is none (a remote not written yet).

    Raises
    ------
    FormatVersionError
        If it names another format version, is not a hangar-git data format
        marker, or cannot be read as a regular file (nothing is read or
        written then).
    """
    name = path.rsplit("/", 1)[-1]
    try:
        data = read_object(remote, path, 64 * 1024)
    except FileNotFoundError:
        return False
    except IntegrityError as exc:
        raise FormatVersionError(
            f"the data remote {remote.url} has an unreadable {name}: {exc}"
        ) from None
    try:
        found = json.loads(data)["hangar_git_data_format"]
    except (ValueError, KeyError, TypeError):
        raise FormatVersionError(
            f"the data remote {remote.url} has a {name} that is not a hangar-git data "
            "format marker: refused (is this URL the right data remote?)"
        ) from None
    if type(found) is not int or found != version:
        raise FormatVersionError(
            f"the data remote {remote.url} holds data format {found!r}; this hangar-git "
            f"reads and writes format {version} only: upgrade hangar-git (nothing was "
            "read or written)"
        )
    return True


def _local_path(remote: DataRemote, path: str) -> str:
    return path if path.startswith("/") else "/" + path


def read_object(remote: DataRemote, path: str, limit: int) -> bytes:
    """The bytes of one remote object of at most ``limit`` bytes.

    Raises
    ------
    IntegrityError
        If it is larger, not a regular file, or leads out of the remote.
    FileNotFoundError
        If it is not there.
    """
    remote._count()
    if remote._is_local():
        try:
            fd = open_regular(_local_path(remote, path), _local_path(remote, remote.root))
        except UnsafePathError as exc:
            raise IntegrityError(f"remote object {path}: {exc}") from None
        with os.fdopen(fd, "rb") as fh:
            check_size(os.fstat(fh.fileno()).st_size, limit, path)
            data = fh.read(limit + 1)
    else:  # one ranged read: never more than limit + 1 bytes
        data = remote.fs.cat_file(path, start=0, end=limit + 1)
    check_size(len(data), limit, path)
    remote._count(0, received=len(data))
    return data


def read_local_ranges(
    remote: DataRemote, ranges: list[tuple[str, int, int]]
) -> list[bytes | BaseException]:
    """``pread`` each ``(path, start, end)`` of a local remote, regular files only."""
    root = _local_path(remote, remote.root)
    out: list[bytes | BaseException] = []
    fds: dict[str, int] = {}
    try:
        for path, start, end in ranges:
            try:
                fd = fds.get(path)
                if fd is None:
                    fd = fds[path] = open_regular(_local_path(remote, path), root)
                out.append(os.pread(fd, max(0, end - start), start))
            except (OSError, UnsafePathError) as exc:
                out.append(exc)
    finally:
        for fd in fds.values():
            os.close(fd)
    return out


def get_file(remote: DataRemote, path: str, dst: Path, limit: int) -> int:
    """Copy remote object ``path`` (at most ``limit`` bytes) to new file ``dst``.

    The object's stated size is checked before the copy, and the copy stops
    as soon as it exceeds ``limit``; on any failure ``dst`` is removed.

    Returns
    -------
    int
        Bytes copied.

    Raises
    ------
    IntegrityError
        Too large, not a regular file, or out of the remote's root.
    FileNotFoundError
        Not there.
    """
    remote._count()
    done = 0
    try:
        if remote._is_local():
            try:
                src = os.fdopen(
                    open_regular(_local_path(remote, path), _local_path(remote, remote.root)), "rb"
                )
            except UnsafePathError as exc:
                raise IntegrityError(f"remote object {path}: {exc}") from None
        else:
            src = remote.fs.open(path, "rb")
        with src:
            size = getattr(src, "size", None)
            if size is None and hasattr(src, "fileno"):
                size = os.fstat(src.fileno()).st_size
            if size is not None:
                check_size(int(size), limit, path)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(dst, flags, 0o644), "wb") as out:
                while True:
                    buf = src.read(min(_COPY, limit + 1 - done))
                    if not buf:
                        break
                    done += len(buf)
                    check_size(done, limit, path)
                    out.write(buf)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    remote._count(0, received=done)
    return done


def payload_bound(itemsize: int, shape: Sequence[int]) -> int:
    """Largest raw bytes one payload of an arrayset may hold: ``itemsize``
    times the product of its (maximum) ``shape``, capped at
    :data:`MAX_PAYLOAD_BYTES`. The bound :func:`download_payloads
    <hangar_git.remotes.transfer.download_payloads>` takes per digest; the
    storage overheads (a pack block's, a large object's header, see
    :func:`large_object_limit`) are added there."""
    return min(math.prod(int(s) for s in shape) * int(itemsize), MAX_PAYLOAD_BYTES)


def large_object_limit(raw_limit: int) -> int:
    """Largest ``.hgc`` object accepted for a payload of at most ``raw_limit`` raw bytes
    (chunks are stored raw when they do not shrink; the rest is header)."""
    return raw_limit + LARGE_OVERHEAD + raw_limit // 32


def check_large_header(path: Path, digest: bytes, raw_limit: int) -> None:
    """Check a fetched ``.hgc`` file's header against what the records allow,
    before anything is allocated for its chunks.

    Its payload must be at most ``raw_limit`` bytes, every chunk at most
    :data:`MAX_CHUNK_BYTES` and no larger than the array, each stored chunk
    no longer than its raw size, and the file no longer than its header and
    chunks.

    Raises
    ------
    IntegrityError
        If any of it does not hold.
    """
    from ..store import chunked

    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        buf = os.pread(fd, min(size, chunked._FIRST_READ), 0)
        if len(buf) >= chunked._FIXED.size:
            hlen = chunked._FIXED.unpack_from(buf)[4]
            check_size(hlen, min(size, LARGE_OVERHEAD + raw_limit // 32), f"header of {path}")
            if len(buf) < hlen:
                buf = os.pread(fd, hlen, 0)
    finally:
        os.close(fd)
    _check_geometry(buf, path, digest, raw_limit, size)


def _check_geometry(buf: bytes, path: Path, digest: bytes, raw_limit: int, size: int) -> None:
    import numpy as np

    from ..store import chunked
    from ..store.digest import parse_kind

    if len(buf) < chunked._FIXED.size:
        raise IntegrityError(f"large payload object {path} is truncated")
    _m, _v, _f, klen, hlen, n, dig = chunked._FIXED.unpack_from(buf)
    if bytes(dig) != digest:
        raise IntegrityError(f"{path} holds payload {bytes(dig).hex()}, not {digest.hex()}")
    try:
        kind = bytes(buf[chunked._FIXED.size : chunked._FIXED.size + klen]).decode()
        dtype, shape = parse_kind(kind)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"the header of {path} is malformed: {exc}") from None
    nbytes = math.prod(shape) * dtype.itemsize
    check_size(nbytes, raw_limit, f"the payload of {path}")
    pos = chunked._FIXED.size + klen
    if len(buf) < pos + 8 * len(shape) or hlen != chunked.header_length(kind, len(shape), n):
        raise IntegrityError(f"the header of {path} is malformed")
    chunks = [int(c) for c in np.frombuffer(buf, "<u8", len(shape), pos)]
    if any(c < 1 or c > max(1, s) for c, s in zip(chunks, shape, strict=True)):
        raise IntegrityError(f"{path} has chunks {chunks} that do not fit its shape {shape}")
    chunk_bytes = math.prod(chunks) * dtype.itemsize
    check_size(chunk_bytes, MAX_CHUNK_BYTES, f"a chunk of {path}")
    grid = math.prod(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    if n != grid and nbytes:
        raise IntegrityError(f"{path} lists {n} chunks, its grid has {grid}")
    table = np.frombuffer(buf, chunked.TABLE, n, pos + 8 * len(shape))
    if n and int(table["len"].max()) > chunk_bytes:
        raise IntegrityError(f"{path} has a stored chunk larger than a raw chunk")
    if n and int((table["off"].astype(object) + table["len"]).max()) > size:
        raise IntegrityError(f"{path} is truncated")
    check_size(size, hlen + nbytes, str(path))


__all__ = [
    "MAX_BLOCK_RAW",
    "MAX_CHUNK_BYTES",
    "MAX_INDEX_BYTES",
    "MAX_PAYLOAD_BYTES",
    "check_large_header",
    "check_size",
    "decompress",
    "get_file",
    "large_object_limit",
    "payload_bound",
    "read_indexes",
    "read_marker",
    "sort_listing",
    "read_local_ranges",
    "read_object",
    "with_timeouts",
]
