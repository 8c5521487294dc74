"""Change logs: each commit lists the samples it changed against its parent.

A commit made through a write checkout carries, beside ``arraysets/`` and
``metadata/``, a blob ``changes``: one JSON line of header, then one JSON
line per sample whose digest the commit changed, with its value in the
first parent and in the commit::

    {"parent": "<first parent's hash or null>", "unlogged": ["<arrayset>", ...]}
    ["<arrayset>", "<encoded key>", "<old digest hex or null>", "<new ... or null>"]

Arraysets the commit created, removed or replaced are named in
``unlogged`` instead of listing their samples; a commit changing more than
:data:`CHANGES_MAX` samples has no log at all. A merge commit's log lists
what the merge brought to its first parent (:func:`from_trees`).

The log is what makes a diff cost the size of the change when the trees
it would otherwise walk have large leaves: a diff between a branch and
the merge base a few commits back composes those commits' logs (see
:func:`logged_changes`) instead of reading every record leaf a change
touched on each side. It is derived data, never believed where it disagrees with the trees it
summarises: a log is used only once verified against its commit's and its
parent's trees (a walk of the two that skips equal subtrees: the cost of
that commit's change, paid once per commit on this machine, the verdict
kept by :mod:`.trust`; logs of commits this machine made are trusted as
written). Its blob is refused unread when larger than a log could
legitimately be (:func:`max_log_bytes`). Where a check fails, the trees
are walked as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pygit2

from ..errors import FormatVersionError
from ..gitutil import odb_read_header, read_raw, write_blob, write_tree
from ..naming import MAX_NAME_LEN, check_arrayset_name
from . import trust
from .layout import MODE_BLOB, canonical_keys, parse_tree, serialize_tree

if TYPE_CHECKING:
    from .snapshot import TreeRecords
    from .staging import StagedAset

#: name of the log's entry in a commit's root tree
CHANGES_NAME = "changes"
#: commits changing more samples than this carry no log (a diff walks trees)
CHANGES_MAX = 10_000
#: commits a diff composes logs over, at most, before walking trees instead
CHAIN_MAX = 64
#: False: diffs ignore the logs and walk the record trees (to compare the two)
USE_LOGS = True
#: longest line of a row: two names of at most MAX_NAME_LEN (+2) characters,
#: two digests in hex, JSON punctuation and the newline
ROW_MAX = 2 * (MAX_NAME_LEN + 2) + 2 * 40 + 24
#: longest header, besides the names of unlogged arraysets
HEADER_MAX = 128


def max_log_bytes(n_arraysets: int) -> int:
    """The largest ``changes`` blob a commit could legitimately carry when it
    and its parent hold ``n_arraysets`` arraysets between them."""
    return HEADER_MAX + (MAX_NAME_LEN + 4) * n_arraysets + CHANGES_MAX * ROW_MAX


Net = dict[str, dict[str, tuple[bytes | None, bytes | None]]]


@dataclass
class ChangeLog:
    """The parsed ``changes`` blob of one commit."""

    parent: str | None
    unlogged: set[str] = field(default_factory=set)
    rows: list[tuple[str, str, bytes | None, bytes | None]] = field(default_factory=list)


def _hex(d: bytes | None) -> str | None:
    return d.hex() if d is not None else None


def encode(log: ChangeLog) -> bytes:
    """The blob of ``log`` (rows sorted, so equal logs give equal blobs)."""
    head = json.dumps({"parent": log.parent, "unlogged": sorted(log.unlogged)}, sort_keys=True)
    lines = [head]
    for aset, enc, old, new in sorted(log.rows, key=lambda r: (r[0], r[1])):
        lines.append(json.dumps([aset, enc, _hex(old), _hex(new)], ensure_ascii=True))
    return ("\n".join(lines) + "\n").encode()


def _digest(v: object) -> bytes | None:
    if v is None:
        return None
    if not isinstance(v, str) or len(v) != 40:
        raise ValueError("malformed digest")
    return bytes.fromhex(v)


#: a JSON string's characters that stand for themselves (no escape, no quote)
_PLAIN = r'[^"\\\x00-\x1f]'
#: a line in the shape :func:`encode` writes: ``["name", "key", D, D]`` with D
#: ``null`` or a quoted 40-character digest, its strings free of escapes (so
#: they are their JSON values); groups: name, key, digests ('' for null)
_DIGEST = rf'(?:null|"({_PLAIN}{{40}})")'
_ROW_RE = re.compile(rf'^\["({_PLAIN}+)", "({_PLAIN}+)", {_DIGEST}, {_DIGEST}\]\n', re.M)


def _fast_rows(body: str, n: int) -> list[tuple[str, str, bytes | None, bytes | None]] | None:
    """The ``n`` rows of ``body`` (the lines after the header) when every line
    is in the shape :func:`encode` writes, checked as :func:`_json_rows` checks
    them (names, canonical keys, digests) without a JSON parse per line; None
    when a line is in another shape or fails a check (then the lines are
    parsed as JSON, which accepts or refuses them as it always did)."""
    found = _ROW_RE.findall(body)
    if len(found) != n:  # each match is a whole line: every line matched
        return None
    try:
        for name in {r[0] for r in found}:
            check_arrayset_name(name)
        if not canonical_keys("\x00".join([r[1] for r in found]).encode()):
            return None
        fromhex = bytes.fromhex
        return [
            (a, k, fromhex(o) if o else None, fromhex(d) if d else None) for a, k, o, d in found
        ]
    except ValueError:
        return None


def parse(raw: bytes) -> ChangeLog:
    """A ``changes`` blob; ValueError when it is malformed."""
    try:
        text = raw.decode("ascii")
        lines = text.split("\n")
        if lines[-1] != "":
            raise ValueError("no final newline")
        head = json.loads(lines[0])
        parent = head["parent"]
        unlogged = head["unlogged"]
        if not (parent is None or (isinstance(parent, str) and len(parent) == 40)):
            raise ValueError("bad parent")
        if not isinstance(unlogged, list) or not all(isinstance(n, str) for n in unlogged):
            raise ValueError("bad unlogged list")
        if len(lines) - 2 > CHANGES_MAX:
            raise ValueError("more rows than a log holds")
        rows = _fast_rows(text[len(lines[0]) + 1 :], len(lines) - 2)
        if rows is None:
            rows = _json_rows(lines[1:-1])
    except (ValueError, KeyError, TypeError) as exc:  # JSON and UTF-8 errors included
        raise ValueError(f"malformed change log: {exc}") from None
    return ChangeLog(parent, set(unlogged), rows)


def _json_rows(lines: list[str]) -> list[tuple[str, str, bytes | None, bytes | None]]:
    """The rows of ``lines``, each parsed as JSON and checked; ValueError,
    KeyError or TypeError when one is malformed."""
    from .validate import check_key

    rows = []
    for line in lines:
        aset, enc, old, new = json.loads(line)
        if not isinstance(aset, str) or not isinstance(enc, str):
            raise ValueError("bad row")
        check_arrayset_name(aset)
        check_key(enc)
        rows.append((aset, enc, _digest(old), _digest(new)))
    return rows


def from_staged(
    parent: str | None, base: TreeRecords, staged: Mapping[str, StagedAset]
) -> ChangeLog | None:
    """The log of a commit of ``staged`` changes on top of commit ``parent``
    (records ``base``); None when it changes too many samples to keep one."""
    log = ChangeLog(parent)
    count = 0
    for name, st in sorted(staged.items()):
        if st.created or st.removed:
            log.unlogged.add(name)
            continue
        if name not in base.aset_entries:  # changes to no arrayset: not committed
            continue
        count += len(st.samples)
        if count > CHANGES_MAX:
            return None
        samples = base.samples(name)
        for enc, new in st.samples.items():
            old = samples.get(enc)
            if old != new:
                log.rows.append((name, enc, old, new))
    return log


def _n_arraysets(repo: pygit2.Repository, trees: list[bytes | None]) -> int:
    n = 0
    for t in trees:
        if t is not None:
            e = parse_tree(read_raw(repo, t)).get("arraysets")
            if e is not None:
                n += len(parse_tree(read_raw(repo, e[1])))
    return n


def read(
    repo: pygit2.Repository, tree: pygit2.Oid, parent_tree: bytes | None = None
) -> ChangeLog | None:
    """The log in commit tree ``tree``; None when it has none, it is malformed,
    or its blob is larger than :func:`max_log_bytes` (checked from the object
    header, before it is inflated)."""
    entry = parse_tree(read_raw(repo, tree)).get(CHANGES_NAME)
    if entry is None or entry[0] != MODE_BLOB:
        return None
    oid = pygit2.Oid(raw=entry[1])
    kind, size = odb_read_header(repo, oid)
    if kind != pygit2.enums.ObjectType.BLOB:
        return None
    if size > max_log_bytes(0):
        raw_tree = tree.raw if isinstance(tree, pygit2.Oid) else tree
        if size > max_log_bytes(_n_arraysets(repo, [raw_tree, parent_tree])):
            return None
    try:
        return parse(read_raw(repo, oid))
    except ValueError:
        return None


def trusted_log(repo: pygit2.Repository, commit: pygit2.Commit) -> ChangeLog | None:
    """The log of ``commit`` when it agrees with the trees it summarises, else
    None: verified once (see the module notes), the verdict remembered."""
    from .validate import ensure_trusted

    if not commit.parent_ids:
        return None
    first = str(commit.parent_ids[0])
    tree = commit.tree_id.raw
    parent = repo.get(first)
    if not isinstance(parent, pygit2.Commit):
        return None
    ptree = parent.tree_id.raw
    log = read(repo, commit.tree_id, ptree)
    if log is None or log.parent != first:
        return None
    if trust.is_trusted(repo, tree, trust.LOG):
        return log
    ensure_trusted(repo, [ptree, tree])
    walked = from_trees(repo, first, ptree, tree, limit=None)
    if walked is None or not _agree(walked, log):
        return None
    trust.remember(repo, tree, trust.LOG)
    return log


def _agree(walked: ChangeLog, log: ChangeLog) -> bool:
    """True when ``log`` says what the walk of the trees found."""
    if walked.unlogged - log.unlogged:
        return False
    want = {r for r in walked.rows if r[0] not in log.unlogged}
    got = {r for r in log.rows if r[0] not in log.unlogged}
    return want == got and len(got) == len([r for r in log.rows if r[0] not in log.unlogged])


def logged_changes(
    repo: pygit2.Repository, base: str | None, tip: str
) -> tuple[Net, set[str]] | None:
    """Net sample changes from ``base`` to ``tip`` composed from change logs.

    Returns ``({arrayset: {encoded key: (digest in base, digest in tip)}},
    arraysets the logs do not cover)``, keeping only keys whose digest
    differs, or None when ``base`` is not on ``tip``'s first-parent chain
    within :data:`CHAIN_MAX` commits, a commit there has no log, or the
    logs do not follow on from one another.
    """
    if base is None:
        return None
    commits: list[pygit2.Commit] = []
    cur = tip
    try:
        while cur != base:
            if len(commits) >= CHAIN_MAX:
                return None
            found = repo.get(cur)
            if not isinstance(found, pygit2.Commit) or not found.parent_ids:
                return None
            commits.append(found)
            cur = str(found.parent_ids[0])
        chain: list[ChangeLog] = []
        for commit in reversed(commits):  # oldest first: each parent checked first
            log = trusted_log(repo, commit)
            if log is None:
                return None
            chain.append(log)
        chain.reverse()
    except (KeyError, ValueError, pygit2.GitError, FormatVersionError):
        # unreadable or hostile objects on the way (CorruptRecordError is a
        # ValueError): the trees are walked instead, and checked then
        return None
    return _compose(chain)


def _one_arrayset(log: ChangeLog) -> Net | None:
    """What :func:`_compose` makes of ``log`` alone when its rows are of one
    arrayset, each key once (the common case), in two passes of
    comprehensions; None for any other log."""
    rows = log.rows
    names = {r[0] for r in rows}
    if len(names) != 1:
        return None
    per = {enc: (old, new) for _, enc, old, new in rows}
    if len(per) != len(rows):
        return None
    per = {k: v for k, v in per.items() if v[0] != v[1]}
    return {names.pop(): per} if per else {}


def _compose(chain: list[ChangeLog]) -> tuple[Net, set[str]] | None:
    """The net changes of ``chain`` (newest log first); None when its logs do
    not follow on from one another."""
    if len(chain) == 1:
        one = _one_arrayset(chain[0])
        if one is not None:
            return one, set(chain[0].unlogged)
    net: Net = {}
    unlogged: set[str] = set()
    for log in reversed(chain):  # oldest first
        unlogged |= log.unlogged
        for aset, enc, old, new in log.rows:
            per = net.setdefault(aset, {})
            prev = per.get(enc)
            if prev is None:
                per[enc] = (old, new)
            elif prev[1] != old:  # the logs do not follow on from one another
                return None
            else:
                per[enc] = (prev[0], new)
    for aset in list(net):
        per = {k: v for k, v in net[aset].items() if v[0] != v[1]}
        if per:
            net[aset] = per
        else:
            del net[aset]
    return net, unlogged


def from_trees(
    repo: pygit2.Repository,
    parent: str | None,
    before: bytes | None,
    after: bytes,
    limit: int | None = CHANGES_MAX,
) -> ChangeLog | None:
    """The log of a commit with records tree ``after`` against its first
    parent ``parent`` (records tree ``before``), found by walking both trees
    (skipping equal subtrees); None when it changes more than ``limit``
    samples. Arraysets created, removed or given another schema are unlogged.
    """
    from .snapshot import TreeRecords
    from .walk import Trees, sample_triples  # the walk diffs use without logs

    now, was = TreeRecords(repo, after), TreeRecords(repo, before)
    log = ChangeLog(parent)
    trees = Trees(repo)
    for name in sorted(set(now.aset_entries) | set(was.aset_entries)):
        eb, ea = was.aset_entries.get(name), now.aset_entries.get(name)
        if eb == ea:
            continue
        if eb is None or ea is None:
            log.unlogged.add(name)
            continue
        tb, ta = parse_tree(read_raw(repo, eb[1])), parse_tree(read_raw(repo, ea[1]))
        if tb.get("schema") != ta.get("schema"):
            log.unlogged.add(name)
            continue
        sb = tb["samples"][1] if "samples" in tb else None
        sa = ta["samples"][1] if "samples" in ta else None
        for enc, t in sample_triples(trees, (sb, sa, sb)).items():
            log.rows.append((name, enc, t[0], t[1]))
        if limit is not None and len(log.rows) > limit:
            return None
    return log


def attach(repo: pygit2.Repository, tree: bytes, log: ChangeLog) -> bytes:
    """Root tree ``tree`` with ``log`` as its ``changes`` entry."""
    root = parse_tree(read_raw(repo, tree))
    root[CHANGES_NAME] = (MODE_BLOB, write_blob(repo, encode(log)))
    out = write_tree(repo, serialize_tree(root))
    if trust.is_trusted(repo, tree):  # the log was found by a walk of trusted trees
        trust.remember(repo, out)
        trust.remember(repo, out, trust.LOG)
        if trust.is_trusted(repo, tree, trust.PAYLOADS):
            trust.remember(repo, out, trust.PAYLOADS)
    return out


def verify(repo: pygit2.Repository, commit: pygit2.Commit) -> list[str]:
    """Problems of ``commit``'s change log against its trees (empty when sound
    or when it has none): the parent it names, and every logged arrayset's
    changes, compared with a walk of the parent's and the commit's trees."""
    entry = parse_tree(read_raw(repo, commit.tree_id)).get(CHANGES_NAME)
    if entry is None:
        return []
    if entry[0] != MODE_BLOB:
        return ["is not a blob"]
    try:
        log = parse(read_raw(repo, entry[1]))
    except ValueError as exc:
        return [str(exc)]
    parent = str(commit.parent_ids[0]) if commit.parent_ids else None
    if log.parent != parent:
        return [f"names parent {log.parent}, the commit's first parent is {parent}"]
    parent_commit = repo.get(parent) if parent else None
    if parent is not None and not isinstance(parent_commit, pygit2.Commit):
        return [f"names parent {parent}, which is not a commit here"]
    before = parent_commit.tree_id.raw if isinstance(parent_commit, pygit2.Commit) else None
    walked = from_trees(repo, parent, before, commit.tree_id.raw, limit=None)
    assert walked is not None
    problems = []
    for name in sorted(walked.unlogged - log.unlogged):
        problems.append(f"arrayset {name!r} was created, removed or replaced but is not marked")
    want: dict[str, set] = {}
    for r in walked.rows:
        want.setdefault(r[0], set()).add(r)
    got: dict[str, set] = {}
    for r in log.rows:
        got.setdefault(r[0], set()).add(r)
    for name in sorted((set(want) | set(got)) - log.unlogged):
        if want.get(name, set()) != got.get(name, set()):
            problems.append(f"the changes logged for arrayset {name!r} differ from its records")
    return problems
