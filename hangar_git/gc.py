"""Reclaim space: unreferenced payloads, dead pack bytes, loose git objects.

``gc`` keeps every payload that a commit reachable from any ``refs/hangar/*``
ref (local branches and remote-tracking ones) or the staging area names, and
drops the rest, including payloads written and removed before any commit.
It then compacts the pack files that are mostly dead bytes and repacks
git's objects.

Safety
------
- It takes the writer lock (and refuses, with :class:`WriterLockError`,
  while a write checkout is open anywhere) and the store's write lock, so no
  payload or record is written while it decides what is live.
- It refuses to drop anything when a commit's records cannot be read or are
  malformed (run ``fsck``): an incomplete view of what is live could drop
  live data.
- Compaction copies the live payloads of a pack into a new pack, numbered
  above every existing one, verifying each payload's digest on the way
  (a pack holding a damaged payload is left as it is); the new pack is
  synced to disk, then the index rows move to it in one transaction, and
  only then is the old pack deleted. A process killed at any point leaves
  every index row pointing at intact bytes.
- Concurrent readers: a reader that located a payload in an old pack either
  still has the pack open (deleting an open file does not disturb it), or
  finds it gone, locates the payload afresh in the index and reads it from
  its new pack (:class:`hangar_git.checkout.PayloadAccess` does this before
  calling anything damage). Pack numbers are never reused, so a stale
  location can never name other bytes.
- A reader of a commit that is on no ref at all (its branch deleted) may
  find its payloads gone: gc keeps what refs and the staging area reach.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pygit2

from .errors import CorruptRecordError, FormatVersionError, IntegrityError
from .fsck import hangar_commits, staged_digests
from .gitutil import common_dir
from .records.reachable import referenced_digests
from .store.chunked import LargeFiles
from .store.digest import Payload
from .wording import plural as _n

if TYPE_CHECKING:
    from .repository import Repository
    from .store import Location, PackReader, PackStore, PackWriter

#: a pack is compacted when at least this fraction of its bytes is dead
COMPACT_THRESHOLD = 0.25
#: raw bytes of payloads copied per index transaction while compacting
_MOVE_BATCH = 64 * 1024 * 1024


@dataclass
class GcReport:
    """What :func:`gc` did (or, with ``dry_run``, would do).

    Attributes
    ----------
    dry_run : bool
        True when nothing was changed.
    payloads_removed : int
        Index entries of unreferenced payloads dropped.
    packs_compacted : list of int
        Packs whose live payloads were copied to a new pack, then deleted.
    packs_deleted : list of int
        Packs deleted (compacted ones, and ones holding nothing live).
    payloads_moved : int
        Live payloads copied during compaction.
    large_files_deleted : int
        Files of large (chunked) payloads deleted: unreferenced ones, and
        ones a killed writer left unindexed.
    bytes_before, bytes_after : int
        Total size of the pack files and large payload files before and after
        (estimated for a dry run).
    skipped : list of str
        Packs left alone because they hold damaged payloads (run ``fsck``).
    git : str
        What was done to git's objects.
    """

    dry_run: bool = False
    payloads_removed: int = 0
    packs_compacted: list[int] = field(default_factory=list)
    packs_deleted: list[int] = field(default_factory=list)
    payloads_moved: int = 0
    large_files_deleted: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    skipped: list[str] = field(default_factory=list)
    git: str = ""

    @property
    def bytes_reclaimed(self) -> int:
        """Bytes of payload files freed (or, with ``dry_run``, that would be)."""
        return self.bytes_before - self.bytes_after

    def summary(self) -> str:
        """A few lines for people.

        Returns
        -------
        str
        """
        verb = "would remove" if self.dry_run else "removed"
        lines = [
            f"{verb} {_n(self.payloads_removed, 'unreferenced payload')}",
            f"{'would compact' if self.dry_run else 'compacted'} "
            f"{_n(len(self.packs_compacted), 'pack')} "
            f"({_n(self.payloads_moved, 'live payload')} moved), "
            f"{'would delete' if self.dry_run else 'deleted'} "
            f"{_n(len(self.packs_deleted), 'pack')}"
            + (
                f" and {_n(self.large_files_deleted, 'large payload file')}"
                if self.large_files_deleted
                else ""
            ),
            f"payload files: {_size(self.bytes_before)} -> {_size(self.bytes_after)} "
            f"({_size(self.bytes_reclaimed)} reclaimed)",
        ]
        lines.extend(f"skipped: {s}" for s in self.skipped)
        if self.git:
            lines.append(f"git objects: {self.git}")
        return "\n".join(lines)


def gc(
    repo: Repository,
    dry_run: bool = False,
    *,
    threshold: float = COMPACT_THRESHOLD,
    git_objects: bool = True,
) -> GcReport:
    """Reclaim unreferenced payloads, compact packs and repack git objects.

    Parameters
    ----------
    repo : Repository
        An initialised repository.
    dry_run : bool, optional
        Report what would be done, change nothing.
    threshold : float, optional
        Compact a pack when at least this fraction of its bytes is dead
        (0 compacts every pack with any dead byte).
    git_objects : bool, optional
        Also repack git's objects (``git repack -A -d``).

    Returns
    -------
    GcReport

    Raises
    ------
    WriterLockError
        (a PermissionError) while a write checkout is open.
    IntegrityError
        If some commit's records cannot be read: nothing is dropped then.
    ValueError
        If ``threshold`` is not a number in [0, 1].
    """
    if isinstance(dry_run, bool) is False:
        raise ValueError(f"dry_run must be a bool, not {dry_run!r}")
    if (
        not isinstance(threshold, (int, float))
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        raise ValueError(f"threshold must be a number in [0, 1], not {threshold!r}")
    git = repo.git_repository()
    lock = repo.acquire_writer_lock()
    try:
        report = GcReport(dry_run=dry_run)
        live = _live(repo, git)
        store = repo.payload_store
        writer = None if dry_run else store.writer()
        try:
            reader = store.reader()
        except BaseException:  # e.g. a full disk: the store lock must not stay held
            if writer is not None:
                writer.close()
            raise
        try:
            _payloads(store, reader, writer, live, threshold, report)
        finally:
            reader.close()
            if writer is not None:
                writer.close()
        if git_objects and not dry_run:
            report.git = _repack(git)
        return report
    finally:
        repo.release_writer_lock(lock)


def _live(repo: Repository, git: pygit2.Repository) -> set[bytes]:
    """Every payload a commit on a ``refs/hangar/*`` ref or the staging area names.

    Raises
    ------
    IntegrityError
        If a ref, commit or record cannot be read: what is live cannot be told.
    """
    commits, _, problems = hangar_commits(git)
    if problems:
        raise IntegrityError(f"cannot tell what is live: {problems[0]}; run fsck")
    try:
        live = set(referenced_digests(git, commits, strict=True))
        live |= staged_digests(repo)
    except (IntegrityError, CorruptRecordError, FormatVersionError, RuntimeError) as exc:
        raise IntegrityError(
            f"cannot tell what is live, nothing was removed: {exc}; run `git hangar fsck`"
        ) from None
    return live


def _payloads(
    store: PackStore,
    reader: PackReader,
    writer: PackWriter | None,
    live: set[bytes],
    threshold: float,
    report: GcReport,
) -> None:
    """Drop the dead payloads' index entries, delete large files and packs
    nothing live is in, compact packs mostly dead (see :func:`gc`)."""
    numbers = store.pack_numbers()
    sizes = {n: store.pack_path(n).stat().st_size for n in numbers}
    report.bytes_before = sum(sizes.values())
    rows = list(reader.all_locations())
    dead = [d for d, _ in rows if d not in live]
    report.payloads_removed = len(dead)
    damaged_live = [d for d, loc in rows if loc is None and d in live]
    if writer is not None and dead:
        writer.remove(dead)
    if damaged_live or reader.damaged_segments:
        report.skipped.append(
            f"the payload index is damaged ({len(damaged_live)} live entries, "
            f"{len(reader.damaged_segments)} segments): no pack is compacted or deleted "
            "until fsck is clean"
        )
        report.bytes_after = report.bytes_before
        return
    rows = _large_files(store, rows, live, writer is None, report)
    by_pack: dict[int, list[tuple[bytes, Location]]] = {}
    for d, loc in rows:
        if d in live and loc is not None:
            by_pack.setdefault(loc.pack, []).append((d, loc))
    compact: list[int] = []
    drop: list[int] = []
    after = 0
    for n in numbers:
        items = by_pack.get(n, [])
        live_bytes = sum(blen for _, blen in {(loc.boff, loc.blen) for _, loc in items})
        if not items:
            drop.append(n)
        elif sizes[n] - live_bytes >= max(1, threshold * sizes[n]):
            compact.append(n)
            # the live items, re-packed: at most their raw size, and about the
            # stored size of the blocks holding them (compressed alike)
            after += min(sum(loc.ilen for _, loc in items), live_bytes)
        else:
            after += sizes[n]
    missing_packs = set(by_pack) - set(numbers)
    for n in sorted(missing_packs):
        report.skipped.append(f"pack {n} is missing; {len(by_pack[n])} live payloads lost")
    if writer is None:
        report.packs_compacted = compact
        report.packs_deleted = sorted(drop + compact)
        report.payloads_moved = sum(len(by_pack[n]) for n in compact)
        report.bytes_after += after
        return
    fresh = _compact(reader, writer, compact, by_pack, drop, report)
    if fresh and numbers and numbers[-1] in drop:
        # the pack appends go to is dropped: appends move to a new one first,
        # as pack numbers are never reused
        writer.relocate([])
    for n in sorted(drop):
        writer.drop_pack(n)
        report.packs_deleted.append(n)
    report.bytes_after += sum(store.pack_path(n).stat().st_size for n in store.pack_numbers())


def _compact(
    reader: PackReader,
    writer: PackWriter,
    compact: list[int],
    by_pack: dict[int, list[tuple[bytes, Location]]],
    drop: list[int],
    report: GcReport,
) -> bool:
    """Copy the live payloads of the packs ``compact`` to a new pack (each
    verified on the way); the packs emptied join ``drop``. Returns True when
    nothing was copied (no new pack was started)."""
    fresh = True
    for n in compact:
        items = sorted(by_pack[n], key=lambda t: (t[1].boff, t[1].ioff))
        moved = 0
        try:
            for batch in _read_batches(reader, items):
                writer.relocate(batch, new_pack=fresh)
                fresh = False
                moved += len(batch)
        except IntegrityError as exc:
            # what moved is safe in the new pack; the rest stays where it is
            report.skipped.append(f"pack {n} holds a damaged payload, left in place: {exc}")
            report.payloads_moved += moved
            continue
        report.packs_compacted.append(n)
        report.payloads_moved += moved
        drop.append(n)
    return fresh


def _large_files(
    store: PackStore,
    rows: list[tuple[bytes, Location | None]],
    live: set[bytes],
    dry_run: bool,
    report: GcReport,
) -> list[tuple[bytes, Location | None]]:
    """Delete the large payload files (see ``store/chunked.py``) that no live
    payload's index entry names: dead payloads, and files a killed writer
    left unindexed. A reader that has such a file open keeps reading it.
    Returns ``rows`` without the large payloads' entries."""
    keep = {loc.boff for d, loc in rows if loc is not None and loc.is_large and d in live}
    n, before, after = LargeFiles(store.large_dir).collect(keep, dry_run)
    report.large_files_deleted = n
    report.bytes_before += before
    report.bytes_after += after
    return [(d, loc) for d, loc in rows if loc is None or not loc.is_large]


def _read_batches(
    reader: PackReader, items: list[tuple[bytes, Location]]
) -> Iterator[list[Payload]]:
    """The payloads of ``items``, verified, in batches of about ``_MOVE_BATCH`` bytes."""
    batch: list[Payload] = []
    size = 0
    for d, loc in items:
        arr = reader.read(loc, d)
        data = arr.reshape(-1).data.cast("B")
        batch.append(Payload(d, reader.kind_text(loc.kind), data))
        size += len(data)
        if size >= _MOVE_BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _repack(git: pygit2.Repository) -> str:
    """``git repack -A -d``: what it did, in a few words."""
    exe = shutil.which("git")
    if exe is None:
        return "skipped: no git executable"
    gitdir = str(common_dir(git))
    res = subprocess.run(
        [exe, f"--git-dir={gitdir}", "repack", "-A", "-d", "-q"],
        capture_output=True,
        text=True,
        errors="replace",
    )
    if res.returncode != 0:
        return f"git repack failed: {res.stderr.strip().splitlines()[-1:] or res.returncode}"
    return "repacked"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


__all__ = ["COMPACT_THRESHOLD", "GcReport", "gc"]
