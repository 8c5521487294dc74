"""What :func:`hangar_git.fsck.verify` reports: damaged samples, records, store, git.

A :class:`FsckReport` holds counts and one entry per problem; each damaged
sample is named by commit (or :data:`STAGING`), arrayset and key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..naming import Key
from ..wording import plural as _n

#: label of the staging area in reports (in place of a commit hash)
STAGING = "staging"

#: ``progress(stage, done, total)``, called while payloads are verified
Progress = Callable[[str, int, int], None]
#: warnings listed by :meth:`FsckReport.summary` (the report keeps them all)
_SHOWN = 20


@dataclass(frozen=True)
class SampleIssue:
    """One sample of one commit (or of the staging area) and what is wrong with it.

    Attributes
    ----------
    commit : str
        The commit's hash, or :data:`STAGING`.
    arrayset : str
        The arrayset holding the sample.
    key : str or int
        The sample's key.
    digest : str
        Hex digest of the payload its record names.
    problem : str
        What is wrong with that payload.
    """

    commit: str
    arrayset: str
    key: Key
    digest: str
    problem: str

    def __str__(self) -> str:
        return f"{self.commit} {self.arrayset}[{self.key!r}] {self.digest}: {self.problem}"


@dataclass(frozen=True)
class RecordIssue:
    """A record of a commit that cannot be read, or is not well formed.

    Attributes
    ----------
    commit : str
        The commit's hash, or :data:`STAGING` for the staging journal.
    path : str
        Where in the commit tree (``''`` for the root).
    problem : str
        What is wrong.
    """

    commit: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.commit} {self.path or '/'}: {self.problem}"


@dataclass
class FsckReport:
    """What :func:`hangar_git.fsck.verify` found.

    Attributes
    ----------
    full : bool
        Whether git objects were hashed and unreferenced payloads verified too.
    commits : int
        Commits checked.
    samples : int
        Sample records checked (summed over commits and the staging area).
    payloads : int
        Distinct payloads verified against their digests.
    damaged : list of SampleIssue
        Samples whose payload is missing, unreadable or wrong, per commit.
    remote_references : list of SampleIssue
        Samples whose payload is not on this machine but on a remote.
    records : list of RecordIssue
        Records that cannot be read or are not well formed.
    store : list of str
        Damage in the payload store not tied to a sample (``full`` only).
    git : list of str
        What ``git fsck`` reported.
    warnings : list of str
        What is not damage but takes space: large payload files no index
        entry names, temporary files left by a killed writer (``gc``
        deletes both). They do not make ``ok`` False.
    """

    full: bool = False
    commits: int = 0
    samples: int = 0
    payloads: int = 0
    damaged: list[SampleIssue] = field(default_factory=list)
    remote_references: list[SampleIssue] = field(default_factory=list)
    records: list[RecordIssue] = field(default_factory=list)
    store: list[str] = field(default_factory=list)
    git: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged (remote references and warnings are not damage)."""
        return not (self.damaged or self.records or self.store or self.git)

    def damaged_samples(self) -> dict[str, set[tuple[str, Key]]]:
        """The damaged samples, by commit.

        Returns
        -------
        dict of str to set of (str, Key)
            ``{commit: {(arrayset, key), ...}}``.
        """
        out: dict[str, set[tuple[str, Key]]] = {}
        for s in self.damaged:
            out.setdefault(s.commit, set()).add((s.arrayset, s.key))
        return out

    def summary(self) -> str:
        """A few lines for people: counts, then every problem, one per line.

        Returns
        -------
        str
            The lines; the last one is ``OK`` or starts with ``DAMAGED``.
        """
        mode = "full" if self.full else "quick"
        lines = [
            f"checked {_n(self.commits, 'commit')}, {_n(self.samples, 'sample record')}, "
            f"{_n(self.payloads, 'payload')} ({mode} check)"
        ]
        if self.remote_references:
            commits = len({s.commit for s in self.remote_references})
            n = len(self.remote_references)
            lines.append(
                f"{_n(n, 'sample record')} in {_n(commits, 'commit')} "
                f"{'is a remote reference' if n == 1 else 'are remote references'} "
                "(payloads not on this machine)"
            )
        lines.extend(f"damaged sample: {s}" for s in self.damaged)
        lines.extend(f"damaged record: {r}" for r in self.records)
        lines.extend(f"damaged store: {m}" for m in self.store)
        lines.extend(f"git: {m}" for m in self.git)
        lines.extend(f"warning: {m}" for m in self.warnings[:_SHOWN])
        if len(self.warnings) > _SHOWN:
            lines.append(f"warning: ... and {len(self.warnings) - _SHOWN} more")
        lines.append(
            "OK"
            if self.ok
            else f"DAMAGED: {_n(len(self.damaged), 'sample')}, {_n(len(self.records), 'record')}, "
            f"{_n(len(self.store), 'store problem')}, {_n(len(self.git), 'git problem')}"
        )
        return "\n".join(lines)


__all__ = ["STAGING", "FsckReport", "Progress", "RecordIssue", "SampleIssue"]
