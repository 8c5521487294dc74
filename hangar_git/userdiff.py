"""The ``diff`` objects of checkouts (``co.diff``): diffs as the user asks.

They turn the checkout's point of view (its commit, or its staging area)
into the tree ids the pure functions of :mod:`hangar_git.diff` take, and
read the two versions of a conflicting sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .diff import staged_diff
from .diffref import DiffChanges, StagedDiff, commit_diff, staged_result
from .gitutil import resolve_commit
from .naming import Key, check_arrayset_name, encode_key
from .records.build import build_root
from .records.snapshot import TreeRecords, commit_tree
from .records.view import CommitView
from .refs import branch_commit

if TYPE_CHECKING:
    import pygit2

    from .records.view import StagedView


class DiffSource(Protocol):
    """What a checkout gives its diff object: the one way in to its state."""

    #: the repository both sides are read from
    git: pygit2.Repository

    def check_open(self) -> None:
        """Raise :class:`~hangar_git.errors.ClosedError` once the checkout closed."""

    def head(self) -> str | None:
        """The checkout's commit (None before the first commit)."""

    def staged(self) -> StagedView | None:
        """The staging area, synced (None for a read checkout)."""

    def sample(self, arrayset: str, enc: str) -> np.ndarray | None:
        """This side's array of a sample (None where absent)."""

    def array(self, arrayset: str, key: Key, digest: bytes) -> np.ndarray:
        """The array stored under ``digest`` (of the other side's sample)."""


class ReaderUserDiff:
    """Diff methods of a read checkout, relative to its commit.

    Reach it as ``co.diff``.

    Parameters
    ----------
    source : DiffSource
        The checkout's state, as the checkout hands it to its diff object.
    """

    def __init__(self, source: DiffSource) -> None:
        self._src = source

    def _master_tree(self) -> bytes | None:
        """Root tree standing for this side, when not the commit's own."""
        return None

    def _diff(self, dev: str) -> tuple[DiffChanges, dict[str, Any]]:
        return commit_diff(self._src.git, self._src.head(), dev, self._master_tree())

    def branch(self, dev_branch_name: str) -> tuple[DiffChanges, dict[str, Any]]:
        """Changes and conflicts between this checkout and the head of a branch.

        The diff is three-way: both sides are compared with their merge base.

        Parameters
        ----------
        dev_branch_name : str
            The branch to compare with (or a remote-tracking ``remote/branch``).

        Returns
        -------
        tuple
            ``(changes, conflicts)`` in the reference's shape (see
            :mod:`hangar_git.diffref`): ``changes`` is a dict ``{'metadata',
            'arraysets', 'samples'}`` of ``{'master': D, 'dev': D}`` (for
            samples, ``D`` per arrayset), ``D`` the ``'additions'``,
            ``'removals'``, ``'mutations'`` and (computed when read)
            ``'unchanged'`` records of a side since the merge base;
            ``changes.records`` is the same diff as a
            :class:`~hangar_git.diff.BranchDiff`. ``conflicts`` is
            ``{'aset': ConflictRecords, 'meta': ConflictRecords, 'sample':
            {arrayset name: ConflictRecords}, 'conflict_found': bool}``.

        Raises
        ------
        ValueError
            If the branch does not exist.
        """
        self._src.check_open()
        return self._diff(branch_commit(self._src.git, dev_branch_name))

    def commit(self, dev_commit_hash: str) -> tuple[DiffChanges, dict[str, Any]]:
        """Changes and conflicts between this checkout and another commit.

        Parameters
        ----------
        dev_commit_hash : str
            The commit to compare with: a full hash or a unique prefix.

        Returns
        -------
        tuple
            ``(changes, conflicts)``, shaped as :meth:`branch` returns them.

        Raises
        ------
        ValueError
            If ``dev_commit_hash`` is not a commit of this repository.
        """
        self._src.check_open()
        return self._diff(resolve_commit(self._src.git, dev_commit_hash))

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
        src = self._src
        src.check_open()
        check_arrayset_name(arrayset)
        enc = encode_key(key)
        dev = branch_commit(src.git, dev_branch_name)
        mine = src.sample(arrayset, enc)
        theirs = sample_digest(src.git, dev, arrayset, enc)
        if mine is None and theirs is None:
            raise KeyError(f"sample {key!r} of arrayset {arrayset!r} exists on neither side")
        return mine, src.array(arrayset, key, theirs) if theirs is not None else None


class WriterUserDiff(ReaderUserDiff):
    """Diff methods of the write checkout, aware of staged changes.

    :meth:`branch` and :meth:`commit` compare the staging area (the base
    commit plus staged changes) with the other side.
    """

    def _view(self) -> StagedView:
        view = self._src.staged()
        assert view is not None, "a writer's diff source has a staging area"
        return view

    def _master_tree(self) -> bytes | None:
        """Root tree of the staging area (None when nothing is staged).

        Its tree objects are written to git's object database, unreferenced
        until a commit uses them, so the three-way walk can read them like
        any commit's; only the subtrees holding staged changes are new.
        """
        view = self._view()
        if not view.journal.has_entries:
            return None
        return build_root(self._src.git, view.base, view.journal.asets, view.journal.meta)

    def staged(self) -> StagedDiff:
        """Changes in the staging area relative to its base commit.

        Returns
        -------
        tuple
            ``(changes, conflicts)`` as :meth:`branch` gives them, with the
            ``'master'`` side only (base commit -> staging area) and no
            conflicts; its ``records`` (also ``aset``, ``meta``, ``samples``,
            ``empty``) is the :class:`~hangar_git.diff.DiffRecords` view.
        """
        self._src.check_open()
        view = self._view()
        return staged_result(CommitView(view.base), view, staged_diff(view))

    def status(self) -> str:
        """Whether the staging area holds changes.

        Changes that add up to nothing (an arrayset added then removed)
        leave it ``'CLEAN'``.

        Returns
        -------
        str
            ``'CLEAN'`` when nothing is staged, else ``'DIRTY'``.
        """
        self._src.check_open()
        view = self._view()
        if surely_dirty(view):
            return "DIRTY"  # without listing every staged key
        return "CLEAN" if staged_diff(view).empty else "DIRTY"


def sample_digest(
    git: pygit2.Repository, commit: str | None, arrayset: str, enc: str
) -> bytes | None:
    """Digest of one sample in a commit (None where absent)."""
    recs = TreeRecords(git, commit_tree(git, commit))
    if arrayset not in recs.aset_entries:
        return None
    return recs.samples(arrayset).get(enc)


def surely_dirty(view: StagedView) -> bool:
    """True when a change is certainly staged, found without diffing everything.

    A new arrayset, or a staged sample whose digest differs from its base
    commit's, is a change; False means "ask the full diff".
    """
    base = view.base
    for name, st in view.journal.asets.items():
        if st.removed and not st.created:
            continue
        in_base = name in base.aset_entries
        if st.created:
            if not in_base:
                return True
        elif in_base:
            s = base.samples(name)
            for enc, d in st.samples.items():
                if d is not None and s.get(enc) != d:
                    return True
    return False
