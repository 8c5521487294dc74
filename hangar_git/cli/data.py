"""``git hangar show|export``: sample arrays out of a commit, to the terminal or to files.

Commands of :mod:`hangar_git.cli`; each works on the hangar repository
containing the current directory. numpy is imported only when they run.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from . import complete
from .common import (
    CLIError,
    emit_json,
    info,
    isatty,
    json_option,
    open_repo,
    progress,
    reader,
    resolve_startpoint,
    warn,
)
from .render import lookup_key, plural

if TYPE_CHECKING:
    from pathlib import Path

    from ..arrayset import ArraysetDataReader


def _parse_show_spec(spec: str) -> tuple[str | None, str, str]:
    """``STARTPOINT:ARRAYSET:KEY`` or ``STARTPOINT:ARRAYSET/KEY`` in its three parts.

    A STARTPOINT holds no ':' and an arrayset name neither ':' nor '/', so the
    first ':' ends the STARTPOINT and the next ':' or '/' the arrayset; the
    rest is the KEY (``i:5`` and ``s:x`` included).
    """
    sp, sep, rest = spec.partition(":")
    cut = min((i for i in (rest.find(":"), rest.find("/")) if i >= 0), default=-1)
    if not sep or cut <= 0 or cut == len(rest) - 1:
        raise click.BadParameter(
            f"{spec!r}: expected STARTPOINT:ARRAYSET:KEY (e.g. master:images:0001)",
            param_hint="'SPEC'",
        )
    return sp or None, rest[:cut], rest[cut + 1 :]


@dataclass
class _Writer:
    """A file-like object with only ``write``, which writes all it is given.

    numpy writes to it in chunks (not with ``tofile``). ``stream`` may be an
    unbuffered binary stdout (``PYTHONUNBUFFERED``), whose ``write`` can write
    only part of the bytes: the rest is written after, so a reader that went
    away is seen as EPIPE, never as a silently short file.
    """

    stream: Any

    def write(self, data: bytes) -> int:
        """Write all of ``data``; returns its length."""
        view = memoryview(data).cast("B")
        while view:
            n = self.stream.write(view)
            if n is None:  # a non-blocking stream that is full
                raise BlockingIOError(errno.EAGAIN, "standard output is not ready")
            view = view[n:]
        return len(data)


@click.command()
@click.argument("spec", metavar="STARTPOINT:ARRAYSET:KEY")
@click.option("--full", is_flag=True, help="Print every element (no '...' summarising).")
@click.option(
    "--npy",
    "as_npy",
    is_flag=True,
    help="Write the array as .npy bytes to stdout (redirect it to a file).",
)
@json_option
def show(spec: str, full: bool, as_npy: bool, as_json: bool) -> None:
    """Print one sample array.

    KEY may be written s:NAME or i:NUMBER to pick the key type. An empty
    STARTPOINT (':ARRAYSET:KEY') means the staging area's branch head.
    STARTPOINT:ARRAYSET/KEY works too. --json gives the array as nested
    lists in "data" (NaN and infinities as the strings "NaN", "Infinity" and
    "-Infinity": JSON has no such numbers); an array the text would summarise
    (more than 1000 elements) has "data": null and "truncated": true unless
    --full is given.
    """
    import numpy as np

    if as_npy and as_json:
        raise click.UsageError("--npy and --json cannot be combined")
    sp_text, aset_name, key_text = _parse_show_spec(spec)
    repo = open_repo()
    sp = resolve_startpoint(repo, sp_text)
    with reader(repo, sp.commit) as co:
        if aset_name not in co.arraysets:
            raise CLIError(f"no arrayset named {aset_name!r} at {sp.label}")
        aset = co.arraysets[aset_name]
        key = lookup_key(aset, key_text)
        if key not in aset:
            raise CLIError(f"arrayset {aset_name!r} has no sample {key!r} at {sp.label}")
        arr = aset[key]
    if as_npy:
        _write_npy(arr)
        return
    # numpy summarises an array of more elements than this (unless --full)
    summarised = not full and arr.size > np.get_printoptions()["threshold"]
    if as_json:
        emit_json(_show_json(sp.label, sp.commit, aset_name, key, arr, summarised))
        return
    info(f"{aset_name}[{key!r}] at {sp.label}: shape {arr.shape}, dtype {arr.dtype}")
    opts: dict[str, Any] = {"threshold": sys.maxsize} if full else {}
    with np.printoptions(**opts):
        click.echo(np.array2string(arr, separator=", ") if arr.ndim else repr(arr.item()))


def _show_json(
    label: str, commit: str, aset: str, key: Any, arr: Any, truncated: bool
) -> dict[str, Any]:
    """``show --json``: where the sample is, its dtype and shape, and its values
    (a complex value as its ``[real, imag]`` pair)."""
    if truncated:
        warn(f'{plural(arr.size, "element")} left out of "data": pass --full to print them')
    return {
        "startpoint": label,
        "commit": commit,
        "arrayset": aset,
        "key": key,
        "dtype": str(arr.dtype),
        "shape": list(arr.shape),
        "size": int(arr.size),
        "truncated": truncated,
        "data": None if truncated else _plain_values(arr),
    }


#: JSON has no NaN or infinity: such floats are these strings (as in protobuf's JSON mapping)
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _plain_values(arr: Any) -> Any:
    """``arr`` as nested lists of JSON numbers; complex values as [real, imag];
    NaN and infinities as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    import numpy as np

    if np.iscomplexobj(arr):
        arr = np.stack([arr.real, arr.imag], axis=-1)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        out = arr.astype(object)
        bad = ~np.isfinite(arr)
        out[bad] = [_NON_FINITE[str(float(v))] for v in arr[bad]]
        return out.tolist()
    return arr.tolist()


