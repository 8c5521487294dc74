"""Pack manifests: which payloads each flush wrote into a pack, so a lost index can be rebuilt.

A pack block states its length and CRC, not which payloads it holds: that
lives only in ``index.sqlite``. So that a lost index can be rebuilt from the
disk alone (:mod:`.rebuild`), the writer appends *manifest records* naming
every index entry of each flush's blocks to the pack's manifest file
``packs/NNNNNNNN.manifest``, synced with the pack (the two syncs run at once)
before the index rows are committed. Readers never open manifest files.
They sit beside the pack, not in it, so a pack stays nothing but blocks:
``gc`` counts pack bytes no live entry names as dead (records in packs would
have it compact small-payload packs on every run).

Here: the record format (:class:`ManifestWriter` writes it,
:func:`decode_record` reads it) and the scan of a pack and its manifest
file (:func:`scan_pack`).

Record layout (format 1, little-endian)::

    offset     size   field
    0          4      magic "HGM1"
    4          1      format version (1)
    5          1      flags (0)
    6          2      reserved (0)
    8          4      K: number of kinds
    12         4      B: number of block rows
    16         4      E: number of entries
    20         4      T: bytes of the kind table
    24         4      CRC-32 of bytes 0..23
    28         T      kind table: K times (u16 length, utf-8 "<dtype>|<shape>")
    28+T       20*B   block rows: block offset in the pack (u64), stored length
                      (u64, its 20-byte header included), entries (u32, >= 1)
    28+T+20B   28*E   entries, block row by block row: digest (20 bytes), item
                      offset in the decoded block (u32), kind (u32, a position
                      in the kind table)
    end-4      4      CRC-32 of the kind table, block rows and entries

The header's counts are trusted only once its own CRC matches, and are
bounded (:data:`MAX_ENTRIES`, :data:`MAX_KIND_BYTES`, :data:`MAX_KIND_TABLE`)
and checked against the file's size before anything is read on their word.
The writer cuts a flush into records of :data:`RECORD_ENTRIES` entries (a
damaged record loses no more; a block may be named in two). Large payloads
(``large/*.hgc``) are not listed: their files describe themselves.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import durable
from .checksum import crc32
from .digest import DIGEST_SIZE as DIGEST
from .digest import parse_kind
from .durable import FILE_MODE, fsync_fd, truncate_to, write_all
from .threads import syncer

MAGIC = b"HGM1"
VERSION = 1
#: suffix of a pack's manifest file
SUFFIX = ".manifest"
_HEAD = struct.Struct("<4sBBHIIII")  # magic, version, flags, reserved, K, B, E, T
_U32 = struct.Struct("<I")
_KLEN = struct.Struct("<H")
_ROW = struct.Struct("<QQI")  # a block row, as BLOCK_ROW
#: bytes of a record's header, its CRC included
HEAD_SIZE = _HEAD.size + _U32.size
BLOCK_ROW = np.dtype([("boff", "<u8"), ("blen", "<u8"), ("n", "<u4")])
ENTRY = np.dtype([("digest", "V20"), ("ioff", "<u4"), ("kind", "<u4")])

#: entries the writer puts in one record at most
RECORD_ENTRIES = 4096
#: entries a reader accepts in one record
MAX_ENTRIES = 1 << 20
#: bytes of one kind text a reader accepts (numpy's 64 axes need under 1,400)
MAX_KIND_BYTES = 4096
#: bytes of a record's kind table a reader accepts
MAX_KIND_TABLE = 32 << 20
#: item offset and kind id of a :class:`~.packs.Location`
_IOFF, _KIND = itemgetter(3), itemgetter(5)


class ManifestError(ValueError):
    """A manifest record that is damaged, truncated or not believable."""


# --------------------------------------------------------------------------
# kinds
# --------------------------------------------------------------------------
def kind_size(kind: str) -> int:
    """Bytes of one payload of kind ``kind`` (``"<dtype>|<d0>,<d1>,..."``, read
    from disk): ``itemsize * prod(shape)``, a Python int.

    Raises
    ------
    ValueError
        If the text is too long, does not parse, names an object dtype or a
        negative axis, or is not exactly what the store writes.
    """
    if len(kind) > MAX_KIND_BYTES:
        raise ValueError(f"kind header of {len(kind)} characters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dtype, shape = parse_kind(kind)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"kind {kind[:80]!r} does not parse: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"kind {kind[:80]!r} names an object dtype")
    if any(s < 0 for s in shape) or dtype.str + "|" + ",".join(map(str, shape)) != kind:
        raise ValueError(f"kind {kind[:80]!r} is not one the store writes")
    return dtype.itemsize * math.prod(shape)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def manifest_path(packs_dir: Path, pack: int) -> Path:
    """The manifest file of pack ``pack`` (beside ``NNNNNNNN.pack``)."""
    return packs_dir / f"{pack:08d}{SUFFIX}"


class ManifestWriter:
    """The writer's side. Noting a block is a list append; :meth:`seal` turns
    the blocks noted in one pack into records (at the end of a flush, before
    the writer leaves a pack); :meth:`synced` writes them around the pack's sync.
    """

    __slots__ = ("_blocks", "_fds", "_pending", "packs_dir")

    def __init__(self, packs_dir: Path) -> None:
        self.packs_dir = packs_dir
        self._blocks: list[tuple[int, int, Any]] = []
        self._pending: list[tuple[int, memoryview]] = []  # (pack, records) sealed, not yet synced
        self._fds: dict[int, int] = {}  # pack -> its manifest file, open for appending

    def __bool__(self) -> bool:
        """True when sealed records wait to be written."""
        return bool(self._pending)

    def add_items(self, boff: int, blen: int, items: Mapping[bytes, Sequence[int]]) -> None:
        """Note a block at ``boff`` (``blen`` bytes) holding ``items``: digest ->
        its :class:`~.packs.Location` (item offset at ``[3]``, kind id at ``[5]``)."""
        self._blocks.append((boff, blen, items))

    def add_rows(
        self,
        boff: int,
        blen: int,
        kind_id: int,
        size: int,
        rows: Sequence[bytes] | bytes,
        span: slice,
    ) -> None:
        """Note a block holding the payloads of digests ``rows[span]``, each ``size``
        bytes of kind ``kind_id``, one after the other.

        ``rows`` is a sequence of digests, or them joined (``span`` then counts
        digests, not bytes, and has no step): the faster form, no object per
        digest. It is read when the records are sealed: keep it unchanged."""
        self._blocks.append((boff, blen, (kind_id, size, rows, span)))

    def discard(self) -> None:
        """Forget everything noted and sealed (the writer dropped it)."""
        self._blocks.clear()
        self._pending.clear()

    def close(self) -> None:
        """Close the manifest files (what is sealed and not written is lost)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _fd(self, pack: int) -> int:
        fd = self._fds.get(pack)
        if fd is None:
            path = manifest_path(self.packs_dir, pack)
            fd = self._fds[pack] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        return fd

    def seal(self, pack: int, kind_ids: Mapping[str, int]) -> None:
        """Turn the blocks noted, all in pack ``pack``, into records to write
        (``kind_ids``: kind header -> kind id, for every kind id noted)."""
        blocks, self._blocks = self._blocks, []
        if blocks:
            records = _records(blocks, kind_ids)
            if records:
                self._pending.append((pack, records))

    @contextmanager
    def synced(self) -> Iterator[None]:
        """Append the sealed records to their manifest files and sync them while
        the body (the pack's sync) runs. On any failure, here or in the body,
        the files are cut back, the records stay sealed, and the error is raised.
        """
        if not self._pending:
            yield
            return
        opened: list[tuple[int, int]] = []  # fd, length before
        try:
            for pack, records in self._pending:
                fd = self._fd(pack)
                opened.append((fd, os.fstat(fd).st_size))
                write_all(fd, records)
            fds = list(dict.fromkeys(fd for fd, _ in opened))
            job = syncer().submit(_fsync_all, fds) if durable.FSYNC else None
            try:
                yield
            except BaseException:
                if job is not None:
                    with suppress(Exception):
                        job.result()  # let it end before the files are cut back
                raise
            if job is not None:
                job.result()
        except BaseException:
            for fd, size in reversed(opened):  # a pack twice: back to its first length
                truncate_to(fd, size)
            raise
        last = self._pending[-1][0]
        self._pending.clear()
        for pack in [p for p in self._fds if p != last]:  # packs the writer has left
            os.close(self._fds.pop(pack))


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        fsync_fd(fd)


