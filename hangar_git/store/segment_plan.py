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

from .index import ENTRY, Run, entry_digests, lookup_runs, sorted_entries


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
    if len(parts) > 1:
        new = sorted_entries(np.concatenate(parts).astype(ENTRY, copy=False))
    return CommitPlan(new, merged, replaced, keep)


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


__all__ = ["CommitPlan", "entries_without", "plan_commit", "runs_after"]
