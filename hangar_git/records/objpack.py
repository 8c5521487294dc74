"""Write many git objects at once as one pack file, instead of loose objects.

A commit of a large arrayset writes hundreds of fan-out leaf trees; libgit2
writes each as a loose object (a file and a directory entry each, ~1 ms),
while one pack holding them all costs little more than compressing them. The
pack and its index (version 2) are written in git's own formats under
temporary names and renamed into ``objects/pack/`` (the ``.idx`` last, which
is what makes a pack visible), so a killed process leaves at most a
temporary file that ``git gc`` removes; libgit2 notices new packs by itself.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from ..gitutil import common_dir

#: fewer objects than this are written loose, through libgit2
PACK_MIN_OBJECTS = 32
_TYPE_TREE = 2
_TYPE_BLOB = 3
_TYPE_NAMES = {_TYPE_TREE: b"tree", _TYPE_BLOB: b"blob"}


def object_id(kind: int, data: bytes) -> bytes:
    """Raw SHA-1 id of a git object."""
    return hashlib.sha1(_TYPE_NAMES[kind] + b" %d\x00" % len(data) + data).digest()


def write_trees(repo: pygit2.Repository, trees: Sequence[bytes]) -> list[bytes]:
    """Write raw tree objects; returns their raw ids, in order."""
    if len(trees) < PACK_MIN_OBJECTS:
        return [repo.odb.write(ObjectType.TREE, t).raw for t in trees]
    objdir = common_dir(repo) / "objects"
    if not objdir.is_dir():
        return [repo.odb.write(ObjectType.TREE, t).raw for t in trees]
    ids = [object_id(_TYPE_TREE, t) for t in trees]
    write_pack(objdir / "pack", [(_TYPE_TREE, t) for t in trees], ids)
    return ids


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


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data, 1)


def write_pack(packdir: Path, objects: Sequence[tuple[int, bytes]], ids: Sequence[bytes]) -> None:
    """Write ``objects`` (type, raw data) with ids ``ids`` as one pack + index."""
    packdir.mkdir(parents=True, exist_ok=True)
    datas = [d for _, d in objects]
    if sum(map(len, datas)) > 1 << 20 and len(datas) > 64:
        with ThreadPoolExecutor(2) as ex:  # zlib releases the GIL
            comp = list(ex.map(_deflate, datas, chunksize=32))
    else:
        comp = [_deflate(d) for d in datas]
    parts = [b"PACK" + struct.pack(">II", 2, len(objects))]
    offset = 12
    entries = []
    for (kind, data), z, oid in zip(objects, comp, ids, strict=True):
        rec = _header(kind, len(data)) + z
        entries.append((oid, zlib.crc32(rec), offset))
        offset += len(rec)
        parts.append(rec)
    body = b"".join(parts)
    pack_sum = hashlib.sha1(body).digest()
    entries.sort()
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
    idx += hashlib.sha1(idx).digest()
    name = packdir / f"pack-{pack_sum.hex()}"
    for suffix, data in ((".pack", body + pack_sum), (".idx", idx)):
        final = name.with_suffix(suffix)
        if final.exists():
            continue
        fd, tmp = tempfile.mkstemp(
            prefix="tmp_pack_" if suffix == ".pack" else "tmp_idx_", dir=packdir
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o444)
        finally:
            os.close(fd)
        os.replace(tmp, final)
