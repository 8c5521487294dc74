"""Rebuild the payload index (``index.sqlite``) from the packs and large files alone.

If the index is deleted, truncated or damaged, every payload is unreadable
though its bytes are all there: :func:`rebuild_index` makes a new index from
what the disk holds (:func:`index_problem` says when one is needed). It checks:

- every pack and its manifest file, scanned from their starts
  (:func:`.manifest_scan.scan_pack`): each block's stored length is derived from
  its header (raw: the raw length; blosc2: the chunk header's ``cbytes``,
  which must agree on the raw length), must lie inside the file, and its
  bytes must match its CRC-32; each manifest record must pass its header
  CRC, its limits and its body CRC. Damage is skipped to the next block or
  record;
- every manifest entry must name a sound block at exactly its offset and
  length, its item must lie inside the block, and the decoded item must hash
  to the entry's digest (blocks up to :data:`VERIFY_LIMIT` bytes; larger
  ones, which the writer does not make, are trusted on the CRCs alone);
- every large payload file (``large/<n>.hgc``): its name, its header
  (at most :data:`MAX_LARGE_HEADER` bytes, its CRC, its kind), its chunk
  table inside the file, every chunk's CRC and the whole payload's digest
  (hashed when that needs at most :data:`LARGE_VERIFY_LIMIT` bytes at once).

Packs written before manifests cannot be attributed, only reported (gc's
compaction rewrites live payloads with manifests). A payload found twice is
indexed once, the newest pack's copy first; one gc removed from the index
while its bytes stay in a pack comes back (valid data; gc removes it again).

The new index is written beside the old one, synced, and renamed over it
under the store's write lock; the old one and its ``-wal``, ``-shm`` and
``-journal`` files are kept as ``index.sqlite.broken-<ns>*``. Readers in other
processes read the old file until they reopen the store: rebuild with no
other hangar process using the store.
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
import time
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from ..errors import IntegrityError, WriterLockError
from . import chunked
from .chunked import LARGE_IOFF, LARGE_PACK
from .codec import read_block
from .digest import digest_bytes
from .durable import connect_readonly, create_file, fsync_dir, fsync_fd, rollback
from .index import (
    INDEX_VERSION,
    block_check,
    index_guard,
    init_index,
    insert_segment,
    kind_check,
    make_entries,
    parse_run,
)
from .manifest import kind_size
from .manifest_scan import PackScan, WindowedFile, scan_pack
from .packs import PackStore
from .rebuild_report import MAX_PROBLEMS, RebuildReport
from .writer import STORE_LOCK_TIMEOUT

#: pack blocks up to this many bytes (stored and raw) are decoded and every
#: item hashed against its digest; larger ones are trusted on their CRC
VERIFY_LIMIT = 64 << 20
#: large payload files are hashed in full when decoding them needs at most
#: this many bytes at once; larger ones get every chunk's CRC checked
LARGE_VERIFY_LIMIT = 256 << 20
#: largest header of a large payload file read (over 2.7 million chunks)
MAX_LARGE_HEADER = 64 << 20
#: block ids (and large file numbers) are u32 in index entries
_MAX_ID = 0xFFFFFFFF
_PACK_NAME = re.compile(r"[0-9]{1,15}\.pack")
_LARGE_NAME = re.compile(r"[0-9]{10}\.hgc")
_SIDE_FILES = ("-wal", "-shm", "-journal")


class _NewIndex:
    """The entries of the index being built: the last one found for a digest wins."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}
        self.blocks: dict[tuple[int, int, int], int] = {}  # (pack, boff, blen) -> position
        self.found: dict[bytes, tuple[int, int, int]] = {}  # digest -> (block pos, ioff, kind)
        self.duplicates = 0

    def add(self, digest: bytes, block: tuple[int, int, int], ioff: int, kind: str) -> None:
        kid = self.kinds.get(kind)
        if kid is None:
            kid = self.kinds[kind] = len(self.kinds) + 1
        pos = self.blocks.get(block)
        if pos is None:
            pos = self.blocks[block] = len(self.blocks)
        if digest in self.found:
            self.duplicates += 1
        self.found[digest] = (pos, ioff, kid)


