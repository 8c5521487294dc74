"""Reading chunked large payload files: :class:`LargeReader`.

Whole arrays are decompressed straight into the array returned, chunks
spread over every core (blosc2, zlib and ``os.pread`` release the GIL); a
slice reads only the chunks it touches (:func:`_plan`). Every read checks
the header's CRC and the CRC of every chunk it uses.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import IntegrityError
from .blosc_codec import blosc2
from .checksum import crc32
from .chunk_format import (
    CODEC_BLOSC2,
    CODEC_RAW,
    FIRST_READ,
    FIXED,
    Header,
    Layout,
    decode_header,
    flat_bytes,
)
from .digest import digest_prefix
from .threads import run_parallel

if TYPE_CHECKING:
    from .chunked import LargeFiles

#: files (descriptor + parsed header) a reader keeps open
OPEN_FILES = 32


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
class _Open(NamedTuple):
    """An open large payload file, its header parsed and checked."""

    number: int
    fd: int
    header: Header
    path: Path
    size: int
    chunks: list[tuple[int, int, int, int]]  # per chunk: offset, length, crc, codec


#: arrays smaller than this read in one batch share one buffer (see :func:`empty_arrays`)
SHARED_MAX = 4 << 20


def empty_arrays(specs: Sequence[tuple[np.dtype, tuple[int, ...]]]) -> list[np.ndarray]:
    """Arrays to read a batch of large payloads into, of the ``(dtype, shape)``
    given.

    Arrays of one kind under :data:`SHARED_MAX` bytes are rows of one buffer
    (as the pack reader's batches are): one allocation, which the system
    backs with huge pages, where one allocation each would fault every 4 KiB
    page in; bigger arrays get huge pages on their own and are allocated
    apart, so keeping one of them alive keeps no other.

    Parameters
    ----------
    specs : sequence of (numpy.dtype, tuple of int)

    Returns
    -------
    list of numpy.ndarray
    """
    out: list[np.ndarray] = [None] * len(specs)  # type: ignore[list-item]
    groups: dict[tuple[np.dtype, tuple[int, ...]], list[int]] = {}
    for i, (dtype, shape) in enumerate(specs):
        if math.prod(shape) * dtype.itemsize < SHARED_MAX:
            groups.setdefault((dtype, shape), []).append(i)
        else:
            out[i] = np.empty(shape, dtype)
    for (dtype, shape), idx in groups.items():
        buf = np.empty((len(idx), *shape), dtype)
        for k, i in enumerate(idx):
            out[i] = buf[k, ...]  # a view, also of a 0-d row (buf[k] would be a scalar)
    return out


def open_file(path: Path, number: int = -1) -> _Open:
    """Open a chunked payload file and check its header (the caller closes
    ``.fd``).

    Raises
    ------
    IntegrityError
        If the file is missing, truncated or its header is damaged.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise IntegrityError(f"large payload file {path} is missing") from None
    try:
        size = os.fstat(fd).st_size
        buf = os.pread(fd, FIRST_READ, 0)
        if len(buf) >= FIXED.size:
            hlen = FIXED.unpack_from(buf)[4]
            if len(buf) < hlen <= size:
                buf = os.pread(fd, hlen, 0)
        header = decode_header(buf, str(path))
        t = header.table
        if len(t) and int((t["off"] + t["len"]).max()) > size:
            raise IntegrityError(f"large payload file {path} is truncated")
    except BaseException:
        os.close(fd)
        raise
    cols = [t[f].tolist() for f in ("off", "len", "crc", "codec")]
    return _Open(number, fd, header, path, size, list(zip(*cols, strict=True)))


class LargeReader:
    """Reads large payload files: whole, into given buffers, or by slices.

    Keeps up to :data:`OPEN_FILES` files open with their parsed headers
    (files never change once written, so what it keeps stays true).
    """

    def __init__(self, files: LargeFiles) -> None:
        self.files = files
        self._open: OrderedDict[int, _Open] = OrderedDict()
        self._pins: dict[int, int] = {}  # file number -> operations using it
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close every file the reader holds open."""
        with self._lock:
            for o in self._open.values():
                os.close(o.fd)
            self._open.clear()

    @contextmanager
    def _pinned(self, numbers: Iterable[int]) -> Iterator[None]:
        """Keep files ``numbers`` open (their descriptors valid) inside the block."""
        numbers = list(numbers)
        with self._lock:
            for n in numbers:
                self._pins[n] = self._pins.get(n, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for n in numbers:
                    left = self._pins.pop(n) - 1
                    if left:
                        self._pins[n] = left
                self._trim()

    def _trim(self) -> None:
        """Close the least recently used files beyond the limit (not pinned ones)."""
        extra = len(self._open) - OPEN_FILES
        if extra <= 0:
            return
        for n in [n for n in self._open if n not in self._pins][:extra]:
            os.close(self._open.pop(n).fd)

    def open(self, number: int, kind: str | None = None) -> _Open:
        """The open file ``number`` and its header (checked against ``kind``).

        Its descriptor stays valid until the next call of another method,
        or, inside ``_pinned``, until the block ends.

        Parameters
        ----------
        number : int
        kind : str, optional

        Returns
        -------
        _Open

        Raises
        ------
        IntegrityError
            The file is missing or damaged, or holds another kind.
        """
        o = self._open.get(number)
        if o is None:
            o = self._load(number)
        else:
            self._open.move_to_end(number)
        if kind is not None and o.header.kind != kind:
            raise IntegrityError(
                f"large payload file {o.path} holds a {o.header.kind!r} array, "
                f"its index entry says {kind!r}"
            )
        return o

    def _load(self, number: int) -> _Open:
        o = open_file(self.files.path(number), number)
        with self._lock:
            old = self._open.pop(number, None)
            self._open[number] = o
            self._trim()
        if old is not None:
            os.close(old.fd)
        return o

    # ---- chunks --------------------------------------------------------
    @staticmethod
    def _scratch(local: threading.local, layout: Layout) -> np.ndarray:
        """A per-thread buffer for one decoded chunk."""
        tmp = getattr(local, "tmp", None)
        if tmp is None or len(tmp) < layout.max_chunk_bytes:
            tmp = local.tmp = np.empty(layout.max_chunk_bytes, np.uint8)
        return tmp

    @staticmethod
    def _body(o: _Open, i: int, local: threading.local) -> memoryview:
        """The stored bytes of chunk ``i``, checksum verified (a per-thread buffer)."""
        off, length, crc, _ = o.chunks[i]
        buf = getattr(local, "body", None)
        if buf is None or len(buf) < length:
            buf = local.body = bytearray(max(length, 2 * len(buf) if buf else length))
        body = memoryview(buf)[:length]
        if os.preadv(o.fd, [body], off) != length:
            raise IntegrityError(f"chunk {i} of {o.path} is truncated")
        if crc32(body) != crc:
            raise IntegrityError(f"chunk {i} of {o.path} fails its checksum")
        return body

    @staticmethod
    def _decompress(o: _Open, i: int, body: memoryview, dst: memoryview) -> None:
        codec = o.chunks[i][3]
        if codec != CODEC_BLOSC2:
            raise IntegrityError(f"chunk {i} of {o.path} has unknown codec {codec}")
        try:
            if blosc2.get_cbuffer_sizes(body)[0] != len(dst):
                raise ValueError("it decodes to the wrong length")
            blosc2.decompress2(body, dst=dst, nthreads=1)
        except Exception as exc:  # blosc2 raises RuntimeError / ValueError
            raise IntegrityError(f"chunk {i} of {o.path} cannot be decoded: {exc}") from None

    def _into(
        self,
        o: _Open,
        i: int,
        dest: np.ndarray,
        base: memoryview,
        row0: int,
        local: threading.local,
    ) -> None:
        """Decode chunk ``i`` into its place in ``dest``: the C-contiguous rows
        ``row0:`` of the array (bytes ``base``). Raw chunks are read straight
        into place (``preadv`` of their runs)."""
        lay = o.header.layout
        part = lay.part(i)
        if part.contiguous:  # decoded in place
            start = part.start - (row0 * lay.byte_strides[0] if row0 else 0)
            self._decode_to(o, i, base[start : start + part.nbytes], local)
            return
        tmp = self._scratch(local, lay)[: part.nbytes]
        self._decode_to(o, i, tmp.data, local)
        region = part.region
        if row0:
            r0 = region[0]
            region = (slice(r0.start - row0, r0.stop - row0), *region[1:])
        dest[region] = tmp.view(lay.dtype).reshape(part.shape)

    def _decode_to(self, o: _Open, i: int, dst: memoryview, local: threading.local) -> None:
        """Chunk ``i`` decoded into ``dst`` (its size exactly), checksum verified."""
        off, length, crc, codec = o.chunks[i]
        if codec == CODEC_RAW:
            if length != len(dst) or os.preadv(o.fd, [dst], off) != length:
                raise IntegrityError(f"chunk {i} of {o.path} is truncated")
            if crc32(dst) != crc:
                raise IntegrityError(f"chunk {i} of {o.path} fails its checksum")
        else:
            self._decompress(o, i, self._body(o, i, local), dst)

    def _decode(self, o: _Open, i: int, local: threading.local) -> np.ndarray:
        """Chunk ``i`` decoded, as an array of its shape in a per-thread buffer."""
        lay = o.header.layout
        part = lay.part(i)
        tmp = self._scratch(local, lay)[: part.nbytes]
        self._decode_to(o, i, tmp.data, local)
        return tmp.view(lay.dtype).reshape(part.shape)

    # ---- whole arrays --------------------------------------------------
    def read(self, number: int, kind: str | None = None) -> np.ndarray:
        """The whole array of file ``number`` (fresh and writeable).

        Parameters
        ----------
        number : int
            The file number.
        kind : str, optional
            The kind header the index names (checked against the file's).

        Returns
        -------
        numpy.ndarray
        """
        with self._pinned([number]):
            lay = self.open(number, kind).header.layout
            out = np.empty(lay.shape, lay.dtype)
            self.read_many([(number, out)], kind)
        return out

    def read_many(
        self, items: Sequence[tuple[int, np.ndarray]], kind: str | Sequence[str] | None = None
    ) -> None:
        """Fill each ``out`` array with the whole array of file ``number``.

        The chunks of all the files are decoded on every core. Each ``out``
        must be C-contiguous, of the file's dtype and shape (or flat bytes of
        the same size).

        Parameters
        ----------
        items : sequence of (int, numpy.ndarray)
            File number and the array to fill.
        kind : str or sequence of str, optional
            The kind header of every file, or of each.
        """
        with self._pinned(n for n, _ in items):
            self._read_many(items, kind)

    def _read_many(
        self, items: Sequence[tuple[int, np.ndarray]], kind: str | Sequence[str] | None
    ) -> None:
        kinds = [kind] * len(items) if kind is None or isinstance(kind, str) else list(kind)
        tasks: list[tuple[_Open, int, np.ndarray, memoryview]] = []
        for (number, out), k in zip(items, kinds, strict=True):
            o = self.open(number, k)
            lay = o.header.layout
            if out.nbytes != math.prod(lay.shape) * lay.dtype.itemsize:
                raise ValueError("output buffer of the wrong size")
            if not out.flags.c_contiguous:
                raise ValueError("output buffer not C-contiguous")
            typed = out.reshape(-1).view(np.uint8).view(lay.dtype).reshape(lay.shape)
            base = flat_bytes(typed)
            tasks.extend((o, i, typed, base) for i in range(len(o.chunks)))
        local = threading.local()

        def one(t: int) -> None:
            o, i, typed, base = tasks[t]
            self._into(o, i, typed, base, 0, local)

        run_parallel(one, len(tasks))

    # ---- slices --------------------------------------------------------
    def read_region(self, number: int, index: Any, kind: str | None = None) -> Any:
        """``array[index]`` of file ``number``, reading only the chunks it needs.

        ``index`` is what follows the key in ``aset[key, ...]``: ints, slices
        (any step, negative bounds) and ``...``; other index kinds (arrays,
        ``None``) read the whole array and index it. Returns what numpy's
        indexing returns, always a fresh array (or a scalar when every axis
        is an int).

        Parameters
        ----------
        number : int
        index : object
        kind : str, optional

        Returns
        -------
        numpy.ndarray or scalar
        """
        with self._pinned([number]):
            return self._read_region(self.open(number, kind), index)

    def _read_region(self, o: _Open, index: Any) -> Any:
        lay = o.header.layout
        plan = _plan(lay.shape, index)
        if plan is None:
            out = np.empty(lay.shape, lay.dtype)
            self._read_many([(o.number, out)], o.header.kind)
            got = out[index]
            return got.copy() if isinstance(got, np.ndarray) and got.base is not None else got
        axes, out_shape, scalar = plan
        out = np.empty(out_shape, lay.dtype)
        if out.size:
            # per axis: the chunks touched, and for each the (chunk slice, out slice)
            per_axis = [_axis_parts(ax, c) for ax, c in zip(axes, lay.chunks, strict=True)]
            combos = list(itertools.product(*per_axis))
            local = threading.local()
            keep = [not ax[3] for ax in axes]  # axes kept in the output (not ints)

            def one(t: int) -> None:
                parts = combos[t]
                chunk = self._decode(o, lay.index([p[0] for p in parts]), local)
                src = tuple(p[1] for p in parts)
                dst = tuple(p[2] for p, k in zip(parts, keep, strict=True) if k)
                out[dst] = chunk[src]

            run_parallel(one, len(combos), workers=1 if len(combos) < 4 else None)
        return out[()] if scalar else out

    # ---- verification --------------------------------------------------
    def verify(self, number: int, digest: bytes, kind: str | None = None) -> None:
        """Check every chunk of file ``number`` and the payload's digest.

        The array is decoded a slab of chunks at a time (the chunks sharing a
        first-axis position) and hashed as it goes, so this needs memory for
        one slab, not for the whole array.

        Raises
        ------
        IntegrityError
            If a chunk fails its checksum or the bytes do not hash to ``digest``.
        """
        with self._pinned([number]):
            o = self.open(number, kind)
            if o.header.digest != digest:
                raise IntegrityError(
                    f"large payload file {o.path} holds payload {o.header.digest.hex()}, "
                    f"not {digest.hex()}"
                )
            if self.digest_of(o) != digest:
                raise IntegrityError(
                    f"large payload file {o.path} does not match its digest {digest.hex()}"
                )

    def digest_of(self, o: _Open) -> bytes:
        """The digest of the array in ``o``, every chunk checked on the way.

        Parameters
        ----------
        o : _Open
            An open file (see :meth:`open`).

        Returns
        -------
        bytes

        Raises
        ------
        IntegrityError
            A chunk is damaged.
        """
        lay = o.header.layout
        hasher = digest_prefix(o.header.kind).copy()
        if not lay.shape or not math.prod(lay.shape):  # 0-d or empty
            out = np.empty(lay.shape, lay.dtype)
            if out.size:
                self._into(o, 0, out, flat_bytes(out), 0, threading.local())
            hasher.update(flat_bytes(out))
            return hasher.digest()
        per_slab = lay.n // lay.grid[0]
        c0 = lay.chunks[0]
        slab = np.empty((min(c0, lay.shape[0]), *lay.shape[1:]), lay.dtype)
        local = threading.local()
        for g in range(lay.grid[0]):
            row0 = g * c0
            view = slab[: min(c0, lay.shape[0] - row0)]
            base = flat_bytes(view)
            first = g * per_slab

            def one(
                t: int,
                view: np.ndarray = view,
                base: memoryview = base,
                row0: int = row0,
                first: int = first,
            ) -> None:
                self._into(o, first + t, view, base, row0, local)

            run_parallel(one, per_slab)
            hasher.update(base)
        return hasher.digest()


# --------------------------------------------------------------------------
# index planning for slices
# --------------------------------------------------------------------------
# one axis of a basic index: (first, step, count, is_int)
_Axis = tuple[int, int, int, bool]


def _plan(
    shape: tuple[int, ...], index: object
) -> tuple[list[_Axis], tuple[int, ...], bool] | None:
    """Per-axis selections of a basic ``index``, the result's shape and
    whether numpy would return a scalar; None when ``index`` is not made of
    ints, slices and one ``...``.

    Raises IndexError for what numpy would refuse (too many indices, an int
    out of bounds).
    """
    items = index if isinstance(index, tuple) else (index,)
    for it in items:
        if it is Ellipsis or isinstance(it, slice):
            continue
        if isinstance(it, (bool, np.bool_)) or not isinstance(it, (int, np.integer)):
            return None
    n_ell = sum(1 for it in items if it is Ellipsis)
    if n_ell > 1:
        return None
    if len(items) - n_ell > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, "
            f"but {len(items) - n_ell} were indexed"
        )
    if n_ell:
        k = items.index(Ellipsis)
        fill = (slice(None),) * (len(shape) - (len(items) - 1))
        items = items[:k] + fill + items[k + 1 :]
    else:
        items = items + (slice(None),) * (len(shape) - len(items))
    axes: list[_Axis] = []
    out_shape: list[int] = []
    for ax, (it, size) in enumerate(zip(items, shape, strict=True)):
        if isinstance(it, slice):
            start, stop, step = it.indices(size)
            count = len(range(start, stop, step))
            axes.append((start, step, count, False))
            out_shape.append(count)
        else:
            i = int(it)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {ax} with size {size}")
            axes.append((i % size, 1, 1, True))
    return axes, tuple(out_shape), not n_ell and all(a[3] for a in axes)


def _axis_parts(ax: _Axis, chunk: int) -> list[tuple[int, Any, slice]]:
    """For one axis: ``(chunk position, slice within the chunk, slice of the
    output)`` of every chunk holding a selected coordinate."""
    first, step, count, is_int = ax
    if is_int:
        return [(first // chunk, first % chunk, slice(0, 1))]
    out: list[tuple[int, Any, slice]] = []
    last = first + (count - 1) * step
    lo, hi = min(first, last), max(first, last)
    for c in range(lo // chunk, hi // chunk + 1):
        a, b = c * chunk, (c + 1) * chunk  # the chunk's coordinates [a, b)
        if step > 0:
            k0 = max(0, -(-(a - first) // step))
            k1 = min(count - 1, (b - 1 - first) // step)
        else:
            s = -step
            k0 = max(0, -(-(first - (b - 1)) // s))
            k1 = min(count - 1, (first - a) // s)
        if k0 > k1:
            continue
        p0 = first + k0 * step - a
        p1 = first + k1 * step - a
        stop = p1 + (1 if step > 0 else -1)
        out.append((c, slice(p0, stop if stop >= 0 else None, step), slice(k0, k1 + 1)))
    return out


__all__ = ["OPEN_FILES", "SHARED_MAX", "LargeReader", "empty_arrays", "open_file"]
