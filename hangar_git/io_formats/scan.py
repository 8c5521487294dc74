"""Finding arrays in files: the headers of ``.npy``, ``.npz`` and HDF5 files.

:func:`scan_paths` (folders and files) and :func:`scan_file` (one file) read
headers only and return one :class:`ArraySource` per array, with its sample
key, dtype and shape, so every input is checked before anything is loaded or
staged. The errors of the whole package (:class:`NotAnArrayError`,
:class:`ImportConflictError`) are defined here.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import HangarError, first_line
from ..naming import encode_key
from ..schema import MAX_RANK, check_dtype

#: file suffix -> format name
SUFFIXES: dict[str, str] = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".he5": "hdf5",
}

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: ``progress(n)``: called with the number of arrays handled since the last call
Progress = Callable[[int], Any]


class NotAnArrayError(HangarError, ValueError):
    """A file given for import is not an array file, or is damaged."""


class ImportConflictError(HangarError, ValueError):
    """Inputs cannot go into the arrayset together (keys, dtypes or shapes)."""


@dataclass(frozen=True)
class ArraySource:
    """One array found by :func:`scan_paths`: where it is and what it holds.

    Attributes
    ----------
    key : str
        Sample key it will be stored under.
    path : Path
        File holding it.
    fmt : str
        ``'npy'``, ``'npz'`` or ``'hdf5'``.
    member : str or None
        Member name inside an ``.npz`` archive, dataset path inside an HDF5
        file, None for ``.npy`` files.
    dtype : numpy.dtype
        Data type, in native byte order (arrays stored big-endian are
        converted when loaded; the values do not change).
    shape : tuple of int
        Shape of the array.
    offset : int
        For ``.npy`` files: where the data starts (0 otherwise).
    header : bytes
        For ``.npy`` files: the raw header (to check it is unchanged when the
        data is read), else empty.
    """

    key: str
    path: Path
    fmt: str
    member: str | None
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int = 0
    header: bytes = b""

    @property
    def nbytes(self) -> int:
        """Size of the array in memory."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> str:
        """Where the array comes from, for messages.

        Returns
        -------
        str
            ``file``, or ``file:member``.
        """
        return f"{self.path}:{self.member}" if self.member is not None else str(self.path)


@dataclass
class ScanResult:
    """What :func:`scan_paths` found: arrays to import and files passed over."""

    sources: list[ArraySource] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


# ---- reading headers -----------------------------------------------------------
_HEADER_CACHE: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}


def read_npy_header(fh: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype, bytes]:
    """Shape, Fortran order, dtype and raw header of the ``.npy`` stream ``fh``.

    The raw header (magic to end of header, so its length is the data
    offset) is parsed once per distinct text: folders of same-shaped arrays
    share one header, which spares a ``literal_eval`` per file.

    Parameters
    ----------
    fh : binary file
        Positioned at the start of the ``.npy`` data.
    where : str
        The file (and member), for messages.

    Returns
    -------
    tuple of (tuple of int, bool, numpy.dtype, bytes)

    Raises
    ------
    NotAnArrayError
        If the stream does not start with a valid ``.npy`` header.
    """
    start = fh.read(8)
    if len(start) < 8 or not start.startswith(_NPY_MAGIC):
        raise NotAnArrayError(f"{where} is not a valid .npy array: no .npy magic bytes")
    size_len = 2 if start[6] == 1 else 4
    size = fh.read(size_len)
    hlen = int.from_bytes(size, "little") if len(size) == size_len else -1
    body = fh.read(hlen) if hlen >= 0 else b""
    raw = start + size + body
    if hlen < 0 or len(body) < hlen:
        raise NotAnArrayError(f"{where} is not a valid .npy array: header cut short")
    hit = _HEADER_CACHE.get(raw)
    if hit is None:
        fmt = np.lib.format
        buf = io.BytesIO(raw)
        try:
            version = fmt.read_magic(buf)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(buf)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(buf)
            else:
                shape, fortran, dtype = fmt._read_array_header(  # type: ignore[attr-defined]
                    buf, version
                )
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise NotAnArrayError(f"{where} is not a valid .npy array: {first_line(exc)}") from None
        hit = (tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype))
        if len(_HEADER_CACHE) < 4096:
            _HEADER_CACHE[raw] = hit
    return hit[0], hit[1], hit[2], raw


def _native(dtype: np.dtype, where: str) -> np.dtype:
    if dtype.hasobject:
        raise NotAnArrayError(
            f"{where} holds Python objects (dtype {dtype}); only numeric arrays can be "
            "imported (object arrays are never unpickled)"
        )
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    try:
        return check_dtype(native)
    except ValueError as exc:
        raise NotAnArrayError(f"{where}: {exc}") from None


def _check_shape(shape: tuple[int, ...], where: str) -> None:
    if len(shape) > MAX_RANK:
        raise NotAnArrayError(f"{where}: rank {len(shape)} exceeds the maximum of {MAX_RANK}")
    if any(d == 0 for d in shape):
        raise NotAnArrayError(f"{where}: shape {shape} has a zero-size dimension (empty array)")


def _check_key(key: str, where: str) -> str:
    try:
        encode_key(key)
    except ValueError as exc:
        raise NotAnArrayError(f"{where}: cannot be stored under key {key!r}: {exc}") from None
    return key


def _scan_npy(path: Path) -> list[ArraySource]:
    where = str(path)
    with open(path, "rb") as fh:
        shape, _fortran, dtype, raw = read_npy_header(fh, where)
        actual = os.fstat(fh.fileno()).st_size
    native = _native(dtype, where)
    _check_shape(shape, where)
    expected = len(raw) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if actual < expected:
        raise NotAnArrayError(
            f"{where} is truncated: {actual} bytes, its header promises {expected}"
        )
    return [
        ArraySource(_check_key(path.stem, where), path, "npy", None, native, shape, len(raw), raw)
    ]


