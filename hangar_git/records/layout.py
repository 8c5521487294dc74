"""Raw git tree encoding and the fan-out of sample records.

Trees are written and parsed here as raw git objects rather than through
``TreeBuilder``: one sample record is one gitlink entry (mode 160000) whose
20-byte id is the payload digest, and building thousands of them from bytes is
an order of magnitude cheaper than an API call per entry.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping

from ..errors import CorruptRecordError

MODE_TREE = b"40000"
MODE_BLOB = b"100644"
MODE_LINK = b"160000"

#: version of the record layout written in ``hangar.json`` of every commit;
#: 2 added the optional ``changes`` blob (see :mod:`hangar_git.records.changelog`)
FORMAT_VERSION = 2
FORMAT_BLOB = json.dumps({"hangar_git_format": FORMAT_VERSION}, sort_keys=True).encode()

_ENTRY_RE = re.compile(rb"(40000|100644|160000) ([^\x00/]+)\x00(.{20})", re.S)

#: a canonical encoded sample key (see :func:`hangar_git.naming.encode_key`)
_KEY = rb"(?:i:(?:0|[1-9][0-9]{0,199})|s:[A-Za-z0-9_.\-]{1,200})"

Entry = tuple[bytes, bytes]  # (mode, 20-byte id)


def _bad(why: str) -> CorruptRecordError:
    return CorruptRecordError(f"malformed git tree object: {why}")


def parse_tree(data: bytes) -> dict[str, Entry]:
    """Parse a raw git tree into ``{name: (mode, raw id)}``.

    Raises
    ------
    CorruptRecordError
        (a ValueError) unless every entry has a mode of the record layout
        (tree, blob, gitlink) and an ASCII name that is not ``.``, ``..`` or
        ``.git`` and holds no ``/``, in git's strict order (no duplicates).
    """
    out: dict[str, Entry] = {}
    pos = 0
    prev = b""
    for m in _ENTRY_RE.finditer(data):
        if m.start() != pos:
            raise _bad("an entry has another mode or a bad name")
        mode, raw = m.group(1), m.group(2)
        if raw[:1] == b"." and (raw in (b".", b"..") or raw.rstrip(b".").lower() == b".git"):
            raise _bad(f"reserved entry name {raw!r}")
        order = raw + b"/" if mode == MODE_TREE else raw
        if order <= prev:
            raise _bad("entries out of order or duplicated")
        prev = order
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise _bad(f"entry name {raw[:80]!r} is not ASCII") from None
        out[name] = (mode, m.group(3))
        pos = m.end()
    if pos != len(data):
        raise _bad("trailing bytes")
    return out


#: a gitlink entry with any name a tree may hold (names are checked apart)
_LINK_ANY_RE = re.compile(rb"160000 ([^\x00/]{1,202})\x00(.{20})", re.S)
#: NUL-separated canonical keys
_KEYS_RE = re.compile(_KEY + rb"(?:\x00" + _KEY + rb")*")
_ANY_ENTRY_RE = re.compile(rb"(\d+) ([^\x00]+)\x00.{20}", re.S)
_KEY_RE = re.compile(_KEY)


def canonical_keys(joined: bytes) -> bool:
    """True when ``joined`` is canonical encoded keys, NUL-separated (ASCII)."""
    return _KEYS_RE.fullmatch(joined) is not None


def _bad_links(data: bytes) -> CorruptRecordError:
    """The error for a leaf that is not all gitlinks named by canonical keys,
    naming the first offending entry when one can be told."""
    for m in _ANY_ENTRY_RE.finditer(data):
        mode, name = m.group(1), m.group(2)
        if mode != MODE_LINK:
            return CorruptRecordError(
                f"malformed sample record tree: entry {name[:80]!r} is not a gitlink"
            )
        if not _KEY_RE.fullmatch(name):
            shown = name[:80].decode("ascii", "backslashreplace")
            return CorruptRecordError(
                f"malformed sample record tree: {shown!r} is not a canonical key record"
            )
    return CorruptRecordError("malformed sample record tree")


def parse_links(data: bytes, checked: bool = True) -> dict[str, bytes]:
    """Parse a leaf tree of sample records into ``{encoded key: digest}``.

    With ``checked`` False (a leaf of a tree already checked or built on
    this machine), the structure is checked, not the names as keys nor
    their order (see :func:`parse_link_digests`).

    Raises
    ------
    CorruptRecordError
        Unless the tree holds only gitlinks named by canonical encoded keys,
        strictly sorted (so no key appears twice).
    """
    # entries are cut by the cheap pattern (any name up to its NUL), their
    # names then checked all at once: faster than matching each as a key
    pairs = _LINK_ANY_RE.findall(data)
    if not pairs:
        if data:
            raise _bad_links(data)
        return {}
    names, digests = zip(*pairs, strict=True)
    # the matches never overlap: they cover the whole tree only if it holds
    # nothing but gitlink entries, cut where git cuts them
    if sum(map(len, names)) + 28 * len(pairs) != len(data):
        raise _bad_links(data)
    joined = b"\x00".join(names)
    if not checked:
        pass  # checked when the tree was
    elif not _KEYS_RE.fullmatch(joined):  # some name is not a canonical key
        raise _bad_links(data)
    elif len(names) > 1 and not all(map(bytes.__lt__, names, names[1:])):
        raise CorruptRecordError("malformed sample record tree: keys out of order or duplicated")
    try:
        keys = joined.decode("ascii").split("\x00")
    except UnicodeDecodeError:  # only where the names were not checked
        raise _bad_links(data) from None
    return dict(zip(keys, digests, strict=True))


def trusted_link_runs(data: bytes) -> tuple[bytes, list[bytes]]:
    """``(names, digests)`` of a leaf of a tree checked or built here: its
    names NUL-joined (bytes), its digests in tree order. The structure is
    checked (CorruptRecordError as :func:`parse_links` raises), not the names
    as keys nor their order: they were checked when the tree was."""
    pairs = _LINK_ANY_RE.findall(data)
    names = [n for n, _ in pairs]
    if sum(map(len, names)) + 28 * len(pairs) != len(data) or not pairs:
        parse_links(data, checked=False)  # raises what is wrong
    return b"\x00".join(names), [d for _, d in pairs]


_LINKS_RE = re.compile(rb"(?:160000 " + _KEY + rb"\x00.{20})*", re.S)
_LINK_NAME_RE = re.compile(rb"160000 (" + _KEY + rb")\x00.{20}", re.S)
_LINK_DIGEST_RE = re.compile(rb"160000 " + _KEY + rb"\x00(.{20})", re.S)


def parse_link_pairs(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """``(names, digests)`` of a leaf tree of sample records, in tree order,
    names as bytes (no dict: cheaper than :func:`parse_links` when only the
    payloads are wanted; the same checks)."""
    if not _LINKS_RE.fullmatch(data):
        raise _bad_links(data)
    names = _LINK_NAME_RE.findall(data)
    if len(names) > 1 and not all(map(bytes.__lt__, names, names[1:])):
        raise CorruptRecordError("malformed sample record tree: keys out of order or duplicated")
    return names, _LINK_DIGEST_RE.findall(data)


def parse_link_digests(data: bytes) -> list[bytes]:
    """The digests of a leaf tree of sample records, in tree order: the
    structure is checked, not the order of the names (for trees already
    trusted; see :func:`parse_link_pairs`)."""
    if not _LINKS_RE.fullmatch(data):
        raise _bad_links(data)
    return _LINK_DIGEST_RE.findall(data)


def serialize_tree(entries: Mapping[str, Entry]) -> bytes:
    """Serialize ``{name: (mode, raw id)}`` in git's canonical entry order."""

    def sort_key(item: tuple[str, Entry]) -> bytes:
        name, (mode, _) = item
        b = name.encode()
        return b + b"/" if mode == MODE_TREE else b

    parts = []
    for name, (mode, oid) in sorted(entries.items(), key=sort_key):
        parts.append(mode + b" " + name.encode() + b"\x00" + oid)
    return b"".join(parts)


