"""Bounded reads from a data remote: every size from outside is checked first.

A data remote may be shared with people who can write anything there. Each
size it states (a listing's object size, an index's column length, a
block's raw length, a large object's header) is checked against what the
records or the index promise, and against a sane limit, before memory or
disk is spent on it. Failures raise :class:`~hangar_git.errors.IntegrityError`
and leave nothing behind locally (temporary files are removed).

This module holds the checks and the bounded primitives; it knows no remote
object. The backends (:mod:`hangar_git.remotes.backends`) read through them:
a local folder through :func:`read_local` and :func:`read_local_ranges`
(:func:`hangar_git.safe_paths.open_regular`: only regular files, never a
symlink out of the remote's root, never a blocking open of a named pipe),
any backend's downloads through :func:`copy_to_new_file`. Object stores get
read timeouts (:func:`with_timeouts`), so a stalled server cannot hang a fetch.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import IntegrityError
from ..safe_paths import is_regular_within, open_new, open_regular
from ..store import chunked
from ..store.digest import parse_kind
from ..store.limits import MAX_PAYLOAD_BYTES, payload_bound

#: largest pack index accepted (a 64 MiB pack of 64-byte payloads has ~60 MiB)
MAX_INDEX_BYTES = 256 * 1024 * 1024
#: largest raw length of a pack block, unless a wanted payload is larger
MAX_BLOCK_RAW = 16 * 1024 * 1024
#: largest raw chunk of a large payload object (chunks are ~128 KiB)
MAX_CHUNK_BYTES = 64 * 1024 * 1024
#: largest format marker (``hangar-data.json``) read
MAX_MARKER_BYTES = 64 * 1024
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

    Parameters
    ----------
    protocol : str
        The fsspec protocol of the remote's URL.
    options : mapping
        The storage options given.

    Returns
    -------
    dict
        A new dict of options.
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
    """``({name: size}, {unsafe names})`` of a folder listing (fsspec detail).

    Folders are left out. On a local remote, a symlink to a regular file
    inside ``root`` counts as that file; pipes, devices, sockets and links
    elsewhere are returned as unsafe and never opened. Sizes are -1 when the
    backend gives none.

    Parameters
    ----------
    listing : list of dict
        ``fs.ls(path, detail=True)``.
    local : bool
        Whether the entries are files of this machine.
    root : str
        The remote's root (links must stay under it).
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
    """Refuse an object of ``size`` bytes larger than ``limit``.

    Raises
    ------
    IntegrityError
        If ``size > limit``.
    """
    if size > limit:
        raise IntegrityError(f"{where} is {size} bytes, more than the {limit} it may hold: refused")


# --------------------------------------------------------------------------
# bounded primitives
# --------------------------------------------------------------------------
def read_local(path: str, root: str, limit: int) -> bytes:
    """The bytes of local file ``path`` (a regular file under ``root``), at most ``limit``.

    Raises
    ------
    IntegrityError
        If it is larger than ``limit``.
    hangar_git.safe_paths.UnsafePathError
        If it is not a regular file, or a link out of ``root``.
    FileNotFoundError
        If it is not there.
    """
    with os.fdopen(open_regular(path, root), "rb") as fh:
        check_size(os.fstat(fh.fileno()).st_size, limit, path)
        data = fh.read(limit + 1)
    check_size(len(data), limit, path)
    return data


def read_local_ranges(
    root: str, ranges: Sequence[tuple[str, int, int]]
) -> list[bytes | BaseException]:
    """``pread`` each ``(path, start, end)`` of a local remote, regular files only.

    Each file is opened once. A range that cannot be read (missing, not a
    regular file, a link out of ``root``) gives its exception in its place.
    """
    out: list[bytes | BaseException] = []
    fds: dict[str, int] = {}
    try:
        for path, start, end in ranges:
            try:
                fd = fds.get(path)
                if fd is None:
                    fd = fds[path] = open_regular(path, root)
                out.append(os.pread(fd, max(0, end - start), start))
            except (OSError, ValueError) as exc:  # UnsafePathError is a ValueError
                out.append(exc)
    finally:
        for fd in fds.values():
            os.close(fd)
    return out


def copy_to_new_file(src: IO[bytes], size: int | None, dst: Path, limit: int, where: str) -> int:
    """Copy readable ``src`` into a new file ``dst``, at most ``limit`` bytes.

    The stated ``size`` (when known) is checked before ``dst`` is made, and
    the copy stops as soon as it exceeds ``limit`` (a stated size can lie);
    on any failure the file made is removed.

    Parameters
    ----------
    src : binary file
        Where the bytes come from (read in 1 MiB pieces).
    size : int or None
        The size the source states.
    dst : pathlib.Path
        The new file (an entry already there is refused, never replaced).
    limit : int
        Most bytes accepted.
    where : str
        What is copied, for messages.

    Returns
    -------
    int
        Bytes copied.

    Raises
    ------
    IntegrityError
        If the source states or holds more than ``limit`` bytes.
    FileExistsError
        If ``dst`` exists.
    """
    if size is not None:
        check_size(int(size), limit, where)
    done = 0
    fd = open_new(dst)
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                buf = src.read(min(_COPY, limit + 1 - done))
                if not buf:
                    break
                done += len(buf)
                check_size(done, limit, where)
                out.write(buf)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return done


# --------------------------------------------------------------------------
# bounds from the records
# --------------------------------------------------------------------------
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
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        buf = os.pread(fd, min(size, chunked.FIRST_READ), 0)
        if len(buf) >= chunked.FIXED.size:
            hlen = chunked.FIXED.unpack_from(buf)[4]
            check_size(hlen, min(size, LARGE_OVERHEAD + raw_limit // 32), f"header of {path}")
            if len(buf) < hlen:
                buf = os.pread(fd, hlen, 0)
    finally:
        os.close(fd)
    _check_geometry(buf, path, digest, raw_limit, size)


def _check_geometry(buf: bytes, path: Path, digest: bytes, raw_limit: int, size: int) -> None:
    if len(buf) < chunked.FIXED.size:
        raise IntegrityError(f"large payload object {path} is truncated")
    _m, _v, _f, klen, hlen, n, dig = chunked.FIXED.unpack_from(buf)
    if bytes(dig) != digest:
        raise IntegrityError(f"{path} holds payload {bytes(dig).hex()}, not {digest.hex()}")
    try:
        kind = bytes(buf[chunked.FIXED.size : chunked.FIXED.size + klen]).decode()
        dtype, shape = parse_kind(kind)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"the header of {path} is malformed: {exc}") from None
    nbytes = math.prod(shape) * dtype.itemsize
    check_size(nbytes, raw_limit, f"the payload of {path}")
    pos = chunked.FIXED.size + klen
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
    "CONNECT_TIMEOUT",
    "LARGE_OVERHEAD",
    "MAX_BLOCK_RAW",
    "MAX_CHUNK_BYTES",
    "MAX_INDEX_BYTES",
    "MAX_MARKER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "READ_TIMEOUT",
    "check_large_header",
    "check_size",
    "copy_to_new_file",
    "decompress",
    "large_object_limit",
    "payload_bound",
    "read_local",
    "read_local_ranges",
    "sort_listing",
    "with_timeouts",
]
