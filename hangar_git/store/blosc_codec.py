"""The Blosc2 codec for the store's blocks, without paying blosc2's import.

Importing the ``blosc2`` package takes 250-300 ms in a fresh process (it
pulls in an HTTP client, ``rich``, ``asyncio`` ... for its remote arrays):
more than a ``git hangar`` command or a first read otherwise costs. The pack
blocks need three calls of C-Blosc2 only (compress with the global context,
decompress, read a chunk's header), and the blosc2 wheel ships the C library
they live in (``blosc2/lib/libblosc2.so``): :func:`compress`,
:func:`decompress` and :func:`cbuffer_nbytes` call it through :mod:`ctypes`,
the same functions python-blosc2's ``compress``/``decompress`` call, so the
bytes are the same either way. Where that library is not found, they use the
blosc2 package.

``blosc2`` is the package itself, imported on first attribute access, for
the chunked store's threaded contexts (``compress2``/``decompress2``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

_lock = threading.Lock()

#: the filter and codec numbers of C-Blosc2 (``BLOSC_SHUFFLE``, ``BLOSC_LZ4`` ...)
SHUFFLE = 1
CODECS = {"lz4": 1, "zstd": 5}
#: C-Blosc2's ``BLOSC2_MAX_OVERHEAD`` and ``BLOSC_MIN_HEADER_LENGTH``
_MAX_OVERHEAD = 32
_MIN_HEADER = 16


class _LazyBlosc2:
    """Stands for the blosc2 module; imports it on first attribute access."""

    _mod: ModuleType | None = None

    def _load(self) -> ModuleType:
        with _lock:
            if _LazyBlosc2._mod is None:
                import blosc2

                # compression and decompression release the GIL: the chunked
                # store runs them on several threads at once
                blosc2.set_releasegil(True)
                _LazyBlosc2._mod = blosc2
        return _LazyBlosc2._mod

    def __getattr__(self, name: str) -> Any:
        mod = _LazyBlosc2._mod or self._load()
        return getattr(mod, name)


blosc2: Any = _LazyBlosc2()


def _library_path() -> Path | None:
    """The C-Blosc2 shared library in the installed blosc2 wheel, found
    without importing the package."""
    try:
        spec = importlib.util.find_spec("blosc2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    names = {"linux": "libblosc2.so", "darwin": "libblosc2.dylib", "win32": "blosc2.dll"}
    name = names.get(sys.platform)
    for root in spec.submodule_search_locations:
        for sub in ("lib", "lib64", "bin"):
            path = Path(root) / sub / (name or "")
            if name and path.is_file():
                return path
    return None


class _CBlosc2:
    """The C library's global-context calls, serialised by one lock (the
    library serialises them itself; the lock also keeps the codec and thread
    settings of one call from being changed by another thread)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))  # CDLL calls release the GIL
        vp, i32 = ctypes.c_void_p, ctypes.c_int32
        lib.blosc2_init.argtypes = ()
        lib.blosc2_compress.argtypes = (ctypes.c_int, ctypes.c_int, i32, vp, i32, vp, i32)
        lib.blosc2_compress.restype = ctypes.c_int
        lib.blosc2_decompress.argtypes = (vp, i32, vp, i32)
        lib.blosc2_decompress.restype = ctypes.c_int
        lib.blosc2_cbuffer_sizes.argtypes = (vp, vp, vp, vp)
        lib.blosc2_cbuffer_sizes.restype = ctypes.c_int
        lib.blosc2_set_nthreads.argtypes = (ctypes.c_int16,)
        lib.blosc2_set_nthreads.restype = ctypes.c_int16
        lib.blosc1_set_compressor.argtypes = (ctypes.c_char_p,)
        lib.blosc1_set_compressor.restype = ctypes.c_int
        lib.blosc2_init()
        self._lib = lib
        self._codec = ""
        self._nthreads = 1
        lib.blosc2_set_nthreads(1)

    def compress(
        self,
        raw: Any,
        typesize: int,
        clevel: int,
        codec: str,
        nthreads: int,
        room: int | None = None,
    ) -> bytes | None:
        """The chunk; with ``room``, None when it takes more than ``room`` bytes."""
        n = memoryview(raw).nbytes
        cap = n + _MAX_OVERHEAD if room is None else room
        dest = _new_bytes(None, cap)
        size = self.compress_to(raw, _bytes_address(dest), cap, typesize, clevel, codec, nthreads)
        if size == 0 and room is not None:
            return None  # it does not fit: C-Blosc2 stopped as soon as it knew
        if size <= 0:
            raise ValueError("Cannot compress")
        return dest[:size]

    def compress_to(
        self, raw: Any, dest: Any, cap: int, typesize: int, clevel: int, codec: str, nthreads: int
    ) -> int:
        """``blosc2_compress`` of ``raw`` to the ``cap`` bytes at address ``dest``:
        the chunk's size, 0 when it does not fit, negative on an error."""
        src, n = _address(raw)
        with _lock:
            if codec != self._codec:
                if self._lib.blosc1_set_compressor(codec.encode()) < 0:
                    raise ValueError(f"codec {codec} is not available")
                self._codec = codec
            self._threads(nthreads)
            return int(self._lib.blosc2_compress(clevel, SHUFFLE, typesize, src, n, dest, cap))

    def _threads(self, nthreads: int) -> None:
        if nthreads != self._nthreads:
            self._lib.blosc2_set_nthreads(nthreads)
            self._nthreads = nthreads

    def nbytes(self, body: Any) -> int:
        return self._nbytes(*_address(body))

    def _nbytes(self, src: Any, length: int) -> int:
        if length < _MIN_HEADER:
            raise ValueError("the compressed buffer is shorter than a Blosc2 header")
        out = (ctypes.c_int32 * 3)()
        at = ctypes.addressof(out)
        if self._lib.blosc2_cbuffer_sizes(src, at, at + 4, at + 8) < 0:
            raise ValueError("not a Blosc2 chunk")
        return int(out[0])

    def decompress(self, body: Any) -> bytes:
        src, length = _address(body)
        n = self._nbytes(src, length)
        dest = _new_bytes(None, n)
        if n:
            with _lock:
                self._threads(_DECODE_THREADS if n >= _THREADED_SIZE else 1)
                size = self._lib.blosc2_decompress(src, length, _bytes_address(dest), n)
            if size != n:
                raise RuntimeError("Cannot decompress")
        return dest


