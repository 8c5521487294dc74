"""The one layer every record read from git passes through.

Records come from git objects, and git objects come from anyone: a fetched
branch, a pushed commit, a hand-made tree. Before anything uses them, each
node of a record tree is checked here against the record grammar:

- every object has the type its place asks for (a tree where a tree
  belongs, a blob where a blob belongs), and blobs have a size bounded by
  what their place can legitimately hold, checked from the object header
  before a byte of them is inflated;
- tree entries have only the modes of the layout (trees, blobs, gitlinks),
  ASCII names that git sorts strictly (no duplicates), and never ``''``,
  ``.``, ``..``, ``.git`` or a ``/``;
- the root holds ``hangar.json`` (a record format this version reads),
  ``arraysets``, ``metadata`` and ``changes`` only; an arrayset holds a
  ``schema`` and ``samples``, under a valid arrayset name;
- schemas are canonical JSON of a supported dtype and a shape within
  :data:`~hangar_git.schema.MAX_RANK` and :data:`~hangar_git.schema.MAX_SAMPLE_BYTES`;
- sample and metadata keys are canonical encodings (``i:7``, never ``i:07``,
  ``i: 7`` or ``i:-5``; ``s:name`` with a valid name), fan-out levels are
  lowercase hex names of one width at every level, at most
  :data:`MAX_FANOUT_DEPTH` deep, and every key sits in the leaf its hash
  names (so a key cannot appear twice);
- a payload read for a sample has the dtype and a shape its schema allows
  (a partial read of a chunked payload checks the kind its store entry
  states, once, before a chunk is read: :func:`check_kind`).

Anything else raises :class:`~hangar_git.errors.CorruptRecordError`.

Whole trees are checked by :func:`ensure_trusted` before a diff or merge
uses them, relative to trees already trusted (cost: the difference, as
for the diff itself); the verdict is remembered on this machine
(:mod:`.trust`), and trees this process builds are trusted as written.
Lazy readers (:mod:`.snapshot`) call the node checks as they parse;
counting the samples of an untrusted arrayset checks every leaf
(:func:`leaf_count`), and the count is then kept as a verdict on that
samples tree (:mod:`.counts`).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pygit2
from pygit2.enums import ObjectType

from ..errors import CorruptRecordError, FormatVersionError
from ..gitutil import odb_read, odb_read_header
from ..naming import MAX_NAME_LEN, check_arrayset_name
from ..schema import ArraysetSchema
from . import counts, trust
from .layout import (
    FORMAT_VERSION,
    MODE_BLOB,
    MODE_LINK,
    MODE_TREE,
    Entry,
    Fanout,
    parse_link_pairs,
    parse_links,
    parse_tree,
)

if TYPE_CHECKING:
    import numpy as np

#: largest ``hangar.json`` blob accepted
MAX_FORMAT_BYTES = 1024
#: largest schema blob accepted (a rank-31 shape of 19-digit dims fits)
MAX_SCHEMA_BYTES = 4096
#: largest metadata value, in bytes (values are short labels: see
#: :mod:`hangar_git.metadata`)
MAX_META_VALUE = 1 << 20
#: deepest fan-out of a samples tree (the layouts written use at most 2)
MAX_FANOUT_DEPTH = 4
#: the hex digits of the key hash the fan-out levels may use, in all
_HASH_DIGITS = 8

_INT_KEY = rb"i:(?:0|[1-9][0-9]{0,%d})" % (MAX_NAME_LEN - 1)
_STR_KEY = rb"s:[A-Za-z0-9_.\-]{1,%d}" % MAX_NAME_LEN
#: a canonical encoded key, as :func:`hangar_git.naming.encode_key` writes it
KEY_RE = re.compile(rb"(?:%s|%s)" % (_INT_KEY, _STR_KEY))
_KEY_TEXT_RE = re.compile(KEY_RE.pattern.decode())
_HEX_RE = {w: re.compile(rb"(?:40000 [0-9a-f]{%d}\x00.{20})+" % w, re.S) for w in (1, 2, 3, 4)}

_ROOT_ENTRIES = {
    "hangar.json": MODE_BLOB,
    "arraysets": MODE_TREE,
    "metadata": MODE_TREE,
    "changes": MODE_BLOB,
}
_ASET_ENTRIES = {"schema": MODE_BLOB, "samples": MODE_TREE}


def corrupt(message: str) -> CorruptRecordError:
    """The error for hostile or malformed records."""
    return CorruptRecordError(f"corrupt records: {message}")


def _oid(oid: bytes | str | pygit2.Oid) -> pygit2.Oid:
    if isinstance(oid, bytes):
        return pygit2.Oid(raw=oid)
    if isinstance(oid, str):
        return pygit2.Oid(hex=oid)
    return oid


def read_object(
    repo: pygit2.Repository,
    oid: bytes | str | pygit2.Oid,
    kind: ObjectType,
    what: str,
    max_size: int | None = None,
) -> bytes:
    """Raw data of object ``oid``, which must be of type ``kind`` (and at most
    ``max_size`` bytes, checked from its header before it is inflated).

    Raises
    ------
    CorruptRecordError
        If the object is missing, of another type or too large.
    """
    o = _oid(oid)
    try:
        if max_size is not None:
            t, size = odb_read_header(repo, o)
            if t != kind:
                raise corrupt(f"{what}: {o} is a {_type_name(t)}, not a {_type_name(kind)}")
            if size > max_size:
                raise corrupt(f"{what}: {o} holds {size} bytes, more than {max_size} allowed")
        t, data = odb_read(repo, o)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        if isinstance(exc, CorruptRecordError):
            raise
        raise corrupt(f"{what}: object {o} is missing ({exc})") from None
    if t != kind:
        raise corrupt(f"{what}: {o} is a {_type_name(t)}, not a {_type_name(kind)}")
    return data


def _type_name(t: object) -> str:
    names = {ObjectType.TREE: "tree", ObjectType.BLOB: "blob", ObjectType.COMMIT: "commit"}
    return names.get(t, "tag" if t == ObjectType.TAG else str(t))  # type: ignore[call-overload]


def read_tree(repo: pygit2.Repository, oid: bytes, what: str) -> bytes:
    """Raw data of tree ``oid``."""
    return read_object(repo, oid, ObjectType.TREE, what)


def commit_of(repo: pygit2.Repository, sha: str, what: str = "commit") -> pygit2.Commit:
    """Commit ``sha``; CorruptRecordError when it is missing or another object."""
    try:
        obj = repo.get(sha)
    except (KeyError, ValueError, pygit2.GitError):
        obj = None
    if obj is None:
        raise corrupt(f"{what} {sha} is missing")
    if not isinstance(obj, pygit2.Commit):
        raise corrupt(f"{what} {sha} is a {_type_name(obj.type)}, not a commit")
    try:
        repo.odb.read_header(obj.tree_id)
    except (KeyError, ValueError, pygit2.GitError):
        raise corrupt(f"{what} {sha}: its tree {obj.tree_id} is missing") from None
    return obj


# --------------------------------------------------------------------------
# nodes
# --------------------------------------------------------------------------
def _entries(raw: bytes, what: str) -> dict[str, Entry]:
    try:
        return parse_tree(raw)
    except CorruptRecordError as exc:
        raise corrupt(f"{what}: {exc}") from None


def _only(entries: dict[str, Entry], allowed: dict[str, bytes], what: str) -> None:
    for name, (mode, _) in entries.items():
        want = allowed.get(name)
        if want is None:
            raise corrupt(f"{what}: unexpected entry {name!r}")
        if mode != want:
            raise corrupt(f"{what}: entry {name!r} has mode {mode.decode()}")


def check_format_blob(data: bytes) -> int:
    """The record format of a ``hangar.json`` blob.

    Raises
    ------
    FormatVersionError
        If it is newer than this version reads.
    CorruptRecordError
        If it is not ``{"hangar_git_format": <int >= 1>}``.
    """
    try:
        doc = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise corrupt("hangar.json is not ASCII JSON") from None
    version = doc.get("hangar_git_format") if isinstance(doc, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise corrupt(f"hangar.json declares no valid format version: {data[:80]!r}")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"records written in format {version!r}, newer than this hangar-git "
            f"understands ({FORMAT_VERSION}); upgrade hangar-git"
        )
    return version


def root_entries(repo: pygit2.Repository, tree: bytes) -> dict[str, Entry]:
    """The checked entries of a commit's root tree (its format version too)."""
    root = _entries(read_tree(repo, tree, "root tree"), "root tree")
    fmt = root.get("hangar.json")
    if fmt is None:
        raise FormatVersionError("commit tree has no hangar.json: not a hangar data commit")
    _only(root, _ROOT_ENTRIES, "root tree")
    check_format_blob(read_object(repo, fmt[1], ObjectType.BLOB, "hangar.json", MAX_FORMAT_BYTES))
    return root


