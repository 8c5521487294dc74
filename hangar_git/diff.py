"""Diffs of records: what changed between commits or in the staging area.

Results are plain named tuples: for arrayset schemas, for metadata keys, and
per arrayset for sample keys, the keys added, removed and mutated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .naming import Key, decode_key

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


def _changes(add: list, rem: list, mut: list) -> Changes:
    return Changes(tuple(sorted(add, key=_order)), tuple(sorted(rem, key=_order)),
                   tuple(sorted(mut, key=_order)))


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
                s_rem = [decode_key(e) for e in base_s.keys()]  # type: ignore[union-attr]
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
    base_meta = base.metadata() if journal.meta else {}
    for enc, v in journal.meta.items():
        v0 = base_meta.get(enc)
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

    def branch(self, dev_branch_name: str) -> tuple:
        """Changes and conflicts between this checkout's commit and a branch head."""
        from .merge import diff_with_branch

        self._co._check()
        return diff_with_branch(self._co._repo, self._head(), dev_branch_name)

    def commit(self, dev_commit_hash: str) -> tuple:
        """Changes and conflicts between this checkout's commit and another commit."""
        from .merge import diff_with_commit

        self._co._check()
        return diff_with_commit(self._co._repo, self._head(), dev_commit_hash)


class WriterUserDiff(ReaderUserDiff):
    """Diff methods of the write checkout, aware of staged changes."""

    def staged(self) -> DiffRecords:
        """Changes in the staging area relative to its base commit."""
        self._co._check()
        self._co._sync()  # type: ignore[union-attr]
        return staged_diff(self._co._view)  # type: ignore[arg-type]

    def status(self) -> str:
        """``'CLEAN'`` when nothing is staged, else ``'DIRTY'``."""
        return "CLEAN" if self.staged().empty else "DIRTY"
