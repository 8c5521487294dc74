"""The remote pack format: blocks of payloads, and the index naming them.

A data remote holds payloads in packs, never one object per sample (an
object store charges per request): ``packs/<id>.pack`` holds blocks of
compressed payload bytes, ``packs/<id>.idx`` its index (digest -> block and
item). ``<id>`` is the blake2b-160 of the index bytes (:func:`content_hash`),
and the index holds the blake2b-160 of its pack, so both objects are
immutable and named by content.

This format is an interchange format between machines, independent of the
local store's: it carries its own version number
(:data:`~hangar_git.remotes.layout.FORMAT_VERSION`) and never changes once
released.

Pack block: a 20-byte header (magic ``HGRB``, codec, raw length, CRC-32 of the
stored body) and the body: the items' raw bytes concatenated, compressed with
blosc2 (or stored as they are when they do not compress).

Index: a 48-byte header (magic ``HGRI``, version, number of kinds, number of
entries, pack size, the pack's blake2b-160), the kinds table (u16 length +
UTF-8 kind header each), the payload digests sorted (20 bytes each), then
the other columns in that order, zlib-compressed: block offsets, block
lengths, item offsets, item lengths (u64 each) and kind numbers (u32).

Packs are made by :mod:`.packbuilder`; :mod:`.lookup` finds payloads over
all of a remote's packs and plans the ranged reads that fetch them.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..errors import IntegrityError
from ..store import blosc_codec
from ..store.checksum import crc32
from ..store.entries import key_order
from ..store.packs import decode_body
from . import bounded
from .layout import FORMAT_VERSION

try:  # the same zlib stream, made about three times as fast
    from zlib_ng.zlib_ng import compress as _compress
except ImportError:  # pragma: no cover - zlib makes the same format
    _compress = zlib.compress

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


def content_hash(data: bytes | memoryview) -> bytes:
    """The blake2b-160 of ``data``: a pack's id is that of its index, hex-encoded."""
    return hashlib.blake2b(data, digest_size=20).digest()


# --------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------
def block_header(codec: int, rawlen: int, crc: int) -> bytes:
    """The header of a block whose stored body has CRC-32 ``crc``.

    Parameters
    ----------
    codec : int
        :data:`CODEC_RAW` or :data:`CODEC_BLOSC2` (the local store's codec
        numbers are the same, so a local block's body travels unchanged).
    rawlen : int
        The items' raw bytes.
    crc : int
        CRC-32 of the body.

    Returns
    -------
    bytes
        :data:`BLOCK_HEADER_SIZE` bytes.
    """
    return _BLOCK_HEADER.pack(BLOCK_MAGIC, codec, rawlen, crc)


def block_fields(buf: bytes | memoryview) -> tuple[int, int, int]:
    """``(codec, raw length, CRC-32 of the body)`` of a block's header
    (``buf`` holds at least :data:`BLOCK_HEADER_SIZE` bytes; nothing is checked)."""
    _, codec, rawlen, crc = _BLOCK_HEADER.unpack_from(buf)
    return codec, rawlen, crc


def encode_block(raw: bytes | memoryview, typesize: int) -> bytes:
    """Compress ``raw`` into a remote pack block (raw when incompressible).

    Parameters
    ----------
    raw : bytes-like
        The items' bytes, concatenated.
    typesize : int
        Item size of their dtype (for blosc2's shuffle).

    Returns
    -------
    bytes
        Header and body.
    """
    body: bytes | memoryview = raw
    codec = CODEC_RAW
    if len(raw) >= 64:
        comp = blosc_codec.compress(
            raw, typesize=max(1, min(typesize, 255)), clevel=3, codec="zstd"
        )
        if len(comp) < len(raw) * 0.95:
            body, codec = comp, CODEC_BLOSC2
    return b"".join((block_header(codec, len(raw), crc32(body)), body))


def decode_block(buf: bytes | memoryview, where: str = "", max_raw: int | None = None) -> bytes:
    """The raw bytes of one block, after its checksum is verified (a copy:
    :func:`block_raw` gives a raw block's body as a view of ``buf``).

    Parameters
    ----------
    buf : bytes-like
        The block as stored.
    where : str
        Where it comes from, for messages.
    max_raw : int, optional
        Largest raw length accepted (checked, with the compressed stream's
        own length, before anything is allocated for it).

    Returns
    -------
    bytes
        The items' raw bytes.

    Raises
    ------
    IntegrityError
        If the block is truncated, fails its checksum, states a raw length
        over ``max_raw`` or other than its stream's, or cannot be decoded.
    """
    return bytes(block_raw(buf, where, max_raw))


