"""How one commit of the payload index changes its segments: :func:`plan_commit`.

The writer's flush adds one segment of new entries; this module decides
which older segments it absorbs (a log-structured merge that keeps a
handful of segments at any size) and which are rewritten without dropped
entries, and what the loaded runs are once that is committed
(:func:`runs_after`). :meth:`.packs.PackStore.commit_segments` carries a
plan out in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from .index import ENTRY, Run, entry_digests, lookup_runs

#: an entry as one opaque item (copies of entries without per-field work)
_ENTRY_BYTES = np.dtype(f"V{ENTRY.itemsize}")


class CommitPlan(NamedTuple):
    """What one index commit does to the segments (see :func:`plan_commit`)."""

    #: the new segment's entries (sorted; merged with the small segments it replaces)
    new: np.ndarray
    #: ids of the segments merged into ``new`` (deleted)
    merged: list[int]
    #: segment id -> its entries without the dropped digests (rewritten)
    replaced: dict[int, np.ndarray]
    #: the loaded runs that stay, in order
    keep: list[Run]
    #: where each of the entries given to :func:`plan_commit` lands in ``new``
    #: (int64); None when ``new`` is them, in their order
    new_at: np.ndarray | None = None


def plan_commit(runs: Sequence[Run], new: np.ndarray, drop: Iterable[bytes]) -> CommitPlan:
    """Plan a commit of entries ``new`` that also removes the entries of ``drop``.

    Segments holding a dropped digest are rewritten without it; then, from
    the newest, segments no more than twice the size of what is being
    written are merged into the new one, which keeps a handful of segments
    at any size.

    Parameters
    ----------
    runs : sequence of Run
        The segments as loaded, oldest first.
    new : numpy.ndarray
        Entries (:data:`ENTRY`) to add, sorted.
    drop : iterable of bytes
        Digests whose entries go.

    Returns
    -------
    CommitPlan
    """
    replaced: dict[int, np.ndarray] = {}
    gone = list(dict.fromkeys(drop))
    if gone:
        for run in runs:
            f, _ = lookup_runs([run], gone)
            if f.any():
                replaced[run.sid] = entries_without(run, gone)
    merged: list[int] = []
    parts = [new]
    keep = list(runs)
    while keep and len(replaced.get(keep[-1].sid, keep[-1].entries)) <= 2 * sum(
        len(x) for x in parts
    ):
        r = keep.pop()
        merged.append(r.sid)
        parts.append(replaced.pop(r.sid, r.entries))
    new_at = None
    if len(parts) > 1:
        new, new_at = _merge(parts)
    return CommitPlan(new, merged, replaced, keep, new_at)


def merge_sorted(parts: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`.index.sorted_entries` of ``parts`` joined, each of them sorted
    already: the place of each entry in the merged array is taken from one
    stable argsort of the parts' keys joined (a merge of sorted runs, which
    timsort finds: where keys are equal, an earlier part's entries come
    first, as a stable sort puts them), and each part is written there,
    into the one new array.

    A sort of the joined entries makes two more copies of them (the join and
    the sorted one), which at 420,000 entries cost more in page faults than
    the argsort of their keys; binary searches of each part in the others
    cost 3x this (9 vs 3 ms at 300,000 + 60,000).

    Parameters
    ----------
    parts : sequence of numpy.ndarray
        Entries (:data:`.index.ENTRY`), each sorted by key.

    Returns
    -------
    numpy.ndarray
    """
    return _merge(parts)[0]


def _merge(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`merge_sorted` of ``parts``, and where each entry of the first
    part lands in it (int64)."""
    keys = np.concatenate([p["key"].astype(np.uint64) for p in parts])
    order = np.argsort(keys, kind="stable")  # sorted runs: merged, not sorted
    at = np.empty(len(keys), np.intp)
    at[order] = np.arange(len(keys))  # where each entry goes
    out = np.empty(len(keys), ENTRY)
    rows = out.view(_ENTRY_BYTES)
    start = 0
    for part in parts:
        stop = start + len(part)
        rows[at[start:stop]] = np.ascontiguousarray(part, ENTRY).view(_ENTRY_BYTES)
        start = stop
    return out, at[: len(parts[0])]


def runs_after(plan: CommitPlan, rewritten: dict[int, int], new_sid: int | None) -> list[Run]:
    """The runs once ``plan`` is committed: the kept ones (rewritten ones under
    their new ids ``rewritten``), then the new segment ``new_sid``."""
    out: list[Run] = []
    for r in plan.keep:
        if r.sid in plan.replaced:
            if r.sid in rewritten:
                e = plan.replaced[r.sid]
                out.append(Run(rewritten[r.sid], e["key"].astype(np.uint64), e))
        else:
            out.append(r)
    if new_sid is not None:
        out.append(Run(new_sid, plan.new["key"].astype(np.uint64), plan.new))
    return out


def entries_without(run: Run, digests: Sequence[bytes]) -> np.ndarray:
    """The entries of ``run`` other than those of ``digests``."""
    drop = set(digests)
    mask = np.fromiter(
        (d not in drop for d in entry_digests(run.entries)), bool, count=len(run.entries)
    )
    return run.entries[mask]


__all__ = ["CommitPlan", "entries_without", "merge_sorted", "plan_commit", "runs_after"]
