"""Lines of the staging journal that stage many samples: ``B`` and ``Y``.

A ``B`` line sets samples of one arrayset, a key and a hex digest each
(written by the key-by-key path, and by bulk adds before ``Y`` lines); a
``Y`` line stages the distinct samples of a bulk add in columns
(:func:`y_line`). :mod:`.staging` frames them (CRC, batches) and replays
them. No numpy at the top: ``git hangar status`` reads journals without it
(a ``Y`` line imports it when replayed).
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Sequence

from ..store.digest_run import Digests, joined_digests
from .keynames import KeyNames

#: a journal line to write: its bytes, or them in parts
_Line = bytes | tuple[bytes | memoryview, ...]


def b_line(aset: str, encs: Sequence[str], digests: Sequence[bytes]) -> str:
    """The ``B`` line setting samples ``encs`` of ``aset`` to ``digests``,
    formatted in one pass (the digests hexed together, a tab after each).

    Parameters
    ----------
    aset : str
        The arrayset.
    encs : sequence of str
        Encoded keys.
    digests : sequence of bytes
        ``digests[i]`` is the payload of ``encs[i]``.

    Returns
    -------
    str
        The line, its CRC-32 and newline included.
    """
    joined = joined_digests(digests)
    fields: list[str] = [""] * (2 * len(encs))
    fields[::2] = encs
    if encs and len(joined) == 20 * len(encs):
        fields[1::2] = joined.hex("\t", 20).split("\t")
    else:  # not all of 20 bytes (never made so, but the line must stay true)
        fields[1::2] = [d.hex() for d in digests]
    body = f"B\t{aset}\t" + "\t".join(fields)
    return f"{body}\t{zlib.crc32(body.encode()):08x}\n"


def y_line(aset: str, names: KeyNames, digests: Sequence[bytes]) -> _Line:
    """The ``Y`` line staging the distinct samples ``names[i]`` of ``aset`` as
    ``digests[i]`` (the bulk path): ``Y <aset> <names> <digests>``, the
    digests joined in base64, the names as ``r<start>,<step>`` (int keys
    ``start + k * step``: a range) or ``s<width>,`` and the NUL-padded
    names of that width joined in base64. Columns, not a name and a hex
    digest per sample (as a ``B`` line): at 300,000 int keys 0.55x the
    bytes, and about a third of the CPU. Given in parts (no joined copy).

    Parameters
    ----------
    aset : str
        The arrayset.
    names : KeyNames
        Distinct encoded keys.
    digests : sequence of bytes
        ``digests[i]`` is the payload of ``names[i]``.

    Returns
    -------
    bytes or tuple of bytes-like
        The line (a ``B`` line when the digests are not all of 20 bytes), in
        parts to write one after the other.
    """
    joined = joined_digests(digests)
    n = len(names)
    if not n or len(joined) != 20 * n:
        return b_line(aset, names.tolist(), digests).encode()
    head = f"Y\t{aset}\t{_y_names(names)}\t".encode()
    body = binascii.b2a_base64(joined, newline=False)
    return (head, body, b"\t%08x\n" % zlib.crc32(body, zlib.crc32(head)))


def _y_names(names: KeyNames) -> str:
    """The names column of a ``Y`` line (see :func:`y_line`)."""
    import numpy as np  # not at the top: ``git hangar status`` reads journals without it

    ints = names.ints
    if ints is not None and len(ints):
        start = int(ints[0])
        step = int(ints[1]) - start if len(ints) > 1 else 1
        if start >= 0 and step > 0 and (len(ints) == 1 or bool((np.diff(ints) == step).all())):
            return f"r{start},{step}"
    raw = np.ascontiguousarray(names.names).tobytes()
    return f"s{names.names.dtype.itemsize}," + binascii.b2a_base64(raw, newline=False).decode()


def y_run(field: str, digests: str) -> tuple[KeyNames, Sequence[bytes]]:
    """The names and digests of the columns of a ``Y`` line, checked.

    Parameters
    ----------
    field : str
        The names column (see :func:`y_line`).
    digests : str
        The digests column.

    Returns
    -------
    names : KeyNames
    digests : Digests

    Raises
    ------
    RuntimeError
        The columns are not whole digests with one distinct name each (int
        keys within their bound).
    """
    import numpy as np

    from ..naming import INT_KEY_BOUND
    from .keynames import int_key_names

    bad = RuntimeError("malformed staging journal entry 'Y'")
    try:
        joined = binascii.a2b_base64(digests, strict_mode=True)
        ds = Digests(joined)
        n = len(ds)
        kind, rest = field[:1], field[1:]
        if kind == "r":
            start, step = map(int, rest.split(","))
            top = min(INT_KEY_BOUND, 1 << 63)  # (int64)
            if not n or start < 0 or step <= 0 or start + step * (n - 1) >= top:
                raise bad
            names = int_key_names(np.arange(n, dtype=np.int64) * step + start)
        elif kind == "s":
            width, _, b64 = rest.partition(",")
            arr = np.frombuffer(binascii.a2b_base64(b64, strict_mode=True), f"S{int(width)}")
            names = KeyNames(arr)
            ordered = np.sort(arr)
            if len(arr) != n or not n or (ordered[1:] == ordered[:-1]).any() or not ordered[0]:
                raise bad
        else:
            raise bad
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise bad from None
    return names, ds


__all__ = ["b_line", "y_line", "y_run"]
