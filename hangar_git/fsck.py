"""Verify a repository: records, payloads and git objects (``git hangar fsck``).

:func:`verify` walks every commit reachable from a ``refs/hangar/*`` ref and
the staging area, and checks:

- records: every commit tree is in a known record format, its arraysets,
  schemas, sample records (fan-out included) and metadata are well formed;
- payloads: every payload a sample names is in the local store, its index row
  intact, its block checksum sound and its bytes matching the sample's digest,
  and its dtype and shape fitting the arrayset schema. A payload that is
  absent but referenced by a commit reachable from a remote-tracking ref
  (``refs/hangar/remotes/*``, e.g. after a partial clone) is a *remote
  reference*, counted apart from damage;
- git objects: delegated to ``git fsck`` (connectivity only, or every object
  with ``full=True``);
- leftovers: large payload files that no index entry names, and temporary
  files of large payloads (a writer killed before it indexed or placed them).
  They are warnings, not damage: nothing references them, and ``gc`` deletes
  them.

Each distinct tree and payload is checked once however many commits share it,
and the report names exactly which samples of which commits are damaged.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pygit2
from pygit2.enums import ObjectType

from .errors import FormatVersionError, HangarError, IntegrityError
from .gitutil import REMOTES, common_dir, read_raw
from .naming import Key, check_arrayset_name, decode_key, encode_key
from .records import changelog
from .records.changelog import CHANGES_NAME
from .records.layout import (
    MODE_BLOB,
    MODE_TREE,
    fanout_of_names,
    leaf_path,
    parse_links,
    parse_tree,
)
from .records.staging import Journal
from .records.validate import check_format_blob
from .schema import ArraysetSchema
from .store.chunked import LARGE_PACK, LargeFiles

if TYPE_CHECKING:
    from .repository import Repository
    from .store import Location, PackReader

#: label of the staging area in reports (in place of a commit hash)
STAGING = "staging"
HANGAR_REFS = "refs/hangar/"

Progress = Callable[[str, int, int], None]
#: warnings listed by :meth:`FsckReport.summary` (the report keeps them all)
_SHOWN = 20


@dataclass(frozen=True)
class SampleIssue:
    """One sample of one commit (or of the staging area) and what is wrong with it."""

    commit: str
    arrayset: str
    key: Key
    digest: str
    problem: str

    def __str__(self) -> str:
        return f"{self.commit} {self.arrayset}[{self.key!r}] {self.digest}: {self.problem}"


@dataclass(frozen=True)
class RecordIssue:
    """A record of a commit that cannot be read, or is not well formed."""

    commit: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.commit} {self.path or '/'}: {self.problem}"


@dataclass
class FsckReport:
    """What :func:`verify` found.

    Attributes
    ----------
    full : bool
        Whether git objects were hashed and unreferenced payloads verified too.
    commits : int
        Commits checked.
    samples : int
        Sample records checked (summed over commits and the staging area).
    payloads : int
        Distinct payloads verified against their digests.
    damaged : list of SampleIssue
        Samples whose payload is missing, unreadable or wrong, per commit.
    remote_references : list of SampleIssue
        Samples whose payload is not on this machine but on a remote.
    records : list of RecordIssue
        Records that cannot be read or are not well formed.
    store : list of str
        Damage in the payload store not tied to a sample (``full`` only).
    git : list of str
        What ``git fsck`` reported.
    warnings : list of str
        What is not damage but takes space: large payload files no index
        entry names, temporary files left by a killed writer (``gc``
        deletes both). They do not make ``ok`` False.
    """

    full: bool = False
    commits: int = 0
    samples: int = 0
    payloads: int = 0
    damaged: list[SampleIssue] = field(default_factory=list)
    remote_references: list[SampleIssue] = field(default_factory=list)
    records: list[RecordIssue] = field(default_factory=list)
    store: list[str] = field(default_factory=list)
    git: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged (remote references and warnings are not damage)."""
        return not (self.damaged or self.records or self.store or self.git)

    def damaged_samples(self) -> dict[str, set[tuple[str, Key]]]:
        """``{commit: {(arrayset, key), ...}}`` of the damaged samples."""
        out: dict[str, set[tuple[str, Key]]] = {}
        for s in self.damaged:
            out.setdefault(s.commit, set()).add((s.arrayset, s.key))
        return out

    def summary(self) -> str:
        """A few lines for people: counts, then every problem, one per line."""
        mode = "full" if self.full else "quick"
        lines = [
            f"checked {self.commits} commits, {self.samples} sample records, "
            f"{self.payloads} payloads ({mode} check)"
        ]
        if self.remote_references:
            commits = len({s.commit for s in self.remote_references})
            lines.append(
                f"{len(self.remote_references)} sample records in {commits} commits "
                "are remote references (payloads not on this machine)"
            )
        lines.extend(f"damaged sample: {s}" for s in self.damaged)
        lines.extend(f"damaged record: {r}" for r in self.records)
        lines.extend(f"damaged store: {m}" for m in self.store)
        lines.extend(f"git: {m}" for m in self.git)
        lines.extend(f"warning: {m}" for m in self.warnings[:_SHOWN])
        if len(self.warnings) > _SHOWN:
            lines.append(f"warning: ... and {len(self.warnings) - _SHOWN} more")
        lines.append(
            "OK"
            if self.ok
            else f"DAMAGED: {len(self.damaged)} samples, {len(self.records)} records, "
            f"{len(self.store)} store problems, {len(self.git)} git problems"
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------
# walking the history
# --------------------------------------------------------------------------
def hangar_commits(git: pygit2.Repository) -> tuple[list[str], set[str], list[str]]:
    """Commits reachable from ``refs/hangar/*``.

    Returns ``(commits, remote_reachable, problems)``: every commit (oldest
    parents after children), those reachable from remote-tracking refs, and
    refs or parents that could not be read.
    """
    problems: list[str] = []
    starts: list[tuple[str, bool]] = []
    for name in sorted(git.references):
        if not name.startswith(HANGAR_REFS):
            continue
        try:
            target = git.references[name].resolve().target
            obj = git.get(target)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            problems.append(f"ref {name} cannot be read: {exc}")
            continue
        if obj is None or obj.type != ObjectType.COMMIT:
            problems.append(f"ref {name} does not point at a commit ({target})")
            continue
        starts.append((str(target), name.startswith(REMOTES)))
    order: list[str] = []
    seen: set[str] = set()
    remote: set[str] = set()
    # remote-tracking refs first, so their commits are marked on first visit
    for start, is_remote in sorted(starts, key=lambda s: not s[1]):
        stack = [start]
        while stack:
            sha = stack.pop()
            if sha in seen:
                continue
            seen.add(sha)
            order.append(sha)
            if is_remote:
                remote.add(sha)
            stack.extend(_parents(git, sha, problems))
    return order, remote, problems


def _parents(git: pygit2.Repository, sha: str, problems: list[str]) -> list[str]:
    try:
        commit = git.get(sha)
        if commit is None:
            raise KeyError(sha)
        return [str(p) for p in commit.parent_ids]
    except (KeyError, ValueError, pygit2.GitError) as exc:
        problems.append(f"commit {sha} cannot be read: {exc}")
        return []


class RecordWalker:
    """Reads and checks the records of commits, each distinct tree once."""

    def __init__(self, git: pygit2.Repository) -> None:
        self.git = git
        self._schemas: dict[bytes, ArraysetSchema | str] = {}
        # samples tree id -> ([(leaf path, leaf id)], [(path, problem)])
        self._samples: dict[
            bytes, tuple[list[tuple[tuple[str, ...], bytes]], list[tuple[str, str]]]
        ] = {}
        # (leaf id, leaf path) -> ([(enc, digest)], [problem])
        self._leaves: dict[
            tuple[bytes, tuple[str, ...]], tuple[list[tuple[str, bytes]], list[str]]
        ] = {}
        self._meta: dict[bytes, list[tuple[str, str]]] = {}

    def commit(
        self, sha: str
    ) -> tuple[list[tuple[str, bytes, bytes | None]], list[tuple[str, str]]]:
        """``([(arrayset, schema id, samples id)], [(path, problem)])`` of one commit."""
        problems: list[tuple[str, str]] = []
        try:
            tree = self.git.get(sha).tree_id.raw
            root = parse_tree(read_raw(self.git, tree))
            if "hangar.json" not in root:
                raise FormatVersionError("commit tree has no hangar.json: not a hangar data commit")
            check_format_blob(read_raw(self.git, root["hangar.json"][1]))  # format version check
        except FormatVersionError as exc:
            return [], [("hangar.json", str(exc))]
        except Exception as exc:  # unreadable or malformed git objects
            return [], [("", f"commit tree cannot be read: {_why(exc)}")]
        for name, (mode, _) in root.items():
            want = MODE_BLOB if name in ("hangar.json", CHANGES_NAME) else MODE_TREE
            if name not in ("hangar.json", "arraysets", "metadata", CHANGES_NAME):
                problems.append((name, "unknown entry in a commit tree"))
            elif mode != want:
                problems.append((name, f"has mode {mode.decode()}"))
        if CHANGES_NAME in root:
            try:
                for why in changelog.verify(self.git, self.git.get(sha)):
                    problems.append((CHANGES_NAME, why))
            except Exception as exc:  # records too damaged to compare: reported elsewhere
                problems.append((CHANGES_NAME, f"cannot be checked: {_why(exc)}"))
        asets: list[tuple[str, bytes, bytes | None]] = []
        entry = root.get("arraysets")
        if entry is not None and entry[0] == MODE_TREE:
            try:
                aset_entries = parse_tree(read_raw(self.git, entry[1]))
            except Exception as exc:
                aset_entries = {}
                problems.append(("arraysets", f"cannot be read: {_why(exc)}"))
            for name, (mode, oid) in sorted(aset_entries.items()):
                where = f"arraysets/{name}"
                try:
                    check_arrayset_name(name)
                    if mode != MODE_TREE:
                        raise ValueError("is not a tree")
                    sub = parse_tree(read_raw(self.git, oid))
                except Exception as exc:
                    problems.append((where, _why(exc)))
                    continue
                extra = set(sub) - {"schema", "samples"}
                if extra:
                    problems.append((where, f"unknown entries {sorted(extra)}"))
                schema = sub.get("schema")
                if schema is None or schema[0] != MODE_BLOB:
                    problems.append((where + "/schema", "missing"))
                    continue
                err = self.schema(schema[1])
                if isinstance(err, str):
                    problems.append((where + "/schema", err))
                    continue
                samples = sub.get("samples")
                if samples is not None and samples[0] != MODE_TREE:
                    problems.append((where + "/samples", "is not a tree"))
                    continue
                sid = samples[1] if samples is not None else None
                if sid is not None:
                    for path, why in self.samples(sid)[1]:
                        problems.append((f"{where}/samples/{path}".rstrip("/"), why))
                asets.append((name, schema[1], sid))
        meta = root.get("metadata")
        if meta is not None and meta[0] == MODE_TREE:
            problems.extend(self.metadata(meta[1]))
        return asets, problems

    def schema(self, oid: bytes) -> ArraysetSchema | str:
        """The schema in blob ``oid``, or why it cannot be used."""
        s = self._schemas.get(oid)
        if s is None:
            try:
                s = ArraysetSchema.from_json(read_raw(self.git, oid).decode())
            except Exception as exc:
                s = f"schema cannot be read: {_why(exc)}"
            self._schemas[oid] = s
        return s

    def samples(
        self, oid: bytes
    ) -> tuple[list[tuple[tuple[str, ...], bytes]], list[tuple[str, str]]]:
        """Leaves ``[(path, leaf id)]`` of a samples tree, and its problems."""
        got = self._samples.get(oid)
        if got is not None:
            return got
        leaves: list[tuple[tuple[str, ...], bytes]] = []
        problems: list[tuple[str, str]] = []
        try:
            top = parse_tree(read_raw(self.git, oid))
        except Exception as exc:
            got = ([], [("", f"cannot be read: {_why(exc)}")])
            self._samples[oid] = got
            return got
        width = fanout_of_names(top)
        if width is None:
            leaves.append(((), oid))
        else:
            self._fanned(top, (), width, leaves, problems)
        fanouts = {tuple(len(p) for p in path) for path, _ in leaves}
        if len(fanouts) > 1:
            problems.append(("", f"leaves disagree on the fan-out: {sorted(fanouts)}"))
        for path, lid in leaves:
            fanout = tuple(len(p) for p in path)
            _, why = self.leaf(lid, path, fanout)
            problems.extend(("/".join(path), w) for w in why)
        got = (leaves, problems)
        self._samples[oid] = got
        return got

    def _fanned(
        self,
        entries: dict[str, tuple[bytes, bytes]],
        prefix: tuple[str, ...],
        width: int,
        leaves: list[tuple[tuple[str, ...], bytes]],
        problems: list[tuple[str, str]],
    ) -> None:
        """Collect the leaves below a fan-out level, checking its shape."""
        for name, (mode, oid) in sorted(entries.items()):
            path = (*prefix, name)
            where = "/".join(path)
            if len(name) != width or not _is_hex(name) or mode != MODE_TREE:
                problems.append((where, "malformed fan-out entry"))
                continue
            try:
                sub = parse_tree(read_raw(self.git, oid))
            except Exception as exc:
                problems.append((where, f"cannot be read: {_why(exc)}"))
                continue
            w = fanout_of_names(sub)
            if w is None:
                leaves.append((path, oid))
            else:
                self._fanned(sub, path, w, leaves, problems)

    def leaf(
        self, oid: bytes, path: tuple[str, ...], fanout: tuple[int, ...]
    ) -> tuple[list[tuple[str, bytes]], list[str]]:
        """``([(encoded key, digest)], [problem])`` of one leaf of sample records."""
        key = (oid, path)
        got = self._leaves.get(key)
        if got is not None:
            return got
        problems: list[str] = []
        try:
            links = parse_links(read_raw(self.git, oid))
        except Exception as exc:
            got = ([], [f"sample records cannot be read: {_why(exc)}"])
            self._leaves[key] = got
            return got
        items: list[tuple[str, bytes]] = []
        for enc, digest in links.items():
            try:
                if encode_key(decode_key(enc)) != enc:
                    raise ValueError("not canonical")
            except (ValueError, HangarError) as exc:
                problems.append(f"malformed sample key {enc!r}: {_why(exc)}")
                continue
            if leaf_path(enc, fanout) != path:
                problems.append(f"sample key {enc!r} is in the wrong fan-out leaf")
                continue
            items.append((enc, digest))
        got = (items, problems)
        self._leaves[key] = got
        return got

    def iter_samples(self, sid: bytes) -> Iterator[tuple[bytes, list[tuple[str, bytes]]]]:
        """``(leaf id, [(encoded key, digest)])`` of every leaf of a samples tree."""
        for path, lid in self.samples(sid)[0]:
            yield lid, self.leaf(lid, path, tuple(len(p) for p in path))[0]

    def metadata(self, oid: bytes) -> list[tuple[str, str]]:
        """Problems of a metadata tree."""
        got = self._meta.get(oid)
        if got is not None:
            return got
        problems: list[tuple[str, str]] = []
        try:
            entries = parse_tree(read_raw(self.git, oid))
        except Exception as exc:
            entries = {}
            problems.append(("metadata", f"cannot be read: {_why(exc)}"))
        for enc, (mode, boid) in entries.items():
            where = f"metadata/{enc}"
            try:
                if mode != MODE_BLOB:
                    raise ValueError("is not a blob")
                if encode_key(decode_key(enc), "metadata") != enc:
                    raise ValueError("key not canonical")
                read_raw(self.git, boid).decode("ascii")
            except (ValueError, HangarError, KeyError, pygit2.GitError) as exc:
                problems.append((where, _why(exc)))
        self._meta[oid] = problems
        return problems


def referenced_digests(git: pygit2.Repository, commits: Iterable[str]) -> set[bytes]:
    """Every payload digest the sample records of ``commits`` name.

    Raises
    ------
    IntegrityError
        If the records of a commit are unreadable or malformed (the set could
        be incomplete).
    """
    walker = RecordWalker(git)
    out: set[bytes] = set()
    done: set[bytes] = set()
    for sha in commits:
        asets, problems = walker.commit(sha)
        if problems:
            path, why = problems[0]
            raise IntegrityError(f"records of commit {sha} at {path or '/'}: {why}")
        for _, _, sid in asets:
            if sid is None or sid in done:
                continue
            done.add(sid)
            for _, items in walker.iter_samples(sid):
                out.update(d for _, d in items)
    return out


def staged_digests(repo: Repository) -> set[bytes]:
    """Payload digests the staging area names (samples added, not yet committed)."""
    journal = Journal.peek(repo._journal_path())
    if journal is None:
        return set()
    return {d for st in journal.asets.values() for d in st.samples.values() if d is not None}


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------
def verify(repo: Repository, full: bool = False, *, progress: Progress | None = None) -> FsckReport:
    """Check the whole repository; see the module docstring.

    Parameters
    ----------
    repo : Repository
        An initialised repository. Nothing in it is changed.
    full : bool, optional
        Also hash every git object (``git fsck --full --strict`` instead of a
        connectivity check), verify every payload in the store (referenced or
        not), and run SQLite's integrity check on the payload index.
    progress : callable, optional
        Called as ``progress(stage, done, total)`` while payloads are verified.

    Returns
    -------
    FsckReport
        ``report.ok`` is False when anything is damaged.
    """
    git = repo._git_repo()
    report = FsckReport(full=full)
    commits, remote_commits, ref_problems = hangar_commits(git)
    report.git.extend(ref_problems)
    report.commits = len(commits)
    walker = RecordWalker(git)

    # 1. records of every commit; which payloads each arrayset names
    per_commit: dict[str, list[tuple[str, bytes, bytes | None]]] = {}
    schema_of: dict[bytes, bytes] = {}  # digest -> a schema blob naming it
    schema_more: dict[bytes, set[bytes]] = {}
    remote_digests: set[bytes] = set()
    remote_sids: set[bytes] = set()
    counted: dict[bytes, int] = {}
    for sha in commits:
        asets, problems = walker.commit(sha)
        report.records.extend(RecordIssue(sha, p, w) for p, w in problems)
        per_commit[sha] = asets
        for _, schema_oid, sid in asets:
            if sid is None:
                continue
            n = counted.get(sid)
            if n is None:
                n = 0
                for _, items in walker.iter_samples(sid):
                    n += len(items)
                    for _, d in items:
                        _note_schema(schema_of, schema_more, d, schema_oid)
                counted[sid] = n
            if sha in remote_commits and sid not in remote_sids:
                remote_sids.add(sid)
                for _, items in walker.iter_samples(sid):
                    remote_digests.update(d for _, d in items)
            report.samples += n

    # the staging area
    staged: list[tuple[str, str, bytes]] = []
    try:
        journal = Journal.peek(repo._journal_path())
    except Exception as exc:
        journal = None
        report.records.append(RecordIssue(STAGING, "journal", _why(exc)))
    if journal is not None:
        for aset, st in sorted(journal.asets.items()):
            for enc, d in st.samples.items():
                if d is not None:
                    staged.append((aset, enc, d))
    report.samples += len(staged)

    # 2. payloads: each distinct one once
    wanted = list(schema_of)
    wanted.extend(d for _, _, d in staged if d not in schema_of)
    try:
        reader = repo._store.reader()
    except IntegrityError as exc:  # the index cannot be opened: no payload can be found
        problems_by_digest, absent = dict.fromkeys(wanted, str(exc)), set()
        report.store.append(str(exc))
    else:
        try:
            problems_by_digest, absent = _check_payloads(
                reader, wanted, walker, schema_of, schema_more, progress
            )
            report.payloads = len(wanted) - len(absent)
            if full:
                report.store.extend(_check_store(reader, set(wanted), progress))
            report.warnings.extend(_leftover_large_files(reader))
        finally:
            reader.close()
    lost = {
        d: "its payload is missing from the local store" for d in absent if d not in remote_digests
    }
    problems_by_digest.update(lost)
    remote = {d for d in absent if d in remote_digests}

    # 3. which samples of which commits
    if problems_by_digest or remote:
        hit = problems_by_digest.keys() | remote
        in_leaf: dict[bytes, list[tuple[str, bytes]]] = {}  # leaf id -> its hit samples
        in_tree: dict[bytes, list[tuple[str, bytes]]] = {}  # samples tree id -> the same
        for sha in commits:
            for aset, _, sid in per_commit[sha]:
                if sid is None:
                    continue
                found = in_tree.get(sid)
                if found is None:
                    found = []
                    for lid, items in walker.iter_samples(sid):
                        got = in_leaf.get(lid)
                        if got is None:
                            got = in_leaf[lid] = [(e, d) for e, d in items if d in hit]
                        found.extend(got)
                    in_tree[sid] = found
                for enc, d in found:
                    _file(report, problems_by_digest, sha, aset, enc, d)
        for aset, enc, d in staged:
            if d in hit:
                _file(report, problems_by_digest, STAGING, aset, enc, d)

    # 4. git objects
    report.git.extend(_git_fsck(git, full))
    return report


def _note_schema(
    first: dict[bytes, bytes], more: dict[bytes, set[bytes]], digest: bytes, schema: bytes
) -> None:
    have = first.get(digest)
    if have is None:
        first[digest] = schema
    elif have != schema:
        more.setdefault(digest, set()).add(schema)


def _file(
    report: FsckReport, problems: dict[bytes, str], commit: str, aset: str, enc: str, digest: bytes
) -> None:
    why = problems.get(digest)
    issue = SampleIssue(
        commit,
        aset,
        decode_key(enc),
        digest.hex(),
        why or "remote reference: payload not on this machine",
    )
    (report.damaged if why is not None else report.remote_references).append(issue)


def _check_payloads(
    reader: PackReader,
    digests: list[bytes],
    walker: RecordWalker,
    schema_of: dict[bytes, bytes],
    schema_more: dict[bytes, set[bytes]],
    progress: Progress | None,
) -> tuple[dict[bytes, str], set[bytes]]:
    """``({digest: problem}, absent digests)`` for payloads ``digests``."""
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
            problems[d] = f"payload cannot be read: {_why(exc)}"
        else:
            for schema_oid in (schema_of.get(d), *schema_more.get(d, ())):
                if schema_oid is None:
                    continue
                schema = walker.schema(schema_oid)
                if isinstance(schema, ArraysetSchema) and not _fits(schema, arr.dtype, arr.shape):
                    problems[d] = (
                        f"payload of dtype {arr.dtype} and shape {arr.shape} "
                        f"does not fit its arrayset schema"
                    )
        if progress is not None and (n % 1024 == 0 or n + 1 == total):
            progress("payloads", n + 1, total)
    return problems, absent


def _fits(schema: ArraysetSchema, dtype: object, shape: tuple[int, ...]) -> bool:
    if dtype != schema.dtype:
        return False
    if not schema.variable_shape:
        return shape == schema.shape
    return len(shape) == len(schema.shape) and all(
        0 < a <= b for a, b in zip(shape, schema.shape, strict=True)
    )


def _check_store(
    reader: PackReader, referenced: set[bytes], progress: Progress | None
) -> list[str]:
    """Damage anywhere in the store: the index file, and unreferenced payloads."""
    out: list[str] = []
    index = reader.store.index_path
    try:
        rows = list(reader.all_locations())
    except IntegrityError as exc:
        return [str(exc)]
    out.extend(reader.damaged_segments.values())
    try:
        from .store.durable import connect_readonly

        con = connect_readonly(index)  # works on a read-only mount too
        try:
            res = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
        if res != ["ok"]:
            out.extend(f"payload index {index}: {r}" for r in res[:20])
    except Exception as exc:
        out.append(f"payload index {index} cannot be checked: {_why(exc)}")
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
            out.append(f"unreferenced payload {d.hex()}: {_why(exc)}")
        if progress is not None and (n % 1024 == 0 or n + 1 == len(good)):
            progress("unreferenced payloads", n + 1, len(good))
    return out


def _leftover_large_files(reader: PackReader) -> list[str]:
    """Large payload files no index entry names, and temporary ones.

    The directory is listed before the index is read, so a file a writer
    places and indexes meanwhile is not reported; one placed but not yet
    indexed while fsck runs is (run fsck with no writer active for a
    definite answer). Nothing is reported when the index cannot be listed
    whole (damaged rows or segments): every file might be named there.
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
            if loc.pack == LARGE_PACK:
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


def _git_fsck(git: pygit2.Repository, full: bool) -> list[str]:
    """What git finds wrong with the object database (nothing: an empty list)."""
    exe = shutil.which("git")
    gitdir = str(common_dir(git))
    if exe is None:
        return _odb_check(git) if full else []
    args = [exe, f"--git-dir={gitdir}", "fsck", "--no-progress", "--no-dangling"]
    args += ["--full", "--strict"] if full else ["--connectivity-only"]
    res = subprocess.run(args, capture_output=True, text=True, errors="replace")
    if res.returncode == 0:
        return []
    lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("notice:", "Checking"))]
    return lines or [f"git fsck exited with status {res.returncode}"]


def _odb_check(git: pygit2.Repository) -> list[str]:
    """Read every object through libgit2 (which verifies each one's hash)."""
    out: list[str] = []
    for oid in git.odb:
        try:
            git.odb.read(oid)
        except Exception as exc:
            out.append(f"object {oid}: {_why(exc)}")
    return out


def _is_hex(name: str) -> bool:
    return all(c in "0123456789abcdef" for c in name)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "STAGING",
    "FsckReport",
    "RecordIssue",
    "RecordWalker",
    "SampleIssue",
    "hangar_commits",
    "referenced_digests",
    "staged_digests",
    "verify",
]
