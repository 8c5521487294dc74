"""Sending local payloads to a data remote in packs: the upload half of a push.

:func:`send_packs` packs the payloads a push sends (whole local blocks as
they are stored, :mod:`.packsend`; the others read out, checked against
their digests and packed anew) into packs of about
:func:`.data_transport.send_target` raw bytes; :class:`PackSender` sends
each on a second thread while the next is built. To a folder a pack's body
is written ahead as it is built (:meth:`.DataRemote.open_pack_stream`) and
named once sealed; an object store gets each pack in one request. Which
payloads to send is decided in :mod:`.transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IntegrityError
from ..store.packs import PackReader
from . import data_transport as dt
from . import packsend
from .backends.base import ObjectStream
from .data_transport import DataRemote, PackBuilder, SealedPack
from .fetchplan import row_digests
from .lookup import distinct

if TYPE_CHECKING:
    from .transfer import Progress

#: payloads read from the local store at a time while packing (at least)
READ_CHUNK = 4096
#: bytes of payloads read from the local store at a time while packing (about)
READ_BYTES = 16 * 1024 * 1024
#: bytes of a pack's body handed to the sending thread at a time, to write ahead
WRITE_AHEAD = 4 * 1024 * 1024
#: packs uploading at once to an object store (each its own requests; a
#: folder takes one at a time, written ahead as it is built)
OBJECT_STORE_UPLOADS = 2


class PackSender:
    """Sends sealed packs on background threads, ``in_flight`` uploads at most.

    Where the remote can take a pack piece by piece (a folder), the pieces
    of the pack being built are written ahead on one thread as they come
    (:meth:`feed`), and the upload of the sealed pack writes only the rest
    and names it; elsewhere each sealed pack is sent whole, up to
    ``in_flight`` of them at once (the pool has as many threads). Each pack
    is named by its own index, so packs may land in any order; the records
    move only once every one has landed and been checked.
    """

    def __init__(self, remote: DataRemote, pool: ThreadPoolExecutor, in_flight: int = 1) -> None:
        self.remote, self.pool = remote, pool
        self.in_flight = max(1, in_flight)
        self.jobs: list[Future[None]] = []
        self.sent: list[SealedPack] = []
        self.stream: ObjectStream | None = None
        self.streams: list[ObjectStream] = []
        self.streaming = True

    def feed(self, builder: PackBuilder) -> None:
        """Write ahead the pieces ``builder`` made since the last call."""
        if not self.streaming:
            return
        if self.stream is None:
            self.stream = self.remote.open_pack_stream()
            if self.stream is None:
                self.streaming = False
                return
            self.streams.append(self.stream)
        parts = builder.take_parts(WRITE_AHEAD)
        if parts:
            self.jobs.append(self.pool.submit(self.stream.write, parts))

    def send(self, pack: SealedPack) -> None:
        """Upload ``pack`` once fewer than ``in_flight`` uploads are under way
        (with one: after the one before, and what was written ahead, landed)."""
        pack.stream, self.stream = self.stream, None
        if pack.stream is None:
            pack.streamed = 0  # nothing written ahead: all of it goes now
        self.wait(self.in_flight - 1)
        self.jobs.append(self.pool.submit(self.remote.upload, pack))
        self.sent.append(pack)

    def wait(self, leave: int = 0) -> None:
        """Wait for the writes and uploads submitted, oldest first, until at
        most ``leave`` are under way (their errors raise here, and that of
        any one finished already: nothing more is sent after a failure)."""
        for job in self.jobs:
            if job.done():
                job.result()
        while len(self.jobs) > leave:
            self.jobs.pop(0).result()

    def close(self) -> None:
        """Wait for what is in flight, then drop any pack body written but not named."""
        for job in self.jobs:
            job.exception()
        self.jobs = []
        for stream in self.streams:
            stream.abort()


def _verified_rows(kind: str, rows: np.ndarray, ds: Sequence[bytes]) -> np.ndarray:
    """``rows`` (uint8, one payload a row), each checked against its digest first."""
    got = row_digests(kind, rows)
    for d, g in zip(ds, got, strict=True):
        if g != d:
            raise IntegrityError(
                f"local payload {d.hex()} does not match its digest: run `git hangar fsck`"
            )
    return rows


def _read_rows(reader: PackReader, kid: int, entries: np.ndarray) -> np.ndarray:
    """The payloads at ``entries`` (all small, of kind ``kid``) as uint8 rows."""
    dtype, shape = reader.kind(kid)
    out = np.empty((len(entries), *shape), dtype)
    if not reader.gather_into(entries, out):
        arrays = reader.gather(entries)
        out = np.stack(arrays) if arrays else out
    flat = np.ascontiguousarray(out).reshape(-1).view(np.uint8)
    return flat.reshape(len(entries), flat.size // max(1, len(entries)))


def send_packs(
    remote: DataRemote,
    reader: PackReader,
    todo: list[bytes],
    entries: np.ndarray,
    progress: Progress | None,
) -> list[SealedPack]:
    """Pack the local payloads ``todo`` (each once, at ``entries``, all small) into packs
    of about :func:`.data_transport.send_target` raw bytes, send each, then check they landed whole.

    A local block holding nothing but payloads of ``todo`` goes as it is
    stored, once its checksum and each payload's digest are checked
    (:func:`.packsend.send_whole_blocks`). The others are read a kind at a
    time, up to READ_BYTES at once, straight into one array, and each is
    checked against its digest before it is packed anew.
    """
    kind_ids = entries["kind"]
    uk, counts = np.unique(kind_ids, return_counts=True)
    total = sum(reader.kind_nbytes(int(k)) * int(c) for k, c in zip(uk, counts, strict=True))
    builder = PackBuilder(distinct=True)  # todo holds each digest once
    target = dt.send_target(remote)
    uploads = 1 if remote.store.renames_into_place else OBJECT_STORE_UPLOADS
    with ThreadPoolExecutor(max_workers=uploads) as pool:
        sender = PackSender(remote, pool, uploads)
        try:
            _build(reader, todo, entries, builder, sender, target, progress, total)
        finally:
            sender.close()
    bad = remote.verify_uploaded(sender.sent)
    if bad:
        raise IntegrityError(
            f"{len(bad)} uploaded objects did not land whole on {remote.url} "
            f"({', '.join(bad[:3])}): push again"
        )
    return sender.sent


def _build(
    reader: PackReader,
    todo: list[bytes],
    entries: np.ndarray,
    builder: PackBuilder,
    sender: PackSender,
    target: int,
    progress: Progress | None,
    total: int,
) -> None:
    """The body of :func:`send_packs`: build and send every pack, and wait for the last."""
    done = 0

    def ship() -> None:
        """Send the pack once it reaches the target, else write ahead what it has."""
        if builder.raw_bytes >= target:
            sender.send(builder.seal())
        else:
            sender.feed(builder)

    def advance(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        if progress is not None:
            progress("payloads", done, total)

    def whole(b: packsend.WholeBlock) -> None:
        builder.add_block(b.digests, b.kinds, b.ioff, b.ilen, b.header, b.body, b.base, b.at)
        ship()
        advance(b.raw_bytes)

    rest = packsend.send_whole_blocks(reader, todo, entries, whole, target)
    todo, entries = [todo[i] for i in rest.tolist()], entries[rest]
    kind_ids = entries["kind"]
    for kid in distinct(kind_ids).tolist():
        kind, width = reader.kind_text(kid), max(1, reader.kind_nbytes(kid))
        sel = np.flatnonzero(kind_ids == kid)
        step = max(READ_CHUNK, READ_BYTES // width)
        for lo in range(0, len(sel), step):
            part = sel[lo : lo + step]
            ds = [todo[i] for i in part.tolist()]
            rows = _verified_rows(kind, _read_rows(reader, kid, entries[part]), ds)
            pos = 0
            while pos < len(ds):  # cut packs at the target raw bytes
                room = max(1, -(-(target - builder.raw_bytes) // width))
                builder.add_rows(ds[pos : pos + room], kind, rows[pos : pos + room])
                pos += room
                ship()
            advance(rows.nbytes)
    if len(builder):
        sender.send(builder.seal())
    sender.wait()


__all__ = [
    "OBJECT_STORE_UPLOADS",
    "READ_BYTES",
    "READ_CHUNK",
    "WRITE_AHEAD",
    "PackSender",
    "send_packs",
]
