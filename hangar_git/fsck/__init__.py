"""Verify a repository: records, payloads and git objects (``git hangar fsck``).

:func:`verify` walks every commit reachable from a ``refs/hangar/*`` ref and
the staging area, and checks:

- records: every commit tree is in a known record format, its arraysets,
  schemas, sample records (fan-out included) and metadata are well formed;
- payloads: every payload a sample names is in the local store, its index row
  intact, its block checksum sound and its bytes matching the sample's digest,
  and its dtype and shape fitting the arrayset schema. A payload that is
  absent but referenced by a commit reachable from a remote-tracking ref
  (``refs/hangar/remotes/*``, e.g. after a partial clone) is a *remote
  reference*, counted apart from damage;
- git objects: delegated to ``git fsck`` (connectivity only, or every object
  with ``full=True``);
- leftovers: large payload files that no index entry names, and temporary
  files of large payloads (a writer killed before it indexed or placed them).
  They are warnings, not damage: nothing references them, and ``gc`` deletes
  them.

Each distinct tree and payload is checked once however many commits share it,
and the report names exactly which samples of which commits are damaged.

The package: :mod:`.stages` (the stages of :func:`verify`, and the history
walk :func:`hangar_commits`), :mod:`.payloads` (the payload store's checks),
:mod:`.report` (:class:`FsckReport` and its entries). Records are read by
:class:`~hangar_git.records.leaves.RecordWalker`, which gc and the payload
transfer use too.
"""

from __future__ import annotations

from ..records.leaves import RecordWalker
from ..records.reachable import referenced_digests
from .report import STAGING, FsckReport, Progress, RecordIssue, SampleIssue
from .stages import HANGAR_REFS, hangar_commits, staged_digests, verify

__all__ = [
    "HANGAR_REFS",
    "STAGING",
    "FsckReport",
    "Progress",
    "RecordIssue",
    "RecordWalker",
    "SampleIssue",
    "hangar_commits",
    "referenced_digests",
    "staged_digests",
    "verify",
]