def _scan_npz(path: Path) -> list[ArraySource]:
    where = str(path)
    out: list[ArraySource] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NotAnArrayError(f"{where} is not a valid .npz archive: {first_line(exc)}") from None
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            mwhere = f"{where}:{info.filename}"
            if not info.filename.endswith(".npy"):
                raise NotAnArrayError(f"{mwhere} is not an array (.npz members end in .npy)")
            try:
                with zf.open(info) as fh:
                    shape, _fortran, dtype, raw = read_npy_header(fh, mwhere)  # type: ignore[arg-type]
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                raise NotAnArrayError(f"{mwhere} cannot be read: {first_line(exc)}") from None
            native = _native(dtype, mwhere)
            _check_shape(shape, mwhere)
            expected = len(raw) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if info.file_size < expected:
                raise NotAnArrayError(f"{mwhere} is truncated")
            member = info.filename[: -len(".npy")]
            out.append(ArraySource(_check_key(member, mwhere), path, "npz", member, native, shape))
    if not out:
        raise NotAnArrayError(f"{where} holds no arrays")
    return out


def _scan_hdf5(path: Path) -> list[ArraySource]:
    import h5py

    where = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NotAnArrayError(f"{where} is not a readable HDF5 file: {first_line(exc)}") from None
    out: list[ArraySource] = []
    with f:
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in sorted(names):
            ds = f[name]
            dwhere = f"{where}:{name}"
            if ds.shape is None:
                raise NotAnArrayError(f"{dwhere} is an empty dataset (no shape)")
            try:
                dtype = np.dtype(ds.dtype)
            except TypeError:
                raise NotAnArrayError(f"{dwhere} has an unsupported dtype {ds.dtype}") from None
            if h5py.check_dtype(vlen=dtype) is not None or h5py.check_dtype(ref=dtype):
                raise NotAnArrayError(
                    f"{dwhere} holds variable-length or reference data; only numeric "
                    "arrays can be imported"
                )
            native = _native(dtype, dwhere)
            shape = tuple(int(d) for d in ds.shape)
            _check_shape(shape, dwhere)
            key = name.strip("/").replace("/", ".")
            out.append(ArraySource(_check_key(key, dwhere), path, "hdf5", name, native, shape))
    if not out:
        raise NotAnArrayError(f"{where} holds no datasets")
    return out


_SCANNERS: dict[str, Callable[[Path], list[ArraySource]]] = {
    "npy": _scan_npy,
    "npz": _scan_npz,
    "hdf5": _scan_hdf5,
}


def sniff_format(path: Path) -> str | None:
    """Format of ``path`` from its suffix, else from its first bytes.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    str or None
        ``'npy'``, ``'npz'``, ``'hdf5'``, or None when unknown.
    """
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    return None


def scan_file(path: str | os.PathLike[str], fmt: str | None = None) -> list[ArraySource]:
    """The arrays in one file, from its headers only.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    fmt : str, optional
        Its format (default: told by :func:`sniff_format`).

    Returns
    -------
    list of ArraySource

    Raises
    ------
    NotAnArrayError
        (a ValueError) if the file is not an array file or is damaged.
    FileNotFoundError
        If the file does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if not p.is_file():
        raise NotAnArrayError(f"{p} is not a regular file (a pipe, socket or device)")
    fmt = fmt or sniff_format(p)
    if fmt is None:
        raise NotAnArrayError(f"{p} is not an array file (expected .npy, .npz or HDF5 .h5/.hdf5)")
    return _SCANNERS[fmt](p)


def scan_paths(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = False) -> ScanResult:
    """Find the arrays in files and folders, reading headers only.

    A file given by name must be an array file (by suffix, or else by its
    first bytes). In a folder, files with an array suffix are taken in name
    order; other files and hidden entries are passed over (listed in
    ``skipped``), and subfolders are entered only when ``recursive``.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files and folders.
    recursive : bool, optional
        Also enter the subfolders of folders.

    Returns
    -------
    ScanResult

    Raises
    ------
    NotAnArrayError
        A named file is not an array file, an array file is damaged, or a
        folder holds no array files.
    ImportConflictError
        Two inputs give the same key.
    FileNotFoundError
        A path does not exist.
    """
    result = ScanResult()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _scan_dir(p, recursive, result)
            if not found:
                raise NotAnArrayError(f"{p} holds no array files (.npy, .npz, .h5, .hdf5)")
        else:
            result.sources.extend(scan_file(p))
    seen: dict[str, ArraySource] = {}
    for src in result.sources:
        other = seen.get(src.key)
        if other is not None:
            raise ImportConflictError(
                f"two inputs give the sample key {src.key!r}: {other.describe()} and "
                f"{src.describe()}"
            )
        seen[src.key] = src
    return result


def _scan_dir(d: Path, recursive: bool, result: ScanResult) -> int:
    found = 0
    for entry in sorted(d.iterdir(), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                found += _scan_dir(entry, recursive, result)
            else:
                result.skipped.append(entry)
            continue
        fmt = SUFFIXES.get(entry.suffix.lower())
        if fmt is None or not entry.is_file():  # pipes, sockets, devices: never opened
            result.skipped.append(entry)
            continue
        srcs = _SCANNERS[fmt](entry)
        result.sources.extend(srcs)
        found += len(srcs)
    return found


__all__ = [
    "SUFFIXES",
    "ArraySource",
    "ImportConflictError",
    "NotAnArrayError",
    "Progress",
    "ScanResult",
    "first_line",
    "read_npy_header",
    "scan_file",
    "scan_paths",
    "sniff_format",
]
