"""What a data remote holds, by name: the bottom of the data-remote layer.

Every module of the layer agrees on these names and checks, and this module
imports none of them. The layout under a data remote's root::

    hangar-data.json         {"hangar_git_data_format": 1}   (:data:`MARKER`)
    packs/<id>.pack          blocks of compressed payloads   (:mod:`.packformat`)
    packs/<id>.idx           the pack's index
    packs/<digest>.hgc       a large payload, an object of its own (:mod:`.large`)

The layers above, from the bottom: :mod:`.bounded` (reads of sizes and
bytes that come from outside), :mod:`.backends` (the objects of a remote:
a local folder, any fsspec filesystem), :mod:`.packformat` with
:mod:`.packbuilder` and :mod:`.lookup` (the remote pack format),
:mod:`.data_remote` (packs on a backend), :mod:`.large` (large payloads),
and :mod:`.transfer` (which payloads a push or fetch moves).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..store.chunked import SUFFIX as LARGE_SUFFIX
from ..store.digest import parse_kind

#: version of the data remote's format (pack format and layout); never changes once released
FORMAT_VERSION = 1
#: the format marker at the root
MARKER = "hangar-data.json"
#: the folder (prefix) of packs, their indexes and large payload objects
PACKS = "packs"

#: ``{object name: size}`` of a listing (-1: a size the backend does not give)
Listing = Mapping[str, int]

_ALLOWED_DTYPE_KINDS = frozenset("biufc")
_KIND_CHECKS: dict[str, int | None] = {}


def pack_object(pack_id: str) -> str:
    """Name (under :data:`PACKS`) of the body of pack ``pack_id``."""
    return f"{pack_id}.pack"


def index_object(pack_id: str) -> str:
    """Name (under :data:`PACKS`) of the index of pack ``pack_id``."""
    return f"{pack_id}.idx"


def large_object(digest: bytes) -> str:
    """Name (under :data:`PACKS`) of the object holding large payload ``digest``."""
    return f"{digest.hex()}{LARGE_SUFFIX}"


def large_in_listing(listing: Listing) -> dict[bytes, int]:
    """``{digest: object size}`` of the large payload objects in a ``packs/`` listing.

    Parameters
    ----------
    listing : mapping of str to int
        ``{name: size}`` of the objects under :data:`PACKS`.

    Returns
    -------
    dict of bytes to int
        One entry per ``<40 hex digits>.hgc`` name; other names are ignored.
    """
    out: dict[bytes, int] = {}
    for name, size in listing.items():
        if name.endswith(LARGE_SUFFIX) and len(name) == 40 + len(LARGE_SUFFIX):
            try:
                out[bytes.fromhex(name[:40])] = size
            except ValueError:
                continue
    return out


def landed(listing: Listing, name: str, size: int) -> bool:
    """True when ``name`` is listed with ``size`` bytes (or a size the backend does not give).

    Parameters
    ----------
    listing : mapping of str to int
        ``{name: size}``, sizes -1 when unknown.
    name : str
        The object.
    size : int
        The size it must have.
    """
    listed = listing.get(name)
    return listed is not None and (listed == size or listed < 0)


def kind_nbytes(kind: str) -> int | None:
    """Bytes of one array of ``kind``, None unless it is a plain numeric array.

    Refused: object, structured, string and other non-numeric dtypes, and
    headers that do not parse.

    Parameters
    ----------
    kind : str
        A payload kind header (``'<dtype>|<shape>'``).

    Returns
    -------
    int or None
        The array's size in bytes, or None when the kind is refused.
    """
    try:
        return _KIND_CHECKS[kind]
    except KeyError:
        pass
    out: int | None
    try:
        dtype, shape = parse_kind(kind)
        if dtype.kind not in _ALLOWED_DTYPE_KINDS or dtype.hasobject or dtype.fields:
            out = None
        else:
            out = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except (TypeError, ValueError):
        out = None
    if len(_KIND_CHECKS) < 4096:
        _KIND_CHECKS[kind] = out
    return out


def check_kind(kind: str, nbytes: int) -> bool:
    """True when ``kind`` is a plain numeric array of exactly ``nbytes`` bytes."""
    n = kind_nbytes(kind)
    return n is not None and n == nbytes


__all__ = [
    "FORMAT_VERSION",
    "LARGE_SUFFIX",
    "MARKER",
    "PACKS",
    "Listing",
    "check_kind",
    "index_object",
    "kind_nbytes",
    "landed",
    "large_in_listing",
    "large_object",
    "pack_object",
]
