"""Write many git objects at once as one pack file, instead of loose objects.

A commit of a large arrayset writes hundreds of fan-out leaf trees; libgit2
writes each as a loose object (a file and a directory entry each, ~1 ms),
while one pack holding them all costs little more than compressing them. The
pack and its index (version 2) are written in git's own formats under
temporary names and renamed into ``objects/pack/`` (the ``.idx`` last, which
is what makes a pack visible), so a killed process leaves at most a
temporary file that ``git gc`` removes; libgit2 notices new packs by itself.
The trees of a bulk commit (a megabyte or more of them) are held stored, not
compressed: mostly digests, deflate would shrink them by a fifth at the
largest cost of the commit (see :func:`_stored`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

try:  # zlib-ng's deflate: valid zlib streams, about 3x as fast as zlib's at level 1
    from zlib_ng.zlib_ng import adler32 as _adler32
    from zlib_ng.zlib_ng import compress as _compress
except ImportError:  # pragma: no cover - same format, slower
    from zlib import adler32 as _adler32
    from zlib import compress as _compress

from ..gitutil import (
    TYPE_BLOB,
    TYPE_TREE,
    ObjectBatch,
    close_batch,
    common_dir,
    object_id,
    open_batch,
    open_batch_of,
)
from ..procs import pid_alive
from ..store.checksum import crc32 as _crc32
from ..store.durable import fsync_dir, fsync_fd, write_all

#: fewer objects than this are written loose, through libgit2
PACK_MIN_OBJECTS = 32
#: a pack with at least this many bytes of trees holds them stored, not
#: compressed (see :func:`_stored`)
STORED_TREES_FROM = 1 << 20
_TYPE_TREE = TYPE_TREE
_TYPE_BLOB = TYPE_BLOB
#: first line of the ``.keep`` files that guard a commit's objects
KEEP_MARK = "hangar-git: objects of a commit being written by pid"

__all__ = [
    "held_objects",
    "object_id",
    "publish",
    "roll_up_packs",
    "tree_ids",
    "write_pack",
    "write_trees",
]


def tree_ids(trees: Sequence[bytes]) -> list[bytes]:
    """The raw ids of raw tree objects (:func:`object_id` of each, the data
    hashed where it lies rather than copied after its header)."""
    out = []
    for t in trees:
        h = hashlib.sha1(b"tree %d\x00" % len(t))
        h.update(t)
        out.append(h.digest())
    return out


def write_trees(
    repo: pygit2.Repository, trees: Sequence[bytes], ids: Sequence[bytes] | None = None
) -> list[bytes]:
    """Write raw tree objects; returns their raw ids, in order (``ids``, when
    the caller computed them already: :func:`tree_ids` of ``trees``)."""
    batch = open_batch_of(repo)
    if batch is not None:
        if ids is None:
            return [batch.add(TYPE_TREE, t) for t in trees]
        held = batch.objects
        for oid, t in zip(ids, trees, strict=True):
            held.setdefault(oid, (TYPE_TREE, t))
        return list(ids)
    if len(trees) < PACK_MIN_OBJECTS:
        return [repo.odb.write(ObjectType.TREE, t).raw for t in trees]
    objdir = common_dir(repo) / "objects"
    if not objdir.is_dir():
        return [repo.odb.write(ObjectType.TREE, t).raw for t in trees]
    ids = tree_ids(trees) if ids is None else list(ids)
    write_pack(objdir / "pack", [(TYPE_TREE, t) for t in trees], ids)
    return ids


@contextmanager
def held_objects(repo: pygit2.Repository) -> Iterator[ObjectBatch]:
    """Hold every object written for ``repo`` until :func:`publish`.

    Use around building a commit and moving its branch::

        with held_objects(git) as batch:
            tree = build_root(git, ...)
            sha = ... commit written with write_commit_object(git, ...)
            publish(git, batch)
            git.references.create(ref, sha, force=True)

    Objects become visible to git only when published, all at once, in a
    pack whose ``.keep`` file stops ``git gc`` (``--prune=now`` included)
    from deleting them; the ``.keep`` goes away when the block ends, by which
    time the branch names them. An exception before :func:`publish` writes
    nothing.
    """
    batch = open_batch(repo)
    try:
        yield batch
    finally:
        close_batch(repo)
        if batch.keep is not None:
            batch.keep.unlink(missing_ok=True)


def publish(repo: pygit2.Repository, batch: ObjectBatch) -> None:
    """Write the objects held in ``batch`` as one kept pack (see :func:`held_objects`)."""
    if not batch.objects:
        return
    objdir = common_dir(repo) / "objects"
    items = list(batch.objects.items())
    batch.keep = write_pack(
        objdir / "pack", [obj for _, obj in items], [oid for oid, _ in items], keep=True
    )
    batch.objects.clear()


#: more packs than this, and a commit rolls the small ones together
PACK_LIMIT = 32


def roll_up_packs(repo: pygit2.Repository, limit: int | None = None) -> bool:
    """Roll small packs together once there are more than ``limit`` (default
    :data:`PACK_LIMIT`).

    Each commit is one pack, so a long run of small commits leaves many, and
    every object lookup pays for each. ``git repack --geometric=2 -d`` merges
    just enough of the smallest packs that their sizes grow geometrically
    (kept packs are left alone), at a cost proportional to the packs it
    merges, not to the repository. Call with the branch already moved (the
    objects reachable). Returns True when a repack ran; a missing or failing
    ``git`` executable only means the packs stay as they are.
    """
    packdir = common_dir(repo) / "objects" / "pack"
    try:
        with os.scandir(packdir) as it:
            packs = sum(1 for e in it if e.name.endswith(".pack"))
    except OSError:
        return False
    if packs <= (PACK_LIMIT if limit is None else limit):
        return False
    exe = shutil.which("git")
    if exe is None:
        return False
    res = subprocess.run(
        [exe, f"--git-dir={common_dir(repo)}", "repack", "--geometric=2", "-d", "-q"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return res.returncode == 0


def _hangar_keeps(repo: pygit2.Repository) -> list[Path]:
    packdir = common_dir(repo) / "objects" / "pack"
    if not packdir.is_dir():
        return []
    return [k for k in packdir.glob("pack-*.keep") if _keep_text(k).startswith(KEEP_MARK)]


def _keep_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(200)
    except OSError:
        return ""


def remove_stale_keeps(repo: pygit2.Repository) -> list[Path]:
    """Remove the ``.keep`` files of commit writers that are no longer running.

    A writer killed between publishing a commit's pack and removing its
    ``.keep`` leaves the pack kept forever; its objects are then ordinary
    (reachable or not), and this lets ``git gc`` treat them so again.
    """
    removed = []
    for keep in _hangar_keeps(repo):
        try:
            pid = int(_keep_text(keep)[len(KEEP_MARK) :].split()[0])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            keep.unlink(missing_ok=True)
            removed.append(keep)
    return removed


def _header(kind: int, size: int) -> bytes:
    out = bytearray()
    c = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def _deflate_all(datas: list[bytes]) -> list[bytes]:
    """Each object's data deflated (zlib streams, as a pack holds them); many
    are split in two halves, one deflated on a second thread (zlib releases
    the GIL; a future per object would cost more than its deflate)."""
    if sum(map(len, datas)) > 1 << 20 and len(datas) > 64 and (os.cpu_count() or 1) > 1:
        half = len(datas) // 2
        with ThreadPoolExecutor(1) as ex:
            second = ex.submit(_deflate_list, datas[half:])
            first = _deflate_list(datas[:half])
            return first + second.result()
    return _deflate_list(datas)


def _deflate_list(datas: list[bytes]) -> list[bytes]:
    return [_compress(d, 1) for d in datas]


#: the most bytes of one stored deflate block
_STORED_BLOCK = 0xFFFF
#: a zlib header: deflate, 32 KiB window, the fastest level (check bits: 0x7801 % 31 == 0)
_ZLIB_HEAD = b"\x78\x01"
_STORED_HEAD = struct.Struct("<BHH")
_ADLER = struct.Struct(">I")


def _stored(head: bytes, data: bytes) -> list[bytes | memoryview]:
    """The pack record of object header ``head`` and ``data`` held as a zlib
    stream of stored (uncompressed) deflate blocks, in parts: the stream is
    what ``zlib.compress(data, 0)`` gives, without its deflate pass.

    Samples trees are mostly digests (20 random bytes of each 30-40 a
    record): deflate at level 1 makes them only a fifth smaller, at
    about 7 ns a byte, the largest cost of committing 300,000 small
    samples after digesting them. Any zlib reader inflates these streams
    (faster than compressed ones), and ``git gc --aggressive`` or ``git
    repack -F`` compresses them again."""
    n = len(data)
    adler = _ADLER.pack(_adler32(data))
    if n <= _STORED_BLOCK:  # the usual case: one block
        return [head + _ZLIB_HEAD + _STORED_HEAD.pack(1, n, n ^ 0xFFFF), data, adler]
    view = memoryview(data)
    parts: list[bytes | memoryview] = [head + _ZLIB_HEAD]
    for start in range(0, n, _STORED_BLOCK):
        stop = min(n, start + _STORED_BLOCK)
        parts.append(_STORED_HEAD.pack(stop == n, stop - start, (stop - start) ^ 0xFFFF))
        parts.append(view[start:stop])
    parts.append(adler)
    return parts


def _pack_body(
    objects: Sequence[tuple[int, bytes]], ids: Sequence[bytes]
) -> tuple[list[bytes | memoryview], list[tuple[bytes, int, int]]]:
    """The pack's bytes (without its trailing checksum), in parts, and per
    object its ``(id, CRC-32 of its record, offset)``. Trees are held stored
    (see :func:`_stored`) when the pack has :data:`STORED_TREES_FROM` bytes
    of them or more (a bulk commit's samples trees), the rest deflated."""
    stored = sum(len(d) for kind, d in objects if kind == _TYPE_TREE) >= STORED_TREES_FROM
    comp = iter(_deflate_all([d for kind, d in objects if not (stored and kind == _TYPE_TREE)]))
    parts: list[bytes | memoryview] = [b"PACK" + struct.pack(">II", 2, len(objects))]
    offset = 12
    entries = []
    for (kind, data), oid in zip(objects, ids, strict=True):
        head = _header(kind, len(data))
        record = _stored(head, data) if stored and kind == _TYPE_TREE else [head, next(comp)]
        crc = 0
        for part in record:
            crc = _crc32(part, crc)
        entries.append((oid, crc, offset))
        offset += sum(map(len, record))
        parts += record
    return parts, entries


def _pack_index(entries: list[tuple[bytes, int, int]], pack_sum: bytes) -> bytes:
    """The version-2 ``.idx`` of a pack whose objects are ``entries``
    (``(id, CRC-32, offset)``) and whose checksum is ``pack_sum``."""
    entries = sorted(entries)
    fan = [0] * 256
    for oid, _, _ in entries:
        fan[oid[0]] += 1
    total = 0
    fanout = []
    for c in fan:
        total += c
        fanout.append(total)
    big = [off for _, _, off in entries if off >= 0x80000000]
    big_pos = {off: i for i, off in enumerate(big)}
    small = [0x80000000 | big_pos[off] if off >= 0x80000000 else off for _, _, off in entries]
    idx = b"".join(
        [
            b"\xfftOc",
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(oid for oid, _, _ in entries),
            struct.pack(f">{len(entries)}I", *(crc for _, crc, _ in entries)),
            struct.pack(f">{len(entries)}I", *small),
            struct.pack(f">{len(big)}Q", *big),
            pack_sum,
        ]
    )
    return idx + hashlib.sha1(idx).digest()


def _write_parts(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` one after the other (gathered writes, no joined copy)."""
    for i in range(0, len(parts), _IOV_MAX):
        batch = parts[i : i + _IOV_MAX]
        done = os.writev(fd, batch)
        for part in batch:  # what a short write left out
            if done >= len(part):
                done -= len(part)
                continue
            write_all(fd, memoryview(part)[done:])
            done = 0


#: parts given to one ``writev``
_IOV_MAX = 1024


def _place(packdir: Path, final: Path, parts: Sequence[bytes | memoryview], sync: bool) -> bool:
    """Write ``parts`` one after the other as ``final`` (read-only) through a
    temporary file, synced first with ``sync``; False when ``final`` was there already."""
    if final.exists():
        return False
    fd, tmp = tempfile.mkstemp(prefix=f"tmp_{final.suffix[1:]}_", dir=packdir)
    try:
        _write_parts(fd, parts)
        os.fchmod(fd, 0o444)
        if sync:
            fsync_fd(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, final)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_pack(
    packdir: Path,
    objects: Sequence[tuple[int, bytes]],
    ids: Sequence[bytes],
    *,
    keep: bool = False,
) -> Path | None:
    """Write ``objects`` (type, raw data) with ids ``ids`` as one pack + index.

    With ``keep``, a ``.keep`` file naming this process is written before
    the pack becomes visible, so no ``git gc`` can drop its objects; its
    path is returned (None without ``keep``, or when the pack and its
    ``.keep`` were there already). The pack and index are synced.
    """
    packdir.mkdir(parents=True, exist_ok=True)
    body, entries = _pack_body(objects, ids)
    sha = hashlib.sha1()
    for part in body:
        sha.update(part)
    pack_sum = sha.digest()
    name = packdir / f"pack-{pack_sum.hex()}"
    written = None
    if keep:  # the keep lives only until the ref moves: not synced
        keep_file = name.with_suffix(".keep")
        if _place(packdir, keep_file, [f"{KEEP_MARK} {os.getpid()}\n".encode()], sync=False):
            written = keep_file
    _place(packdir, name.with_suffix(".pack"), [*body, pack_sum], sync=True)
    _place(packdir, name.with_suffix(".idx"), [_pack_index(entries, pack_sum)], sync=True)
    fsync_dir(packdir)
    return written
