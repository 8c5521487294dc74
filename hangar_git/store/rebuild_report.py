"""The report of an index rebuild (:func:`.rebuild.rebuild_index`): what was
found on disk, what was recovered, and what was refused and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..wording import plural

#: problems the report describes in words (the others are only counted)
MAX_PROBLEMS = 200


@dataclass
class RebuildReport:
    """What :func:`rebuild_index` found and did (with ``dry_run``, would do).

    Attributes
    ----------
    packs_scanned, blocks_sound : int
        Pack files scanned, and blocks in them that passed their checks.
    packs_without_manifest : list of int
        Packs holding sound blocks but no manifest file (written before
        manifests existed): nothing in them can be attributed.
    entries_recovered : int
        Index entries of packed payloads in the new index.
    entries_unverified : int
        Of those, entries of blocks over :data:`.rebuild.VERIFY_LIMIT`, indexed on
        their block's and their record's CRC without hashing the payload.
    entries_refused : int
        Manifest entries not indexed: their block is damaged or absent, their
        bytes do not hash to their digest, their kind or offset is impossible.
    duplicates : int
        Payloads found more than once; one copy is indexed.
    large_files_recovered, large_files_unverified, large_files_refused : int
        Large payload files indexed; of those, files whose chunks were checked
        but which were too big to hash whole; files not indexed.
    damaged_blocks, damaged_manifests : int
        Blocks and manifest records that fail their checks.
    unattributed_blocks, unattributed_bytes : int
        Sound blocks no recovered entry points into; their bytes and those of
        damaged or unrecognised regions.
    problems : list of str
        What was skipped and why (the first :data:`MAX_PROBLEMS`).
    more_problems : int
        Problems beyond those described.
    old_index : str
        What became of the old index (kept at ``old_index_path``).
    """

    store: Path
    dry_run: bool = False
    packs_scanned: int = 0
    blocks_sound: int = 0
    packs_without_manifest: list[int] = field(default_factory=list)
    entries_recovered: int = 0
    entries_unverified: int = 0
    entries_refused: int = 0
    duplicates: int = 0
    large_files_recovered: int = 0
    large_files_unverified: int = 0
    large_files_refused: int = 0
    damaged_blocks: int = 0
    damaged_manifests: int = 0
    unattributed_blocks: int = 0
    unattributed_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0
    old_index: str = ""
    old_index_path: Path | None = None
    index_path: Path = field(default_factory=Path)

    def problem(self, text: str) -> None:
        """Describe a problem (or count it, past :data:`MAX_PROBLEMS`)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1

    @property
    def clean(self) -> bool:
        """True when everything on disk was attributed and nothing was refused."""
        return not (
            self.problems
            or self.more_problems
            or self.packs_without_manifest
            or self.unattributed_bytes
        )

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"{'would index' if self.dry_run else 'indexed'} {self.entries_recovered} packed "
            f"payloads and {self.large_files_recovered} large payload files "
            f"({plural(self.packs_scanned, 'pack')}, "
            f"{plural(self.blocks_sound, 'sound block')} scanned)",
            f"damaged: {self.damaged_blocks} blocks, {self.damaged_manifests} manifests; "
            f"refused: {self.entries_refused} entries, {self.large_files_refused} large files; "
            f"unattributed: {self.unattributed_blocks} blocks, {self.unattributed_bytes} bytes",
        ]
        if self.entries_unverified or self.large_files_unverified:
            lines.append(
                f"checked on their CRCs only (too big to hash): {self.entries_unverified} "
                f"packed payloads, {self.large_files_unverified} large files"
            )
        if self.packs_without_manifest:
            lines.append(
                "packs written before manifests (not recoverable): "
                + ", ".join(map(str, self.packs_without_manifest))
            )
        if self.duplicates:
            lines.append(f"{plural(self.duplicates, 'payload')} found twice (one copy indexed)")
        lines.append(f"old index: {self.old_index}")
        lines.extend(self.problems)
        if self.more_problems:
            lines.append(f"... and {self.more_problems} more problems")
        return "\n".join(lines)

    __str__ = summary