#: a fresh ``bytes`` of a given size, to be filled before anyone else sees it,
#: and the address of its buffer (the C API's own way of building bytes)
_new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
_new_bytes.restype = ctypes.py_object
_new_bytes.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
_bytes_address = ctypes.pythonapi.PyBytes_AsString
_bytes_address.restype = ctypes.c_void_p
_bytes_address.argtypes = (ctypes.py_object,)
#: chunks this large decompress on two threads (as python-blosc2's default does)
_THREADED_SIZE = 1 << 18
_DECODE_THREADS = 2


def _address(buf: Any) -> tuple[Any, int]:
    """Something ctypes passes as the address of ``buf``'s bytes, and their count."""
    if type(buf) is bytes:
        return buf, len(buf)
    arr = np.frombuffer(buf, np.uint8)
    return arr.ctypes.data, arr.nbytes


_c_lib: _CBlosc2 | bool | None = False  # False: not looked for yet


def _c() -> _CBlosc2 | None:
    global _c_lib
    if _c_lib is False:
        with _lock:
            if _c_lib is False:
                path = _library_path()
                try:
                    _c_lib = _CBlosc2(path) if path is not None else None
                except (OSError, AttributeError):  # unloadable, or symbols missing
                    _c_lib = None
    return _c_lib if isinstance(_c_lib, _CBlosc2) else None


