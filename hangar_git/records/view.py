"""What a checkout sees: the records of a commit, plus staged changes.

:class:`CommitView` answers from one commit's trees; :class:`StagedView`
overlays the write checkout's journal on its base commit. Both give the same
small interface to the user-facing objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..schema import ArraysetSchema
from . import validate
from .layout import leaf_path
from .snapshot import SampleRecords, TreeRecords
from .staging import Journal

if TYPE_CHECKING:
    import numpy as np


class CommitView:
    """Records of one commit (read-only)."""

    writeable = False

    def __init__(self, base: TreeRecords) -> None:
        self.base = base
        self._schemas: dict[str, ArraysetSchema] = {}

    def aset_names(self) -> list[str]:
        return self.base.arrayset_names()

    def has_aset(self, name: str) -> bool:
        return name in self.base.aset_entries

    def schema(self, name: str) -> ArraysetSchema:
        s = self._schemas.get(name)
        if s is None:
            s = ArraysetSchema.from_json(self.base.schema_text(name))
            self._schemas[name] = s
        return s

    def base_samples(self, name: str) -> SampleRecords | None:
        return self.base.samples(name) if name in self.base.aset_entries else None

    def get(self, name: str, enc: str) -> bytes | None:
        return self.base.sample_digest(name, enc)

    def get_many(self, name: str, encs: Sequence[str]) -> list[bytes | None]:
        return self.base.samples(name).get_many(encs)

    def digests(self, name: str, keep_leaves: bool = False) -> list[bytes]:
        """Digests of every sample, in the order of :meth:`iter_items`
        (``keep_leaves``: parse the record leaves for key look-ups too)."""
        return self.base.samples(name).digests(keep_leaves)

    def iter_items(self, name: str) -> Iterator[tuple[str, bytes]]:
        return self.base.samples(name).items()

    def count(self, name: str) -> int:
        return len(self.base.samples(name))

    def leaf_of(self, name: str, enc: str) -> dict[str, bytes]:
        s = self.base.samples(name)
        return s.leaf(leaf_path(enc, s.fanout))

    def meta(self) -> dict[str, str]:
        return self.base.metadata()

    def check_payload(self, name: str, enc: str, arr: np.ndarray) -> np.ndarray:
        """``arr``, read for sample ``enc``, if its kind fits the schema
        (CorruptRecordError otherwise; not checked again for records built
        on this machine, whose payloads were checked as they were added)."""
        if self.base.payloads_trusted:
            return arr
        return validate.check_payload(self.schema(name), arr, name, enc)

    def check_payloads(self, name: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`check_payload` of a batch."""
        if self.base.payloads_trusted:
            return arrays
        return validate.check_payloads(self.schema(name), arrays, name)

    def meta_keys(self) -> list[str]:
        """Encoded metadata keys (no value is read)."""
        return list(self.base.metadata_entries())

    def meta_get(self, enc: str) -> str | None:
        """The value of metadata key ``enc``, None when absent."""
        return self.base.meta_value(enc)


class StagedView(CommitView):
    """Records of the write checkout: base commit plus the journal."""

    writeable = True

    def __init__(self, base: TreeRecords, journal: Journal) -> None:
        super().__init__(base)
        self.journal = journal
        self._staged_schemas: dict[str, tuple[str | None, ArraysetSchema]] = {}

    def aset_names(self) -> list[str]:
        names = set(self.base.aset_entries)
        for name, st in self.journal.asets.items():
            if st.created:
                names.add(name)
            elif st.removed:
                names.discard(name)
        return sorted(names)

    def has_aset(self, name: str) -> bool:
        st = self.journal.asets.get(name)
        if st is not None and (st.created or st.removed):
            return st.created
        return name in self.base.aset_entries

    def schema(self, name: str) -> ArraysetSchema:
        st = self.journal.asets.get(name)
        if st is not None and st.created:
            cached = self._staged_schemas.get(name)
            if cached is not None and cached[0] == st.schema:
                return cached[1]
            s = ArraysetSchema.from_json(st.schema or "")
            self._staged_schemas[name] = (st.schema, s)
            return s
        return super().schema(name)

    def base_samples(self, name: str) -> SampleRecords | None:
        st = self.journal.asets.get(name)
        if st is not None and (st.created or st.removed):
            return None
        return super().base_samples(name)

    def get(self, name: str, enc: str) -> bytes | None:
        st = self.journal.asets.get(name)
        if st is not None:
            if enc in st.samples:
                return st.samples[enc]
            if st.created or st.removed:
                return None
        return self.base.sample_digest(name, enc) if name in self.base.aset_entries else None

    def digests(self, name: str, keep_leaves: bool = False) -> list[bytes]:
        st = self.journal.asets.get(name)
        if st is None or not (st.samples or st.created or st.removed):
            return super().digests(name, keep_leaves) if name in self.base.aset_entries else []
        return [d for _, d in self.iter_items(name)]

    def get_many(self, name: str, encs: Sequence[str]) -> list[bytes | None]:
        st = self.journal.asets.get(name)
        if st is None:
            return (
                super().get_many(name, encs)
                if name in self.base.aset_entries
                else [None] * len(encs)
            )
        if st.created or st.removed:
            staged = st.samples
            return [staged.get(e) for e in encs]
        out: list[bytes | None] = (
            super().get_many(name, encs) if name in self.base.aset_entries else [None] * len(encs)
        )
        staged = st.samples
        if staged:
            for i, e in enumerate(encs):
                if e in staged:
                    out[i] = staged[e]
        return out

    def iter_items(self, name: str) -> Iterator[tuple[str, bytes]]:
        st = self.journal.asets.get(name)
        base = self.base_samples(name)
        changes = dict(st.samples) if st is not None else {}
        if base is not None:
            for enc, d in base.items():
                if enc in changes:
                    new = changes.pop(enc)
                    if new is not None:
                        yield enc, new
                else:
                    yield enc, d
        for enc, staged in changes.items():
            if staged is not None:
                yield enc, staged

    def count(self, name: str) -> int:
        st = self.journal.asets.get(name)
        base = self.base_samples(name)
        n = len(base) if base is not None else 0
        if st is not None:
            for enc, d in st.samples.items():
                had = base is not None and base.get(enc) is not None
                if d is None and had:
                    n -= 1
                elif d is not None and not had:
                    n += 1
        return n

    def leaf_of(self, name: str, enc: str) -> dict[str, bytes]:
        base = self.base_samples(name)
        if base is None:
            return {}
        return base.leaf(leaf_path(enc, base.fanout))

    def meta(self) -> dict[str, str]:
        out = dict(self.base.metadata())
        for k, v in self.journal.meta.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
        return out

    def meta_keys(self) -> list[str]:
        keys = dict.fromkeys(self.base.metadata_entries())
        for k, v in self.journal.meta.items():
            if v is None:
                keys.pop(k, None)
            else:
                keys[k] = None
        return list(keys)

    def meta_get(self, enc: str) -> str | None:
        if enc in self.journal.meta:
            return self.journal.meta[enc]
        return self.base.meta_value(enc)
