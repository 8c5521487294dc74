"""Large payloads on a data remote: one object each, next to the packs.

A payload stored chunked on this machine (``hangar_git/store/chunked.py``)
travels as an object of its own, ``packs/<digest hex>.hgc``: the very bytes
of its local file, whose header names its digest and kind and whose chunks
each carry a CRC-32. Sending it streams the file (no copy of the array in
memory); it is checked whole (every chunk, and its digest) before it leaves
and again when it arrives, before it is put in place and indexed, so a
damaged object is refused, never stored.

The objects sit in the ``packs/`` listing the remote's packs already need,
so finding them costs no extra request (their names:
:func:`~hangar_git.remotes.layout.large_object`,
:func:`~hangar_git.remotes.layout.large_in_listing`, re-exported here as
``object_name`` and ``in_listing``); clients that predate them ignore names
that do not end in ``.pack`` or ``.idx`` and see those payloads as absent.
They travel through the remote's backend (``remote.store``):
:meth:`~hangar_git.remotes.backends.RemoteStore.put_file` streams a local
file, :meth:`~hangar_git.remotes.backends.RemoteStore.get_file` copies one
into a new local file, bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IntegrityError
from ..store import chunked
from ..store.chunk_format import large_entries
from . import bounded
from .layout import PACKS, kind_nbytes, landed
from .layout import large_in_listing as in_listing
from .layout import large_object as object_name

if TYPE_CHECKING:
    from ..store.packs import PackReader, PackWriter
    from .data_remote import DataRemote
    from .transfer import TransferReport

Progress = Callable[[str, int, int], None]


def _in_packs(name: str) -> str:
    return f"{PACKS}/{name}"


def upload(
    remote: DataRemote,
    reader: PackReader,
    digests: Sequence[bytes],
    entries: np.ndarray,
    report: TransferReport,
    progress: Progress | None = None,
) -> tuple[list[bytes], np.ndarray]:
    """Send the large payloads among ``digests``, each as its own object, checked whole first.

    Parameters
    ----------
    remote : DataRemote
        Where they go.
    reader : PackReader
        The local store, read from.
    digests : sequence of bytes
        The payloads to send.
    entries : numpy.ndarray
        Their local index entries (parallel to ``digests``).
    report : TransferReport
        Counts payloads, bytes and objects sent.
    progress : callable, optional
        ``progress(phase, done, total)``.

    Returns
    -------
    digests : list of bytes
        The payloads that are not large, left for the packs.
    entries : numpy.ndarray
        Their entries.

    Raises
    ------
    IntegrityError
        If a local file is damaged (run ``git hangar fsck``), or an object
        did not land whole.
    """
    big = large_entries(entries)
    if not big.any():
        return list(digests), entries
    large = reader.large()
    sent: list[tuple[str, int]] = []
    idx = np.flatnonzero(big).tolist()
    for n, i in enumerate(idx):
        d = digests[i]
        number = reader.large_number(int(entries[i]["block"]))
        kind = reader.kind_text(int(entries[i]["kind"]))
        try:
            large.verify(number, d, kind)
        except IntegrityError as exc:
            raise IntegrityError(
                f"local payload {d.hex()} is damaged: {exc}; run `git hangar fsck`"
            ) from None
        path = large.files.path(number)
        size = path.stat().st_size
        remote.store.put_file(_in_packs(object_name(d)), path)
        sent.append((object_name(d), size))
        remote.large[d] = size
        report.payloads += 1
        report.raw_bytes += reader.kind_nbytes(int(entries[i]["kind"]))
        if progress is not None:
            progress("large payloads", n + 1, len(idx))
    listing = remote.list_packs()
    bad = [name for name, size in sent if not landed(listing, name, size)]
    if bad:
        raise IntegrityError(
            f"{len(bad)} uploaded objects did not land whole on {remote.url} "
            f"({', '.join(bad[:3])}): push again"
        )
    report.packs += len(sent)
    keep = np.flatnonzero(~big).tolist()
    return [digests[i] for i in keep], entries[keep]


def split_absent(
    remote: DataRemote, absent: Sequence[bytes], budget: int | None
) -> tuple[list[bytes], list[bytes]]:
    """Which of the payloads no remote pack holds are large objects there.

    Parameters
    ----------
    remote : DataRemote
        Refreshed: :attr:`DataRemote.large` lists its large objects.
    absent : sequence of bytes
        Payloads no pack holds.
    budget : int or None
        Most bytes (object sizes) to fetch; None for no bound.

    Returns
    -------
    absent : list of bytes
        Those still absent (not large objects either).
    to_fetch : list of bytes
        The large objects to fetch, within ``budget``, in order.
    """
    todo: list[bytes] = []
    rest: list[bytes] = []
    used = 0
    for d in absent:
        size = remote.large.get(d)
        if size is None:
            rest.append(d)
        elif budget is None or used + max(size, 0) <= budget:
            todo.append(d)
            used += max(size, 0)
    return rest, todo


def download(
    remote: DataRemote,
    writer: PackWriter,
    digests: Sequence[bytes],
    report: TransferReport,
    progress: Progress | None = None,
    limits: Mapping[bytes, int] | None = None,
) -> None:
    """Fetch large payload objects into the store, each checked whole (every
    chunk and its digest) before it is put in place; those that fail are
    listed in ``report.refused`` and not stored.

    Every size is checked before it costs memory or disk: the object's
    listed size and the bytes copied against what a payload of at most
    ``limits[digest]`` raw bytes (the records' declared size; default
    :data:`~hangar_git.remotes.bounded.MAX_PAYLOAD_BYTES`) can take, and its
    header (shape, chunk sizes, chunk table) against the same bound before
    anything is allocated for its chunks. Temporary files are removed on
    any failure.

    Parameters
    ----------
    remote : DataRemote
        Where they come from.
    writer : PackWriter
        The local store, which adopts each verified file at its next flush.
    digests : sequence of bytes
        The large payloads to fetch.
    report : TransferReport
        Counts what arrived; lists the ``refused`` and ``absent`` digests.
    progress : callable, optional
        ``progress(phase, done, total)``.
    limits : mapping of bytes to int, optional
        Most raw bytes each payload may hold.
    """
    tmp_dir = writer.store.large_dir / "tmp"
    for n, d in enumerate(digests):
        raw_limit = bounded.MAX_PAYLOAD_BYTES if limits is None else limits.get(d)
        if raw_limit is None:
            raw_limit = bounded.MAX_PAYLOAD_BYTES
        obj_limit = bounded.large_object_limit(raw_limit)
        if remote.large.get(d, -1) > obj_limit:
            report.refused.append(d)  # refused on its listed size: nothing read
            continue
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"fetch-{d.hex()}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            remote.store.get_file(_in_packs(object_name(d)), tmp, obj_limit)
        except FileNotFoundError:
            report.absent.append(d)
            continue
        except IntegrityError:
            report.refused.append(d)
            continue
        try:
            bounded.check_large_header(tmp, d, raw_limit)
            kind = chunked.verify_file(tmp, d)
            if kind_nbytes(kind) is None:
                raise IntegrityError(f"payload {d.hex()} has an unsupported kind {kind!r}")
        except IntegrityError:
            tmp.unlink(missing_ok=True)
            report.refused.append(d)
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            writer.adopt_large(tmp, d, kind)  # placed (renamed) by the writer's next flush
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        report.payloads += 1
        report.raw_bytes += kind_nbytes(kind) or 0
        if progress is not None:
            progress("large payloads", n + 1, len(digests))


__all__ = ["download", "in_listing", "object_name", "split_absent", "upload"]
