"""Arrays in and out of files: import ``.npy``/``.npz``/HDF5 into an arrayset, export back.

Importing happens in two passes. :func:`scan_paths` reads only the headers
of the given files (or of the array files in the given folders) and returns
one :class:`ArraySource` per array, with its sample key, dtype and shape, so
that every input can be checked (a file that is not an array, a bad key, two
inputs with one key, a dtype or shape the arrayset cannot hold) before
anything is staged. :func:`import_arrays` then loads the arrays and stages
them in batches; if loading fails half way (a file changed or was damaged
after the scan, or the user interrupted), the staging area is put back as it
was.

Keys: the file stem for ``.npy`` files (``img_001.npy`` -> ``'img_001'``),
the member name for ``.npz`` archives (``arr_0``), and the dataset path for
HDF5 files with ``/`` replaced by ``.`` (``/train/x`` -> ``'train.x'``).

:func:`export_arrays` writes the samples of an arrayset as one ``.npy`` file
per sample, one ``.npz`` archive, or one HDF5 file; a ``.npy`` export of
arrays imported from ``.npy`` files reproduces the files byte for byte.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .errors import HangarError
from .naming import Key, check_arrayset_name, encode_key
from .safe_paths import check_component, child_path, open_new
from .schema import MAX_RANK, check_dtype

if TYPE_CHECKING:
    from .arrayset import ArraysetDataReader
    from .checkout import WriterCheckout

#: file suffix -> format name
SUFFIXES: dict[str, str] = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".he5": "hdf5",
}
#: formats :func:`export_arrays` writes
EXPORT_FORMATS = ("npy", "npz", "hdf5")

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

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
        """Where the array comes from, for messages (``file`` or ``file:member``)."""
        return f"{self.path}:{self.member}" if self.member is not None else str(self.path)


@dataclass
class ScanResult:
    """What :func:`scan_paths` found: arrays to import and files passed over."""

    sources: list[ArraySource] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    """Outcome of :func:`import_arrays`."""

    arrayset: str
    added: int
    replaced: int
    created: bool
    #: existing samples given the value they already held (no change staged)
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.added + self.replaced + self.unchanged


# ---- reading headers -----------------------------------------------------------
_HEADER_CACHE: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}


def _npy_header(fh: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype, bytes]:
    """Shape, Fortran order, dtype and raw header of the ``.npy`` stream ``fh``.

    The raw header (magic to end of header, so its length is the data
    offset) is parsed once per distinct text: folders of same-shaped arrays
    share one header, which spares a ``literal_eval`` per file.
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
            raise NotAnArrayError(
                f"{where} is not a valid .npy array: {_first_line(exc)}"
            ) from None
        hit = (tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype))
        if len(_HEADER_CACHE) < 4096:
            _HEADER_CACHE[raw] = hit
    return hit[0], hit[1], hit[2], raw


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


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
        shape, _fortran, dtype, raw = _npy_header(fh, where)
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
        raise NotAnArrayError(f"{where} is not a valid .npz archive: {_first_line(exc)}") from None
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            mwhere = f"{where}:{info.filename}"
            if not info.filename.endswith(".npy"):
                raise NotAnArrayError(f"{mwhere} is not an array (.npz members end in .npy)")
            try:
                with zf.open(info) as fh:
                    shape, _fortran, dtype, raw = _npy_header(fh, mwhere)  # type: ignore[arg-type]
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                raise NotAnArrayError(f"{mwhere} cannot be read: {_first_line(exc)}") from None
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
        raise NotAnArrayError(f"{where} is not a readable HDF5 file: {_first_line(exc)}") from None
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
    """Format of ``path`` from its suffix, else from its first bytes; None if unknown."""
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