#: a record to encode: block rows, first entry and end, kind table, kinds
_Plan = tuple[list[tuple[int, int, int]], int, int, bytes, int]


def _records(blocks: list[tuple[int, int, Any]], kind_ids: Mapping[str, int]) -> memoryview:
    """The records of noted ``blocks``: one per :data:`RECORD_ENTRIES` entries.

    The entries are laid out once, block by block, in one :data:`ENTRY`
    array (no Python object per entry for rows noted by
    :meth:`ManifestWriter.add_rows`), and the records are encoded into one
    buffer allocated once.
    """
    ents, rows = _entries(blocks)
    if not len(ents):
        return memoryview(b"")
    texts = {kid: text.encode() for text, kid in kind_ids.items()}  # a handful of kinds
    kinds = ents["kind"]  # kind ids, made positions in each record's kind table here
    one = bool((kinds == kinds[0]).all())
    plan: list[_Plan] = []
    for part, start, stop in _cut(rows):
        kids = kinds[start:stop]
        if one or (kids == kids[0]).all():  # the usual case: one kind
            uk = [int(kids[0])]
            if not one:
                kids[:] = 0
        else:
            srt = np.sort(kids)  # np.unique, without the import of numpy.ma it makes (30 ms)
            u = srt[np.concatenate(([True], srt[1:] != srt[:-1]))]
            uk = u.tolist()
            kids[:] = np.searchsorted(u, kids)
        # a kind id the writer does not know (never so) gets an empty text: refused on reading
        ktab = b"".join([_KLEN.pack(len(t)) + t for t in (texts.get(k, b"") for k in uk)])
        plan.append((part, start, stop, ktab, len(uk)))
    if one:
        kinds[:] = 0
    return _encode(ents, plan)


