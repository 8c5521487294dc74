"""Loading the arrays :mod:`.scan` found, checking each is still what was scanned."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .scan import ArraySource, NotAnArrayError, first_line, read_npy_header, scan_file


def load_sources(sources: Sequence[ArraySource]) -> Iterator[tuple[ArraySource, np.ndarray]]:
    """Load each source as a C-contiguous array in native byte order, in order.

    An ``.npz`` archive or HDF5 file stays open while consecutive sources
    come from it.

    Parameters
    ----------
    sources : sequence of ArraySource
        What :func:`~.scan.scan_paths` found.

    Yields
    ------
    tuple of (ArraySource, numpy.ndarray)

    Raises
    ------
    NotAnArrayError
        If a file no longer holds what the scan found (changed or damaged).
    """
    open_path: Path | None = None
    handle: Any = None
    try:
        for src in sources:
            if src.fmt != "npy" and src.path != open_path:
                if handle is not None:
                    handle.close()
                    handle = None
                handle = _open_container(src)
                open_path = src.path
            try:
                arr = _load_one(src, handle)
            except NotAnArrayError:
                raise
            except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                raise NotAnArrayError(f"cannot read {src.describe()}: {first_line(exc)}") from None
            if arr.dtype != src.dtype or arr.shape != src.shape:
                raise NotAnArrayError(
                    f"{src.describe()} changed since it was scanned (now {arr.dtype} "
                    f"{arr.shape}, was {src.dtype} {src.shape})"
                )
            yield src, arr
    finally:
        if handle is not None:
            handle.close()


def _open_container(src: ArraySource) -> Any:
    try:
        if src.fmt == "npz":
            return zipfile.ZipFile(src.path)
        import h5py

        return h5py.File(src.path, "r")
    except (OSError, zipfile.BadZipFile) as exc:
        raise NotAnArrayError(f"cannot open {src.path}: {first_line(exc)}") from None


def _fix(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return np.asarray(arr, order="C")  # keeps 0-d arrays 0-d


def _load_one(src: ArraySource, handle: Any) -> np.ndarray:
    if src.fmt == "npy":
        arr = _read_npy_data(src)
    elif src.fmt == "npz":
        with handle.open(f"{src.member}.npy") as fh:
            arr = np.lib.format.read_array(fh, allow_pickle=False)
    else:
        ds = handle[src.member]
        arr = np.empty(ds.shape, dtype=ds.dtype)
        if arr.size:
            ds.read_direct(arr)
    return _fix(arr, src.dtype)


def _read_npy_data(src: ArraySource) -> np.ndarray:
    """The data of a scanned ``.npy`` file, read from its known offset."""
    if not src.header:
        return np.load(src.path, allow_pickle=False)
    with open(src.path, "rb") as fh:
        if src.header and fh.read(len(src.header)) != src.header:
            raise NotAnArrayError(f"{src.describe()} changed since it was scanned (new header)")
        shape, fortran, dtype, _ = read_npy_header(io.BytesIO(src.header), src.describe())
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.fromfile(fh, dtype=dtype, count=count) if count else np.empty(0, dtype)
    if arr.size != count:
        raise NotAnArrayError(f"{src.describe()} is truncated (changed since it was scanned)")
    return arr.reshape(shape, order="F" if fortran else "C")


def load_array(path: str | os.PathLike[str], member: str | None = None) -> np.ndarray:
    """Load one array: a ``.npy`` file, or a member/dataset of an ``.npz``/HDF5 file.

    With ``member`` None the file must hold exactly one array.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    member : str, optional
        Member (``.npz``) or dataset (HDF5), by name or by sample key.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    NotAnArrayError
        Not an array file, no such member, or several arrays and no member.
    """
    srcs = scan_file(path)
    if member is not None:
        srcs = [s for s in srcs if s.member == member or s.key == member]
        if not srcs:
            raise NotAnArrayError(f"{path} holds no array named {member!r}")
    elif len(srcs) != 1:
        raise NotAnArrayError(f"{path} holds {len(srcs)} arrays: name the one to load")
    return next(load_sources(srcs[:1]))[1]


__all__ = ["load_array", "load_sources"]