# ---- loading -------------------------------------------------------------------
def load_sources(sources: Sequence[ArraySource]) -> Iterator[tuple[ArraySource, np.ndarray]]:
    """Load each source as a C-contiguous array in native byte order, in order.

    An ``.npz`` archive or HDF5 file stays open while consecutive sources
    come from it.

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
                raise NotAnArrayError(f"cannot read {src.describe()}: {_first_line(exc)}") from None
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
        raise NotAnArrayError(f"cannot open {src.path}: {_first_line(exc)}") from None


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
        shape, fortran, dtype, _ = _npy_header(io.BytesIO(src.header), src.describe())
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.fromfile(fh, dtype=dtype, count=count) if count else np.empty(0, dtype)
    if arr.size != count:
        raise NotAnArrayError(f"{src.describe()} is truncated (changed since it was scanned)")
    return arr.reshape(shape, order="F" if fortran else "C")


def load_array(path: str | os.PathLike[str], member: str | None = None) -> np.ndarray:
    """Load one array: a ``.npy`` file, or a member/dataset of an ``.npz``/HDF5 file.

    With ``member`` None the file must hold exactly one array.

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


# ---- import into an arrayset ---------------------------------------------------
def plan_schema(
    sources: Sequence[ArraySource], *, variable_shape: bool = False
) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, (max) shape and variable-shape flag of a new arrayset holding ``sources``.

    Raises
    ------
    ImportConflictError
        If the sources differ in dtype, in rank, or (without
        ``variable_shape``) in shape.
    """
    if not sources:
        raise ImportConflictError("no arrays to import")
    first = sources[0]
    shape = list(first.shape)
    for src in sources[1:]:
        if src.dtype != first.dtype:
            raise ImportConflictError(
                f"arrays differ in dtype: {first.describe()} is {first.dtype}, "
                f"{src.describe()} is {src.dtype}"
            )
        if src.shape != first.shape:
            if not variable_shape:
                raise ImportConflictError(
                    f"arrays differ in shape: {first.describe()} is {first.shape}, "
                    f"{src.describe()} is {src.shape}; import them into a variable-shape "
                    "arrayset (--variable-shape)"
                )
            if len(src.shape) != len(shape):
                raise ImportConflictError(
                    f"arrays differ in rank: {first.describe()} is {first.shape}, "
                    f"{src.describe()} is {src.shape}"
                )
            shape = [max(a, b) for a, b in zip(shape, src.shape, strict=True)]
    return first.dtype, tuple(shape), bool(variable_shape)


def check_fits(
    sources: Sequence[ArraySource],
    name: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    variable_shape: bool,
) -> None:
    """Raise ImportConflictError unless every source fits the arrayset schema."""
    for src in sources:
        if src.dtype != dtype:
            raise ImportConflictError(
                f"{src.describe()} has dtype {src.dtype}; arrayset {name!r} holds {dtype}"
            )
        if src.shape == shape:
            continue
        if not variable_shape:
            raise ImportConflictError(
                f"{src.describe()} has shape {src.shape}; arrayset {name!r} holds shape {shape}"
            )
        if len(src.shape) != len(shape) or any(
            g > m for g, m in zip(src.shape, shape, strict=True)
        ):
            raise ImportConflictError(
                f"{src.describe()} has shape {src.shape}, which does not fit the maximum "
                f"shape {shape} of arrayset {name!r}"
            )


def import_arrays(
    co: WriterCheckout,
    name: str,
    sources: Sequence[ArraySource],
    *,
    variable_shape: bool = False,
    progress: Progress | None = None,
    batch_bytes: int = 256 * 1024 * 1024,
) -> ImportResult:
    """Stage the arrays of ``sources`` into arrayset ``name`` of a write checkout.

    The arrayset is created from the sources when it does not exist (fixed
    shape, or with ``variable_shape`` the largest shape of the sources as
    maximum). Existing samples with the same keys are replaced. All checks
    run before anything is staged; if loading fails later (or the import is
    interrupted), the staging area is restored to what it was, and the
    error propagates.

    Parameters
    ----------
    co : WriterCheckout
        An open write checkout.
    name : str
        Arrayset name.
    sources : sequence of ArraySource
        What :func:`scan_paths` found.
    variable_shape : bool, optional
        Create a new arrayset with variable shape (ignored when it exists).
    progress : callable, optional
        Called with the number of arrays staged since the last call.
    batch_bytes : int, optional
        Arrays are written in batches of about this many bytes (each batch
        durable when it ends).

    Returns
    -------
    ImportResult
        Counts of added, replaced and unchanged samples.

    Raises
    ------
    ValueError
        Invalid arrayset name; an arrayset of unnamed samples.
    ImportConflictError
        (a ValueError) the arrays do not fit the arrayset.
    NotAnArrayError
        (a ValueError) a file changed or became unreadable after the scan.
    """
    check_arrayset_name(name)
    if not sources:
        raise ImportConflictError("no arrays to import")
    asets = co.arraysets
    created = name not in asets
    if created:
        dtype, shape, var = plan_schema(sources, variable_shape=variable_shape)
    else:
        aset = asets[name]
        if not aset.named_samples:
            raise ValueError(
                f"arrayset {name!r} holds unnamed samples; imported arrays are stored "
                "under their file or member names, so they need a named arrayset"
            )
        dtype, shape, var = aset.dtype, tuple(aset.shape), aset.variable_shape
        check_fits(sources, name, dtype, shape, var)
    encs = [encode_key(s.key) for s in sources]
    view = co._view
    prior = {} if created else {e: view.get(name, e) for e in encs}
    replaced = sum(1 for d in prior.values() if d is not None)
    was_clean = not co._journal.has_entries
    touched: list[str] = []
    try:
        if created:
            aset = asets.init_arrayset(name, shape=shape, dtype=dtype, variable_shape=var)
        else:
            aset = asets[name]
        loader = load_sources(sources)
        finished = False
        while not finished:
            finished = True
            nbytes = 0
            with aset:
                for src, arr in loader:
                    touched.append(encs[len(touched)])
                    aset[src.key] = arr
                    if progress is not None:
                        progress(1)
                    nbytes += arr.nbytes
                    if nbytes >= batch_bytes and len(touched) < len(encs):
                        finished = False
                        break
    except BaseException as exc:
        try:
            _rollback(co, name, created, was_clean, prior, touched)
        except Exception as rb:  # keep the original error; say the undo failed too
            exc.add_note(f"restoring the staging area failed as well: {rb}")
        raise
    same = sum(1 for e, d in prior.items() if d is not None and view.get(name, e) == d)
    return ImportResult(name, len(sources) - replaced, replaced - same, created, same)


def _rollback(
    co: WriterCheckout,
    name: str,
    created: bool,
    was_clean: bool,
    prior: dict[str, bytes | None],
    touched: list[str],
) -> None:
    """Undo what an interrupted import staged (see :func:`import_arrays`)."""
    if co._closed:
        return
    if was_clean:
        if co._journal.has_entries:
            co.reset_staging_area()  # back to a clean staging area (closes the checkout)
        return
    if created:
        if co._view.has_aset(name):
            co.arraysets.remove_aset(name)
    else:
        co._begin_batch()
        try:
            for enc in touched:
                old = prior.get(enc)
                if old is None:
                    co._unstage_sample(name, enc)
                else:
                    co._journal.record("A", name, enc, old.hex())
        finally:
            co._end_batch()
    co._sync()


# ---- export --------------------------------------------------------------------
def export_name(key: Key) -> str:
    """File or member name (without suffix) for a sample key.

    Raises
    ------
    UnsafePathError
        (a ValueError) if the key, as read from records, is not a plain file
        name (a hostile record: ``'../x'``, ``'/tmp/x'`` ...).
    """
    return check_component(str(key), "sample key")


def export_arrays(
    aset: ArraysetDataReader,
    out_dir: str | os.PathLike[str],
    fmt: str = "npy",
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[Path]:
    """Write the samples of ``aset`` under ``out_dir``.

    ``npy``: one ``<key>.npy`` file per sample; ``npz``: one archive
    ``<arrayset>.npz`` with a member per sample; ``hdf5``: one file
    ``<arrayset>.h5`` with a dataset per sample. Each file is written to a
    temporary name and renamed when complete.

    Every file name comes from :func:`hangar_git.safe_paths.child_path`: a
    key or arrayset name (from records someone else pushed) that is not a
    plain file name, or a path that a symlink in ``out_dir`` would lead
    elsewhere, is refused before anything is written.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ValueError
        Unknown format, or two keys (the str ``'1'`` and the int ``1``) that
        would need the same file name.
    UnsafePathError
        (a ValueError and a CorruptRecordError) a key or the arrayset name is
        not a plain file name, or a target leads outside ``out_dir``; nothing
        is written.
    FileExistsError
        A target file exists and ``overwrite`` is False (nothing is written).
    MissingPayloadError
        Some sample's data is not on this machine.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(out))
    keys = list(aset.keys())
    names: dict[str, Key] = {}
    for k in keys:
        n = export_name(k)
        if n in names:
            raise ValueError(
                f"keys {names[n]!r} and {k!r} of arrayset {aset.name!r} would both be "
                f"exported as {n!r}"
            )
        names[n] = k
    if fmt == "npy":
        files = {n: child_path(out, f"{n}.npy", what="sample key") for n in names}
        targets = list(files.values())
    else:
        check_component(str(aset.name), "arrayset name")
        suffix = "npz" if fmt == "npz" else "h5"
        targets = [child_path(out, f"{aset.name}.{suffix}", what="arrayset name")]
        for n in names:  # member / dataset names must be plain names too
            check_component(f"{n}.npy", "sample key")
    if not overwrite:
        existing = [t for t in targets if t.exists() or t.is_symlink()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise FileExistsError(
                17, f"would overwrite existing files{more}; pass overwrite", str(existing[0])
            )
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        for key, arr in aset.items():
            n = export_name(key)
            target = files.get(n) or child_path(out, f"{n}.npy", what="sample key")
            _write_atomic(target, functools.partial(_write_npy, arr=arr))
            if progress is not None:
                progress(1)
    elif fmt == "npz":
        _write_atomic(targets[0], lambda fh: _write_npz(fh, aset, progress))
    else:
        _write_hdf5(targets[0], aset, progress)
    return targets


def _write_npy(fh: BinaryIO, arr: np.ndarray) -> None:
    np.lib.format.write_array(fh, np.asarray(arr, order="C"), allow_pickle=False)


def _write_npz(fh: BinaryIO, aset: ArraysetDataReader, progress: Progress | None) -> None:
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in aset.items():
            member = check_component(f"{export_name(key)}.npy", "sample key")
            with zf.open(member, "w", force_zip64=True) as out:
                _write_npy(out, arr)  # type: ignore[arg-type]
            if progress is not None:
                progress(1)


def _temp_beside(target: Path) -> Path:
    """A temporary name beside ``target``: whatever is there (a leftover, or a
    planted link) is removed by the caller and the file created anew with
    ``O_EXCL | O_NOFOLLOW``, so it is never written through."""
    return target.parent / check_component(f".{target.name}.tmp-{os.getpid()}", "file name")


def _write_hdf5(target: Path, aset: ArraysetDataReader, progress: Progress | None) -> None:
    import h5py

    tmp = _temp_beside(target)
    tmp.unlink(missing_ok=True)  # a leftover (or a planted link) is removed, not followed
    os.close(open_new(tmp))
    try:
        with h5py.File(tmp, "w") as f:
            for key, arr in aset.items():
                f.create_dataset(check_component(export_name(key), "sample key"), data=arr)
                if progress is not None:
                    progress(1)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(target: Path, write: Callable[[BinaryIO], None]) -> None:
    tmp = _temp_beside(target)
    tmp.unlink(missing_ok=True)  # a leftover (or a planted link) is removed, not followed
    try:
        with os.fdopen(open_new(tmp), "wb") as fh:
            write(fh)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = [
    "EXPORT_FORMATS",
    "SUFFIXES",
    "ArraySource",
    "ImportConflictError",
    "ImportResult",
    "NotAnArrayError",
    "ScanResult",
    "check_fits",
    "export_arrays",
    "import_arrays",
    "load_array",
    "load_sources",
    "plan_schema",
    "scan_file",
    "scan_paths",
    "sniff_format",
]
