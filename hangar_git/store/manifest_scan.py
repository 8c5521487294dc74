"""Scanning a pack file and its manifest file from their starts (:func:`scan_pack`),
for the index rebuild (:mod:`.rebuild`).

Each block's stored length is derived from its header (raw: the raw length;
blosc2: the chunk header's ``cbytes``, which must agree on the raw length),
must lie inside the file, and its bytes must match its CRC-32; each manifest
record (:mod:`.manifest`) must pass its header CRC, its limits and its body
CRC. Damage is skipped to the next block or record, and described.
"""

from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from . import block_format as _blocks
from .checksum import crc32
from .limits import BLOSC_MAX, MAX_BLOCK
from .manifest import (
    HEAD_SIZE,
    MAGIC,
    ManifestError,
    Record,
    decode_record,
    manifest_path,
    record_length,
)

#: bytes read at once while scanning a pack
WINDOW = 8 << 20
#: an unreadable region (an I/O error) is skipped to the next multiple of this
SKIP = 1 << 20
#: problems a scan describes in words per pack (the others are only counted)
MAX_PROBLEMS = 50
#: the blosc2 chunk header fields the scan reads: ..., nbytes, blocksize, cbytes
_BLOSC = struct.Struct("<BBBBIII")


# --------------------------------------------------------------------------
# scanning a pack
# --------------------------------------------------------------------------
@dataclass
class PackScan:
    """What :func:`scan_pack` found in a pack file and its manifest file.

    Sound blocks are listed by offset (``boffs``, ascending), with their
    stored length (``blens``, header included) and decoded length
    (``rawlens``); ``records`` are the sound manifest records with their
    offsets in the manifest file.
    """

    pack: int
    path: Path
    manifest: Path
    size: int = 0
    #: False when the pack has no manifest file
    has_manifest: bool = False
    boffs: array = field(default_factory=lambda: array("Q"))
    blens: array = field(default_factory=lambda: array("Q"))
    rawlens: array = field(default_factory=lambda: array("Q"))
    records: list[tuple[int, Record]] = field(default_factory=list)
    damaged_blocks: int = 0
    damaged_records: int = 0
    #: bytes of the pack in no sound block
    bad_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    #: problems found beyond :data:`MAX_PROBLEMS` (counted, not described)
    more_problems: int = 0

    def note(self, path: Path, start: int, end: int, why: str) -> None:
        """Record that bytes ``start:end`` of ``path`` were skipped, and why."""
        if path == self.path:
            self.bad_bytes += end - start
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{path}: bytes {start}-{end} {why}")
        else:
            self.more_problems += 1


class _Damaged(Exception):
    """What is at a scan position is not a sound block or record."""

    def __init__(self, why: str, kind: str = "") -> None:
        super().__init__(why)
        self.kind = kind  # "block", "record" or "" (unrecognised bytes)


