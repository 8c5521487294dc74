"""One walker of the records of many commits, each distinct tree read once.

fsck, gc and the payload transfer ask history the same question: which
arraysets, schemas, sample records and metadata do these commits hold, and
are they sound? Commits share most of their trees (a commit that changes ten
samples shares every other leaf with its parent), so :class:`RecordWalker`
reads and checks each distinct tree once and remembers what it found.

Every object is read through :mod:`.validate` (object types, sizes, the
record grammar, the format version, the placement of keys in the fan-out).
The walker itself never raises on damage: it notes a *problem*, a pair
``(path in the commit tree, what is wrong)``, and goes on with whatever it
can still read, so that fsck names every damaged record of every commit.
Callers that must not act on damaged records (gc deciding what is live,
push and fetch deciding what to move) go through :mod:`.reachable`, whose
functions raise at the first problem met.

What is read, and by which method:

- :meth:`RecordWalker.commit`: the root tree, ``hangar.json``, the
  arraysets and their schemas;
- :meth:`RecordWalker.samples`: the fan-out levels of a ``samples`` tree,
  down to the ids of its leaves (the leaves are not read);
- :meth:`RecordWalker.leaf`: the sample records ``{encoded key: digest}``
  of one leaf;
- :meth:`RecordWalker.metadata`: the entries and values of a ``metadata``
  tree; :meth:`RecordWalker.changes`: a commit's change log against its trees;
- :meth:`RecordWalker.check`: all of the above for one commit (fsck).

What each returns is a plain value of :mod:`.findings`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pygit2
from pygit2.enums import ObjectType

from ..errors import CorruptRecordError, FormatVersionError, first_line
from ..naming import check_arrayset_name
from ..schema import ArraysetSchema
from . import changelog, trust, validate
from .changelog import CHANGES_NAME
from .findings import (
    ArraysetRecords,
    CommitRecords,
    Leaf,
    LeafPath,
    Problem,
    Records,
    SamplesTree,
)
from .layout import MODE_BLOB, MODE_TREE, Entry, fanout_of_names, leaf_path, parse_tree
from .snapshot import parsed_leaf

_ROOT_MODES = {
    "hangar.json": MODE_BLOB,
    "arraysets": MODE_TREE,
    "metadata": MODE_TREE,
    CHANGES_NAME: MODE_BLOB,
}
_HEX = frozenset("0123456789abcdef")
_FIRST_ENTRY = re.compile(rb"(\d+) ([^\x00]*)\x00(.{20})", re.S)
#: widest fan-out level the record layout allows (hex digits)
_MAX_WIDTH = 4


def _first_entry(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Mode, name and raw id of the first entry of a raw tree (None when it
    has none, or it cannot be read)."""
    m = _FIRST_ENTRY.match(raw)
    return None if m is None else (m.group(1), m.group(2), m.group(3))


def _is_hex(name: str) -> bool:
    return _HEX.issuperset(name)


def _is_leaf(raw: bytes) -> bool:
    """True unless ``raw`` looks like a fan-out level: a leaf of sample
    records, an empty tree, or one to be checked as a leaf (the test of
    :func:`.layout.fanout_of_names`, on the first entry alone)."""
    first = _first_entry(raw)
    return first is None or b":" in first[1]