def serialize_links(links: Mapping[str, bytes]) -> bytes:
    """Serialize a leaf tree of gitlinks ``{encoded key: digest}``."""
    # encoded keys are ASCII: str order is git's byte order
    return b"".join([b"160000 " + k.encode() + b"\x00" + links[k] for k in sorted(links)])


# --------------------------------------------------------------------------
# fan-out: where a sample record lives below ``samples/``
# --------------------------------------------------------------------------
Fanout = tuple[int, ...]  # hex digits per level, () is flat

#: (upper bound of sample count, fan-out) in increasing order
_FANOUT_STEPS: tuple[tuple[int, Fanout], ...] = (
    (1_024, ()),
    (262_144, (2,)),
    (4_194_304, (2, 1)),
    (1 << 62, (2, 2)),
)


def key_hash_hex(enc_key: str) -> str:
    """Eight hex digits of a stable hash of an encoded key."""
    return f"{zlib.crc32(enc_key.encode()):08x}"


#: hex names of every value of 1 to 4 hex digits
class _HexNames(dict[int, list[str]]):
    """Hex names of every value of 1 to 4 digits, made on first use (the
    widest take tens of milliseconds: not a cost of every import)."""

    def __missing__(self, width: int) -> list[str]:
        if width not in (1, 2, 3, 4):
            raise KeyError(width)
        names = self[width] = [f"{i:0{width}x}" for i in range(16**width)]
        return names

    def __contains__(self, width: object) -> bool:
        return width in (1, 2, 3, 4)