def compress(raw: Any, *, typesize: int, clevel: int, codec: str, nthreads: int = 1) -> bytes:
    """``raw`` as one Blosc2 chunk, byte shuffled.

    Parameters
    ----------
    raw : bytes-like
        At most 2 GiB minus the chunk overhead.
    typesize : int
        Bytes per item for the shuffle (1-255).
    clevel : int
        Compression level, 0-9.
    codec : {"lz4", "zstd"}
        The compressor.
    nthreads : int
        Threads of C-Blosc2 for this call.

    Returns
    -------
    bytes
        The chunk, as ``blosc2.compress(raw, typesize, clevel,
        Filter.SHUFFLE, Codec[codec])`` returns it.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}")
    lib = _c()
    if lib is not None:
        chunk = lib.compress(raw, typesize, clevel, codec, nthreads)
        if chunk is None:  # pragma: no cover - with room for any chunk, never
            raise ValueError("Cannot compress")
        return chunk
    return _package_compress(raw, typesize, clevel, codec, nthreads)


def compress_below(
    raw: Any, limit: int, *, typesize: int, clevel: int, codec: str, nthreads: int = 1
) -> bytes | None:
    """:func:`compress`, when the chunk takes fewer than ``limit`` bytes.

    C-Blosc2 is given room for ``limit - 1`` bytes only: bytes that do not
    compress that far are given up on as soon as that is known, with no
    copy of them into a chunk of their own (a third of the time of
    :func:`compress` for random bytes). A chunk that fits is the one
    :func:`compress` makes.

    Parameters
    ----------
    raw : bytes-like
        As for :func:`compress`.
    limit : int
        The chunk must be shorter than this (at least ``BLOSC2_MAX_OVERHEAD + 1``).
    typesize, clevel, codec, nthreads
        As for :func:`compress`.

    Returns
    -------
    bytes or None
        The chunk, or None when it would take ``limit`` bytes or more.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}")
    if limit <= _MAX_OVERHEAD:
        raise ValueError(f"a limit of {limit} bytes leaves no room for a chunk")
    lib = _c()
    if lib is not None:
        return lib.compress(raw, typesize, clevel, codec, nthreads, room=limit - 1)
    chunk = _package_compress(raw, typesize, clevel, codec, nthreads)
    return chunk if len(chunk) < limit else None


def compress_into(
    raw: Any, out: np.ndarray, limit: int, *, typesize: int, clevel: int, codec: str
) -> int | None:
    """:func:`compress_below` written into ``out`` (a writable, C-contiguous
    uint8 array of ``limit - 1`` bytes or more) instead of a new ``bytes``:
    the chunk's size, or None when it would take ``limit`` bytes or more (what
    ``out`` then holds is undefined). The chunk is the one :func:`compress`
    makes.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}")
    if limit <= _MAX_OVERHEAD:
        raise ValueError(f"a limit of {limit} bytes leaves no room for a chunk")
    if out.dtype != np.uint8 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writable, contiguous uint8 array")
    room = min(limit - 1, out.nbytes)
    lib = _c()
    if lib is not None:
        size = lib.compress_to(raw, out.ctypes.data, room, typesize, clevel, codec, 1)
        if size < 0:
            raise ValueError("Cannot compress")
        return size or None  # 0: it does not fit
    chunk = _package_compress(raw, typesize, clevel, codec, 1)
    if len(chunk) > room:
        return None
    out[: len(chunk)] = np.frombuffer(chunk, np.uint8)
    return len(chunk)


def _package_compress(raw: Any, typesize: int, clevel: int, codec: str, nthreads: int) -> bytes:
    """:func:`compress` through the blosc2 package (no C library found)."""
    old = blosc2.set_nthreads(nthreads) if nthreads != 1 else None
    try:
        return bytes(
            blosc2.compress(
                raw,
                typesize=typesize,
                clevel=clevel,
                filter=blosc2.Filter.SHUFFLE,
                codec=blosc2.Codec(CODECS[codec]),
            )
        )
    finally:
        if old is not None:
            blosc2.set_nthreads(old)


def cbuffer_nbytes(body: Any) -> int:
    """The decompressed size a Blosc2 chunk's header states.

    Raises
    ------
    ValueError, RuntimeError
        If ``body`` has no valid header.
    """
    lib = _c()
    if lib is not None:
        return lib.nbytes(body)
    return int(blosc2.get_cbuffer_sizes(body)[0])


def decompress(body: Any) -> bytes:
    """The raw bytes of one Blosc2 chunk.

    Callers check the chunk's header against what they expect before
    calling (see :func:`.limits.check_blosc_header`): the output is
    allocated at the size the header states.

    Raises
    ------
    ValueError, RuntimeError
        If the chunk cannot be decoded.
    """
    lib = _c()
    if lib is not None:
        return lib.decompress(body)
    return blosc2.decompress(body)  # type: ignore[no-any-return]
