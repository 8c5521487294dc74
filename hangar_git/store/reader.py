"""Reading payloads from the pack store: :class:`PackReader`.

A reader resolves digests through the index (:mod:`.index`; at kept places,
see :mod:`.placement`) and reads many payloads at once: bulk reads
(:meth:`PackReader.gather`, :meth:`PackReader.gather_into`) read each
block once, streaming uncompressed blocks through one buffer or straight
into the caller's array with scattering ``preadv`` calls (:mod:`.gather`).
Files, blocks, single payloads and large payloads are
:class:`.block_reader.BlockReader`'s part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..errors import IntegrityError, MissingPayloadError
from . import chunked
from .block_reader import CACHE_BYTES, BlockReader
from .chunked import LARGE_IOFF, LARGE_PACK
from .gather import gather_kind
from .index import ENTRY, Location, entry_digests
from .placement import Placement, entries_at, place, positions_in_one

#: the fields of an index entry a bulk read uses (block id, item offset, kind
#: id), 12 bytes where the entry (:data:`.index.ENTRY`) takes 32: what
#: :meth:`PackReader.gather_into` reads from, as it does from entries
PLACE = np.dtype([("block", "<u4"), ("ioff", "<u4"), ("kind", "<u4")])
#: the first uint32 word of the three fields of PLACE in an entry (they
#: follow each other there, in the same order and types)
_PLACE_WORD = ENTRY.fields["block"][1] // 4  # type: ignore[index]
assert ENTRY.fields is not None and PLACE.fields is not None and PLACE.names is not None
assert [ENTRY.fields[f][:2] for f in PLACE.names] == [
    (PLACE.fields[f][0], 4 * _PLACE_WORD + PLACE.fields[f][1]) for f in PLACE.names
]


def take_places(entries: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The block, offset and kind of ``entries[pos]`` (index entries, of
    :data:`.index.ENTRY`) as :data:`PLACE` records, in the order of ``pos``:
    the part of the entries a bulk read needs, taken with no copy of the rest
    (a 60,000-entry permutation writes 0.7 MB, not 1.9)."""
    e = np.ascontiguousarray(entries)
    if not len(e):
        return np.take(np.zeros(0, PLACE), pos)  # (an IndexError for any position)
    # the three fields of each entry as one opaque item, read in place: a fancy
    # index of it writes only its output (np.take would copy them together first)
    tails = np.ndarray(
        (len(e),), f"V{PLACE.itemsize}", e, offset=4 * _PLACE_WORD, strides=(ENTRY.itemsize,)
    )
    return tails[pos].view(PLACE)  # type: ignore[no-any-return]


