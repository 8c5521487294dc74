"""hangar-git: version control for tensor data inside a git repository.

>>> from hangar_git import Repository
"""

from __future__ import annotations

from ._version import __version__
from .dataloaders import make_numpy_loader, make_tf_dataset, make_torch_dataset
from .diff import ConflictRecords
from .diffref import MetadataRecordKey, RawDataRecordKey
from .errors import (
    ClosedError,
    CorruptRecordError,
    FormatVersionError,
    HangarError,
    IntegrityError,
    MergeConflictError,
    MissingPayloadError,
    NotInitializedError,
    WriterLockError,
)
from .repository import Repository

__all__ = [
    "ClosedError",
    "ConflictRecords",
    "CorruptRecordError",
    "FormatVersionError",
    "HangarError",
    "IntegrityError",
    "MergeConflictError",
    "MetadataRecordKey",
    "MissingPayloadError",
    "NotInitializedError",
    "RawDataRecordKey",
    "Repository",
    "WriterLockError",
    "__version__",
    "make_numpy_loader",
    "make_tf_dataset",
    "make_torch_dataset",
]
