"""Read-only views of the records of one commit tree.

Sample records are loaded lazily, one fan-out leaf at a time, so opening a
checkout of millions of samples costs a handful of tree reads, and a lookup
parses only the leaf that holds its key.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pygit2

from . import trust, validate
from .counts import known_count, remember_count
from .layout import (
    MODE_TREE,
    Fanout,
    leaf_path,
    parse_link_digests,
    parse_links,
    trusted_link_runs,
)
from .validate import read_tree

if TYPE_CHECKING:
    from .key_cache import KeyTable

#: parsed leaf trees shared by every checkout of the process, by tree id (git
#: objects never change, so an entry is never stale); at most this many records
LEAF_CACHE_RECORDS = 1 << 19
_leaf_cache: OrderedDict[bytes, dict[str, bytes]] = OrderedDict()
_leaf_cache_size = [0]
_leaf_lock = threading.Lock()


def parsed_leaf(
    repo: pygit2.Repository,
    oid: bytes,
    fanout: Fanout = (),
    path: tuple[str, ...] = (),
    trusted: bool = False,
) -> dict[str, bytes]:
    """``{encoded key: digest}`` of the leaf tree ``oid`` at ``path`` of a
    samples tree laid out in ``fanout``, checked (never mutate it); the
    placement of keys is not checked again in ``trusted`` trees."""
    with _leaf_lock:
        leaf = _leaf_cache.get(oid)
        if leaf is not None:
            _leaf_cache.move_to_end(oid)
    if leaf is not None:
        # checked where it was first read; a leaf is in one place only
        if not trusted:
            validate.check_placement(list(leaf)[:1], fanout, path)
        return leaf
    raw = read_tree(repo, oid, "samples tree")
    # a leaf of a tree checked whole or built here: its names were checked then
    leaf = parse_links(raw, checked=False) if trusted else validate.leaf_links(raw, fanout, path)
    with _leaf_lock:
        if oid not in _leaf_cache:
            _leaf_cache[oid] = leaf
            _leaf_cache_size[0] += len(leaf)
            while _leaf_cache_size[0] > LEAF_CACHE_RECORDS and len(_leaf_cache) > 1:
                _leaf_cache_size[0] -= len(_leaf_cache.popitem(last=False)[1])
    return leaf


def clear_leaf_cache() -> None:
    """Forget the parsed leaves (the next reads parse their trees again)."""
    with _leaf_lock:
        _leaf_cache.clear()
        _leaf_cache_size[0] = 0


def _decoded(names: list[bytes]) -> list[str]:
    """The names of :func:`.layout.trusted_link_runs` runs, as str."""
    try:
        return b"\x00".join(names).decode("ascii").split("\x00")
    except UnicodeDecodeError:
        raise validate.corrupt("samples tree: a record name is not ASCII") from None


def _first_id(raw: bytes, width: int) -> bytes:
    """The id of the first entry of fan-out level ``raw`` (its first name of
    ``width`` hex digits checked by :func:`.validate.fan_width`)."""
    start = len(MODE_TREE) + 1 + width + 1
    oid = raw[start : start + 20]
    if len(oid) != 20:
        raise validate.corrupt("samples tree: malformed fan-out level (truncated)")
    return oid


class SampleRecords:
    """The ``samples/`` tree of one arrayset: encoded key -> digest."""

    def __init__(self, repo: pygit2.Repository, oid: bytes | None, trusted: bool = False) -> None:
        self.repo = repo
        self.oid = oid
        #: part of a tree checked whole on this machine (see :mod:`.trust`):
        #: the checks that cost a pass over every key are not repeated
        self.trusted = trusted
        self._leaves: dict[tuple[str, ...], dict[str, bytes]] = {}
        self._trees: dict[tuple[str, ...], dict[str, tuple[bytes, bytes]]] = {}
        self._count: int | None = None
        self._flat: dict[str, bytes] | None = None  # all leaves merged, for batches
        self._paths: list[tuple[str, ...]] | None = None  # see leaf_paths
        self._table: KeyTable | None = None  # see key_table
        self.fanout: Fanout = ()
        self._top = b""  # the raw top level of a fanned-out tree, until parsed
        if oid is not None:
            raw = read_tree(repo, oid, "samples tree")
            width = validate.fan_width(raw)
            if width is None:
                self._leaves[()] = validate.leaf_links(raw)
            else:
                # the top level is parsed (and checked whole) when first used
                # (see _tree): a whole read through the key table needs none of it
                self._top = raw
                fan = [width]
                while True:  # the levels below, down the first entry of each
                    raw = read_tree(repo, _first_id(raw, width), "samples tree")
                    w = validate.fan_width(raw)
                    if w is None:
                        break
                    fan.append(w)
                    validate.check_fanout(fan)
                    width = w
                self.fanout = tuple(fan)

    def _tree(self, path: tuple[str, ...]) -> dict[str, tuple[bytes, bytes]] | None:
        t = self._trees.get(path)
        if t is None and not path:
            if not self.fanout:
                return None
            t = self._trees[()] = validate.fan_entries(self._top, self.fanout[0])
        elif t is None:
            parent = self._tree(path[:-1])
            if parent is None or path[-1] not in parent:
                return None
            raw = read_tree(self.repo, parent[path[-1]][1], "samples tree")
            if len(path) >= len(self.fanout):
                raise validate.corrupt("samples tree: fan-out levels of unequal depth")
            t = validate.fan_entries(raw, self.fanout[len(path)])
            self._trees[path] = t
        return t

    def leaf(self, path: tuple[str, ...]) -> dict[str, bytes]:
        """The ``{encoded key: digest}`` of one leaf (empty when absent)."""
        leaf = self._leaves.get(path)
        if leaf is None:
            if self.oid is None or not path:
                leaf = {}
            else:
                parent = self._tree(path[:-1])
                entry = parent.get(path[-1]) if parent is not None else None
                leaf = (
                    parsed_leaf(self.repo, entry[1], self.fanout, path, self.trusted)
                    if entry
                    else {}
                )
            self._leaves[path] = leaf
        return leaf

    def leaves_parsed(self) -> int:
        """How many leaves were parsed so far (all of them once :meth:`flat` was)."""
        return len(self._leaves)

    def leaf_oid(self, path: tuple[str, ...]) -> bytes | None:
        if not path:
            return self.oid
        parent = self._tree(path[:-1])
        entry = parent.get(path[-1]) if parent is not None else None
        return entry[1] if entry else None

    def flat(self) -> dict[str, bytes]:
        """``{encoded key: digest}`` of every sample, kept (never mutate it):
        the form for reads spread over the arrayset."""
        flat = self._flat
        if flat is None:
            table = self._cached_table()
            if table is not None:
                flat = table.to_dict()
            elif not self.fanout:
                flat = self.leaf(())
            elif self.trusted:
                flat = self._trusted_flat()
            else:
                flat = {}
                for p in self.leaf_paths():  # in the order of items()
                    flat.update(self.leaf(p))
            self._flat = flat
            self._count = len(flat)
            if table is None and self.fanout:
                from .key_cache import KeyTable

                self._keep_table(KeyTable.from_dict(flat))
        return flat

    def key_table(self) -> KeyTable:
        """Every record, in the order of :meth:`items`, as arrays (see
        :mod:`.key_cache`): from this machine's cache of the tree when it is
        there and sound, else parsed (and then cached); the form of reads of
        the whole arrayset, which need no dict of its keys."""
        table = self._cached_table()
        if table is None:
            if self.trusted and self.fanout and self._flat is None:
                self._keep_table(self._trusted_table())  # no dict of the keys
            else:
                from .key_cache import KeyTable

                flat = self.flat()
                self._table = self._table or KeyTable.from_dict(flat)
            table = self._table
            assert table is not None
        return table

    def _trusted_table(self) -> KeyTable:
        """:meth:`key_table` of a trusted tree, parsed from its leaves: cut
        into names and digests (as :meth:`_trusted_flat` does), with no dict."""
        from .key_cache import KeyTable

        names: list[bytes] = []  # NUL-joined names of each leaf
        digests: list[bytes] = []  # joined digests of each leaf
        for p in self.leaf_paths():  # in the order of items()
            leaf = self._leaves.get(p)
            if leaf is None:
                oid = self.leaf_oid(p)
                if oid is None:
                    continue
                leaf = _leaf_cache.get(oid)
                if leaf is None:
                    joined, ds = trusted_link_runs(read_tree(self.repo, oid, "samples tree"))
                    if ds:
                        names.append(joined)
                        digests.append(b"".join(ds))
                    continue
            if leaf:
                names.append("\x00".join(leaf).encode("ascii"))
                digests.append(b"".join(leaf.values()))
        try:
            return KeyTable.from_names(b"\x00".join(names), b"".join(digests))
        except ValueError:
            raise validate.corrupt("samples tree: malformed sample records") from None

    def has_cached_table(self) -> bool:
        """True when :meth:`key_table` needs no parse of the tree's leaves."""
        return self._cached_table() is not None

    def _cached_table(self) -> KeyTable | None:
        """The key table when this process has it or the cache holds a sound
        one for this tree (of fan-out trees only: a flat tree is one leaf)."""
        if self._table is None and self.fanout and self.oid is not None:
            count = self.known_count()
            if count is not None:
                from . import key_cache  # (with its checksums: reads of samples only)

                self._table = key_cache.load(self.repo, self.oid, count)
        return self._table

    def _keep_table(self, table: KeyTable) -> None:
        """Keep ``table``, parsed from this tree, in this process and in the
        cache (with the tree's count, which the cache is checked against)."""
        self._table = table
        if self.oid is None:
            return
        checked = not self.trusted
        if known_count(self.repo, self.oid, checked=checked) is None:
            # the leaves of an untrusted tree went through every record check
            # as they were parsed (as a checked count's do)
            remember_count(self.repo, self.oid, len(table), checked=checked)
        from . import key_cache

        key_cache.store(self.repo, self.oid, table)

    def _trusted_flat(self) -> dict[str, bytes]:
        """:meth:`flat` of a trusted tree, built in one dict: the leaves not
        parsed yet are cut into names and digests, not parsed one by one
        into dicts (nor kept)."""
        keys: list[str] = []
        digests: list[bytes] = []
        names: list[bytes] = []  # NUL-joined names of leaves read, not decoded yet
        for p in self.leaf_paths():  # in the order of items()
            leaf = self._leaves.get(p)
            if leaf is None:
                oid = self.leaf_oid(p)
                leaf = _leaf_cache.get(oid) if oid is not None else {}
                if leaf is None:
                    raw = read_tree(self.repo, oid, "samples tree")  # type: ignore[arg-type]
                    joined, ds = trusted_link_runs(raw)
                    if ds:
                        names.append(joined)
                        digests += ds
                    continue
            if names:
                keys += _decoded(names)
                names = []
            keys.extend(leaf)
            digests.extend(leaf.values())
        if names:
            keys += _decoded(names)
        if len(keys) != len(digests):
            raise validate.corrupt("samples tree: malformed sample records")
        return dict(zip(keys, digests, strict=True))

    def get(self, enc: str) -> bytes | None:
        if self._flat is not None:
            return self._flat.get(enc)
        path = leaf_path(enc, self.fanout)
        leaf = self._leaves.get(path)
        if leaf is None:
            leaf = self.leaf(path)
        return leaf.get(enc)

    def get_many(self, encs: Sequence[str]) -> list[bytes | None]:
        """Digests of ``encs`` (None where absent), for batch reads."""
        if self.oid is None:
            return [None] * len(encs)
        if len(encs) * 8 >= self.estimate_count():  # most leaves: read them all once
            return list(map(self.flat().get, encs))
        return [self.get(e) for e in encs]

    def leaf_paths(self) -> list[tuple[str, ...]]:
        """Paths of every existing leaf, in tree order (kept: never mutate it)."""
        if self.oid is None:
            return []
        if not self.fanout:
            return [()]
        if self._paths is not None:
            return self._paths
        paths: list[tuple[str, ...]] = [()]
        for _ in self.fanout:
            nxt: list[tuple[str, ...]] = []
            for p in paths:
                t = self._tree(p) or {}
                nxt.extend((*p, name) for name in sorted(t))
            paths = nxt
        self._paths = paths
        return paths

    def items(self) -> Iterator[tuple[str, bytes]]:
        if self._flat is not None:
            yield from self._flat.items()
            return
        for p in self.leaf_paths():
            yield from self.leaf(p).items()

    def digests(self, keep_leaves: bool = False) -> list[bytes]:
        """Every digest, in the order of :meth:`items`.

        Unless ``keep_leaves``, leaves not parsed yet are scanned for their
        digests only (no names, no dict) and not kept: a bulk read of
        payloads needs no more.
        """
        if self._flat is not None:
            return list(self._flat.values())
        if keep_leaves:
            return list(self.flat().values())
        out: list[bytes] = []
        for p in self.leaf_paths():
            leaf = self._leaves.get(p)
            if leaf is None and p and not keep_leaves:
                oid = self.leaf_oid(p)
                leaf = _leaf_cache.get(oid) if oid is not None else {}
                if leaf is None:
                    raw = read_tree(self.repo, oid, "samples tree")  # type: ignore[arg-type]
                    if self.trusted:
                        out.extend(parse_link_digests(raw))
                    else:
                        out.extend(validate.leaf_digests(raw, self.fanout, p))
                    continue
            out.extend((leaf if leaf is not None else self.leaf(p)).values())
        return out

    def keys(self) -> Iterator[str]:
        if self._flat is not None:
            yield from self._flat
            return
        for p in self.leaf_paths():
            yield from self.leaf(p)

    def __len__(self) -> int:
        """The sample count. In a tree not trusted on this machine, every leaf
        goes through the record checks ``keys()`` makes (CorruptRecordError
        for a bad name or a misplaced key), once: the count is then kept as a
        checked one (see :mod:`.counts`)."""
        if self._count is None:
            self._count = self.known_count()
            if self._count is None:
                checked = not self.trusted
                self._count = self._count_leaves(checked)
                remember_count(self.repo, self.oid, self._count, checked=checked)  # type: ignore[arg-type]
        return self._count

    def known_count(self) -> int | None:
        """The sample count when known without reading the leaves, else None
        (flat trees, and counts this machine remembers; see :mod:`.counts`:
        for a tree not trusted, only a count made while checking it)."""
        if self._count is not None:
            return self._count
        if self.oid is None:
            return 0
        if not self.fanout:
            return len(self.leaf(()))
        return known_count(self.repo, self.oid, checked=not self.trusted)

    def _count_leaves(self, checked: bool) -> int:
        """Count the records of every leaf: parsed ones as they are (checked
        when they were parsed; with ``checked``, their placement too), the
        others through libgit2's parse of the tree (no Python object per
        record), or with ``checked`` through :func:`.validate.leaf_count`
        (names, modes, order, placement), without keeping them."""
        total = 0
        for p in self.leaf_paths():
            leaf = self._leaves.get(p)
            if leaf is None:
                oid = self.leaf_oid(p)
                if oid is None:
                    continue
                leaf = _leaf_cache.get(oid)
                if leaf is None:
                    if checked:
                        raw = read_tree(self.repo, oid, "samples tree")
                        total += validate.leaf_count(raw, self.fanout, p)
                        continue
                    tree = self.repo.get(pygit2.Oid(raw=oid))
                    if not isinstance(tree, pygit2.Tree):
                        raise validate.corrupt("samples tree: a leaf is not a tree")
                    total += len(tree)
                    continue
                if checked:  # a leaf cached for another tree: is it in its place here?
                    validate.check_placement(list(itertools.islice(leaf, 1)), self.fanout, p)
            total += len(leaf)
        return total

    def estimate_count(self) -> int:
        """Sample count estimated from the leaves read so far (exact when flat,
        or when known: see :meth:`known_count`)."""
        known = self.known_count()
        if known is not None:
            return known
        paths = self.leaf_paths()
        read = [len(self._leaves[p]) for p in paths if p in self._leaves]
        if not read:
            read = [len(self.leaf(paths[0]))] if paths else [0]
        return int(sum(read) / len(read) * len(paths))


