"""Writing the samples of an arrayset to ``.npy`` files, an ``.npz`` archive or HDF5.

Every name written comes from :mod:`hangar_git.safe_paths` (the one place
that turns a name into a path), and every file is written to a temporary
name, then renamed.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ..naming import Key
from ..safe_paths import check_component, child_path, open_new
from .scan import Progress

if TYPE_CHECKING:
    from ..arrayset import ArraysetDataReader

#: formats :func:`export_arrays` writes
EXPORT_FORMATS = ("npy", "npz", "hdf5")


def export_name(key: Key) -> str:
    """File or member name (without suffix) for a sample key.

    Parameters
    ----------
    key : str or int
        A sample key.

    Returns
    -------
    str

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

    Parameters
    ----------
    aset : ArraysetDataReader
        The arrayset (of any checkout).
    out_dir : str or os.PathLike
        Folder to write in (made when missing).
    fmt : str, optional
        ``'npy'`` (default), ``'npz'`` or ``'hdf5'``.
    overwrite : bool, optional
        Replace existing files (else nothing is written when one exists).
    progress : callable, optional
        Called with the number of samples written since the last call.

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
    files, targets = _targets(aset, out, fmt)
    if not overwrite:
        _refuse_overwrite(targets)
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


def _targets(aset: ArraysetDataReader, out: Path, fmt: str) -> tuple[dict[str, Path], list[Path]]:
    """``({file name: path} of the .npy files, every file to write)``: for
    ``npz`` and ``hdf5`` no ``.npy`` file and one archive, once every member
    name is found safe.

    Raises
    ------
    ValueError
        Two keys would need the same file name.
    UnsafePathError
        A key or the arrayset name is not a plain file name.
    """
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
        return files, list(files.values())
    check_component(str(aset.name), "arrayset name")
    suffix = "npz" if fmt == "npz" else "h5"
    archive = child_path(out, f"{aset.name}.{suffix}", what="arrayset name")
    for n in names:  # member / dataset names must be plain names too
        check_component(f"{n}.npy", "sample key")
    return {}, [archive]


def _refuse_overwrite(targets: list[Path]) -> None:
    """FileExistsError when any of ``targets`` exists (or is a dangling link)."""
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(
            17, f"would overwrite existing files{more}; pass overwrite", str(existing[0])
        )


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


__all__ = ["EXPORT_FORMATS", "export_arrays", "export_name"]