def _write_npy(arr: Any) -> None:
    """Write ``arr`` as .npy bytes to stdout (refused when stdout is a terminal)."""
    import numpy as np

    out = sys.stdout.buffer
    if isatty(out):
        raise CLIError("refusing to write binary .npy data to a terminal; redirect stdout")
    # through a plain writer, not numpy's tofile(): a reader that stops early
    # (`| head -c`) then ends the command quietly (EPIPE) instead of with an
    # error that names no cause
    sink = _Writer(out)
    np.lib.format.write_array(sink, np.asarray(arr, order="C"), allow_pickle=False)
    out.flush()


@click.command()
@click.argument("arrayset")
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Folder to write into (created if needed).",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["npy", "npz", "hdf5"]),
    default="npy",
    show_default=True,
    help="npy: one <key>.npy per sample; npz: <arrayset>.npz; hdf5: <arrayset>.h5.",
)
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
@json_option
def export(
    arrayset: str, startpoint: str | None, out_dir: str, fmt: str, overwrite: bool, as_json: bool
) -> None:
    """Export an arrayset to .npy/.npz/HDF5 files.

    Writes the samples of ARRAYSET at STARTPOINT (default: the staging
    area's branch head).
    """
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    with reader(repo, sp.commit) as co:
        if arrayset not in co.arraysets:
            raise CLIError(f"no arrayset named {arrayset!r} at {sp.label}")
        aset = co.arraysets[arrayset]
        absent = aset.remote_reference_sample_keys
        here = _Present(aset, absent) if absent else aset
        n = len(here)
        files = _export(here, arrayset, out_dir, fmt, overwrite) if n else []
    if as_json:
        emit_json(
            {
                "arrayset": arrayset,
                "commit": sp.commit,
                "exported": n,
                "files": files,
                "absent": absent,
            }
        )
    else:
        where = out_dir if fmt == "npy" or not files else str(files[0])
        info(f"Exported {plural(n, 'sample')} of {arrayset!r} at {sp.label} to {where}")
    if absent:
        raise CLIError(
            f"{plural(len(absent), 'sample')} not exported: their payloads are not on this "
            f"machine (`git hangar fetch-data REMOTE {sp.label} -d {arrayset}` brings them)",
            [f"  {k!r}" for k in absent[:50]] + (["  ..."] if len(absent) > 50 else []),
        )


class _Present:
    """An arrayset reader without its samples whose payloads are absent (for export)."""

    def __init__(self, aset: ArraysetDataReader, absent: list[Any]) -> None:
        self._aset = aset
        self._absent = set(absent)
        self.name = aset.name

    def keys(self) -> list[Any]:
        return [k for k in self._aset if k not in self._absent]

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> Any:
        keys = self.keys()
        for i in range(0, len(keys), 256):
            chunk = keys[i : i + 256]
            yield from zip(chunk, self._aset.get_batch(chunk), strict=True)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._aset, attr)


def _export(aset: Any, name: str, out_dir: str, fmt: str, overwrite: bool) -> list[Path]:
    """Write the samples of ``aset`` with a progress bar; an existing file is a CLIError."""
    from ..io_formats import export_arrays

    with progress(len(aset), f"Exporting {name}") as update:
        try:
            return export_arrays(aset, out_dir, fmt, overwrite=overwrite, progress=update)
        except FileExistsError as exc:
            raise CLIError(
                f"{exc.filename} exists: pass --overwrite to replace existing files"
            ) from None


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (show, export)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "export", "register", "show"]
