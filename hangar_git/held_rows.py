"""Samples a write checkout holds back inside a ``with aset:`` block.

``aset[key] = array`` inside a ``with`` block costs a few microseconds of
Python; digesting, packing and logging each sample on its own costs twice
that again. So the small samples of a fixed-shape arrayset set inside a
block are only checked and copied when they are set, and held here (at
most :data:`HOLD_BYTES` at a time); they are staged together, through the
bulk path (one digest pass over the held bytes, blocks written from
where those lie, one flush of the store for all arraysets, ``B`` journal
lines), when the block ends or as soon as
anything reads or changes the staging area (see
:class:`hangar_git.checkout.WriterCheckout`). Digests, payloads and records
are those the per-sample path makes. What is held is not acknowledged: as
before, samples set in a block are durable once the block has exited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .records.keynames import int_key_names
from .store import Payload
from .store.digest import kind_of, stacked_digests

if TYPE_CHECKING:
    from .records.staging import Journal
    from .records.view import StagedView
    from .store.writer import PackWriter

#: raw bytes held per arrayset before they are staged (bounds the memory a
#: long block holds; each staging flushes the store once, so not much less:
#: the MNIST images, 47 MB, are staged at once)
HOLD_BYTES = 64 << 20
#: fewer held samples than this are staged one by one (no store flush), so a
#: block that reads after every few writes costs what it did before holding
STACK_MIN = 512


@dataclass
class HeldRows:
    """The samples held for one arrayset: keys and C-order bytes, in order.

    ``encs`` holds each key encoded, or a non-negative int key (below
    :data:`~hangar_git.naming.INT_KEY_BOUND`) as it is: :meth:`names`
    encodes those with the others, in vectorised passes when all are ints.
    ``buf`` holds the samples' bytes one after the other: appended to as
    they are set (a ``bytearray`` grows in place, with no copy of what it
    holds), and staged as they lie there (:meth:`stacked`), with no join.
    """

    dtype: np.dtype
    shape: tuple[int, ...]
    encs: list[str | int] = field(default_factory=list)
    buf: bytearray = field(default_factory=bytearray)
    #: False once the checkout let go of these samples (staged, or dropped
    #: with a failed batch): nothing may be added to them then
    live: bool = True

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return len(self.buf)

    def names(self) -> Sequence[str]:
        """The encoded keys, in order: one array (:class:`.KeyNames`) when they
        are distinct int64 keys, else a list."""
        encs = self.encs
        if encs and set(map(type, encs)) == {int}:
            ints = np.array(encs)
            if ints.dtype == np.int64:
                ordered = np.sort(ints)
                if not (ordered[1:] == ordered[:-1]).any():  # set again: the last wins
                    return int_key_names(ints)
        return [e if type(e) is str else f"i:{e}" for e in encs]

    def stacked(self) -> np.ndarray:
        """The held samples as one read-only ``(n, *shape)`` array: a view of
        :attr:`buf`, which can grow no more (held samples are staged once)."""
        rows = np.frombuffer(self.buf, self.dtype).reshape(len(self.encs), *self.shape)
        rows.flags.writeable = False
        return rows


class Holding:
    """What :class:`~hangar_git.checkout.WriterCheckout` does with held samples:
    holds them, and stages them before its records are read (:attr:`view`)."""

    _held: dict[str, HeldRows]
    _lost: BaseException | None  # why held samples could not be staged
    _writer: PackWriter
    _view: StagedView
    _batch: int
    _journal: Journal
    closed: bool

    @property
    def view(self) -> StagedView:
        """The staged records; samples held in a ``with`` block are staged first."""
        self._settle()
        return self._view

    @view.setter
    def view(self, value: StagedView) -> None:
        self._view = value

    @property
    def holds_samples(self) -> bool:
        """True while samples set in a ``with`` block are held, not yet staged."""
        return bool(self._held)

    @property
    def staged_view(self) -> StagedView:
        """:attr:`view` without staging held samples (for schema look-ups)."""
        return self._view

    def staged_state(self, aset: str) -> object:
        """Staged state of an arrayset, replaced whenever it is (re)created.

        Parameters
        ----------
        aset : str

        Returns
        -------
        object
            The journal's object for it (None if it has none).
        """
        return self._journal.asets.get(aset)

    def hold_sample(
        self, aset: str, enc: str | int, data: bytes, dtype: np.dtype, shape: tuple[int, ...]
    ) -> None:
        """Hold a small sample until the batch ends or is read (outside a batch:
        staged now).

        Parameters
        ----------
        aset : str
            The arrayset, of fixed-shape samples.
        enc : str or int
            The sample's encoded key, or its int key (>= 0, below
            :data:`~hangar_git.naming.INT_KEY_BOUND`) as it is.
        data : bytes
            Its C-order bytes (a copy), fewer than a block's.
        dtype : numpy.dtype
            The arrayset's dtype.
        shape : tuple of int
            The arrayset's shape.
        """
        held = self._held.get(aset)
        if held is None:
            held = self._held[aset] = HeldRows(dtype, shape)
        held.encs.append(enc)
        held.buf += data
        if len(held.buf) >= HOLD_BYTES or not self._batch:
            self._settle()

    def holding(self, aset: str) -> HeldRows | None:
        """The samples of ``aset`` held now (None if none); replaced once staged.

        Parameters
        ----------
        aset : str

        Returns
        -------
        HeldRows or None
        """
        return self._held.get(aset)

    def _drop_held(self) -> dict[str, HeldRows]:
        """Let go of the held samples (no longer :attr:`HeldRows.live`); returns them."""
        held, self._held = self._held, {}
        for h in held.values():
            h.live = False
        return held

    def settle_held(self) -> None:
        """Stage the samples held now (see :meth:`_stage_held`)."""
        self._settle()

    def settle_before_batch_ends(self, exc: BaseException | None) -> None:
        """Stage the held samples while the outermost batch is still open, so
        that they are staged without a store flush each (a failure is kept,
        and the batch's end raises it and discards the batch).

        Parameters
        ----------
        exc : BaseException, optional
            The error ending the batch: nothing is staged after a store failure.
        """
        if self._batch != 1 or self.closed or self._lost is not None or isinstance(exc, OSError):
            return
        try:
            self._settle()
        except BaseException:  # kept in self._lost by _settle
            return

    def _settle(self) -> None:
        """Stage the held samples; if that fails, the batch fails (the
        checkout's ``end_batch`` raises and discards it)."""
        if self._held:
            held = self._drop_held()
            try:
                self._stage_held(held)
            except BaseException as exc:
                self._lost = exc
                raise

    def _stage_held(self, held: dict[str, HeldRows]) -> None:
        """Stage the samples of ``held``: many through the bulk path, written
        for every arrayset, then flushed once (one sync, one index commit)
        before their records are logged; fewer than :data:`STACK_MIN` one by
        one (which does not flush the store inside a batch)."""
        logged: list[tuple[str, Sequence[str], Sequence[bytes]]] = []
        for aset, h in held.items():
            rows = h.stacked()
            kind = kind_of(rows[0])
            encs = h.names()
            if len(encs) >= STACK_MIN:
                # the held bytes never change: written from where they lie, and
                # hashed while they are written
                digests = self._writer.add_hashing(kind, rows, flush=False)
                logged.append((aset, encs, digests))
                continue
            digests = stacked_digests(rows)
            size = rows.nbytes // len(encs)
            data = rows.reshape(-1).data.cast("B")
            for i, (enc, d) in enumerate(zip(encs, digests, strict=True)):
                p = Payload(d, kind, data[i * size : (i + 1) * size])
                self.stage_sample(aset, enc, p)  # type: ignore[attr-defined]
        if logged:
            self._writer.flush()  # the payloads are stored before any record names them
            for aset, encs, ds in logged:
                self._journal.record_samples(aset, encs, ds)


__all__ = ["HOLD_BYTES", "STACK_MIN", "HeldRows", "Holding"]