class PackReader(BlockReader):
    """Reads payloads; one per thread (a reader is not shared across threads).

    A reader notices when it is used in a forked child and reopens its
    handles there, so it can cross into DataLoader worker processes. It keeps
    up to ``cache_bytes`` of decompressed blocks (least recently used first
    out), each verified against its checksum when read from its pack.
    """

    # ---- index -------------------------------------------------------
    def lookup(self, digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised resolution: ``(found, entries)`` parallel to ``digests``.

        ``entries`` is an array of :data:`ENTRY` (block id, item offset,
        kind id), valid where ``found``. The index is read again when a
        digest is not found in what this reader loaded before.

        Parameters
        ----------
        digests : sequence of bytes

        Returns
        -------
        found : numpy.ndarray of bool
        entries : numpy.ndarray of ENTRY
        """
        self._check_pid()
        with self._lock:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            found, e = self._segs.lookup(digests)
            if not found.all() and self._segs.load(self._con, self.store.index_path):
                found, e = self._segs.lookup(digests)
            self._note_damage(digests, found)
        return found, e

    def lookup_joined(self, joined: bytes) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lookup` of digests given joined (20 bytes each, one bytes
        object): no list of digests is made unless some are absent from a
        damaged index (then named in :attr:`bad_rows`)."""
        return self.lookup_placed(joined)[:2]

    def lookup_placed(
        self, joined: bytes, hint: Placement | None = None
    ) -> tuple[np.ndarray, np.ndarray, Placement | None]:
        """:meth:`lookup_joined`, with where the entries sit: taken at ``hint``
        when it is sound (checked entry by entry, see :mod:`.placement`; None
        is returned for it then), else searched for (and where they are found)."""
        self._check_pid()
        with self._lock:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            e = None if hint is None else entries_at(self._segs.runs, joined, hint)
            if e is not None:
                return np.ones(len(e), bool), e, None
            found, e, placed = place(self._segs.runs, joined)
            if not found.all() and self._segs.load(self._con, self.store.index_path):
                found, e, placed = place(self._segs.runs, joined)
            if not found.all() and self._segs.damaged:
                self._note_damage(np.frombuffer(joined, "V20").tolist(), found)
            return found, e, placed

    def places_at(self, joined: bytes, hint: Placement, pos: np.ndarray) -> np.ndarray | None:
        """The places (:data:`PLACE`) of the entries of ``joined`` digests at
        ``hint``, of the digests at positions ``pos``, in that order: what
        :meth:`lookup_placed` then :func:`take_places` give when ``hint`` is
        sound (every entry at its place checked to be its digest's), with
        no array of whole entries made when every place is in one segment.
        None when the hint is not sound (search then, as :meth:`lookup_placed` does)."""
        self._check_pid()
        with self._lock:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            runs = self._segs.runs
            run = positions_in_one(runs, joined, hint)
            if run is not None:
                return take_places(run.entries, hint.where[pos])  # (no intp copy of pos)
            e = entries_at(runs, joined, hint)
        return None if e is None else take_places(e, pos)

    def locate_many(self, digests: Iterable[bytes]) -> dict[bytes, Location]:
        """Locations of those of ``digests`` stored here.

        Parameters
        ----------
        digests : iterable of bytes
            Payload digests (repeats are looked up once).

        Returns
        -------
        dict of bytes to Location
            Absent digests, and those whose entry is damaged (see
            :attr:`bad_rows`), are omitted.
        """
        uniq = list(dict.fromkeys(digests))
        found, e = self.lookup(uniq)
        return self._locations(uniq, found, e)

    def locate(self, digest: bytes) -> Location | None:
        """Location of one payload; None when absent or its entry is damaged.

        Parameters
        ----------
        digest : bytes

        Returns
        -------
        Location or None
        """
        return self.locate_many([digest]).get(digest)

    def count(self) -> int:
        """Number of payloads in the index."""
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)
            return len(self._segs)

    def all_locations(self) -> Iterator[tuple[bytes, Location | None]]:
        """Every index entry as ``(digest, location)``; location None if damaged.

        Entries of a damaged segment cannot be listed: see :attr:`damaged_segments`.
        """
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)
            runs = list(self._segs.runs)
        for run in runs:
            for d, e in zip(entry_digests(run.entries), run.entries, strict=True):
                try:
                    yield d, self._location(e)
                except IntegrityError as exc:
                    self.bad_rows[d] = str(exc)
                    yield d, None

    def refresh(self) -> None:
        """Load the index afresh (entries that ``gc`` moved since the last load)."""
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)

    @property
    def damaged_segments(self) -> dict[int, str]:
        """Index segments refused when loaded (id -> why)."""
        return dict(self._segs.damaged)

    def contains(self, digest: bytes) -> bool:
        """True when ``digest`` has a sound index entry."""
        return self.locate(digest) is not None

    def gather(self, entries: np.ndarray) -> list[np.ndarray]:
        """The arrays of index ``entries``, in order, each block read once.

        Items of one kind are copied out of each block with one fancy index
        (rows of a view of the block) into one array per kind; the arrays
        returned are its rows: fresh, writeable, and independent of each other.

        Parameters
        ----------
        entries : numpy.ndarray of ENTRY
            Index entries (see :meth:`lookup`), large payloads' included.

        Returns
        -------
        list of numpy.ndarray

        Raises
        ------
        IntegrityError
            An entry names an unknown block or kind, or bytes are damaged.
        """
        self._check_pid()
        if len(entries) and (entries["ioff"] == LARGE_IOFF).any():
            return self._gather_large(entries)
        n = len(entries)
        out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        if not n:
            return out
        kinds = entries["kind"]
        k0 = int(kinds[0])
        if (kinds == k0).all():
            return gather_kind(self, entries, *self.kind(k0), self.kind_nbytes(k0))
        for kid in np.unique(kinds).tolist():
            sel = np.flatnonzero(kinds == kid)
            res = gather_kind(self, entries[sel], *self.kind(kid), self.kind_nbytes(kid))
            for i, a in zip(sel.tolist(), res, strict=True):
                out[i] = a
        return out

    def gather_into(self, entries: np.ndarray, out: np.ndarray) -> bool:
        """Write the arrays of index ``entries`` straight into the rows of
        ``out``, each block read once, when they are small payloads all of
        the kind of a row of ``out`` (``out.dtype``, ``out.shape[1:]``).

        Parameters
        ----------
        entries : numpy.ndarray of ENTRY or PLACE
            Index entries (see :meth:`lookup`), ``len(out)`` of them, or
            their places (:func:`take_places`).
        out : numpy.ndarray
            A C-contiguous, writeable array.

        Returns
        -------
        bool
            True when ``out`` was filled; False (``out`` untouched) when some
            entry is a large payload or of another kind: read those with
            :meth:`gather`.

        Raises
        ------
        IntegrityError
            An entry names an unknown block or kind, or bytes are damaged.
        """
        self._check_pid()
        n = len(entries)
        if n != len(out) or not out.flags.c_contiguous or not out.flags.writeable:
            return False
        if not n:
            return True
        kinds = entries["kind"]
        k0 = int(kinds[0])
        if (entries["ioff"] == LARGE_IOFF).any() or not (kinds == k0).all():
            return False
        dtype, shape = self.kind(k0)
        if dtype != out.dtype or tuple(shape) != out.shape[1:]:
            return False
        nbytes = self.kind_nbytes(k0)
        if nbytes:
            gather_kind(self, entries, dtype, shape, nbytes, out)
        return True

    def read_many(self, locs: Sequence[Location]) -> list[np.ndarray]:
        """Arrays at ``locs``, in order, decompressing each block once.

        Parameters
        ----------
        locs : sequence of Location

        Returns
        -------
        list of numpy.ndarray
        """
        self._check_pid()
        if any(loc.pack == LARGE_PACK for loc in locs):
            return [self.read(loc) for loc in locs]
        order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].boff))
        out: list[np.ndarray | None] = [None] * len(locs)
        cur_key = None
        raw: bytes | memoryview = b""
        for i in order:
            loc = locs[i]
            key = (loc.pack, loc.boff)
            if key != cur_key:
                raw = self.block(loc.pack, loc.boff, loc.blen)
                cur_key = key
            dtype, shape = self.kind(loc.kind)
            if loc.ioff + loc.ilen > len(raw):
                raise IntegrityError(
                    f"payload at {loc.ioff} extends past its block "
                    f"in {self.store.pack_path(loc.pack)}"
                )
            out[i] = (
                np.frombuffer(raw, dtype=dtype, count=loc.ilen // dtype.itemsize, offset=loc.ioff)
                .reshape(shape)
                .copy()
            )
        return out  # type: ignore[return-value]

    def get(self, digest: bytes) -> np.ndarray:
        """The array of payload ``digest``.

        Raises
        ------
        MissingPayloadError
            The payload is not in the index.
        IntegrityError
            Its bytes are damaged.
        """
        loc = self.locate(digest)
        if loc is None:
            raise MissingPayloadError(f"payload {digest.hex()} is not stored locally")
        return self.read(loc)

    def _gather_large(self, entries: np.ndarray) -> list[np.ndarray]:
        """:meth:`gather` of entries some of which are large payloads: those are
        decoded straight into their arrays, all their chunks on every core."""
        big = entries["ioff"] == LARGE_IOFF
        out: list[np.ndarray] = [None] * len(entries)  # type: ignore[list-item]
        small = np.flatnonzero(~big)
        if len(small):
            for i, a in zip(small.tolist(), self.gather(entries[small]), strict=True):
                out[i] = a
        idx = np.flatnonzero(big).tolist()
        kids = [int(entries[i]["kind"]) for i in idx]
        arrays = chunked.empty_arrays([self.kind(k) for k in kids])
        items: list[tuple[int, np.ndarray]] = []
        for i, a in zip(idx, arrays, strict=True):
            out[i] = a
            items.append((self.large_number(int(entries[i]["block"])), a))
        self.large().read_many(items, [self.kind_text(k) for k in kids])
        return out


__all__ = ["CACHE_BYTES", "PLACE", "PackReader", "take_places"]