def arrayset_entries(raw: bytes) -> dict[str, Entry]:
    """The checked entries of an ``arraysets`` tree."""
    entries = _entries(raw, "arraysets tree")
    for name, (mode, _) in entries.items():
        try:
            check_arrayset_name(name)
        except ValueError:
            raise corrupt(f"invalid arrayset name {name!r}") from None
        if mode != MODE_TREE:
            raise corrupt(f"arrayset {name!r} is not a tree")
    return entries


def arrayset_tree(raw: bytes, name: str) -> dict[str, Entry]:
    """The checked entries of one arrayset's tree."""
    entries = _entries(raw, f"arrayset {name!r}")
    _only(entries, _ASET_ENTRIES, f"arrayset {name!r}")
    if "schema" not in entries:
        raise corrupt(f"arrayset {name!r} has no schema")
    return entries


def schema_text(repo: pygit2.Repository, oid: bytes, name: str) -> str:
    """The checked schema blob of arrayset ``name`` (canonical JSON)."""
    data = read_object(repo, oid, ObjectType.BLOB, f"schema of {name!r}", MAX_SCHEMA_BYTES)
    return parse_schema(data, name).to_json()


def parse_schema(data: bytes, name: str) -> ArraysetSchema:
    """A schema blob as an :class:`ArraysetSchema`; CorruptRecordError unless
    it is the canonical text of a valid schema."""
    try:
        text = data.decode("ascii")
        doc = json.loads(text)
        if not isinstance(doc, dict) or set(doc) != {
            "dtype",
            "named_samples",
            "shape",
            "variable_shape",
        }:
            raise ValueError("unexpected fields")
        for f in ("named_samples", "variable_shape"):
            if not isinstance(doc[f], bool):
                raise ValueError(f"{f} is not a bool")
        if not isinstance(doc["dtype"], str) or not isinstance(doc["shape"], list):
            raise ValueError("bad dtype or shape")
        schema = ArraysetSchema.from_json(text)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise corrupt(f"schema of arrayset {name!r} is invalid: {exc}") from None
    if schema.to_json() != text:
        raise corrupt(f"schema of arrayset {name!r} is not in canonical form")
    return schema


