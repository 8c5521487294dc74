"""History tools over the record trees: cherry-pick, revert, purge, and a
look at one sample on both sides of a conflict.

- :mod:`.apply`: :func:`cherry_pick` and :func:`revert`, three-way merges of
  one commit's change onto a branch head (:func:`hangar_git.merge.merge_trees`);
- :mod:`.inspect`: :func:`compare_sample`, one sample at two commits and
  their merge base (shapes, dtypes, how much the values differ);
- :mod:`.purge`: :func:`purge_records` removes samples and metadata from
  every commit of every local branch, then :func:`drop_purged` their
  payloads and the old records from this machine;
- :mod:`.remote_purge`: :func:`purge_data_remote`, the purged payloads
  removed from a data remote;
- :mod:`.schema_change`: :func:`change_schema` (a raised maximum shape, a
  fixed-shape arrayset made variable-shape, a rename: records only) and
  :func:`change_dtype` (every sample cast), each as a commit.

:class:`hangar_git.Repository` offers each as a method, the command line as
``git hangar cherry-pick|revert|purge`` and ``diff --key``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .apply import cherry_pick, revert
    from .inspect import SampleComparison, SampleSide, compare_sample
    from .purge import PurgeReport, drop_purged, purge_records
    from .remote_purge import RemotePurge, purge_data_remote
    from .schema_change import change_dtype, change_schema, evolved_schema

#: name -> the submodule defining it: each is imported when first asked for,
#: so a command using one tool (``diff --key``) does not import the others
#: (the data-remote purge imports the remotes and fsspec)
_WHERE = {
    "cherry_pick": "apply",
    "revert": "apply",
    "SampleComparison": "inspect",
    "SampleSide": "inspect",
    "compare_sample": "inspect",
    "PurgeReport": "purge",
    "drop_purged": "purge",
    "purge_records": "purge",
    "RemotePurge": "remote_purge",
    "purge_data_remote": "remote_purge",
    "change_dtype": "schema_change",
    "change_schema": "schema_change",
    "evolved_schema": "schema_change",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "PurgeReport",
    "RemotePurge",
    "SampleComparison",
    "SampleSide",
    "change_dtype",
    "change_schema",
    "cherry_pick",
    "compare_sample",
    "drop_purged",
    "evolved_schema",
    "purge_data_remote",
    "purge_records",
    "revert",
]
