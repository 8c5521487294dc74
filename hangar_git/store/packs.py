"""Append-only pack files of compressed blocks, with a SQLite index.

Layout under the store directory::

    index.sqlite          blocks:   block id -> (pack, offset, length, row check)
                          segments: sorted runs of index entries, one row each
                          kinds:    kind id -> (kind header "<dtype>|<shape>", row check)
    packs/00000001.pack   blocks, appended, never rewritten in place

A block is a 20-byte header (magic, codec, raw length, CRC-32 of the stored
bytes) followed by the stored bytes: the blosc2-compressed concatenation of
the items' raw bytes, or those bytes as they are when they do not compress.
Small arrays share blocks (one decompression serves many reads); a large
array gets a block of its own. For the blocks of each flush the writer also
appends *manifest records* naming their entries to ``packs/NNNNNNNN.manifest``
(see :mod:`.manifest`), synced with the pack: readers never read them, and
:mod:`.rebuild` rebuilds a lost index from them.

The parts: :mod:`.codec` (blocks), :mod:`.index` (the SQLite index),
:mod:`.reader` (:class:`PackReader`), :mod:`.appender` (durable appends to
pack files) and this module: :class:`PackStore` and its single writer,
:class:`PackWriter`. Large payloads live in chunked files beside the packs
(:mod:`.chunked`); :mod:`.backend_packs` offers all of it through the
:class:`~.base.PayloadStore` interface.

The index maps a payload digest to (block, offset of the item in the block,
kind); the item's length follows from its kind. Entries live in *segments*:
each flush of the writer adds one segment holding its new entries sorted by
digest, stored as one row of packed 32-byte entries with a CRC-32 of the
whole, and small segments are merged as they pile up (a log-structured merge:
a handful of segments at any size). A reader loads the segments once and
resolves any number of digests with one vectorised binary search per
segment, instead of a SQL query per payload: a flush of 60,000 payloads is
one transaction of a few rows, and resolving them all takes milliseconds.

Durability: block bytes are written to the pack file and synced before the
index rows that point to them are committed (``synchronous=FULL``), so a
process killed, or a machine cut off, at any point leaves at worst
unreferenced bytes at a pack's tail, never an index entry pointing at
nothing. A failed write or sync (a full disk) cuts the pack back to its
last good length and keeps the blocks queued at their offsets, and SQLite's
failures surface as :class:`OSError` (see :mod:`.durable`). Sizes read from
the index and from block headers are checked before anything is allocated
(see :mod:`.limits`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .appender import PACK_LIMIT
from .block_format import CODEC_BLOSC2_LZ4, CODEC_RAW, HEADER_SIZE
from .chunked import LARGE_IOFF, LARGE_PACK
from .codec import decode_body, encode_block, read_block, typesize_of
from .durable import create_file, rollback
from .gather import STREAM_WINDOW
from .index import (
    ENTRY,
    INDEX_VERSION,
    Location,
    block_check,
    connect_index,
    entry_digests,
    index_guard,
    init_index,
    insert_segment,
    kind_check,
)
from .reader import CACHE_BYTES, PackReader
from .segment_plan import CommitPlan
from .writer import BLOCK_TARGET, STORE_LOCK_TIMEOUT, PackWriter

#: looked up at each commit (tests stand a failing one in)
_insert_segment = insert_segment


class PackStore:
    """A directory of packs and its index; hands out readers and the writer."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.packs_dir = self.root / "packs"
        self.index_path = self.root / "index.sqlite"
        #: large payloads, one chunked file each (see :mod:`.chunked`)
        self.large_dir = self.root / "large"

    def create(self) -> None:
        """Create the directory and an empty index (idempotent)."""
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        create_file(self.index_path)  # SQLite would make it 0644 whatever the umask
        con = connect_index(self.index_path)
        try:
            with index_guard(self.index_path):
                init_index(con)
        finally:
            con.close()

    def exists(self) -> bool:
        """True when the store's index exists."""
        return self.index_path.exists()

    def pack_path(self, pack: int) -> Path:
        """Path of pack file number ``pack``."""
        return self.packs_dir / f"{pack:08d}.pack"

    def pack_numbers(self) -> list[int]:
        """Numbers of the pack files present, ascending."""
        try:  # listed, not globbed: a glob compiles a pattern at every writer's opening
            names = os.listdir(self.packs_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".pack") and n[:-5].isdigit())

    def commit_segments(
        self,
        con: sqlite3.Connection,
        block_rows: Sequence[tuple[int, int, int, int, int]],
        plan: CommitPlan,
        kind_rows: Sequence[tuple[int, str, int]] = (),
    ) -> tuple[dict[int, int], int | None]:
        """Carry out ``plan`` (see :func:`.segment_plan.plan_commit`) on the index
        through the writer's connection ``con``, with the new ``block_rows``
        and ``kind_rows`` (id, kind, check), in one transaction.

        Returns
        -------
        rewritten : dict of int to int
            Old id -> new id of each segment rewritten without dropped entries.
        new_sid : int or None
            Id of the new segment (None when it is empty).
        """
        with index_guard(self.index_path):
            con.execute("BEGIN IMMEDIATE")
            try:
                if kind_rows:
                    con.executemany("INSERT INTO kinds(id, kind, chk) VALUES (?,?,?)", kind_rows)
                if block_rows:
                    con.executemany("INSERT INTO blocks VALUES (?,?,?,?,?)", block_rows)
                for sid in [*plan.merged, *plan.replaced]:
                    con.execute("DELETE FROM segments WHERE id=?", (sid,))
                rewritten: dict[int, int] = {}
                for sid, e in plan.replaced.items():
                    if len(e):
                        rewritten[sid] = _insert_segment(con, e)
                new_sid = _insert_segment(con, plan.new) if len(plan.new) else None
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        return rewritten, new_sid

    def reader(self) -> PackReader:
        """A new reader (one per thread)."""
        return PackReader(self)

    def writer(self) -> PackWriter:
        """The store's writer; waits for the store's write lock.

        Raises
        ------
        WriterLockError
            Another process held the lock for :data:`STORE_LOCK_TIMEOUT` seconds.
        """
        return PackWriter(self)


__all__ = [
    "BLOCK_TARGET",
    "CACHE_BYTES",
    "CODEC_BLOSC2_LZ4",
    "CODEC_RAW",
    "ENTRY",
    "HEADER_SIZE",
    "INDEX_VERSION",
    "LARGE_IOFF",
    "LARGE_PACK",
    "PACK_LIMIT",
    "STORE_LOCK_TIMEOUT",
    "STREAM_WINDOW",
    "Location",
    "PackReader",
    "PackStore",
    "PackWriter",
    "block_check",
    "decode_body",
    "encode_block",
    "entry_digests",
    "index_guard",
    "kind_check",
    "read_block",
    "typesize_of",
]