def rebuild_index(
    store_root: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    lock_timeout: float = STORE_LOCK_TIMEOUT,
) -> RebuildReport:
    """Rebuild a store's payload index from its packs' manifests and its large files.

    Parameters
    ----------
    store_root : str or path-like
        The store directory (holding ``index.sqlite``, ``packs/``, ``large/``).
    dry_run : bool, optional
        Scan and verify everything and report, but write nothing (and take
        no lock: a writer appending meanwhile is harmless).
    lock_timeout : float, optional
        Seconds to wait for the store's write lock.

    Returns
    -------
    RebuildReport

    Raises
    ------
    FileNotFoundError
        If ``store_root`` is not a directory.
    WriterLockError
        If another writer holds the store's write lock past ``lock_timeout``.
    OSError
        If the new index cannot be written (nothing is swapped then).
    """
    store = PackStore(store_root)
    if not store.root.is_dir():
        raise FileNotFoundError(f"no payload store at {store.root}")
    report = RebuildReport(store.root, dry_run=dry_run, index_path=store.index_path)
    lock = None if dry_run else _acquire(store, lock_timeout)
    try:
        idx = _NewIndex()
        floor = _recover_large(store, idx, report)
        for number, path in _packs(store, report):
            _recover_pack(path, number, idx, report)
        report.duplicates = idx.duplicates
        report.entries_recovered = sum(1 for _, ioff, _ in idx.found.values() if ioff != LARGE_IOFF)
        report.large_files_recovered = len(idx.found) - report.entries_recovered
        if dry_run:
            report.old_index = "left as it is (dry run)"
            return report
        tmp = store.root / f"{store.index_path.name}.rebuild-{time.time_ns()}"
        try:
            _write_index(tmp, idx, floor)
            _swap(store, tmp, report)
        except BaseException:
            for suffix in ("", *_SIDE_FILES):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)  # our own files only
            raise
        return report
    finally:
        if lock is not None:
            lock.release()


def index_problem(store_root: str | os.PathLike[str]) -> str | None:
    """Why the store's index needs :func:`rebuild_index`; None when it reads whole.

    Read only. A rebuild is needed when the index is missing, fails SQLite's
    ``quick_check``, lacks its tables, has a segment, block or kind row that
    fails its check, or holds no entry while pack or large files hold bytes
    (a lost index that a later command recreated empty). An index of an
    older layout that reads is left to the usual upgrade.

    Parameters
    ----------
    store_root : str or path-like
        The store directory.

    Returns
    -------
    str or None
    """
    store = PackStore(store_root)
    path = store.index_path
    holds = any(p.stat().st_size for _, p in _packs(store, RebuildReport(store.root)))
    if store.large_dir.is_dir():
        holds = holds or any(_LARGE_NAME.fullmatch(n) for n in os.listdir(store.large_dir))
    if not path.exists():
        return f"{path} is missing" if holds else None
    try:
        con = connect_readonly(path)
    except (OSError, sqlite3.Error) as exc:
        return f"{path} cannot be opened: {exc}"
    n = 0
    try:
        if con.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            return f"{path} fails SQLite's integrity check"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        older = con.execute("PRAGMA user_version").fetchone()[0] < INDEX_VERSION
        if older and tables & {"payloads", "segments"}:
            return None  # an older layout: readers upgrade it
        if not {"kinds", "blocks", "segments"} <= tables:
            return f"{path} lacks its tables"
        for kid, text, chk in con.execute("SELECT id, kind, chk FROM kinds"):
            if chk is not None and chk != kind_check(kid, text):
                return f"kind row {kid} of {path} fails its check"
        for row in con.execute("SELECT id, pack, boff, blen, chk FROM blocks"):
            if row[4] != block_check(*row[:4]):
                return f"block row {row[0]} of {path} fails its check"
        for sid, count, chk, blob in con.execute("SELECT id, n, chk, entries FROM segments"):
            if isinstance(run := parse_run(sid, count, chk, blob), str):
                return f"index segment {sid} of {path} {run}"
            n += count
    except (sqlite3.Error, struct.error, TypeError, ValueError) as exc:
        return f"{path} is damaged: {exc}"
    finally:
        con.close()
    return f"{path} holds no entry while the store holds payload bytes" if holds and not n else None


