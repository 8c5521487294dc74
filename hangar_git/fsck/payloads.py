"""fsck's checks of the payload store: each payload once, then the store as a whole.

:func:`check_payloads` verifies the payloads records name (index row, block
checksum, digest, and the schemas of the arraysets that hold them);
:func:`check_store` the index file and every payload nobody names (a full
check); :func:`leftover_large_files` lists what killed writers left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import IntegrityError, first_line
from ..records.leaves import RecordWalker
from ..records.validate import kind_fits
from ..schema import ArraysetSchema
from ..store.chunked import LargeFiles
from .report import Progress

if TYPE_CHECKING:
    from ..store import Location, PackReader


class PayloadSchemas:
    """The schema blobs that name each payload: a payload must fit each one.

    Parameters
    ----------
    walker : RecordWalker
        Reads (once) the schemas noted.
    """

    def __init__(self, walker: RecordWalker) -> None:
        self.walker = walker
        self._first: dict[bytes, bytes] = {}  # digest -> a schema blob naming it
        self._more: dict[bytes, set[bytes]] = {}  # digest -> the other ones

    def note(self, digest: bytes, schema: bytes) -> None:
        """Record that an arrayset of schema blob ``schema`` names ``digest``.

        Parameters
        ----------
        digest : bytes
            A payload digest.
        schema : bytes
            Raw id of the schema blob of an arrayset naming it.
        """
        have = self._first.get(digest)
        if have is None:
            self._first[digest] = schema
        elif have != schema:
            self._more.setdefault(digest, set()).add(schema)

    def __contains__(self, digest: object) -> bool:
        return digest in self._first

    def digests(self) -> list[bytes]:
        """Every payload noted.

        Returns
        -------
        list of bytes
            In the order first noted.
        """
        return list(self._first)

    def fits(self, digest: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
        """Whether a payload of ``dtype`` and ``shape`` fits every schema
        noted for ``digest``.

        Parameters
        ----------
        digest : bytes
            The payload's digest.
        dtype : numpy.dtype
            Its dtype, as read.
        shape : tuple of int
            Its shape, as read.

        Returns
        -------
        bool
            False when a readable schema does not allow it (unreadable ones
            are reported as damaged records, not here).
        """
        first = self._first.get(digest)
        for oid in (*((first,) if first is not None else ()), *self._more.get(digest, ())):
            schema = self.walker.schema(oid)
            if isinstance(schema, ArraysetSchema) and not kind_fits(schema, dtype, shape):
                return False
        return True


def check_payloads(
    reader: PackReader,
    digests: list[bytes],
    schemas: PayloadSchemas,
    progress: Progress | None,
) -> tuple[dict[bytes, str], set[bytes]]:
    """Verify payloads ``digests``, each once, in pack order.

    Parameters
    ----------
    reader : PackReader
        A reader of the local store.
    digests : list of bytes
        The payloads to verify.
    schemas : PayloadSchemas
        The schemas each payload must fit.
    progress : callable or None
        Called as ``progress("payloads", done, total)``.

    Returns
    -------
    tuple of (dict of bytes to str, set of bytes)
        ``({digest: problem}, digests absent from the store)``.
    """
    problems: dict[bytes, str] = {}
    locs: dict[bytes, Location] = {}
    step = 900
    for i in range(0, len(digests), step):
        part = digests[i : i + step]
        try:
            locs.update(reader.locate_many(part))
        except IntegrityError:  # a damaged index page: find exactly which rows
            for d in part:
                try:
                    loc = reader.locate(d)
                except IntegrityError as exc:
                    problems[d] = str(exc)
                    continue
                if loc is not None:
                    locs[d] = loc
    for d in digests:
        if d in reader.bad_rows:
            problems[d] = reader.bad_rows[d]
    absent = {d for d in digests if d not in locs and d not in problems}
    order = sorted(locs, key=lambda d: (locs[d].pack, locs[d].boff, locs[d].ioff))
    total = len(order)
    for n, d in enumerate(order):
        loc = locs[d]
        try:
            arr = reader.read(loc, d)
        except IntegrityError as exc:
            problems[d] = str(exc)
        except Exception as exc:  # a malformed row that slipped past its check
            problems[d] = f"payload cannot be read: {first_line(exc)}"
        else:
            if not schemas.fits(d, arr.dtype, arr.shape):
                problems[d] = (
                    f"payload of dtype {arr.dtype} and shape {arr.shape} "
                    f"does not fit its arrayset schema"
                )
        if progress is not None and (n % 1024 == 0 or n + 1 == total):
            progress("payloads", n + 1, total)
    return problems, absent


def check_store(reader: PackReader, referenced: set[bytes], progress: Progress | None) -> list[str]:
    """Damage anywhere in the store: the index file, and unreferenced payloads.

    Parameters
    ----------
    reader : PackReader
        A reader of the local store.
    referenced : set of bytes
        Payloads verified already (by :func:`check_payloads`).
    progress : callable or None
        Called as ``progress("unreferenced payloads", done, total)``.

    Returns
    -------
    list of str
        One line per problem.
    """
    out: list[str] = []
    index = reader.store.index_path
    try:
        rows = list(reader.all_locations())
    except IntegrityError as exc:
        return [str(exc)]
    out.extend(reader.damaged_segments.values())
    try:
        from ..store.durable import connect_readonly

        con = connect_readonly(index)  # works on a read-only mount too
        try:
            res = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
        if res != ["ok"]:
            out.extend(f"payload index {index}: {r}" for r in res[:20])
    except Exception as exc:
        out.append(f"payload index {index} cannot be checked: {first_line(exc)}")
    extra = [(d, loc) for d, loc in rows if d not in referenced]
    for d, loc in extra:
        if loc is None:
            out.append(f"unreferenced payload {d.hex()}: {reader.bad_rows.get(d, 'bad row')}")
    good = sorted(
        ((d, loc) for d, loc in extra if loc is not None),
        key=lambda t: (t[1].pack, t[1].boff, t[1].ioff),
    )
    for n, (d, loc) in enumerate(good):
        try:
            reader.read(loc, d)
        except Exception as exc:
            out.append(f"unreferenced payload {d.hex()}: {first_line(exc)}")
        if progress is not None and (n % 1024 == 0 or n + 1 == len(good)):
            progress("unreferenced payloads", n + 1, len(good))
    return out


def leftover_large_files(reader: PackReader) -> list[str]:
    """Large payload files no index entry names, and temporary ones.

    The directory is listed before the index is read, so a file a writer
    places and indexes meanwhile is not reported; one placed but not yet
    indexed while fsck runs is (run fsck with no writer active for a
    definite answer). Nothing is reported when the index cannot be listed
    whole (damaged rows or segments): every file might be named there.

    Parameters
    ----------
    reader : PackReader
        A reader of the local store.

    Returns
    -------
    list of str
        One warning per file.
    """
    files = LargeFiles(reader.store.large_dir)
    on_disk = files.numbers()
    try:
        temporary = sorted(p for p in files.tmp_dir.iterdir() if p.is_file())
    except (FileNotFoundError, NotADirectoryError):
        temporary = []
    out = [
        f"temporary large payload file {p} (left by a killed writer, or being "
        "written now); the next writer or `git hangar gc` removes it"
        for p in temporary
    ]
    if not on_disk:
        return out
    named: set[int] = set()
    try:
        for _, loc in reader.all_locations():
            if loc is None:
                return out
            if loc.is_large:
                named.add(loc.boff)
    except IntegrityError:
        return out
    if reader.damaged_segments:
        return out
    out.extend(
        f"large payload file {files.path(n)} ({size} bytes) is named by no index "
        "entry (left by a killed writer); `git hangar gc` removes it"
        for n, size in sorted(on_disk.items())
        if n not in named
    )
    return out


__all__ = ["PayloadSchemas", "check_payloads", "check_store", "leftover_large_files"]