class TreeRecords:
    """All records of one commit tree (or none, for an unborn branch)."""

    def __init__(self, repo: pygit2.Repository, tree: bytes | None) -> None:
        self.repo = repo
        self.tree = tree
        root = validate.root_entries(repo, tree) if tree is not None else {}
        self.root = root
        self.trusted = tree is not None and trust.is_trusted(repo, tree)
        #: every sample was added on this machine, its payload checked against
        #: its schema then: reads need not check payload kinds again
        self.payloads_trusted = tree is None or (
            self.trusted and trust.is_trusted(repo, tree, trust.PAYLOADS)
        )
        aset_entry = root.get("arraysets")
        self.aset_entries: dict[str, tuple[bytes, bytes]] = (
            validate.arrayset_entries(read_tree(repo, aset_entry[1], "arraysets tree"))
            if aset_entry
            else {}
        )
        self._aset_trees: dict[str, dict[str, tuple[bytes, bytes]]] = {}
        self._samples: dict[str, SampleRecords] = {}
        self._schemas: dict[str, str] = {}
        self._meta: dict[str, str] | None = None
        self._meta_entries: dict[str, tuple[bytes, bytes]] | None = None
        self._meta_values: dict[str, str] = {}

    # ---- arraysets -----------------------------------------------------
    def arrayset_names(self) -> list[str]:
        return sorted(self.aset_entries)

    def _aset_tree(self, name: str) -> dict[str, tuple[bytes, bytes]]:
        t = self._aset_trees.get(name)
        if t is None:
            raw = read_tree(self.repo, self.aset_entries[name][1], f"arrayset {name!r}")
            t = validate.arrayset_tree(raw, name)
            self._aset_trees[name] = t
        return t

    def aset_oid(self, name: str) -> bytes | None:
        e = self.aset_entries.get(name)
        return e[1] if e else None

    def schema_text(self, name: str) -> str:
        s = self._schemas.get(name)
        if s is None:
            s = validate.schema_text(self.repo, self._aset_tree(name)["schema"][1], name)
            self._schemas[name] = s
        return s

    def samples(self, name: str) -> SampleRecords:
        s = self._samples.get(name)
        if s is None:
            entry = self._aset_tree(name).get("samples")
            s = SampleRecords(self.repo, entry[1] if entry else None, self.trusted)
            self._samples[name] = s
        return s

    def sample_digest(self, name: str, enc: str) -> bytes | None:
        """Digest of sample ``enc`` of arrayset ``name`` (None when absent):
        :meth:`samples` then :meth:`SampleRecords.get`, in one call on the
        read path of every sample."""
        s = self._samples.get(name)
        if s is None:
            s = self.samples(name)
        return s.get(enc)

    def samples_oid(self, name: str) -> bytes | None:
        entry = self._aset_tree(name).get("samples")
        return entry[1] if entry else None

    # ---- metadata ------------------------------------------------------
    def metadata_oid(self) -> bytes | None:
        e = self.root.get("metadata")
        return e[1] if e else None

    def metadata_entries(self) -> dict[str, tuple[bytes, bytes]]:
        """``{encoded key: (mode, blob id)}`` of the metadata (no value read)."""
        if self._meta_entries is None:
            oid = self.metadata_oid()
            self._meta_entries = (
                validate.metadata_entries(read_tree(self.repo, oid, "metadata tree")) if oid else {}
            )
        return self._meta_entries

    def meta_value(self, enc: str) -> str | None:
        """The value of metadata key ``enc`` (None when absent), read on demand."""
        v = self._meta_values.get(enc)
        if v is None:
            e = self.metadata_entries().get(enc)
            if e is None:
                return None
            v = self._meta_values[enc] = validate.metadata_value(self.repo, e[1], enc)
        return v

    def metadata(self) -> dict[str, str]:
        """Every metadata value (reads them all: prefer :meth:`metadata_entries`
        and :meth:`meta_value`)."""
        if self._meta is None:
            self._meta = {k: self.meta_value(k) for k in self.metadata_entries()}  # type: ignore[misc]
        return self._meta


def commit_tree(repo: pygit2.Repository, commit: str | None) -> bytes | None:
    """Raw id of a commit's tree (None for no commit)."""
    if commit is None:
        return None
    return validate.commit_of(repo, commit).tree_id.raw


__all__ = ["SampleRecords", "TreeRecords", "commit_tree"]