def check_key(enc: str, what: str = "sample") -> str:
    """``enc`` if it is a canonical encoded key, else CorruptRecordError."""
    if not _KEY_TEXT_RE.fullmatch(enc):
        raise corrupt(f"invalid {what} key record {enc[:80]!r}")
    return enc


def metadata_entries(raw: bytes) -> dict[str, Entry]:
    """The checked entries of a ``metadata`` tree (values are not read)."""
    entries = _entries(raw, "metadata tree")
    for enc, (mode, _) in entries.items():
        check_key(enc, "metadata")
        if mode != MODE_BLOB:
            raise corrupt(f"metadata {enc!r} is not a blob")
    return entries


def metadata_value(repo: pygit2.Repository, oid: bytes, enc: str) -> str:
    """One metadata value, refused when larger than :data:`MAX_META_VALUE`
    (checked before it is read) or not ASCII."""
    data = read_object(repo, oid, ObjectType.BLOB, f"metadata {enc!r}", MAX_META_VALUE)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise corrupt(f"metadata {enc!r} is not ASCII") from None


def fan_width(raw: bytes, what: str = "samples tree") -> int | None:
    """The width of a fan-out level (None when ``raw`` is a leaf of records);
    CorruptRecordError when it is neither."""
    if not raw:
        raise corrupt(f"{what}: empty tree")
    if raw.startswith(MODE_LINK + b" "):
        return None
    nul = raw.find(b"\x00")
    width = nul - len(MODE_TREE) - 1
    if raw.startswith(MODE_TREE + b" ") and width in _HEX_RE:
        return width
    raise corrupt(f"{what}: neither a fan-out level nor a leaf of sample records")


def fan_entries(raw: bytes, width: int, what: str = "samples tree") -> dict[str, Entry]:
    """The checked entries of a fan-out level of ``width`` hex digits."""
    pat = _HEX_RE.get(width)
    if pat is None or not pat.fullmatch(raw):
        raise corrupt(f"{what}: malformed fan-out level (want {width}-digit hex subtrees)")
    return _entries(raw, what)


def check_fanout(fanout: Sequence[int]) -> None:
    """CorruptRecordError unless ``fanout`` is a layout this version reads."""
    if len(fanout) > MAX_FANOUT_DEPTH or sum(fanout) > _HASH_DIGITS:
        raise corrupt(f"samples tree nested too deep (fan-out {tuple(fanout)[:8]}...)")