def _acquire(store: PackStore, timeout: float) -> FileLock:
    """The store's write lock, the one :class:`~.packs.PackWriter` takes."""
    lock = FileLock(str(store.root / "write.lock"), thread_local=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise WriterLockError(
            f"the payload store {store.root} stayed locked for {timeout:.0f} s by another "
            "writer (a write checkout, fetch-data or gc); close it and rebuild again"
        ) from None
    return lock


# --------------------------------------------------------------------------
# packs
# --------------------------------------------------------------------------
def _packs(store: PackStore, report: RebuildReport) -> list[tuple[int, Path]]:
    """``(number, path)`` of each pack file, ascending."""
    try:
        names = os.listdir(store.packs_dir)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not _PACK_NAME.fullmatch(name):
            continue
        number = int(name[: -len(".pack")])
        if number == LARGE_PACK:
            report.problem(f"{store.packs_dir / name}: pack number 0 is never written; skipped")
            continue
        out.append((number, store.packs_dir / name))
    return sorted(out)


def _recover_pack(path: Path, pack: int, idx: _NewIndex, report: RebuildReport) -> None:
    """Scan pack ``path`` and add the entries of its manifests that check out."""
    try:
        scan = scan_pack(path, pack)
        attributed = _verify(scan, _named(scan, report), idx, report)
    except OSError as exc:
        report.problem(f"{path}: cannot be read: {exc}; nothing in it is indexed")
        return
    report.packs_scanned += 1
    report.blocks_sound += len(scan.boffs)
    report.damaged_blocks += scan.damaged_blocks
    report.damaged_manifests += scan.damaged_records
    report.unattributed_bytes += scan.bad_bytes
    for text in scan.problems:
        report.problem(text)
    report.more_problems += scan.more_problems
    if scan.boffs and not scan.has_manifest:
        report.packs_without_manifest.append(pack)
    blens = np.frombuffer(scan.blens, np.uint64) if scan.blens else np.zeros(0, np.uint64)
    free = np.ones(len(blens), bool)
    free[list(attributed)] = False
    report.unattributed_blocks += int(free.sum())
    report.unattributed_bytes += int(blens[free].sum())


#: a manifest entry checked against its block: digest, item offset, item bytes, kind
_Item = tuple[bytes, int, int, str]


def _named(scan: PackScan, report: RebuildReport) -> dict[int, list[_Item]]:
    """The entries of the pack's records, by position of the sound block they
    name; entries naming no sound block, or an impossible item, are refused."""
    boffs = np.frombuffer(scan.boffs, np.uint64) if scan.boffs else np.zeros(0, np.uint64)
    blens, rawlens = scan.blens, scan.rawlens
    named: dict[int, list[_Item]] = {}
    for roff, rec in scan.records:
        digests = rec.entries["digest"].tobytes()
        ioffs = rec.entries["ioff"].tolist()
        kinds = rec.entries["kind"].tolist()
        e = 0
        for boff, blen, n in rec.blocks.tolist():
            j = int(np.searchsorted(boffs, boff))
            sound = j < len(boffs) and boffs[j] == boff and blens[j] == blen
            refused: dict[str, int] = {}
            for i in range(e, e + n):
                size = rec.sizes[kinds[i]]
                if not sound:
                    why = "name no sound block there"
                elif size < 0:
                    why = "have a kind the store never writes"
                elif ioffs[i] + size > rawlens[j]:
                    why = "pass the end of their block"
                else:
                    item = (digests[20 * i : 20 * i + 20], ioffs[i], size, rec.kinds[kinds[i]])
                    named.setdefault(j, []).append(item)
                    continue
                refused[why] = refused.get(why, 0) + 1
            e += n
            for why, count in refused.items():
                report.entries_refused += count
                report.problem(
                    f"{scan.manifest}: {count} entries of the record at {roff} for the block "
                    f"at {boff} ({blen} bytes) of the pack {why}; not indexed"
                )
    return named


def _verify(
    scan: PackScan, named: dict[int, list[_Item]], idx: _NewIndex, report: RebuildReport
) -> set[int]:
    """Hash each named item against its digest and add those that match;
    returns the positions of the blocks that gave an entry."""
    attributed: set[int] = set()
    if not named:
        return attributed
    fd = os.open(scan.path, os.O_RDONLY)  # it was just read: an error here is a vanished file
    try:
        for j in sorted(named):
            items = named[j]
            boff, blen, rawlen = scan.boffs[j], scan.blens[j], scan.rawlens[j]
            raw: bytes | memoryview | None = None
            if max(blen, rawlen) <= VERIFY_LIMIT:
                try:
                    raw = read_block(fd, scan.pack, boff, blen, scan.path)
                except (IntegrityError, OSError) as exc:
                    report.entries_refused += len(items)
                    report.problem(
                        f"{scan.path}: block at {boff} cannot be decoded ({exc}): "
                        f"{len(items)} entries not indexed"
                    )
                    continue
            bad = 0
            for digest, ioff, size, kind in items:
                if raw is not None and digest_bytes(kind, raw[ioff : ioff + size]) != digest:
                    bad += 1
                    continue
                idx.add(digest, (scan.pack, boff, blen), ioff, kind)
                attributed.add(j)
                if raw is None:
                    report.entries_unverified += 1
            if bad:
                report.entries_refused += bad
                report.problem(
                    f"{scan.path}: {bad} entries for the block at {boff} do not match their "
                    "digest; not indexed"
                )
    finally:
        os.close(fd)
    return attributed


# --------------------------------------------------------------------------
# large payload files
# --------------------------------------------------------------------------
def _recover_large(store: PackStore, idx: _NewIndex, report: RebuildReport) -> int:
    """Add every large payload file that checks out; returns the highest file
    number present (a new writer must number its files above it)."""
    try:
        names = sorted(os.listdir(store.large_dir))
    except FileNotFoundError:
        return 0
    top = 0
    for name in names:
        if not _LARGE_NAME.fullmatch(name):
            continue
        path = store.large_dir / name
        number = int(name[:10])
        if not 0 < number <= _MAX_ID:
            report.large_files_refused += 1
            report.problem(f"{path}: no writer numbers a file so; not indexed")
            continue
        top = max(top, number)
        try:
            digest, kind, size, hashed = _check_large(path)
        except (IntegrityError, OSError, ValueError) as exc:
            report.large_files_refused += 1
            report.problem(f"{path}: {exc}; not indexed")
            continue
        idx.add(digest, (LARGE_PACK, number, size), LARGE_IOFF, kind)
        if not hashed:
            report.large_files_unverified += 1
    return top


def _check_large(path: Path) -> tuple[bytes, str, int, bool]:
    """``(digest, kind, file size, hashed)`` of a large payload file; raises
    :class:`IntegrityError`, :class:`ValueError` or :class:`OSError` if it does
    not check out."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        fixed = os.pread(fd, chunked.FIXED.size, 0)
        if len(fixed) < chunked.FIXED.size:
            raise IntegrityError("the file is truncated")
        hlen = chunked.FIXED.unpack_from(fixed)[4]
        if hlen > min(size, MAX_LARGE_HEADER):
            raise IntegrityError(f"its header states {hlen} bytes, the file has {size}")
        header = chunked.decode_header(os.pread(fd, hlen, 0), str(path))
    finally:
        os.close(fd)
    kind_size(header.kind)
    lay = header.layout
    whole = lay.dtype.itemsize * int(np.prod(lay.shape, dtype=object))
    if lay.shape and whole:
        slab = whole // lay.shape[0] * min(lay.chunks[0], lay.shape[0])
        need = max(slab, lay.max_chunk_bytes)
    else:
        need = whole
    if need <= LARGE_VERIFY_LIMIT:
        chunked.verify_file(path, header.digest)  # every chunk, and the whole digest
        return header.digest, header.kind, size, True
    o = chunked.open_file(path)  # checks the chunk table lies inside the file
    try:
        src = WindowedFile(o.fd, o.size)
        bad = [i for i, (off, n, crc, _) in enumerate(o.chunks) if src.crc(off, n) != crc]
    finally:
        os.close(o.fd)
    if bad:
        raise IntegrityError(f"chunk {bad[0]} fails its checksum")
    return header.digest, header.kind, size, False


# --------------------------------------------------------------------------
# the new index
# --------------------------------------------------------------------------
def _write_index(path: Path, idx: _NewIndex, floor: int) -> None:
    """Write the entries of ``idx`` as a new index at ``path``, synced.

    Large files keep their number as block id; pack blocks are numbered
    above ``floor`` (the highest large file number present, indexed or not),
    and a row of id ``floor`` is kept if nothing else reaches it, so a new
    writer numbers its blocks and files above every file present.
    """
    block_list = sorted(idx.blocks, key=idx.blocks.__getitem__)
    used = sorted({pos for pos, _, _ in idx.found.values()}, key=block_list.__getitem__)
    ids: dict[int, int] = {}
    nxt = floor + 1
    for pos in used:
        pack, boff, _ = block_list[pos]
        if pack == LARGE_PACK:
            ids[pos] = boff
        else:
            ids[pos] = nxt
            nxt += 1
    if nxt - 1 > _MAX_ID:
        raise IntegrityError(f"{len(used)} blocks above id {floor} do not fit in an index")
    rows = [(ids[p], *block_list[p], block_check(ids[p], *block_list[p])) for p in used]
    if floor and floor > max(ids.values(), default=0):
        rows.append((floor, LARGE_PACK, floor, 0, block_check(floor, LARGE_PACK, floor, 0)))
    found = list(idx.found.values())
    bids, ioffs, kids = [ids[p] for p, _, _ in found], [e[1] for e in found], [e[2] for e in found]
    entries = make_entries(list(idx.found), bids, ioffs, kids)
    create_file(path)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        with index_guard(path):
            con.execute("PRAGMA synchronous=FULL")
            init_index(con)
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(
                    "INSERT INTO kinds(id, kind, chk) VALUES (?,?,?)",
                    [(kid, text, kind_check(kid, text)) for text, kid in idx.kinds.items()],
                )
                con.executemany("INSERT INTO blocks VALUES (?,?,?,?,?)", rows)
                if len(entries):
                    insert_segment(con, entries)
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
    finally:
        con.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        fsync_fd(fd)
    finally:
        os.close(fd)


def _swap(store: PackStore, tmp: Path, report: RebuildReport) -> None:
    """Put the index ``tmp`` in place, keeping the old one: it gets a second name
    (a hard link, else a rename), its side files move beside it (SQLite would
    apply an old WAL or journal to the new file), then ``tmp`` is renamed in."""
    index = store.index_path
    kept = index.with_name(f"{index.name}.broken-{time.time_ns()}")
    if index.exists():
        try:
            os.link(index, kept)
        except OSError:
            os.replace(index, kept)
        report.old_index = f"kept as {kept}"
        report.old_index_path = kept
    else:
        report.old_index = "absent"
    for suffix in _SIDE_FILES:
        side = Path(f"{index}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{kept}{suffix}"))
            if report.old_index_path is None:
                report.old_index = f"absent; its {suffix} file kept as {kept}{suffix}"
    os.replace(tmp, index)
    fsync_dir(store.root)


__all__ = [
    "LARGE_VERIFY_LIMIT",
    "MAX_PROBLEMS",
    "VERIFY_LIMIT",
    "RebuildReport",
    "index_problem",
    "rebuild_index",
]
