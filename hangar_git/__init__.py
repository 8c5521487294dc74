"""hangar-git: version control for tensor data inside a git repository.

>>> from hangar_git import Repository

Importing the package is cheap: the error classes and ``__version__`` are
here at once, every other name of ``__all__`` (the Repository, the diff
record types, the dataloaders) is imported on first use, so that ``git
hangar --version`` or a script that only needs an error class never pays for
numpy, pygit2 or the payload store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
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

if TYPE_CHECKING:
    from .dataloaders import make_numpy_loader, make_tf_dataset, make_torch_dataset
    from .diff import ConflictRecords
    from .diffref import MetadataRecordKey, RawDataRecordKey
    from .repository import Repository

#: public name -> the submodule that defines it, imported on first use
_LAZY: dict[str, str] = {
    "ConflictRecords": "diff",
    "MetadataRecordKey": "diffref",
    "RawDataRecordKey": "diffref",
    "Repository": "repository",
    "make_numpy_loader": "dataloaders",
    "make_tf_dataset": "dataloaders",
    "make_torch_dataset": "dataloaders",
}


def __getattr__(name: str) -> Any:
    """The names of :data:`_LAZY`, imported from their submodule on first use."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
