"""Payloads on a data remote: content-named packs reached through fsspec.

A data remote is any fsspec URL (a directory or network share, ``s3://``,
``gs://``, ``sftp://``, ``memory://`` ...). Payloads travel in packs, never
one object per sample: an object store charges per request. The layout under
the remote's root is::

    hangar-data.json         {"hangar_git_data_format": 1}
    packs/<id>.pack          blocks of compressed payload bytes
    packs/<id>.idx           the pack's index: digest -> block and item
    packs/<digest>.hgc       a large payload, an object of its own (see ``large.py``)

``<id>`` is the blake2b-160 of the index bytes, and the index holds the
blake2b of its pack, so both objects are immutable and named by content. A
pack counts as present only once its index is there: uploads send the pack
first, then its index, so a transfer cut in the middle leaves at worst a pack
without an index, which the next push of the same payloads overwrites.

This format is an interchange format between machines, independent of the
local store's: it carries its own version number and never changes once
released.

Pack block: a 20-byte header (magic ``HGRB``, codec, raw length, CRC-32 of the
stored body) and the body: the items' raw bytes concatenated, compressed with
blosc2 (or stored as they are when they do not compress).

Index: a 48-byte header (magic ``HGRI``, version, number of kinds, number of
entries, pack size, the pack's blake2b-160), the kinds table (u16 length +
UTF-8 kind header each), the payload digests sorted (20 bytes each), then
the other columns in that order, zlib-compressed: block offsets, block
lengths, item offsets, item lengths (u64 each) and kind numbers (u32).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import fsspec
import numpy as np

from ..errors import IntegrityError
from ..safe_paths import is_pack_id
from ..store._blosc import blosc2
from ..store.checksum import crc32
from ..store.digest import parse_kind
from ..store.packs import decode_body
from . import bounded, large

FORMAT_VERSION = 1
MARKER = "hangar-data.json"
PACKS = "packs"

BLOCK_MAGIC = b"HGRB"
_BLOCK_HEADER = struct.Struct("<4sB3xQI")  # magic, codec, raw length, crc32 of body
BLOCK_HEADER_SIZE = _BLOCK_HEADER.size
# codec numbers must agree with hangar_git.store.packs (decode_body is shared)
CODEC_RAW = 0
CODEC_BLOSC2 = 1

INDEX_MAGIC = b"HGRI"
_INDEX_HEADER = struct.Struct("<4sB3xIIQ20s")  # magic, version, kinds, entries, size, hash
ENTRY_SIZE = 56  # a parsed entry: digest + four u64 + u32

#: raw bytes gathered into one block of a remote pack
BLOCK_TARGET = 256 * 1024
#: raw bytes gathered into one pack before it is sealed and uploaded
PACK_TARGET = 64 * 1024 * 1024
#: two block ranges of one pack closer than this are read in one request
COALESCE_GAP = 512 * 1024
#: largest single ranged read
MAX_RANGE = 64 * 1024 * 1024

_ALLOWED_DTYPE_KINDS = frozenset("biufc")


def _hash(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=20).digest()


# --------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------
def encode_block(raw: bytes | memoryview, typesize: int) -> bytes:
    """Compress ``raw`` into a remote pack block (raw when incompressible)."""
    body: bytes | memoryview = raw
    codec = CODEC_RAW
    if len(raw) >= 64:
        comp = blosc2.compress(
            raw,
            typesize=max(1, min(typesize, 255)),
            clevel=3,
            filter=blosc2.Filter.SHUFFLE,
            codec=blosc2.Codec.ZSTD,
        )
        if len(comp) < len(raw) * 0.95:
            body, codec = comp, CODEC_BLOSC2
    return _BLOCK_HEADER.pack(BLOCK_MAGIC, codec, len(raw), crc32(body)) + bytes(body)


def decode_block(buf: bytes | memoryview, where: str = "", max_raw: int | None = None) -> bytes:
    """The raw bytes of one block, after its checksum is verified.

    Parameters
    ----------
    buf : bytes-like
        The block as stored.
    where : str
        Where it comes from, for messages.
    max_raw : int, optional
        Largest raw length accepted (checked, with the compressed stream's
        own length, before anything is allocated for it).

    Raises
    ------
    IntegrityError
        If the block is truncated, fails its checksum, states a raw length
        over ``max_raw`` or other than its stream's, or cannot be decoded.
    """
    if len(buf) < BLOCK_HEADER_SIZE:
        raise IntegrityError(f"block {where} is truncated")
    magic, codec, rawlen, crc = _BLOCK_HEADER.unpack_from(buf)
    body = memoryview(buf)[BLOCK_HEADER_SIZE:]
    if magic != BLOCK_MAGIC or crc32(body) != crc:
        raise IntegrityError(f"block {where} fails its checksum")
    if max_raw is not None and rawlen > max_raw:
        raise IntegrityError(f"block {where} states {rawlen} raw bytes, more than {max_raw}")
    if codec == CODEC_BLOSC2:
        try:
            stated = blosc2.get_cbuffer_sizes(body)[0]
        except Exception:  # blosc2 raises RuntimeError / ValueError
            raise IntegrityError(f"block {where} cannot be decoded") from None
        if stated != rawlen:
            raise IntegrityError(f"block {where} has the wrong length")
    return bytes(decode_body(codec, body, rawlen, where))


_KIND_CHECKS: dict[str, int | None] = {}


def kind_nbytes(kind: str) -> int | None:
    """Bytes of one array of ``kind``, None unless it is a plain numeric array.

    Refused: object, structured, string and other non-numeric dtypes, and
    headers that do not parse.
    """
    try:
        return _KIND_CHECKS[kind]
    except KeyError:
        pass
    out: int | None
    try:
        dtype, shape = parse_kind(kind)
        if dtype.kind not in _ALLOWED_DTYPE_KINDS or dtype.hasobject or dtype.fields:
            out = None
        else:
            out = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except (TypeError, ValueError):
        out = None
    if len(_KIND_CHECKS) < 4096:
        _KIND_CHECKS[kind] = out
    return out


def check_kind(kind: str, nbytes: int) -> bool:
    """True when ``kind`` is a plain numeric array of exactly ``nbytes`` bytes."""
    n = kind_nbytes(kind)
    return n is not None and n == nbytes


# --------------------------------------------------------------------------
# index
# --------------------------------------------------------------------------
#: one index entry as stored (60 bytes, little-endian)
ENTRY_DTYPE = np.dtype(
    [
        ("digest", "V20"),
        ("boff", "<u8"),
        ("blen", "<u8"),
        ("ioff", "<u8"),
        ("ilen", "<u8"),
        ("kind", "<u4"),
    ]
)
assert ENTRY_DTYPE.itemsize == ENTRY_SIZE


class Entry(NamedTuple):
    """Where one payload sits in a remote pack."""

    boff: int
    blen: int
    ioff: int
    ilen: int
    kind: str


def _digest_list(column: np.ndarray) -> list[bytes]:
    raw = np.ascontiguousarray(column).tobytes()
    return [raw[i : i + 20] for i in range(0, len(raw), 20)]


@dataclass
class PackIndex:
    """The parsed index of one remote pack: parallel arrays sorted by digest."""

    pack_id: str
    pack_size: int
    pack_hash: bytes
    kinds: list[str]
    table: np.ndarray  # of ENTRY_DTYPE
    digests: list[bytes]
    #: bytes of the serialized index (0 when unknown)
    index_size: int = 0

    def __len__(self) -> int:
        return len(self.digests)

    @property
    def entries(self) -> dict[bytes, Entry]:
        """``{digest: Entry}`` (built on each call: for tests and tools)."""
        t = self.table
        return {
            d: Entry(int(b), int(bl), int(io), int(il), self.kinds[int(k)])
            for d, b, bl, io, il, k in zip(
                self.digests, t["boff"], t["blen"], t["ioff"], t["ilen"], t["kind"], strict=True
            )
        }

    @property
    def raw_bytes(self) -> int:
        return int(self.table["ilen"].sum())


_COLUMNS = (("boff", "<u8"), ("blen", "<u8"), ("ioff", "<u8"), ("ilen", "<u8"), ("kind", "<u4"))
_COLUMN_BYTES = sum(np.dtype(t).itemsize for _, t in _COLUMNS)


def encode_index(
    digests: Sequence[bytes],
    kind_no: Sequence[int],
    kinds: Sequence[str],
    boff: Sequence[int],
    blen: Sequence[int],
    ioff: Sequence[int],
    ilen: Sequence[int],
    pack_size: int,
    pack_hash: bytes,
) -> bytes:
    """Serialize a pack index; entries are sorted by digest.

    The digests are stored as they are (20 bytes each); the other columns,
    which repeat a lot, are stored column by column and zlib-compressed.
    """
    n = len(digests)
    order = sorted(range(n), key=digests.__getitem__)
    cols = {"boff": boff, "blen": blen, "ioff": ioff, "ilen": ilen, "kind": kind_no}
    parts = [_INDEX_HEADER.pack(INDEX_MAGIC, FORMAT_VERSION, len(kinds), n, pack_size, pack_hash)]
    for k in kinds:
        kb = k.encode()
        parts.append(struct.pack("<H", len(kb)) + kb)
    parts.append(b"".join(digests[i] for i in order))
    packed = (
        b"".join(
            np.asarray(cols[name], dtype=np.int64)[order].astype(t).tobytes()
            for name, t in _COLUMNS
        )
        if n
        else b""
    )
    parts.append(zlib.compress(packed, 6))
    return b"".join(parts)


def decode_index(pack_id: str, data: bytes) -> PackIndex:
    """Parse and verify a pack index named ``pack_id``.

    Raises
    ------
    IntegrityError
        If the bytes do not hash to ``pack_id`` or are malformed.
    """
    if _hash(data).hex() != pack_id:
        raise IntegrityError(f"remote pack index {pack_id} does not match its name")
    try:
        magic, version, nkinds, nentries, size, phash = _INDEX_HEADER.unpack_from(data)
        if magic != INDEX_MAGIC:
            raise ValueError("bad magic")
        if version > FORMAT_VERSION:
            raise IntegrityError(
                f"remote pack index {pack_id} has format {version}, newer than this "
                "hangar-git understands: upgrade hangar-git"
            )
        pos = _INDEX_HEADER.size
        kinds = []
        for _ in range(nkinds):
            (n,) = struct.unpack_from("<H", data, pos)
            kinds.append(data[pos + 2 : pos + 2 + n].decode())
            pos += 2 + n
        dend = pos + 20 * nentries
        if len(data) < dend:
            raise ValueError("truncated")
        packed = bounded.decompress(
            memoryview(data)[dend:], _COLUMN_BYTES * nentries, f"remote pack index {pack_id}"
        )
        table = np.empty(nentries, ENTRY_DTYPE)
        table["digest"] = np.frombuffer(data, "V20", count=nentries, offset=pos)
        off = 0
        for name, t in _COLUMNS:
            table[name] = np.frombuffer(packed, t, count=nentries, offset=off)
            off += np.dtype(t).itemsize * nentries
        if nentries and int(table["kind"].max()) >= nkinds:
            raise ValueError("kind number out of range")
        if nentries:
            boff, blen = table["boff"], table["blen"]
            if bool((boff > size).any()) or bool((blen > size - np.minimum(boff, size)).any()):
                raise ValueError("a block lies beyond the end of the pack")
            if int(blen.min()) < BLOCK_HEADER_SIZE:
                raise ValueError("a block is shorter than its header")
        digests = [data[i : i + 20] for i in range(pos, dend, 20)]
    except IntegrityError:
        raise
    except (struct.error, ValueError, IndexError, UnicodeDecodeError, zlib.error) as exc:
        raise IntegrityError(f"remote pack index {pack_id} is malformed: {exc}") from None
    return PackIndex(pack_id, size, phash, kinds, table, digests, len(data))


class RemoteLookup:
    """digest -> where, over every pack of a remote (one row per payload)."""

    def __init__(self, indexes: Mapping[str, PackIndex]) -> None:
        self.pack_ids: list[str] = []
        self.kinds: list[str] = []
        kind_no: dict[str, int] = {}
        self.rows: dict[bytes, int] = {}
        packs, tables, kmaps = [], [], []
        offset = 0
        for pid in sorted(indexes):
            idx = indexes[pid]
            n = len(idx)
            packs.append(np.full(n, len(self.pack_ids), np.int32))
            self.pack_ids.append(pid)
            kmap = np.array(
                [kind_no.setdefault(k, len(kind_no)) for k in idx.kinds] or [0], np.int32
            )
            kmaps.append(kmap[idx.table["kind"].astype(np.int64)] if n else np.zeros(0, np.int32))
            tables.append(idx.table)
            for i, d in enumerate(idx.digests):
                self.rows.setdefault(d, offset + i)
            offset += n
        self.kinds = list(kind_no)
        self.pack = np.concatenate(packs) if packs else np.zeros(0, np.int32)
        self.kind = np.concatenate(kmaps) if kmaps else np.zeros(0, np.int32)
        cat = np.concatenate(tables) if tables else np.zeros(0, ENTRY_DTYPE)
        self.boff = cat["boff"].astype(np.int64)
        self.blen = cat["blen"].astype(np.int64)
        self.ioff = cat["ioff"].astype(np.int64)
        self.ilen = cat["ilen"].astype(np.int64)

        self._digests: list[bytes] = [d for pid in sorted(indexes) for d in indexes[pid].digests]

    def __len__(self) -> int:
        return len(self.rows)

    def digest_of(self, row: int) -> bytes:
        """The digest at ``row``."""
        return self._digests[row]

    def __contains__(self, digest: object) -> bool:
        return digest in self.rows

    def get(self, digest: bytes) -> tuple[str, Entry] | None:
        """``(pack id, Entry)`` of one payload, None when absent."""
        r = self.rows.get(digest)
        if r is None:
            return None
        return self.pack_ids[self.pack[r]], Entry(
            int(self.boff[r]),
            int(self.blen[r]),
            int(self.ioff[r]),
            int(self.ilen[r]),
            self.kinds[self.kind[r]],
        )


# --------------------------------------------------------------------------
# building packs
# --------------------------------------------------------------------------
@dataclass
class SealedPack:
    """A pack ready to upload: its bytes, index bytes and content name."""

    pack_id: str
    data: bytes
    index: bytes
    digests: list[bytes]
    raw_bytes: int


class PackBuilder:
    """Gathers payloads into blocks and blocks into one pack.

    Payloads of one kind added together (:meth:`add_rows`) are cut into
    blocks directly; :meth:`add` takes them one at a time.
    """

    def __init__(self, block_target: int | None = None) -> None:
        self.block_target = BLOCK_TARGET if block_target is None else block_target
        self._reset()

    def _reset(self) -> None:
        self._blocks: list[bytes] = []
        self._size = 0
        self._digests: list[bytes] = []
        self._seen: set[bytes] = set()
        self._kind_no: list[int] = []
        self._kinds: dict[str, int] = {}
        self._boff: list[int] = []
        self._blen: list[int] = []
        self._ioff: list[int] = []
        self._ilen: list[int] = []
        self._pending: list[tuple[bytes, str, bytes | memoryview]] = []
        self._pending_bytes = 0
        self._pending_dtype = ""
        self.raw_bytes = 0

    def __len__(self) -> int:
        return len(self._digests) + len(self._pending)

    def add(self, digest: bytes, kind: str, data: bytes | memoryview) -> None:
        """Add one payload (its digest was computed by the caller)."""
        if digest in self._seen:
            return
        self._seen.add(digest)
        dtype = kind[: kind.rindex("|")]
        if self._pending and dtype != self._pending_dtype:
            self._seal_pending()
        self._pending.append((digest, kind, data))
        self._pending_dtype = dtype
        self._pending_bytes += len(data)
        self.raw_bytes += len(data)
        if self._pending_bytes >= self.block_target:
            self._seal_pending()

    def add_rows(self, digests: Sequence[bytes], kind: str, rows: np.ndarray) -> None:
        """Add payloads of one ``kind``: row ``i`` of uint8 matrix ``rows`` is ``digests[i]``."""
        self._seal_pending()
        keep = [i for i, d in enumerate(digests) if d not in self._seen]
        if not keep:
            return
        if len(keep) != len(digests):
            rows = rows[keep]
            digests = [digests[i] for i in keep]
        self._seen.update(digests)
        n, width = rows.shape
        typesize = np.dtype(kind[: kind.rindex("|")]).itemsize
        per = max(1, self.block_target // max(1, width))
        kno = self._kinds.setdefault(kind, len(self._kinds))
        for lo in range(0, n, per):
            hi = min(n, lo + per)
            block = encode_block(rows[lo:hi].tobytes(), typesize)
            count = hi - lo
            self._digests.extend(digests[lo:hi])
            self._kind_no.extend([kno] * count)
            self._boff.extend([self._size] * count)
            self._blen.extend([len(block)] * count)
            self._ioff.extend(range(0, count * width, width) if width else [0] * count)
            self._ilen.extend([width] * count)
            self._blocks.append(block)
            self._size += len(block)
        self.raw_bytes += n * width

    def _seal_pending(self) -> None:
        if not self._pending:
            return
        items = self._pending
        raw = b"".join(p[2] for p in items)
        typesize = np.dtype(self._pending_dtype).itemsize
        block = encode_block(raw, typesize)
        ioff = 0
        for d, kind, data in items:
            n = len(data)
            self._digests.append(d)
            self._kind_no.append(self._kinds.setdefault(kind, len(self._kinds)))
            self._boff.append(self._size)
            self._blen.append(len(block))
            self._ioff.append(ioff)
            self._ilen.append(n)
            ioff += n
        self._blocks.append(block)
        self._size += len(block)
        self._pending = []
        self._pending_bytes = 0

    def seal(self) -> SealedPack:
        """The finished pack (the builder is then empty)."""
        self._seal_pending()
        data = b"".join(self._blocks)
        index = encode_index(
            self._digests,
            self._kind_no,
            list(self._kinds),
            self._boff,
            self._blen,
            self._ioff,
            self._ilen,
            len(data),
            _hash(data),
        )
        out = SealedPack(_hash(index).hex(), data, index, self._digests, self.raw_bytes)
        self._reset()
        return out


# --------------------------------------------------------------------------
# the remote
# --------------------------------------------------------------------------
class DataRemote:
    """A data remote reached through fsspec, with a local cache of its indexes.

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
    requests : int
        Requests this object sent (a listing, a read or a write each count
        one; a ranged read of several ranges counts one per range).
    bytes_sent, bytes_received : int
        Payload bytes moved.
    """

    def __init__(
        self, url: str, cache_dir: Path | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        opts = bounded.with_timeouts(fsspec.utils.get_protocol(url), options or {})
        self.fs, root = fsspec.core.url_to_fs(url, **opts)
        self.root = root.rstrip("/")
        self.cache_dir = cache_dir
        self.requests = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._lock = threading.Lock()
        self._indexes: dict[str, PackIndex] = {}
        self._lookup: RemoteLookup | None = None
        #: large payloads held as objects of their own: digest -> object size
        self.large: dict[bytes, int] = {}
        #: packs the last refresh ignored: an object of the wrong size, or an index
        #: that fails its checks (their payloads count as absent, so a push sends
        #: them again)
        self.damaged: list[str] = []
        #: hangar-data.json was read and holds the known format (None: not read yet)
        self._marker: bool | None = None
        #: names in the last listing that are not regular files (never read)
        self.unsafe: set[str] = set()

    def _count(self, n: int = 1, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.requests += n
            self.bytes_sent += sent
            self.bytes_received += received

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts)) if self.root else "/".join(parts)

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
            if not self._is_local() and "/" in self.root:
                bucket = self.root.split("/", 1)[0]
                self._count()
                if not self.fs.exists(bucket):
                    raise FileNotFoundError(f"no bucket {bucket!r}")
        except ConnectionError:
            raise
        except Exception as exc:  # backends raise their own types (botocore, aiohttp ...)
            raise ConnectionError(f"data remote {self.url} cannot be reached: {exc}") from exc

    def _is_local(self) -> bool:
        protocol = self.fs.protocol
        protos = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protos or "local" in protos

    def list_packs(self) -> dict[str, int]:
        """``{name: size}`` of the objects under ``packs/`` (one listing).

        The size is -1 when the backend does not report one.
        """
        path = self._path(PACKS)
        self._count()
        try:
            self.fs.invalidate_cache(path)
            listing = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return {}
        out, self.unsafe = bounded.sort_listing(listing, self._is_local(), self.root)
        return out

    def refresh(self) -> dict[str, PackIndex]:
        """Read the indexes of every complete pack (new ones only) and return them.

        A pack counts only when both its objects are listed with the sizes its
        index gives, and its index passes its checks; the others are listed
        in :attr:`damaged` and their payloads count as absent.
        """
        listing = self.list_packs()
        self.large = large.in_listing(listing)
        self.check_marker()
        ids = sorted(
            n[:-4]
            for n in listing
            if n.endswith(".idx") and is_pack_id(n[:-4]) and f"{n[:-4]}.pack" in listing
        )
        before = set(self._indexes)
        # a pack whose index or body is a pipe, device or link out of the root
        self.damaged = sorted(
            stem
            for stem, _, ext in (n.rpartition(".") for n in self.unsafe)
            if ext in ("idx", "pack") and is_pack_id(stem)
        )
        ids = [pid for pid in ids if pid not in self.damaged]
        for pid in set(self._indexes) - set(ids):
            del self._indexes[pid]
        new = [pid for pid in ids if pid not in self._indexes]
        fresh: list[str] = []
        for pid in new:
            idx = self._cached_index(pid)
            if idx is None:
                fresh.append(pid)
            else:
                self._indexes[pid] = idx
        for pid, data in bounded.read_indexes(self, fresh, listing):
            if data is None:
                self.damaged.append(pid)  # too large, not a regular file, or larger than listed
                continue
            try:
                idx = decode_index(pid, data)
            except IntegrityError:
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

    def _cached_index(self, pid: str) -> PackIndex | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{pid}.idx"
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
        os.replace(tmp, self.cache_dir / f"{pid}.idx")

    def lookup(self) -> RemoteLookup:
        """Where each payload of every known pack is (rebuilt after a refresh)."""
        if self._lookup is None:
            self._lookup = RemoteLookup(self._indexes)
        return self._lookup

    def check_marker(self) -> bool:
        """Read ``hangar-data.json`` (once per object) and refuse an unknown format.

        Returns
        -------
        bool
            True when the marker is there (a remote not written yet has none).

        Raises
        ------
        FormatVersionError
            If it names a format other than :data:`FORMAT_VERSION`, is not a
            format marker, or is not a regular file (see
            :func:`~hangar_git.remotes.bounded.read_marker`).
        """
        if self._marker is None:
            self._marker = bounded.read_marker(self, self._path(MARKER), FORMAT_VERSION) or None
        return bool(self._marker)

    # ---- writing -------------------------------------------------------
    def ensure_marker(self) -> None:
        """Write ``hangar-data.json`` at the root when it is not there yet.

        Raises
        ------
        FormatVersionError
            If the one there names an unknown format (nothing is written).
        """
        path = self._path(MARKER)
        if self._is_local():
            self.fs.makedirs(self._path(PACKS), exist_ok=True)
        if self.check_marker():
            return
        data = json.dumps({"hangar_git_data_format": FORMAT_VERSION}).encode()
        self._count(sent=len(data))
        self.fs.pipe_file(path, data)
        self._marker = True

    def upload(self, pack: SealedPack) -> None:
        """Send a pack, then its index (the index makes the pack visible)."""
        pack_path = self._path(PACKS, f"{pack.pack_id}.pack")
        self._count(sent=len(pack.data))
        self._put(pack_path, pack.data)
        self._count(sent=len(pack.index))
        self._put(self._path(PACKS, f"{pack.pack_id}.idx"), pack.index)
        self._indexes[pack.pack_id] = decode_index(pack.pack_id, pack.index)
        self._store_cached_index(pack.pack_id, pack.index)
        self._lookup = None

    def _put(self, path: str, data: bytes) -> None:
        if self._is_local():
            # write beside, then rename: a reader never sees half an object
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def verify_uploaded(self, packs: Sequence[SealedPack]) -> list[str]:
        """Names of the uploaded objects that are missing or of the wrong size."""
        if not packs:
            return []
        listing = self.list_packs()
        bad = []
        for p in packs:
            for name, size in (
                (f"{p.pack_id}.pack", len(p.data)),
                (f"{p.pack_id}.idx", len(p.index)),
            ):
                if not landed(listing, name, size):
                    bad.append(name)
        return bad

    # ---- reading -------------------------------------------------------
    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Bytes of ``(pack id, start, end)`` ranges, read concurrently where possible."""
        if not ranges:
            return []
        paths = [self._path(PACKS, f"{pid}.pack") for pid, _, _ in ranges]
        starts = [s for _, s, _ in ranges]
        ends = [e for _, _, e in ranges]
        self._count(len(ranges))
        if self._is_local():  # regular files only, never a pipe or a link out of the root
            out = bounded.read_local_ranges(self, list(zip(paths, starts, ends, strict=True)))
        else:
            out = self.fs.cat_ranges(paths, starts, ends, on_error="return")
        result = []
        for (pid, s, e), data in zip(ranges, out, strict=True):
            if isinstance(data, BaseException):
                raise IntegrityError(
                    f"remote pack {pid} of {self.url} cannot be read at {s}-{e}: {data}"
                )
            self._count(0, received=len(data))
            result.append(bytes(data))
        return result

    def remove_objects(self, names: Iterable[str]) -> None:
        """Delete objects under ``packs/`` (used by tests and repair tools)."""
        for n in names:
            self._count()
            self.fs.rm_file(self._path(PACKS, n))
        self.fs.invalidate_cache(self._path(PACKS))