HEX_NAMES = _HexNames()
_HEX = HEX_NAMES


def leaf_path(enc_key: str, fanout: Fanout) -> tuple[str, ...]:
    """The fan-out directory names leading to the leaf holding ``enc_key``.

    Level ``i`` is named by the next ``fanout[i]`` hex digits of
    :func:`key_hash_hex`.
    """
    if not fanout:
        return ()
    c = zlib.crc32(enc_key.encode())
    if len(fanout) == 1 and fanout[0] in _HEX:
        w = fanout[0]
        return (_HEX[w][c >> (32 - 4 * w)],)
    if fanout == (2, 1):  # the layout of 262,144 to 4,194,304 samples
        return (_HEX[2][c >> 24], _HEX[1][(c >> 20) & 0xF])
    if fanout == (2, 2):
        return (_HEX[2][c >> 24], _HEX[2][(c >> 16) & 0xFF])
    h = f"{c:08x}"
    out = []
    pos = 0
    for width in fanout:
        out.append(h[pos : pos + width])
        pos += width
    return tuple(out)


def choose_fanout(count: int, current: Fanout | None) -> Fanout:
    """The fan-out for ``count`` samples, with hysteresis around thresholds.

    A layout grows when the count passes a step's bound and only shrinks when
    it falls under a quarter of the bound below, so adding and removing a few
    samples around a threshold does not rewrite the arrayset's whole tree.
    """
    target = next(f for bound, f in _FANOUT_STEPS if count <= bound)
    if current is None or current == target:
        return target
    order = [f for _, f in _FANOUT_STEPS]
    if current not in order:
        return target
    ci, ti = order.index(current), order.index(target)
    if ti > ci:
        return target
    lower_bound = _FANOUT_STEPS[ti][0]
    return target if count < lower_bound // 4 else current


def fanout_of_names(names: Iterable[str]) -> int | None:
    """Width of a fan-out level from its entry names, None for leaf entries."""
    for name in names:
        if ":" in name:
            return None
        return len(name)
    return None