def block_raw(
    buf: bytes | memoryview, where: str = "", max_raw: int | None = None
) -> bytes | memoryview:
    """:func:`decode_block` without the copy: a raw block's body is returned
    as a view of ``buf`` (read-only when ``buf`` is ``bytes``).

    Raises
    ------
    IntegrityError
        As :func:`decode_block`.
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
            stated = blosc_codec.cbuffer_nbytes(body)
        except Exception:  # blosc2 raises RuntimeError / ValueError
            raise IntegrityError(f"block {where} cannot be decoded") from None
        if stated != rawlen:
            raise IntegrityError(f"block {where} has the wrong length")
    return decode_body(codec, body, rawlen, where)


# --------------------------------------------------------------------------
# index
# --------------------------------------------------------------------------
#: one index entry as parsed (56 bytes, little-endian)
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
    """Where one payload sits in a remote pack.

    Attributes
    ----------
    boff, blen : int
        Offset and length of its block in the pack.
    ioff, ilen : int
        Offset and length of its bytes in the block's raw bytes.
    kind : str
        Its kind header.
    """

    boff: int
    blen: int
    ioff: int
    ilen: int
    kind: str


@dataclass
class PackIndex:
    """The parsed index of one remote pack: parallel arrays sorted by digest.

    Attributes
    ----------
    pack_id : str
        The pack's name (its index's :func:`content_hash`, hex).
    pack_size : int
        Bytes of the pack's body.
    pack_hash : bytes
        :func:`content_hash` of the pack's body.
    kinds : list of str
        The kind headers its entries number.
    table : numpy.ndarray
        One row of :data:`ENTRY_DTYPE` per payload.
    joined : bytes
        The payloads' digests, joined (20 bytes each), in the table's order.
    index_size : int
        Bytes of the serialized index (0 when unknown).
    """

    pack_id: str
    pack_size: int
    pack_hash: bytes
    kinds: list[str]
    table: np.ndarray
    joined: bytes
    index_size: int = 0

    def __len__(self) -> int:
        return len(self.joined) // 20

    @cached_property
    def digests(self) -> list[bytes]:
        """The payloads' digests, in the table's order, as bytes (made when
        first asked for: a lookup over the remote's packs takes :attr:`joined`)."""
        return split_digests(self.joined, 0, len(self))

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
        """Raw bytes of all its payloads."""
        return int(self.table["ilen"].sum())


_COLUMNS = (("boff", "<u8"), ("blen", "<u8"), ("ioff", "<u8"), ("ilen", "<u8"), ("kind", "<u4"))
_COLUMN_BYTES = sum(np.dtype(t).itemsize for _, t in _COLUMNS)


_DIGEST_WORDS = np.dtype([("a", ">u8"), ("b", ">u8"), ("c", ">u4")])  # 20 bytes, in order


def _digest_order(digests: Sequence[bytes], joined: bytes | None = None) -> np.ndarray:
    """Positions of ``digests`` sorted by their bytes (stable); ``joined``:
    them joined, when the caller has them so."""
    if joined is None:
        joined = b"".join(digests)
    if len(joined) != _DIGEST_WORDS.itemsize * len(digests):  # not all 20 bytes long
        return np.array(sorted(range(len(digests)), key=digests.__getitem__), np.intp)
    words = np.frombuffer(joined, _DIGEST_WORDS)
    order, first = key_order(words["a"].astype(np.uint64))  # argsort's, in a fifth of the time
    if len(first) > 1 and bool((first[1:] == first[:-1]).any()):  # first words tie: all of them
        return np.lexsort((words["c"], words["b"], words["a"]))
    return order


def _in_order(digests: Sequence[bytes], order: np.ndarray, joined: bytes) -> bytes:
    if len(joined) != _DIGEST_WORDS.itemsize * len(digests):
        return b"".join(digests[i] for i in order.tolist())
    return np.frombuffer(joined, _DIGEST_WORDS)[order].tobytes()


def encode_index(
    digests: Sequence[bytes],
    kind_no: Sequence[int] | np.ndarray,
    kinds: Sequence[str],
    boff: Sequence[int] | np.ndarray,
    blen: Sequence[int] | np.ndarray,
    ioff: Sequence[int] | np.ndarray,
    ilen: Sequence[int] | np.ndarray,
    pack_size: int,
    pack_hash: bytes,
) -> bytes:
    """Serialize a pack index; entries are sorted by digest.

    The digests are stored as they are (20 bytes each); the other columns,
    which repeat a lot, are stored column by column and zlib-compressed.

    Parameters
    ----------
    digests : sequence of bytes
        One per payload; the other sequences are parallel to it.
    kind_no : sequence of int or numpy.ndarray
        Each payload's number in ``kinds``.
    kinds : sequence of str
        The kind headers.
    boff, blen, ioff, ilen : sequence of int or numpy.ndarray
        Block offset and length, item offset and length of each payload.
    pack_size : int
        Bytes of the pack's body.
    pack_hash : bytes
        :func:`content_hash` of the pack's body.

    Returns
    -------
    bytes
        The index, whose :func:`content_hash` names the pack.
    """
    n = len(digests)
    joined = b"".join(digests)
    order = _digest_order(digests, joined)
    cols = {"boff": boff, "blen": blen, "ioff": ioff, "ilen": ilen, "kind": kind_no}
    parts = [_INDEX_HEADER.pack(INDEX_MAGIC, FORMAT_VERSION, len(kinds), n, pack_size, pack_hash)]
    for k in kinds:
        kb = k.encode()
        parts.append(struct.pack("<H", len(kb)) + kb)
    parts.append(_in_order(digests, order, joined))
    packed = (
        b"".join(
            np.asarray(cols[name], dtype=np.int64)[order].astype(t).tobytes()
            for name, t in _COLUMNS
        )
        if n
        else b""
    )
    # level 1: in digest order the columns barely compress better at 6, at
    # five times the time (any level inflates the same)
    parts.append(_compress(packed, 1))
    return b"".join(parts)


def decode_index(pack_id: str, data: bytes) -> PackIndex:
    """Parse and verify a pack index named ``pack_id``.

    Every stated length is checked before it costs memory: the column
    stream inflates to exactly what the header states, never more
    (:func:`~hangar_git.remotes.bounded.decompress`), and no block may lie
    beyond the pack's end.

    Raises
    ------
    IntegrityError
        If the bytes do not hash to ``pack_id``, are malformed, or name a
        newer format version.
    """
    if content_hash(data).hex() != pack_id:
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
        table = _entry_table(data, packed, pos, nentries)
        _check_entries(table, nkinds, size)
        joined = data[pos:dend]
    except IntegrityError:
        raise
    except (struct.error, ValueError, IndexError, UnicodeDecodeError, zlib.error) as exc:
        raise IntegrityError(f"remote pack index {pack_id} is malformed: {exc}") from None
    return PackIndex(pack_id, size, phash, kinds, table, bytes(joined), len(data))


#: digests cut from an index by one struct call each
_DIGEST_RUN = 4096
_DIGESTS = struct.Struct("20s" * _DIGEST_RUN)


def split_digests(data: bytes | memoryview, pos: int, n: int) -> list[bytes]:
    """The ``n`` 20-byte digests at ``pos`` of ``data`` (which holds them all), as bytes.

    The same list as ``[data[i : i + 20] for i in range(pos, pos + 20 * n, 20)]``,
    cut :data:`_DIGEST_RUN` at a time by a precompiled :class:`struct.Struct`
    (several times as fast for a pack's tens of thousands).
    """
    out: list[bytes] = []
    full = n - n % _DIGEST_RUN
    for at in range(pos, pos + 20 * full, 20 * _DIGEST_RUN):
        out.extend(_DIGESTS.unpack_from(data, at))
    tail = pos + 20 * full
    out.extend(bytes(data[i : i + 20]) for i in range(tail, pos + 20 * n, 20))
    return out


def _entry_table(data: bytes, packed: bytes, pos: int, nentries: int) -> np.ndarray:
    table = np.empty(nentries, ENTRY_DTYPE)
    table["digest"] = np.frombuffer(data, "V20", count=nentries, offset=pos)
    off = 0
    for name, t in _COLUMNS:
        table[name] = np.frombuffer(packed, t, count=nentries, offset=off)
        off += np.dtype(t).itemsize * nentries
    return table


def _check_entries(table: np.ndarray, nkinds: int, size: int) -> None:
    if not len(table):
        return
    if int(table["kind"].max()) >= nkinds:
        raise ValueError("kind number out of range")
    boff, blen = table["boff"], table["blen"]
    if bool((boff > size).any()) or bool((blen > size - np.minimum(boff, size)).any()):
        raise ValueError("a block lies beyond the end of the pack")
    if int(blen.min()) < BLOCK_HEADER_SIZE:
        raise ValueError("a block is shorter than its header")


__all__ = [
    "BLOCK_HEADER_SIZE",
    "BLOCK_MAGIC",
    "BLOCK_TARGET",
    "CODEC_BLOSC2",
    "CODEC_RAW",
    "ENTRY_DTYPE",
    "ENTRY_SIZE",
    "INDEX_MAGIC",
    "Entry",
    "PackIndex",
    "block_fields",
    "block_header",
    "content_hash",
    "block_raw",
    "decode_block",
    "decode_index",
    "encode_block",
    "encode_index",
    "split_digests",
]