def landed(listing: Mapping[str, int], name: str, size: int) -> bool:
    """True when ``name`` is listed with ``size`` bytes (or a size the backend does not give)."""
    listed = listing.get(name)
    return listed is not None and (listed == size or listed < 0)


def _sizes_match(listing: Mapping[str, int], pid: str, idx: PackIndex) -> bool:
    """True when both objects of a pack are listed with the sizes its index gives."""
    return landed(listing, f"{pid}.pack", idx.pack_size) and (
        not idx.index_size or landed(listing, f"{pid}.idx", idx.index_size)
    )


def plan_ranges(
    blocks: Iterable[tuple[str, int, int]],
    gap: int | None = None,
    max_range: int | None = None,
) -> list[tuple[str, int, int, list[tuple[int, int]]]]:
    """Group wanted blocks ``(pack id, offset, length)`` into few ranged reads.

    Returns ``(pack id, start, end, [(block offset, block length) ...])`` per
    read: blocks of one pack closer than ``gap`` bytes (default
    :data:`COALESCE_GAP`) share a read of at most ``max_range`` bytes.
    """
    gap = COALESCE_GAP if gap is None else gap
    max_range = MAX_RANGE if max_range is None else max_range
    by_pack: dict[str, set[tuple[int, int]]] = {}
    for pid, boff, blen in blocks:
        by_pack.setdefault(pid, set()).add((boff, blen))
    out = []
    for pid in sorted(by_pack):
        cur: list[tuple[int, int]] = []
        start = end = 0
        for boff, blen in sorted(by_pack[pid]):
            if cur and boff - end <= gap and boff + blen - start <= max_range:
                cur.append((boff, blen))
                end = max(end, boff + blen)
                continue
            if cur:
                out.append((pid, start, end, cur))
            cur = [(boff, blen)]
            start, end = boff, boff + blen
        if cur:
            out.append((pid, start, end, cur))
    return out


def split_blocks(
    data: bytes, start: int, blocks: Sequence[tuple[int, int]]
) -> Iterator[tuple[int, memoryview]]:
    """``(block offset, block bytes)`` of each block inside a range read at ``start``."""
    view = memoryview(data)
    for boff, blen in blocks:
        yield boff, view[boff - start : boff - start + blen]


__all__ = [
    "DataRemote",
    "Entry",
    "PackBuilder",
    "PackIndex",
    "SealedPack",
    "check_kind",
    "decode_block",
    "decode_index",
    "encode_block",
    "encode_index",
    "plan_ranges",
]