def _encode(ents: np.ndarray, plan: list[_Plan]) -> memoryview:
    """The records of ``plan``, entries from ``ents``, in one buffer."""
    size = sum(
        HEAD_SIZE + len(kt) + BLOCK_ROW.itemsize * len(pr) + ENTRY.itemsize * (b - a) + _U32.size
        for pr, a, b, kt, _ in plan
    )
    arr = np.empty(size, np.uint8)
    out = arr.data
    raw = ents.view(np.uint8)
    pos = 0
    for part, start, stop, ktab, nk in plan:
        head = _HEAD.pack(MAGIC, VERSION, 0, 0, nk, len(part), stop - start, len(ktab))
        body = pos + HEAD_SIZE
        p = body + len(ktab)
        out[pos : pos + _HEAD.size] = head
        _U32.pack_into(out, pos + _HEAD.size, crc32(head))
        out[body:p] = ktab
        for r in part:
            _ROW.pack_into(out, p, *r)
            p += _ROW.size
        q = p + ENTRY.itemsize * (stop - start)
        arr[p:q] = raw[ENTRY.itemsize * start : ENTRY.itemsize * stop]
        _U32.pack_into(out, q, crc32(out[body:q]))
        pos = q + _U32.size
    return out


def _entries(blocks: list[tuple[int, int, Any]]) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The entries of ``blocks`` (of :data:`ENTRY`, ``kind`` a kind id), and a
    row ``(block offset, length, entries)`` per block.

    Consecutive blocks noted by :meth:`ManifestWriter.add_rows` from the same
    joined digests, kind and size, their spans one after the other (a bulk
    add's), are filled as one run: a few array passes, not a few per block."""
    counts = [_span_len(w[2], w[3]) if type(w) is tuple else len(w) for _, _, w in blocks]
    ents = np.empty(sum(counts), ENTRY)
    rows = [(boff, blen, n) for (boff, blen, _), n in zip(blocks, counts, strict=True)]
    digest, ioff, kind = ents["digest"], ents["ioff"], ents["kind"]
    a = i = 0
    while i < len(blocks):
        what, n = blocks[i][2], counts[i]
        j, b = i + 1, a + n
        if not n:
            i = j
            continue
        if type(what) is tuple:
            kid, size, ds, span = what
            if (n - 1) * size >= 1 << 32:
                raise OverflowError(f"an item offset of {(n - 1) * size} bytes")
            joined = isinstance(ds, bytes | bytearray | memoryview)
            while joined and j < len(blocks) and counts[j]:  # the run this block starts
                nxt = blocks[j][2]
                if type(nxt) is not tuple or nxt[2] is not ds or nxt[:2] != (kid, size):
                    break
                if _span_start(ds, nxt[3]) != _span_start(ds, span) + (b - a):
                    break
                if (counts[j] - 1) * size >= 1 << 32:
                    raise OverflowError(f"an item offset of {(counts[j] - 1) * size} bytes")
                b += counts[j]
                j += 1
            if joined:
                start = _span_start(ds, span)
                digest[a:b] = np.frombuffer(ds, "V20", b - a, DIGEST * start)
            else:
                digest[a:b] = np.frombuffer(_span_digests(ds, span), "V20", n)
            if j - i == 1:
                ioff[a:b] = np.arange(n, dtype=np.uint64) * size
            else:  # each entry's place in its block: its place in the run less its block's
                firsts = np.cumsum([0, *counts[i : j - 1]], dtype=np.int64)
                at = np.arange(b - a, dtype=np.int64)
                at -= np.repeat(firsts, counts[i:j])
                ioff[a:b] = at * size
            kind[a:b] = kid
        else:
            locs = what.values()
            digest[a:b] = np.frombuffer(b"".join(what), "V20", n)
            ioff[a:b] = np.array(list(map(_IOFF, locs)), np.uint32)
            kind[a:b] = np.array(list(map(_KIND, locs)), np.uint32)
        a, i = b, j
    return ents, rows


def _span_start(ds: bytes | bytearray | memoryview, span: slice) -> int:
    """First digest of ``span`` of the joined digests ``ds``."""
    return span.indices(len(ds) // DIGEST)[0]


def _cut(rows: list[tuple[int, int, int]]) -> list[tuple[list[tuple[int, int, int]], int, int]]:
    """Block ``rows`` cut into records of :data:`RECORD_ENTRIES` entries at most,
    a block's entries over two if need be: (block rows, first entry, end)."""
    out: list[tuple[list[tuple[int, int, int]], int, int]] = []
    part: list[tuple[int, int, int]] = []
    start = pos = 0
    for boff, blen, n in rows:
        while n:
            take = min(n, RECORD_ENTRIES - (pos - start))
            part.append((boff, blen, take))
            pos += take
            n -= take
            if pos - start == RECORD_ENTRIES:
                out.append((part, start, pos))
                part, start = [], pos
    if part:
        out.append((part, start, pos))
    return out


def _span_len(ds: Sequence[bytes] | bytes, span: slice) -> int:
    """Digests in ``span`` of ``ds`` (a sequence of digests, or them joined)."""
    if isinstance(ds, bytes | bytearray | memoryview):
        start, stop, step = span.indices(len(ds) // DIGEST)
        if step != 1:
            raise ValueError("a span of joined digests must be contiguous")
        return max(0, stop - start)
    return len(range(*span.indices(len(ds))))


def _span_digests(ds: Sequence[bytes] | bytes, span: slice) -> bytes | memoryview:
    """The digests ``span`` of ``ds`` (a sequence of digests, or them joined), joined."""
    if isinstance(ds, bytes | bytearray | memoryview):
        start = span.indices(len(ds) // DIGEST)[0]
        return memoryview(ds)[DIGEST * start : DIGEST * (start + _span_len(ds, span))]
    return b"".join(ds[span])


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
class Record(NamedTuple):
    """A decoded manifest record."""

    kinds: list[str]
    #: bytes of one payload of each kind; -1 where the kind is refused
    sizes: list[int]
    blocks: np.ndarray  # of BLOCK_ROW
    entries: np.ndarray  # of ENTRY, block row by block row


def record_length(head: bytes | memoryview) -> int:
    """Total bytes of the record whose first :data:`HEAD_SIZE` bytes are ``head``.

    Raises
    ------
    ManifestError
        If the header is short, fails its CRC, is of a newer format, or
        states counts over the limits or that do not fit together.
    """
    if len(head) < HEAD_SIZE:
        raise ManifestError("its header is truncated")
    magic, version, _flags, _res, nk, nb, ne, klen = _HEAD.unpack_from(head)
    if magic != MAGIC or _U32.unpack_from(head, _HEAD.size)[0] != crc32(head[: _HEAD.size]):
        raise ManifestError("its header fails its checksum")
    if version != VERSION:
        raise ManifestError(f"it has format {version}, not {VERSION}")
    if not 0 < ne <= MAX_ENTRIES or not 0 < nb <= ne or not 0 < nk <= ne:
        raise ManifestError(f"it states {ne} entries in {nb} blocks of {nk} kinds")
    if not 2 * nk <= klen <= min(MAX_KIND_TABLE, nk * (_KLEN.size + MAX_KIND_BYTES)):
        raise ManifestError(f"it states a kind table of {klen} bytes for {nk} kinds")
    return HEAD_SIZE + klen + BLOCK_ROW.itemsize * nb + ENTRY.itemsize * ne + _U32.size


def decode_record(buf: bytes) -> Record:
    """Decode and check a whole record (``buf`` holds exactly its bytes).

    Raises
    ------
    ManifestError
        If its header or body fails its CRC, or the tables do not add up.
    """
    total = record_length(buf)
    if len(buf) != total:
        raise ManifestError(f"it is {len(buf)} bytes, its header states {total}")
    _, _, _, _, nk, nb, ne, klen = _HEAD.unpack_from(buf)
    (crc,) = _U32.unpack_from(buf, total - _U32.size)
    if crc32(memoryview(buf)[HEAD_SIZE : total - _U32.size]) != crc:
        raise ManifestError("it fails its checksum")
    kinds: list[str] = []
    sizes: list[int] = []
    pos, end = HEAD_SIZE, HEAD_SIZE + klen
    for _ in range(nk):
        if pos + _KLEN.size > end:
            raise ManifestError("its kind table is truncated")
        (n,) = _KLEN.unpack_from(buf, pos)
        pos += _KLEN.size
        if n > MAX_KIND_BYTES or pos + n > end:
            raise ManifestError(f"it states a kind of {n} bytes")
        try:
            text = buf[pos : pos + n].decode()
            size = kind_size(text)
        except (UnicodeDecodeError, ValueError):
            text, size = "", -1  # entries of this kind are refused, the others stand
        kinds.append(text)
        sizes.append(size)
        pos += n
    if pos != end:
        raise ManifestError("its kind table does not add up")
    blocks = np.frombuffer(buf, BLOCK_ROW, nb, end)
    entries = np.frombuffer(buf, ENTRY, ne, end + BLOCK_ROW.itemsize * nb)
    if int(blocks["n"].astype(np.int64).sum()) != ne or not (blocks["n"] > 0).all():
        raise ManifestError("its block rows do not add up to its entries")
    if int(entries["kind"].max()) >= nk:
        raise ManifestError("an entry names a kind it does not list")
    return Record(kinds, sizes, blocks, entries)
