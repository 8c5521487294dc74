"""A local cache of the parsed sample records of samples trees, by tree id.

Reading every sample of an arrayset in a fresh process starts by parsing its
records: hundreds of fan-out leaves cut into keys and digests (about 0.1 s
per 60,000 samples). A samples tree never changes (git objects are named by
their content), so the result is kept, once per tree, in
``<common git dir>/hangar/keys/<tree id hex>``: a :class:`KeyTable` (every
key and digest, in tree order), the keys as int64 values when every key is
an int key (that fits one). A commit that writes a samples tree whole (an
arrayset's first commit, a change of fan-out: ``records.build``) keeps its
table at once, so the first read after it parses no leaf either; a commit of
a few changes keeps none (a table costs time in proportion to the
arrayset), the first whole read of its tree does.

Local state, never part of history, never needed for correctness, and
treated as untrusted: a file is used only when its header names the tree
asked for, its sample count is the count this machine knows for the tree
(:mod:`.counts`; the file's size is checked against it before anything is
read), its length is exactly what the header states, its CRC-32 matches and
its keys are well formed. Anything else (absent, torn, damaged, foreign) is
ignored, and the records are parsed again and the file written anew.

The file: a :data:`HEADER` (magic ``HGKT``, version, flags, tree id, sample
count, bytes of names), the digests (20 bytes each), then the keys (int64
little-endian when flag :data:`INT_KEYS` is set, else the encoded keys
NUL-joined, ASCII), then the CRC-32 of everything before it.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2

from ..gitutil import common_dir
from ..store.checksum import crc32
from ..store.durable import FILE_MODE
from .layout import canonical_keys

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"HGKT"
VERSION = 1
#: magic, version, flags, tree id, sample count, bytes of NUL-joined names
HEADER = struct.Struct("<4sHH20sQQ")
CRC = struct.Struct("<I")
#: the keys are stored as int64 values (every key an int key)
INT_KEYS = 1
DIGEST = 20
#: the longest encoded key (``s:`` and 200 characters)
MAX_KEY = 202
#: bytes of tables kept per repository: beyond it, the least recently used
#: files go (a 60,000-sample table takes 1.7 MB)
KEYS_BYTES = 256 * 1024**2


@dataclass
class KeyTable:
    """Every sample record of a samples tree, in tree order, as arrays.

    Attributes
    ----------
    digests : bytes
        The digests, 20 bytes each, joined.
    ints : numpy.ndarray or None
        The int keys (int64), when every key is an int key (``'i:N'``).
    names : bytes or None
        The encoded keys, NUL-joined (ASCII), when some key is a str key.
    """

    digests: bytes
    ints: np.ndarray | None
    names: bytes | None
    _order: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.digests) // DIGEST

    def keys(self) -> list[str]:
        """The encoded keys, in tree order."""
        if self.ints is not None:
            if not len(self.ints):
                return []
            return ("i:" + "\x00i:".join(map(str, self.ints.tolist()))).split("\x00")
        assert self.names is not None
        return self.names.decode("ascii").split("\x00") if self.names else []

    def digest_list(self) -> list[bytes]:
        """The digests, in tree order."""
        import numpy as np  # imported where used: not on the path of `git hangar status`

        return np.frombuffer(self.digests, f"V{DIGEST}").tolist()  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, bytes]:
        """``{encoded key: digest}``."""
        return dict(zip(self.keys(), self.digest_list(), strict=True))

    def dense_order(self) -> np.ndarray | None:
        """When the keys are exactly the ints ``0 .. n-1``: the tree position of
        each key, in key order (int32 when ``n`` allows: half the fresh
        memory, so half the page faults in a fresh process); else None."""
        import numpy as np

        if self._order is not None:
            return self._order if len(self._order) == len(self) else None
        ints = self.ints
        n = len(self)
        order = np.empty(0, np.intp)  # not dense
        if ints is not None and n and int(ints.min()) == 0 and int(ints.max()) == n - 1:
            # n keys among 0 .. n-1: a permutation when each slot is filled (no key twice)
            kind = np.int32 if n < 2**31 else np.intp
            order = np.full(n, -1, kind)
            order[ints] = np.arange(n, dtype=kind)
            if int(order.min()) < 0:
                order = order[:0]
        self._order = order
        return order if len(order) == n else None

    @classmethod
    def from_dict(cls, flat: dict[str, bytes]) -> KeyTable:
        """The table of ``{encoded key: digest}`` (in its order)."""
        return cls.from_names("\x00".join(flat).encode("ascii"), b"".join(flat.values()))

    @classmethod
    def from_names(cls, names: bytes, digests: bytes) -> KeyTable:
        """The table of encoded keys ``names`` (NUL-joined, ASCII, in tree
        order) and their ``digests`` (joined); ValueError when their numbers
        differ or a name is not ASCII. The keys are kept as int64 values when
        every key is an int key that fits one, else as names."""
        import numpy as np

        n = len(digests) // DIGEST
        if len(digests) % DIGEST or (names.count(b"\x00") + 1 if names else 0) != n:
            raise ValueError("as many names as digests")
        if not names.isascii():
            raise ValueError("names not ASCII")
        if names.startswith(b"i:") and b"\x00s:" not in names:  # every key an int key
            try:
                ints = np.array(list(map(int, names[2:].split(b"\x00i:"))), np.int64)
            except OverflowError:  # an int key beyond int64: kept as names
                return cls(digests, None, names)
            return cls(digests, ints, None)
        return cls(digests, None, names)


def cache_path(repo: pygit2.Repository, oid: bytes) -> Path:
    """Where the key table of samples tree ``oid`` is kept."""
    return common_dir(repo) / "hangar" / "keys" / oid.hex()


def load(repo: pygit2.Repository, oid: bytes, count: int) -> KeyTable | None:
    """The cached key table of samples tree ``oid`` holding ``count`` samples
    (the count this machine knows for it), or None when absent or not sound
    (see the module's docstring); nothing larger than such a table is read.

    The file is read in its parts, each straight into the buffer the table
    keeps (the digests, the keys), with the checks of :func:`parse`: no copy
    of the whole file is made first (in a fresh process every page of a
    fresh buffer is a page fault, and a 60,000-sample table is 1.7 MB)."""
    path = cache_path(repo, oid)
    # at most as large as a table of ``count`` samples can be
    fd = _open_regular(path, HEADER.size + count * (DIGEST + MAX_KEY + 1) + CRC.size)
    if fd is None:
        return None
    try:
        table = _read_parts(fd, oid, count)
    except OSError:
        table = None
    finally:
        os.close(fd)
    if table is not None:
        touch(path)
    return table


def _read_parts(fd: int, oid: bytes, count: int) -> KeyTable | None:
    """The table in the file open at ``fd`` (see :func:`load`)."""
    import numpy as np

    size = os.fstat(fd).st_size
    head = os.pread(fd, HEADER.size, 0)
    layout = _layout(head, size, oid, count)
    if layout is None:
        return None
    flags, n, keys_len = layout
    digests = os.pread(fd, DIGEST * n, HEADER.size)
    at = HEADER.size + DIGEST * n
    keys: bytes | np.ndarray
    if flags & INT_KEYS:
        keys = np.empty(n, "<i8")
        got = os.preadv(fd, [keys.data.cast("B")], at) if n else 0
    else:
        keys = os.pread(fd, keys_len, at)
        got = len(keys)
    tail = os.pread(fd, CRC.size, at + keys_len)
    if len(digests) != DIGEST * n or got != keys_len or len(tail) != CRC.size:
        return None  # the file changed under the read
    if crc32(keys, crc32(digests, crc32(head))) != CRC.unpack(tail)[0]:
        return None
    return _table(digests, keys, n)


def _layout(head: bytes, size: int, oid: bytes, count: int) -> tuple[int, int, int] | None:
    """``(flags, sample count, bytes of keys)`` of a file of ``size`` bytes
    whose header is ``head``, when the header is sound for tree ``oid`` of
    ``count`` samples and states that size; else None."""
    if size < HEADER.size + CRC.size or len(head) < HEADER.size:
        return None
    magic, version, flags, tree, n, names_len = HEADER.unpack_from(head)
    if magic != MAGIC or version != VERSION or tree != oid or n != count or flags & ~INT_KEYS:
        return None
    keys_len = 8 * n if flags & INT_KEYS else names_len
    if size != HEADER.size + DIGEST * n + keys_len + CRC.size or (flags & INT_KEYS and names_len):
        return None
    return flags, n, keys_len


def _table(digests: bytes, keys: bytes | np.ndarray, n: int) -> KeyTable | None:
    """The table of ``n`` joined ``digests`` and their ``keys`` (int64 values,
    or NUL-joined names) when the keys are well formed, else None."""
    import numpy as np

    if isinstance(keys, np.ndarray):
        ints = keys.astype(np.int64, copy=False)  # (a copy only where not native)
        if n and int(ints.min()) < 0:
            return None
        return KeyTable(digests, ints, None)
    if not n:
        return None if keys else KeyTable(b"", None, b"")
    if keys.count(b"\x00") != n - 1 or not canonical_keys(keys):
        return None
    return KeyTable(digests, None, keys)


def _open_regular(path: Path, limit: int) -> int | None:
    """A descriptor of ``path``, open for reading, when it is a regular file
    of at most ``limit`` bytes, else None."""
    try:  # a link or a pipe in its place is not a table (and a pipe would block)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        return None
    return fd


def read_file(path: Path, limit: int) -> bytes | None:
    """The content of the cache file ``path`` when it is a regular file of at
    most ``limit`` bytes, else None (nothing larger is read)."""
    fd = _open_regular(path, limit)
    if fd is None:
        return None
    try:
        return os.pread(fd, os.fstat(fd).st_size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def touch(path: Path) -> None:
    """Mark cache file ``path`` recently used: the last to go (see :func:`prune`)."""
    try:
        os.utime(path)
    except OSError:
        pass


def parse(data: bytes, oid: bytes, count: int) -> KeyTable | None:
    """The key table in ``data`` when it is a sound table of tree ``oid`` of
    ``count`` samples, else None."""
    import numpy as np

    layout = _layout(data[: HEADER.size], len(data), oid, count)
    if layout is None:
        return None
    flags, n, keys_len = layout
    body_end = HEADER.size + DIGEST * n + keys_len
    if crc32(memoryview(data)[:body_end]) != CRC.unpack_from(data, body_end)[0]:
        return None
    digests = data[HEADER.size : HEADER.size + DIGEST * n]
    if flags & INT_KEYS:
        return _table(digests, np.frombuffer(data, "<i8", n, HEADER.size + DIGEST * n).copy(), n)
    return _table(digests, data[HEADER.size + DIGEST * n : body_end], n)


def encode(table: KeyTable, oid: bytes) -> bytes:
    """The file content of ``table`` for tree ``oid``."""
    return b"".join(encode_parts(table, oid))


def encode_parts(table: KeyTable, oid: bytes) -> list[bytes | memoryview]:
    """:func:`encode` in parts (the table's buffers as they are, no joined copy)."""
    n = len(table)
    keys: bytes | memoryview
    if table.ints is not None:
        import numpy as np

        flags, keys = INT_KEYS, np.ascontiguousarray(table.ints, "<i8").data.cast("B")
        head = HEADER.pack(MAGIC, VERSION, flags, oid, n, 0)
    else:
        assert table.names is not None
        keys = table.names
        head = HEADER.pack(MAGIC, VERSION, 0, oid, n, len(keys))
    crc = 0
    for part in (head, table.digests, keys):
        crc = crc32(part, crc)
    return [head, table.digests, keys, CRC.pack(crc)]


def store(repo: pygit2.Repository, oid: bytes, table: KeyTable) -> None:
    """Keep ``table`` as the key table of samples tree ``oid`` (best effort:
    written to a temporary file, then renamed into place); the last few
    stay at hand in this process too (see :func:`take_stored`)."""
    write_file(cache_path(repo, oid), encode_parts(table, oid))
    with _stored_lock:
        _stored[oid] = table
        while len(_stored) > 1 and (
            len(_stored) > _STORED_MAX or sum(map(_table_bytes, _stored.values())) > _STORED_BYTES
        ):
            del _stored[next(iter(_stored))]  # the oldest


def _table_bytes(table: KeyTable) -> int:
    keys = table.ints.nbytes if table.ints is not None else len(table.names or b"")
    return len(table.digests) + keys


#: tree id -> the key table this process kept for it last (a few, a bounded
#: size: commits that hand none on leave no more than that behind)
_stored: dict[bytes, KeyTable] = {}
_stored_lock = threading.Lock()
_STORED_MAX = 8
_STORED_BYTES = 64 * 1024**2


def take_stored(oid: bytes) -> KeyTable | None:
    """The key table of tree ``oid`` this process kept with :func:`store`
    (forgotten here once taken), None when it kept none lately: what a
    commit hands on to whatever it keeps beside the table, with no read of
    the file back."""
    with _stored_lock:
        return _stored.pop(oid, None)


def write_file(path: Path, content: bytes | Sequence[bytes | memoryview]) -> None:
    """Write cache file ``path`` (``content``, or its parts one after the
    other; best effort: to a temporary file, then renamed into place), then
    :func:`prune` its folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if not path.parent.is_dir():
            if not path.parent.parent.is_dir():
                return  # not a repository of ours
            path.parent.mkdir(exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            for part in [content] if isinstance(content, bytes) else content:
                data = memoryview(part)
                while data:
                    data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return
    prune(path.parent, keep=path.name)


def prune(folder: Path, keep: str = "", budget: int | None = None) -> None:
    """Remove the least recently used tables of ``folder`` (and temporary
    files an interrupted write left over an hour ago) until the tables take
    at most ``budget`` bytes (:data:`KEYS_BYTES`); ``keep`` stays."""
    budget = KEYS_BYTES if budget is None else budget
    files: list[tuple[float, int, str]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if entry.name.startswith("."):
                    if st.st_mtime < time.time() - 3600:
                        os.unlink(entry.path)
                elif entry.name != keep:
                    files.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        if keep:
            total += (folder / keep).stat().st_size
        for _, size, path in sorted(files):
            if total <= budget:
                break
            os.unlink(path)
            total -= size
    except OSError:
        return


__all__ = [
    "DIGEST",
    "KEYS_BYTES",
    "KeyTable",
    "cache_path",
    "encode",
    "encode_parts",
    "load",
    "parse",
    "prune",
    "read_file",
    "store",
    "take_stored",
    "touch",
    "write_file",
]