class RecordWalker:
    """Reads and checks the records of commits, each distinct tree once.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the records.
    keep_leaves : bool, optional
        Keep every parsed leaf (default), so that walking the samples of a
        tree again reads nothing. Pass False for one pass over a long
        history: memory then stays bounded by the fan-out levels.
    use_trust : bool, optional
        In commits whose root tree this machine checked whole before (see
        :mod:`.trust`), skip the check that costs a pass over every key
        (where each key sits in the fan-out), as checkouts do. Off by
        default: fsck believes no earlier verdict.
    """

    def __init__(
        self, git: pygit2.Repository, *, keep_leaves: bool = True, use_trust: bool = False
    ) -> None:
        self.git = git
        self.keep_leaves = keep_leaves
        self.use_trust = use_trust
        self._commits: dict[str, CommitRecords] = {}
        self._asets_of: dict[bytes, tuple[tuple[ArraysetRecords, ...], tuple[Problem, ...]]] = {}
        self._aset: dict[tuple[str, bytes, bytes], ArraysetRecords] = {}
        self._schemas: dict[bytes, ArraysetSchema | str] = {}
        self._samples: dict[bytes, SamplesTree] = {}
        self._sample_problems: dict[bytes, list[Problem]] = {}
        self._leaves: dict[tuple[bytes, LeafPath], Leaf] = {}
        self._meta: dict[bytes, list[Problem]] = {}
        self._values: set[bytes] = set()  # metadata value blobs found sound

    # ---- one commit --------------------------------------------------------
    def commit(self, sha: str) -> CommitRecords:
        """The root, format, arraysets and schemas of commit ``sha``.

        Parameters
        ----------
        sha : str
            A commit hash.

        Returns
        -------
        CommitRecords
            Its arraysets and metadata tree, and the problems of its root.
        """
        got = self._commits.get(sha)
        if got is None:
            got = self._commits[sha] = self._read_commit(sha)
        return got

    def _read_commit(self, sha: str) -> CommitRecords:
        try:
            tree = validate.commit_of(self.git, sha).tree_id.raw
            root = parse_tree(validate.read_tree(self.git, tree, "root tree"))
            fmt = root.get("hangar.json")
            if fmt is None:
                raise FormatVersionError("commit tree has no hangar.json: not a hangar data commit")
            blob = validate.read_object(
                self.git, fmt[1], ObjectType.BLOB, "hangar.json", validate.MAX_FORMAT_BYTES
            )
            validate.check_format_blob(blob)
        except FormatVersionError as exc:
            return CommitRecords(sha, problems=(("hangar.json", str(exc)),), error=exc)
        except Exception as exc:  # unreadable or malformed git objects
            why = f"commit tree cannot be read: {first_line(exc)}"
            return CommitRecords(sha, problems=(("", why),), error=validate.corrupt(why))
        problems: list[Problem] = []
        for name, (mode, _) in root.items():
            want = _ROOT_MODES.get(name)
            if want is None:
                problems.append((name, "unknown entry in a commit tree"))
            elif mode != want:
                problems.append((name, f"has mode {mode.decode()}"))
        asets: tuple[ArraysetRecords, ...] = ()
        entry = root.get("arraysets")
        if entry is not None and entry[0] == MODE_TREE:
            asets, more = self._arraysets(entry[1])
            problems.extend(more)
        meta = root.get("metadata")
        return CommitRecords(
            sha,
            asets,
            meta[1] if meta is not None and meta[0] == MODE_TREE else None,
            CHANGES_NAME in root,
            tuple(problems),
            trusted=self.use_trust and trust.is_trusted(self.git, tree),
        )

    def _arraysets(self, oid: bytes) -> tuple[tuple[ArraysetRecords, ...], tuple[Problem, ...]]:
        """The entries of an ``arraysets`` tree, and why it cannot be read."""
        got = self._asets_of.get(oid)
        if got is None:
            try:
                entries = parse_tree(validate.read_tree(self.git, oid, "arraysets tree"))
            except Exception as exc:
                got = ((), (("arraysets", f"cannot be read: {first_line(exc)}"),))
            else:
                asets = tuple(self._arrayset(n, e) for n, e in sorted(entries.items()))
                got = (asets, ())
            self._asets_of[oid] = got
        return got

    def _arrayset(self, name: str, entry: Entry) -> ArraysetRecords:
        """One entry of an ``arraysets`` tree, checked."""
        mode, oid = entry
        got = self._aset.get((name, mode, oid))
        if got is None:
            got = self._aset[name, mode, oid] = self._read_arrayset(name, mode, oid)
        return got

    def _read_arrayset(self, name: str, mode: bytes, oid: bytes) -> ArraysetRecords:
        where = f"arraysets/{name}"
        try:
            check_arrayset_name(name)
            if mode != MODE_TREE:
                raise ValueError("is not a tree")
            sub = parse_tree(validate.read_tree(self.git, oid, f"arrayset {name!r}"))
        except Exception as exc:
            return ArraysetRecords(name, oid, None, None, ((where, first_line(exc)),))
        problems: list[Problem] = []
        extra = set(sub) - {"schema", "samples"}
        if extra:
            problems.append((where, f"unknown entries {sorted(extra)}"))
        schema = sub.get("schema")
        samples = sub.get("samples")
        if schema is None or schema[0] != MODE_BLOB:
            problems.append((where + "/schema", "missing"))
        elif isinstance(err := self.schema(schema[1], name), str):
            problems.append((where + "/schema", err))
        elif samples is not None and samples[0] != MODE_TREE:
            problems.append((where + "/samples", "is not a tree"))
        else:
            sid = samples[1] if samples is not None else None
            return ArraysetRecords(name, oid, schema[1], sid, tuple(problems))
        return ArraysetRecords(name, oid, None, None, tuple(problems))

    def schema(self, oid: bytes, name: str = "") -> ArraysetSchema | str:
        """The schema in blob ``oid``, or why it cannot be used.

        Parameters
        ----------
        oid : bytes
            Raw id of a schema blob.
        name : str, optional
            The arrayset it belongs to, for the message (a blob shared by
            several arraysets is read once: the first name is the one kept).

        Returns
        -------
        ArraysetSchema or str
            The schema, or the problem.
        """
        s = self._schemas.get(oid)
        if s is None:
            try:
                data = validate.read_object(
                    self.git, oid, ObjectType.BLOB, f"schema of {name!r}", validate.MAX_SCHEMA_BYTES
                )
                s = validate.parse_schema(data, name)
            except Exception as exc:
                s = f"schema cannot be read: {first_line(exc)}"
            self._schemas[oid] = s
        return s

    def changes(self, sha: str) -> list[str]:
        """Problems of commit ``sha``'s change log against its trees.

        Parameters
        ----------
        sha : str
            A commit hash.

        Returns
        -------
        list of str
            Empty when it has no change log, or a sound one (see
            :func:`.changelog.verify`).
        """
        try:
            return changelog.verify(self.git, validate.commit_of(self.git, sha))
        except Exception as exc:  # records too damaged to compare: reported elsewhere
            return [f"cannot be checked: {first_line(exc)}"]

    def check(self, sha: str) -> list[Problem]:
        """Every problem of commit ``sha``'s records: root, change log,
        arraysets, schemas, fan-out levels, sample records, metadata.

        Parameters
        ----------
        sha : str
            A commit hash.

        Returns
        -------
        list of Problem
            Empty when its records are sound.
        """
        rec = self.commit(sha)
        problems = list(rec.problems)
        if rec.error is not None:
            return problems
        if rec.changes:
            problems.extend((CHANGES_NAME, why) for why in self.changes(sha))
        for aset in rec.arraysets:
            problems.extend(aset.problems)
            if aset.readable and aset.samples is not None:
                where = f"arraysets/{aset.name}/samples"
                problems.extend(
                    (f"{where}/{path}".rstrip("/"), why)
                    for path, why in self.sample_problems(aset.samples)
                )
        if rec.metadata is not None:
            problems.extend(self.metadata(rec.metadata))
        return problems

    # ---- samples -------------------------------------------------------------
    def samples(self, sid: bytes) -> SamplesTree:
        """The leaves of ``samples`` tree ``sid`` (read down to, not into, them).

        Each fan-out entry must be a subtree named by lowercase hex digits of
        its level's width, levels at most
        :data:`~.validate.MAX_FANOUT_DEPTH` deep, every leaf at the depth of
        the first one. The leaves are not read here: :meth:`leaf` checks them.

        Parameters
        ----------
        sid : bytes
            Raw id of a ``samples`` tree.

        Returns
        -------
        SamplesTree
            Its leaves and the problems of its levels.
        """
        got = self._samples.get(sid)
        if got is None:
            got = self._samples[sid] = self._read_samples(sid)
        return got

    def _read_samples(self, sid: bytes) -> SamplesTree:
        leaves: list[tuple[LeafPath, bytes]] = []
        problems: list[Problem] = []
        try:
            raw = validate.read_tree(self.git, sid, "samples tree")
            top = {} if _is_leaf(raw) else parse_tree(raw)
        except Exception as exc:
            return SamplesTree((), (("", f"cannot be read: {first_line(exc)}"),))
        if not raw:
            problems.append(("", "empty tree"))
        elif not top:
            leaves.append(((), sid))
        else:
            self._fanned(top, (), self._leaf_depth(top), leaves, problems)
        fanouts = {tuple(len(p) for p in path) for path, _ in leaves}
        if len(fanouts) > 1:
            problems.append(("", f"leaves disagree on the fan-out: {sorted(fanouts)}"))
        for fanout in sorted(fanouts):
            try:
                validate.check_fanout(fanout)
                if fanout and max(fanout) > _MAX_WIDTH:
                    raise validate.corrupt(f"fan-out levels wider than {_MAX_WIDTH} digits")
            except CorruptRecordError as exc:
                problems.append(("", first_line(exc)))
        return SamplesTree(tuple(leaves), tuple(problems))

    def _leaf_depth(self, entries: dict[str, Entry]) -> int:
        """The depth of the leaves below fan-out level ``entries``, from the
        first well-formed entry of each level down
        (:data:`~.validate.MAX_FANOUT_DEPTH` + 1 when deeper than allowed)."""
        depth = 0
        while entries:
            depth += 1
            fans = sorted(n for n, (m, _) in entries.items() if m == MODE_TREE and _is_hex(n))
            first = entries[fans[0]][1] if fans else None
            if depth > validate.MAX_FANOUT_DEPTH or first is None:
                return depth
            try:
                raw = validate.read_tree(self.git, first, "samples tree")
                entries = {} if _is_leaf(raw) else parse_tree(raw)
            except Exception:  # reported where the walk meets it
                return depth
        return depth

    def _fanned(
        self,
        entries: dict[str, Entry],
        prefix: LeafPath,
        depth: int,
        leaves: list[tuple[LeafPath, bytes]],
        problems: list[Problem],
    ) -> None:
        """Collect the leaves below a fan-out level, checking its shape; the
        entries at ``depth`` are taken for leaves without being read."""
        width = fanout_of_names(entries)
        for name, (mode, oid) in sorted(entries.items()):
            path = (*prefix, name)
            where = "/".join(path)
            if len(name) != width or not _is_hex(name) or mode != MODE_TREE:
                problems.append((where, "malformed fan-out entry"))
                continue
            if len(path) == depth:
                leaves.append((path, oid))
                continue
            if len(path) >= validate.MAX_FANOUT_DEPTH:
                problems.append((where, "fan-out levels nested too deep"))
                continue
            try:
                raw = validate.read_tree(self.git, oid, "samples tree")
                sub = {} if _is_leaf(raw) else parse_tree(raw)
            except Exception as exc:
                problems.append((where, f"cannot be read: {first_line(exc)}"))
                continue
            if sub:
                self._fanned(sub, path, depth, leaves, problems)
            else:  # a leaf above the depth of the others: they disagree
                leaves.append((path, oid))

    def leaf(self, lid: bytes, path: LeafPath, *, trusted: bool = False) -> Leaf:
        """The sample records of leaf ``lid`` at ``path`` of its samples tree.

        Records whose key does not belong at ``path`` (by its hash) are left
        out, each named in the problems (not checked when ``trusted``: the
        leaf is part of a tree checked whole before); a leaf that breaks the
        record grammar holds no records. Parsed leaves are shared with
        checkouts (:func:`.snapshot.parsed_leaf`).

        Parameters
        ----------
        lid : bytes
            Raw id of the leaf.
        path : LeafPath
            Its fan-out directory names (``()`` in a flat samples tree).
        trusted : bool, optional
            The leaf belongs to a tree this machine checked whole before.

        Returns
        -------
        Leaf
        """
        got = self._leaves.get((lid, path))
        if got is not None:
            return got
        fanout = tuple(len(p) for p in path)
        try:
            got = Leaf(parsed_leaf(self.git, lid, fanout, path, trusted))
        except Exception:
            got = self._diagnose_leaf(lid, fanout, path)
        if self.keep_leaves and not trusted:  # a trusted read skipped a check
            self._leaves[lid, path] = got
        return got

    def _diagnose_leaf(self, lid: bytes, fanout: tuple[int, ...], path: LeafPath) -> Leaf:
        """A leaf :func:`.snapshot.parsed_leaf` refused: its sound records,
        and each record that is not (or why none can be read)."""
        try:
            # the grammar alone, without the placement of keys
            links = validate.leaf_links(validate.read_tree(self.git, lid, "samples tree"))
        except Exception as exc:
            return Leaf({}, (f"sample records cannot be read: {first_line(exc)}",))
        if fanout and not links:
            return Leaf({}, ("empty leaf of a fan-out level",))
        records: Records = {}
        problems: list[str] = []
        for enc, digest in links.items():
            if leaf_path(enc, fanout) != path:
                problems.append(f"sample key {enc!r} is in the wrong fan-out leaf")
            else:
                records[enc] = digest
        return Leaf(records, tuple(problems))

    def sample_problems(self, sid: bytes) -> list[Problem]:
        """Every problem of ``samples`` tree ``sid``: its fan-out levels and
        the records of its leaves.

        Parameters
        ----------
        sid : bytes
            Raw id of a ``samples`` tree.

        Returns
        -------
        list of Problem
            Paths relative to the samples tree.
        """
        got = self._sample_problems.get(sid)
        if got is None:
            tree = self.samples(sid)
            got = list(tree.problems)
            for path, lid in tree.leaves:
                got.extend(("/".join(path), why) for why in self.leaf(lid, path).problems)
            self._sample_problems[sid] = got
        return got

    def iter_samples(self, sid: bytes) -> Iterator[tuple[bytes, Records]]:
        """The sound records of every leaf of a samples tree, in tree order.

        Parameters
        ----------
        sid : bytes
            Raw id of a ``samples`` tree.

        Yields
        ------
        tuple of (bytes, dict of str to bytes)
            ``(leaf id, {encoded key: digest})``.
        """
        for path, lid in self.samples(sid).leaves:
            yield lid, self.leaf(lid, path).records

    # ---- metadata ------------------------------------------------------------
    def metadata(self, oid: bytes) -> list[Problem]:
        """Problems of ``metadata`` tree ``oid``: entries that are not blobs
        under canonical keys, values that are too large or not ASCII.

        Parameters
        ----------
        oid : bytes
            Raw id of a ``metadata`` tree.

        Returns
        -------
        list of Problem
        """
        got = self._meta.get(oid)
        if got is not None:
            return got
        problems: list[Problem] = []
        try:
            entries = parse_tree(validate.read_tree(self.git, oid, "metadata tree"))
        except Exception as exc:
            entries = {}
            problems.append(("metadata", f"cannot be read: {first_line(exc)}"))
        for enc, (mode, boid) in entries.items():
            try:
                if mode != MODE_BLOB:
                    raise ValueError("is not a blob")
                validate.check_key(enc, "metadata")
                if boid not in self._values:
                    validate.metadata_value(self.git, boid, enc)
                    self._values.add(boid)
            except Exception as exc:
                problems.append((f"metadata/{enc}", first_line(exc)))
        self._meta[oid] = problems
        return problems


__all__ = [
    "ArraysetRecords",
    "CommitRecords",
    "Leaf",
    "LeafPath",
    "Problem",
    "RecordWalker",
    "Records",
    "SamplesTree",
]
