"""Diffs of records: what changed between commits or in the staging area.

Results are plain named tuples: for arrayset schemas, for metadata keys, and
per arrayset for sample keys, the keys added, removed and mutated
(:class:`Changes`, :class:`DiffRecords`); a diff against a branch or commit
adds each side's changes from the merge base, what a merge would bring, and
the conflicts (:class:`BranchDiff`, :class:`ConflictRecords`). The three-way
work itself lives in :mod:`hangar_git.merge`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import MissingPayloadError
from .naming import Key, check_arrayset_name, decode_key, encode_key

if TYPE_CHECKING:
    from .checkout import ReaderCheckout, WriterCheckout
    from .records.view import StagedView


class Changes(NamedTuple):
    """Keys added, removed and mutated (values changed) between two states."""

    additions: tuple
    removals: tuple
    mutations: tuple

    @property
    def empty(self) -> bool:
        return not (self.additions or self.removals or self.mutations)


class DiffRecords(NamedTuple):
    """A whole diff: arrayset schemas, metadata, and samples per arrayset."""

    aset: Changes
    meta: Changes
    samples: dict[str, Changes]

    @property
    def empty(self) -> bool:
        return self.aset.empty and self.meta.empty and all(c.empty for c in self.samples.values())


class ConflictRecords(NamedTuple):
    """Conflicting keys of one namespace, grouped by how the sides disagree.

    Attributes
    ----------
    t1 : tuple
        Keys the merge base lacks that both sides created, each with its own value.
    t21 : tuple
        Keys this side (master) deleted while the other side (dev) changed them.
    t22 : tuple
        Keys dev deleted while master changed them.
    t3 : tuple
        Keys both sides changed, to values that differ.
    conflict : bool
        Whether any of the four groups is non-empty.

    A key is an arrayset name, a metadata key or a sample key (str or int).
    """

    t1: tuple
    t21: tuple
    t22: tuple
    t3: tuple
    conflict: bool


class BranchDiff(NamedTuple):
    """The changes part of ``co.diff.branch()`` / ``co.diff.commit()``.

    Attributes
    ----------
    master : DiffRecords
        Changes on this checkout's side (its commit, plus staged changes on a
        write checkout) since the merge base.
    dev : DiffRecords
        Changes on the other side since the merge base.
    incoming : DiffRecords
        What merging the other side would change here: its changes that this
        side does not already hold, leaving out conflicting records (and the
        samples of arraysets in conflict).
    base : str or None
        The merge base commit (None when the histories share no commit).
    """

    master: DiffRecords
    dev: DiffRecords
    incoming: DiffRecords
    base: str | None


def _changes(add: list, rem: list, mut: list) -> Changes:
    return Changes(
        tuple(sorted(add, key=_order)),
        tuple(sorted(rem, key=_order)),
        tuple(sorted(mut, key=_order)),
    )


def _order(k: Key) -> tuple[int, str]:
    return (0, f"{k:020d}") if isinstance(k, int) else (1, str(k))


def staged_diff(view: StagedView) -> DiffRecords:
    """Changes of the staging area relative to its base commit."""
    base = view.base
    journal = view.journal
    a_add, a_rem, a_mut = [], [], []
    samples: dict[str, Changes] = {}
    for name, st in journal.asets.items():
        in_base = name in base.aset_entries
        base_s = base.samples(name) if in_base else None
        s_add, s_rem, s_mut = [], [], []
        if st.removed and not st.created:
            if in_base:
                a_rem.append(name)
                s_rem = [decode_key(e) for e in base_s.keys()]  # type: ignore[union-attr]  # noqa: SIM118
        elif st.created:
            new = {e: d for e, d in st.samples.items() if d is not None}
            if not in_base:
                a_add.append(name)
                s_add = [decode_key(e) for e in new]
            else:
                if base.schema_text(name) != st.schema:
                    a_mut.append(name)
                old = dict(base_s.items())  # type: ignore[union-attr]
                s_add = [decode_key(e) for e in new if e not in old]
                s_rem = [decode_key(e) for e in old if e not in new]
                s_mut = [decode_key(e) for e in new if e in old and old[e] != new[e]]
        elif in_base:
            for enc, d in st.samples.items():
                d0 = base_s.get(enc)  # type: ignore[union-attr]
                if d is None and d0 is not None:
                    s_rem.append(decode_key(enc))
                elif d is not None and d0 is None:
                    s_add.append(decode_key(enc))
                elif d is not None and d != d0:
                    s_mut.append(decode_key(enc))
        ch = _changes(s_add, s_rem, s_mut)
        if not ch.empty:
            samples[name] = ch
    m_add, m_rem, m_mut = [], [], []
    for enc, v in journal.meta.items():
        v0 = base.meta_value(enc)
        if v is None and v0 is not None:
            m_rem.append(decode_key(enc))
        elif v is not None and v0 is None:
            m_add.append(decode_key(enc))
        elif v is not None and v != v0:
            m_mut.append(decode_key(enc))
    return DiffRecords(_changes(a_add, a_rem, a_mut), _changes(m_add, m_rem, m_mut), samples)


class ReaderUserDiff:
    """Diff methods of a read checkout, relative to its commit."""

    def __init__(self, checkout: ReaderCheckout | WriterCheckout) -> None:
        self._co = checkout

    def _head(self) -> str | None:
        return self._co.commit_hash or None

    def _master_tree(self) -> bytes | None:
        """Root tree standing for this side, when not the commit's own."""
        return None

    def branch(self, dev_branch_name: str) -> tuple[BranchDiff, dict[str, Any]]:
        """Changes and conflicts between this checkout and the head of a branch.

        The diff is three-way: both sides are compared with their merge base.

        Parameters
        ----------
        dev_branch_name : str
            The branch to compare with (or a remote-tracking ``remote/branch``).

        Returns
        -------
        tuple
            ``(changes, conflicts)``: a :class:`BranchDiff` and a dict
            ``{'aset': ConflictRecords, 'meta': ConflictRecords, 'sample':
            {arrayset name: ConflictRecords}, 'conflict_found': bool}``.

        Raises
        ------
        ValueError
            If the branch does not exist.
        """
        from .merge import diff_with_branch

        self._co._check()
        return diff_with_branch(
            self._co._repo, self._head(), dev_branch_name, master_tree=self._master_tree()
        )

    def commit(self, dev_commit_hash: str) -> tuple[BranchDiff, dict[str, Any]]:
        """Changes and conflicts between this checkout and another commit.

        See :meth:`branch` for the result.

        Raises
        ------
        ValueError
            If ``dev_commit_hash`` is not a commit of this repository.
        """
        from .merge import diff_with_commit

        self._co._check()
        return diff_with_commit(
            self._co._repo, self._head(), dev_commit_hash, master_tree=self._master_tree()
        )

    def conflict_samples(
        self, dev_branch_name: str, arrayset: str, key: Key
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The two versions of a sample, side by side, before choosing a merge strategy.

        Parameters
        ----------
        dev_branch_name : str
            The branch that would be merged into this checkout.
        arrayset : str
            Name of the arrayset.
        key : str or int
            The sample's key.

        Returns
        -------
        tuple
            ``(master_array, dev_array)``: the sample as this checkout sees it
            and as the head of ``dev_branch_name`` holds it; ``None`` on a side
            where the sample (or its arrayset) does not exist.

        Raises
        ------
        KeyError
            If neither side holds the sample.
        ValueError
            If the branch does not exist, or the name or key is invalid.
        MissingPayloadError
            If a side's payload is not stored on this machine.
        """
        from .merge import branch_commit, sample_records

        co = self._co
        co._check()
        check_arrayset_name(arrayset)
        enc = encode_key(key)
        dev = branch_commit(co._repo._git_repo(), dev_branch_name)
        if co._view.writeable:
            co._sync()  # type: ignore[union-attr]
        mine = co._view.get(arrayset, enc) if co._view.has_aset(arrayset) else None
        theirs = sample_records(co._repo, dev, arrayset, enc)
        if mine is None and theirs is None:
            raise KeyError(f"sample {key!r} of arrayset {arrayset!r} exists on neither side")
        return (
            co._payloads.read(arrayset, enc, mine) if mine is not None else None,
            self._read_digest(arrayset, key, theirs) if theirs is not None else None,
        )

    def _read_digest(self, arrayset: str, key: Key, digest: bytes) -> np.ndarray:
        pa = self._co._payloads
        loc = pa.locs.get(digest)
        if loc is None and pa.writer is not None:
            loc = pa.writer.pending_location(digest)
        if loc is None:
            loc = pa.reader.locate(digest)
        if loc is None:
            raise MissingPayloadError(
                f"sample {arrayset}[{key!r}] of the other side is a remote reference: its "
                "payload is not on this machine; fetch it with `git hangar fetch-data`"
            )
        return pa.reader.read(loc, digest)


class WriterUserDiff(ReaderUserDiff):
    """Diff methods of the write checkout, aware of staged changes.

    :meth:`branch` and :meth:`commit` compare the staging area (the base
    commit plus staged changes) with the other side.
    """

    def _master_tree(self) -> bytes | None:
        """Root tree of the staging area (None when nothing is staged).

        Its tree objects are written to git's object database, unreferenced
        until a commit uses them, so the three-way walk can read them like
        any commit's; only the subtrees holding staged changes are new.
        """
        from .records.build import build_root

        co = self._co
        co._sync()  # type: ignore[union-attr]
        journal = co._journal  # type: ignore[union-attr]
        if not journal.has_entries:
            return None
        return build_root(co._git, co._view.base, journal.asets, journal.meta)  # type: ignore[union-attr]

    def staged(self) -> DiffRecords:
        """Changes in the staging area relative to its base commit."""
        self._co._check()
        self._co._sync()  # type: ignore[union-attr]
        return staged_diff(self._co._view)  # type: ignore[arg-type]

    def status(self) -> str:
        """``'CLEAN'`` when nothing is staged, else ``'DIRTY'``."""
        from .checkout import _surely_dirty

        self._co._check()
        self._co._sync()  # type: ignore[union-attr]
        if _surely_dirty(self._co._view):  # type: ignore[arg-type]
            return "DIRTY"  # without listing every staged key
        return "CLEAN" if staged_diff(self._co._view).empty else "DIRTY"  # type: ignore[arg-type]