def check_placement(
    names: Iterable[str] | Sequence[bytes], fanout: Fanout, path: tuple[str, ...]
) -> None:
    """CorruptRecordError unless every key of a leaf (names as str or bytes)
    lies where its hash puts it."""
    import numpy as np

    if not fanout:
        return
    seq: list[Any] = list(names)
    if not seq:
        raise corrupt(f"samples tree: empty leaf {'/'.join(path)}")
    bits = 4 * sum(fanout)
    want = int("".join(path), 16)
    raw: Iterable[bytes] = seq if isinstance(seq[0], bytes) else map(str.encode, seq)
    h = np.fromiter(map(zlib.crc32, raw), np.uint32, len(seq))
    if ((h >> np.uint32(32 - bits)) != want).any():
        raise corrupt(f"samples tree: a key of leaf {'/'.join(path)} does not belong there")


def leaf_links(raw: bytes, fanout: Fanout = (), path: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The checked ``{encoded key: digest}`` of a leaf of sample records."""
    try:
        links = parse_links(raw)
    except CorruptRecordError:
        raise
    except ValueError as exc:
        raise corrupt(str(exc)) from None
    check_placement(links, fanout, path)
    return links


def leaf_digests(raw: bytes, fanout: Fanout = (), path: tuple[str, ...] = ()) -> list[bytes]:
    """The digests of a leaf of sample records in tree order, with the checks
    of :func:`leaf_links`."""
    names, digests = parse_link_pairs(raw)
    check_placement(names, fanout, path)
    return digests


#: one sample record of a leaf, its name captured
_LINK_NAME_RE = re.compile(rb"160000 (" + KEY_RE.pattern + rb")\x00.{20}", re.S)


def leaf_count(raw: bytes, fanout: Fanout = (), path: tuple[str, ...] = ()) -> int:
    """The number of records of a leaf of sample records, with the checks of
    :func:`leaf_links` (names, modes, order, placement) but no dict built
    and no digest taken out: what counting an untrusted tree costs."""
    names: list[bytes] = _LINK_NAME_RE.findall(raw)
    # the matches never overlap: they cover the tree only if it holds nothing
    # but well-formed records (else parse_link_pairs names the bad entry)
    if sum(map(len, names)) + 28 * len(names) != len(raw):
        parse_link_pairs(raw)
        raise corrupt("malformed sample record tree")
    if len(names) > 1 and not all(map(bytes.__lt__, names, names[1:])):
        raise CorruptRecordError("malformed sample record tree: keys out of order or duplicated")
    check_placement(names, fanout, path)
    return len(names)


def kind_fits(schema: ArraysetSchema, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    """True when a payload of ``dtype`` and ``shape`` is one ``schema`` allows."""
    return dtype == schema.dtype and (
        shape == schema.shape
        or (
            schema.variable_shape
            and len(shape) == len(schema.shape)
            and all(0 < g <= m for g, m in zip(shape, schema.shape, strict=True))
        )
    )


def check_kind(
    schema: ArraysetSchema, dtype: np.dtype, shape: tuple[int, ...], aset: str, enc: str
) -> None:
    """CorruptRecordError unless a payload of ``dtype`` and ``shape`` (read, or
    stated by the store before it is read) fits ``schema``: a record pointing
    at the payload of another kind of sample."""
    if not kind_fits(schema, dtype, shape):
        raise corrupt(
            f"sample {aset}[{enc}] points at a payload of dtype {dtype} shape {shape}, "
            f"which its arrayset's schema ({schema.dtype}, {schema.shape}) does not allow"
        )


def check_payload(schema: ArraysetSchema, arr: np.ndarray, aset: str, enc: str) -> np.ndarray:
    """``arr`` if its kind fits ``schema``, else CorruptRecordError (a record
    pointing at the payload of another kind of sample)."""
    if arr.dtype == schema.dtype and arr.shape == schema.shape:  # the common case
        return arr
    check_kind(schema, arr.dtype, arr.shape, aset, enc)
    return arr


def check_payloads(schema: ArraysetSchema, arrays: list[np.ndarray], aset: str) -> list[np.ndarray]:
    """``arrays`` if each one's kind fits ``schema`` (see :func:`check_payload`)."""
    dt, shape = schema.dtype, schema.shape
    if not all(a.dtype == dt and a.shape == shape for a in arrays):
        for a in arrays:
            check_payload(schema, a, aset, "?")
    return arrays


# --------------------------------------------------------------------------
# whole trees, relative to trusted ones
# --------------------------------------------------------------------------
def _fanout_of(repo: pygit2.Repository, oid: bytes) -> Fanout:
    fan: list[int] = []
    raw = read_tree(repo, oid, "samples tree")
    while True:
        w = fan_width(raw)
        if w is None:
            return tuple(fan)
        fan.append(w)
        check_fanout(fan)
        first = fan_entries(raw, w)
        raw = read_tree(repo, next(iter(first.values()))[1], "samples tree")


def check_samples(
    repo: pygit2.Repository, oid: bytes, trusted: Sequence[bytes | None] = ()
) -> None:
    """Check a ``samples`` tree, skipping subtrees equal to a trusted tree's
    at the same place (trusted trees of the same layout only).

    A tree this machine has counted with every leaf checked (a checked count,
    see :mod:`.counts`) is not checked again; one checked whole here gets its
    checked count.
    """
    if counts.known_count(repo, oid, checked=True) is not None:
        return
    fanout = _fanout_of(repo, oid)
    same = [t for t in trusted if t is not None and _fanout_of(repo, t) == fanout]
    total = 0
    whole = True

    def walk(node: bytes, others: list[bytes | None], path: tuple[str, ...]) -> None:
        nonlocal total, whole
        if node in others:
            whole = False
            return
        raw = read_tree(repo, node, "samples tree")
        depth = len(path)
        if depth == len(fanout):
            if fan_width(raw) is not None:
                raise corrupt("samples tree: fan-out levels of unequal depth")
            total += leaf_count(raw, fanout, path)
            return
        entries = fan_entries(raw, fanout[depth])
        subs = [
            _entries(read_tree(repo, o, "samples tree"), "samples tree") if o else {}
            for o in others
        ]
        for name, (_, child) in entries.items():
            walk(child, [s[name][1] if name in s else None for s in subs], (*path, name))

    walk(oid, list(same), ())
    if whole:
        counts.remember_count(repo, oid, total, checked=True)


def check_root(repo: pygit2.Repository, tree: bytes, trusted: Sequence[bytes] = ()) -> None:
    """Check a whole commit tree, skipping what equals a trusted tree's."""
    root = root_entries(repo, tree)
    troots = [parse_tree(read_tree(repo, t, "root tree")) for t in trusted]
    meta = root.get("metadata")
    if meta is not None and meta[1] not in [r["metadata"][1] for r in troots if "metadata" in r]:
        for enc, (_, boid) in metadata_entries(read_tree(repo, meta[1], "metadata tree")).items():
            metadata_value(repo, boid, enc)
    asets = root.get("arraysets")
    if asets is None or asets[1] in [r["arraysets"][1] for r in troots if "arraysets" in r]:
        return
    tasets = [
        parse_tree(read_tree(repo, r["arraysets"][1], "arraysets tree"))
        for r in troots
        if "arraysets" in r
    ]
    for name, (_, aoid) in arrayset_entries(read_tree(repo, asets[1], "arraysets tree")).items():
        others = [t[name][1] for t in tasets if name in t]
        if aoid in others:
            continue
        entries = arrayset_tree(read_tree(repo, aoid, f"arrayset {name!r}"), name)
        schema_text(repo, entries["schema"][1], name)
        samples = entries.get("samples")
        if samples is not None:
            tsamples = []
            for o in others:
                te = parse_tree(read_tree(repo, o, f"arrayset {name!r}")).get("samples")
                tsamples.append(te[1] if te else None)
            check_samples(repo, samples[1], tsamples)


def ensure_trusted(repo: pygit2.Repository, trees: Iterable[bytes | None]) -> None:
    """Check every one of ``trees`` (commit root trees) not yet trusted on this
    machine, each relative to the trees already trusted, then trust it.

    Raises
    ------
    CorruptRecordError, FormatVersionError
        If a tree breaks the record grammar; nothing is trusted then.
    """
    todo = [t for t in dict.fromkeys(trees) if t is not None]
    trusted = [t for t in todo if trust.is_trusted(repo, t)]
    for t in todo:
        if t in trusted:
            continue
        check_root(repo, t, trusted)
        trust.remember(repo, t)
        trusted.append(t)


__all__ = [
    "KEY_RE",
    "MAX_META_VALUE",
    "check_key",
    "check_kind",
    "check_payload",
    "check_root",
    "commit_of",
    "corrupt",
    "ensure_trusted",
    "kind_fits",
    "leaf_count",
    "read_object",
]
