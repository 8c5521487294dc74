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

The package: :mod:`.scan` (headers, :class:`ArraySource`, the errors),
:mod:`.load` (loading what was scanned), :mod:`.importer` (staging into an
arrayset), :mod:`.export` (writing files, every path through
:mod:`hangar_git.safe_paths`).
"""

from __future__ import annotations

from .export import EXPORT_FORMATS, export_arrays, export_name
from .importer import ImportResult, check_fits, import_arrays, plan_schema
from .load import load_array, load_sources
from .scan import (
    SUFFIXES,
    ArraySource,
    ImportConflictError,
    NotAnArrayError,
    Progress,
    ScanResult,
    scan_file,
    scan_paths,
    sniff_format,
)

__all__ = [
    "EXPORT_FORMATS",
    "SUFFIXES",
    "ArraySource",
    "ImportConflictError",
    "ImportResult",
    "NotAnArrayError",
    "Progress",
    "ScanResult",
    "check_fits",
    "export_arrays",
    "export_name",
    "import_arrays",
    "load_array",
    "load_sources",
    "plan_schema",
    "scan_file",
    "scan_paths",
    "sniff_format",
]