def _pread(fd: int, n: int, off: int) -> bytes:
    """Up to ``n`` bytes at ``off`` (fewer only at the end of the file)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        b = os.pread(fd, n - got, off + got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class WindowedFile:
    """A file read through one window of :data:`WINDOW` bytes (``fd`` stays the caller's)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.start = 0
        self.buf = b""

    def view(self, off: int, n: int) -> memoryview:
        """Bytes ``off:off+n`` (fewer at the end of the file), ``n <= WINDOW``."""
        end = min(off + n, self.size)
        if off < self.start or end > self.start + len(self.buf):
            self.buf = b""
            try:
                self.buf = _pread(self.fd, min(max(n, WINDOW), self.size - off), off)
            except OSError:  # a bad sector further on: read just what is asked
                self.buf = _pread(self.fd, max(0, end - off), off)
            self.start = off
        lo = off - self.start
        return memoryview(self.buf)[lo : lo + max(0, end - off)]

    def crc(self, off: int, n: int) -> int | None:
        """CRC-32 of bytes ``off:off+n`` read a window at a time; None if the file is shorter."""
        value, pos, end = 0, off, off + n
        while pos < end:
            v = self.view(pos, min(WINDOW, end - pos))
            if not len(v):
                return None
            value = crc32(v, value)
            pos += len(v)
        return value

    def find(self, off: int, magic: bytes) -> int:
        """Offset of the first ``magic`` at or after ``off`` (the size if none)."""
        pos = off
        while pos < self.size:
            v = self.view(pos, WINDOW)
            lo = pos - self.start
            hit = self.buf.find(magic, lo, lo + len(v))
            if hit >= 0:
                return self.start + hit
            if pos + len(v) >= self.size:
                break
            pos += max(1, len(v) - len(magic) + 1)  # a magic across the window's end
        return self.size


def scan_pack(path: Path, pack: int) -> PackScan:
    """Walk pack ``path`` (number ``pack``) and its manifest file: every sound
    block of the one, every sound record of the other.

    A block is sound when its header is believable (a known codec, a length
    within :data:`~.limits.MAX_BLOCK` and inside the file; a blosc2 block's
    stored length is its chunk header's ``cbytes``, which must state the raw
    length the block header states) and its bytes match its CRC; a record
    when it passes :func:`decode_record`. Anything else (a flipped byte, a
    torn tail, an unreadable region) is noted and skipped to the next magic.
    Nothing is allocated on the word of a length read from a file beyond one
    window and one record (bounded by :func:`record_length` and the file size).

    Raises
    ------
    OSError
        Only if the pack cannot be opened.
    """
    scan = PackScan(pack, path, manifest_path(path.parent, pack))
    scan.size = _walk(path, scan, blocks=True)
    try:
        _walk(scan.manifest, scan, blocks=False)
        scan.has_manifest = True
    except FileNotFoundError:
        pass
    except OSError as exc:
        scan.has_manifest = True
        scan.damaged_records += 1
        scan.note(scan.manifest, 0, 0, f"cannot be opened: {exc}")
    return scan


def _walk(path: Path, scan: PackScan, blocks: bool) -> int:
    """Take every block (or record) of ``path`` into ``scan``; returns its size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        src = WindowedFile(fd, os.fstat(fd).st_size)
        take, magic = (_block, _blocks.BLOCK_MAGIC) if blocks else (_record, MAGIC)
        pos = 0
        while pos < src.size:
            try:
                pos = take(src, pos, scan)
                continue
            except _Damaged as exc:
                why, kind = str(exc), exc.kind
            except OSError as exc:
                skip = min(src.size, (pos // SKIP + 1) * SKIP)
                scan.note(path, pos, skip, f"cannot be read: {exc.strerror or exc}")
                src.buf = b""
                pos = skip
                continue
            if kind == "block":
                scan.damaged_blocks += 1
            elif kind == "record":
                scan.damaged_records += 1
            try:
                nxt = src.find(pos + 1, magic)
            except OSError:
                nxt = min(src.size, (pos // SKIP + 1) * SKIP)
                src.buf = b""
            scan.note(path, pos, nxt, why)
            pos = nxt
        return src.size
    finally:
        os.close(fd)


def _block(src: WindowedFile, pos: int, scan: PackScan) -> int:
    """Take the block at ``pos``; returns the offset after it."""
    hs = _blocks.HEADER_SIZE
    head = src.view(pos, hs + _BLOSC.size)
    if bytes(head[:4]) != _blocks.BLOCK_MAGIC:
        raise _Damaged("hold no block")
    if len(head) < hs:
        raise _Damaged("hold a block header cut short by the end of the pack", "block")
    _, codec, rawlen = _blocks.HEADER.unpack_from(head)
    (crc,) = _blocks.CRC.unpack_from(head, hs - _blocks.CRC.size)
    if codec == _blocks.CODEC_RAW:
        body = rawlen
    elif codec == _blocks.CODEC_BLOSC2_LZ4:
        if len(head) < hs + _BLOSC.size:
            raise _Damaged("hold a block cut short by the end of the pack", "block")
        *_, nbytes, _bs, body = _BLOSC.unpack_from(head, hs)
        if nbytes != rawlen or rawlen > BLOSC_MAX or body < _BLOSC.size:
            raise _Damaged("hold a block whose codec header disagrees with it", "block")
    else:
        raise _Damaged(f"hold a block of unknown codec {codec}", "block")
    if rawlen > MAX_BLOCK or body > MAX_BLOCK:
        raise _Damaged(f"hold a block stating an impossible length {rawlen}", "block")
    if pos + hs + body > src.size:
        raise _Damaged(
            f"hold a block of {hs + body} bytes cut short by the end of the pack (truncated)",
            "block",
        )
    if src.crc(pos + hs, body) != crc:
        raise _Damaged("hold a block that fails its checksum", "block")
    scan.boffs.append(pos)
    scan.blens.append(hs + body)
    scan.rawlens.append(rawlen)
    return pos + hs + body


def _record(src: WindowedFile, pos: int, scan: PackScan) -> int:
    """Take the manifest record at ``pos``; returns the offset after it."""
    head = src.view(pos, HEAD_SIZE)
    if bytes(head[:4]) != MAGIC:
        raise _Damaged("hold no manifest record")
    try:
        total = record_length(head)
        if pos + total > src.size:
            raise ManifestError("it is cut short by the end of the file (truncated)")
        buf = _pread(src.fd, total, pos) if total > WINDOW else bytes(src.view(pos, total))
        rec = decode_record(buf)
    except ManifestError as exc:
        raise _Damaged(f"hold a manifest record that is refused: {exc}", "record") from None
    scan.records.append((pos, rec))
    return pos + total
