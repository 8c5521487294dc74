"""The one record walker (records/leaves.py) and what it answers for many
commits (records/reachable.py): every record found, each tree read once,
damage named and never raised by the walker, refused by the answers."""

from __future__ import annotations

import json

import numpy as np
import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pygit2.enums import ObjectType

from hangar_git.errors import CorruptRecordError, FormatVersionError, HangarError
from hangar_git.gitutil import read_raw, write_blob, write_tree
from hangar_git.records import leaves, reachable, validate
from hangar_git.records.layout import (
    FORMAT_VERSION,
    MODE_BLOB,
    MODE_LINK,
    MODE_TREE,
    parse_tree,
    serialize_tree,
)
from hangar_git.records.leaves import RecordWalker
from hangar_git.records.reachable import leaf_ids, new_leaves, referenced_digests
from hangar_git.store.digest import array_digest

#: samples of the fanned-out arrayset (over the 1,024 of a flat one)
N_BIG = 1500


def img(i: int) -> np.ndarray:
    return np.full((3,), i, dtype=np.int32)


@pytest.fixture
def hist(repo):
    """master: c1 (big 0..1499, small 0..9, metadata), c2 (5 of big changed,
    small untouched), c3 (small grows); dev from c1: big gets 3 new samples."""
    co = repo.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=(3,), dtype=np.int32)
    small = co.arraysets.init_arrayset("small", shape=(2,), dtype=np.int64)
    with big, small:
        for i in range(N_BIG):
            big[i] = img(i)
        for i in range(10):
            small[i] = np.array([i, -i], dtype=np.int64)
    co.metadata["about"] = "history"
    c1 = co.commit("one")
    with big:
        for i in range(5):
            big[i] = img(10_000 + i)
    c2 = co.commit("two")
    with small:
        small["extra"] = np.array([7, 7], dtype=np.int64)
    c3 = co.commit("three")
    co.close()
    repo.create_branch("dev", c1)
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["big"] as big:
        for i in range(3):
            big[f"new{i}"] = img(20_000 + i)
    c4 = co.commit("dev")
    co.close()
    return repo, {"c1": c1, "c2": c2, "c3": c3, "c4": c4}


def digests_of(repo, commit, names=None) -> dict[bytes, str]:
    """``{digest: arrayset}`` read through a checkout, in arrayset order."""
    co = repo.checkout(commit=commit)
    try:
        out: dict[bytes, str] = {}
        for name in sorted(co.arraysets):
            if names is None or name in names:
                aset = co.arraysets[name]
                for k in aset:
                    out.setdefault(array_digest(aset[k]), name)
        return out
    finally:
        co.close()


def craft(repo, branch, mutate) -> str:
    """A commit on ``branch``: master's head tree changed by ``mutate(git, root)``."""
    git = repo.git_repository()
    head = git.references["refs/hangar/heads/master"].target
    root = parse_tree(read_raw(git, git.get(head).tree_id.raw))
    root.pop("changes", None)  # the log names master's parent, not this commit's
    mutate(git, root)
    tree = write_tree(git, serialize_tree(root))
    sig = pygit2.Signature("t", "t@example.org")
    sha = git.create_commit(None, sig, sig, "crafted", pygit2.Oid(raw=tree), [head])
    git.references.create(f"refs/hangar/heads/{branch}", sha)
    return str(sha)


def rewrite(git, root, names, change) -> None:
    """Replace the tree at ``root/names...`` by ``change(its entries)``."""
    oid = root[names[0]][1]
    entries = parse_tree(read_raw(git, oid))
    if len(names) == 1:
        change(entries)
    else:
        rewrite(git, entries, names[1:], change)
    root[names[0]] = (MODE_TREE, write_tree(git, serialize_tree(entries)))


# ---- a sound history ---------------------------------------------------------------
def test_walker_reads_every_record_of_a_commit(hist):
    repo, c = hist
    walker = RecordWalker(repo.git_repository())
    rec = walker.commit(c["c1"])
    assert [a.name for a in rec.arraysets] == ["big", "small"]
    assert all(a.readable and a.samples is not None for a in rec.arraysets)
    assert rec.metadata is not None and rec.error is None and not rec.problems
    assert walker.check(c["c1"]) == []
    big = rec.arraysets[0]
    tree = walker.samples(big.samples)
    assert len(tree.leaves) > 1 and all(len(p) == 1 for p, _ in tree.leaves)  # fanned out
    records = {}
    for _, leaf in walker.iter_samples(big.samples):
        records.update(leaf)
    assert len(records) == N_BIG
    schema = walker.schema(big.schema)
    assert schema.dtype == np.int32 and schema.shape == (3,)
    assert walker.commit(c["c1"]) is rec  # kept


def test_referenced_digests_match_the_checkouts_in_record_order(hist):
    repo, c = hist
    git = repo.git_repository()
    for sha in c.values():
        got = referenced_digests(git, [sha])
        want = digests_of(repo, sha)
        assert got == want
        assert [a for a in got.values()] == [a for a in want.values()]  # arraysets by name
    every: dict[bytes, str] = {}
    for sha in c.values():
        for d, a in digests_of(repo, sha).items():
            every.setdefault(d, a)
    assert referenced_digests(git, list(c.values())) == every
    assert referenced_digests(git, [c["c3"]], {"small"}) == digests_of(repo, c["c3"], {"small"})
    assert referenced_digests(git, [c["c3"]], set()) == {}


def test_referenced_digests_take_the_digests_without_building_records(hist, monkeypatch):
    """The digests of each leaf are read straight from its tree (no
    ``{key: digest}`` built), trusted tree or not, with the same answer."""
    repo, c = hist
    plain = craft(repo, "plain", lambda git, root: None)  # a tree never checked here
    git = repo.git_repository()
    walker = RecordWalker(git, use_trust=True)
    assert not walker.commit(plain).trusted
    want = digests_of(repo, c["c3"])

    parsed: list[bytes] = []
    real = leaves.parsed_leaf

    def counting(repo_, oid, *args, **kw):
        parsed.append(oid)
        return real(repo_, oid, *args, **kw)

    monkeypatch.setattr(leaves, "parsed_leaf", counting)
    for sha in (c["c3"], plain):
        got = referenced_digests(git, [sha])
        assert got == want and list(got.values()) == list(want.values())
    every = digests_of(repo, c["c1"])
    for d, a in digests_of(repo, c["c4"]).items():
        every.setdefault(d, a)
    assert referenced_digests(git, [c["c1"], c["c4"]]) == every
    assert parsed == []  # (checkouts parse leaves through records.snapshot)


def test_each_leaf_is_read_once_across_commits(hist, monkeypatch):
    repo, c = hist
    git = repo.git_repository()
    reads: list[bytes] = []
    real = leaves.parsed_leaf

    def counting(repo_, oid, *args, **kw):
        reads.append(oid)
        return real(repo_, oid, *args, **kw)

    monkeypatch.setattr(leaves, "parsed_leaf", counting)
    walker = RecordWalker(git, keep_leaves=False)
    got = list(new_leaves(walker, [c["c1"], c["c2"], c["c3"], c["c4"]]))
    assert len(reads) == len(set(reads)) == len(got)
    first = leaf_ids(git, [c["c1"]])
    # c2 changed 5 samples of big: at most 5 leaves of big are new, small is shared
    later = [leaf for leaf in got if leaf.commit == c["c2"]]
    assert 1 <= len(later) <= 5 and {leaf.arrayset for leaf in later} == {"big"}
    assert not any(leaf.oid in first for leaf in got if leaf.commit != c["c1"])


def test_a_walker_reads_each_tree_once(hist, monkeypatch):
    repo, c = hist
    git = repo.git_repository()
    reads: list[bytes] = []
    real = validate.read_tree

    def counting(repo_, oid, what):
        reads.append(oid)
        return real(repo_, oid, what)

    monkeypatch.setattr(validate, "read_tree", counting)
    # a change log is checked by a walk of its own (records/changelog.py)
    monkeypatch.setattr(RecordWalker, "changes", lambda self, sha: [])
    walker = RecordWalker(git)
    for sha in c.values():
        assert walker.check(sha) == []
    sids = {a.samples for sha in c.values() for a in walker.commit(sha).arraysets}
    # the depth of a fan-out is found by reading its first leaf: once per samples tree
    assert len(reads) - len(set(reads)) <= len(sids)
    reads.clear()
    monkeypatch.setattr(leaves, "parsed_leaf", lambda *a, **k: pytest.fail("leaf read again"))
    for sha in c.values():
        assert walker.check(sha) == []
        for aset in walker.commit(sha).arraysets:
            for _ in walker.iter_samples(aset.samples):
                pass
    assert reads == []


def test_skip_leaves_known_elsewhere(hist):
    repo, c = hist
    git = repo.git_repository()
    known = leaf_ids(git, [c["c1"]])
    new = referenced_digests(git, [c["c4"]], skip=known)
    assert set(new) <= set(digests_of(repo, c["c4"]))
    assert {array_digest(img(20_000 + i)) for i in range(3)} <= set(new)
    assert len(new) < N_BIG  # only the leaves dev changed
    # a whole samples tree may be skipped too
    rec = RecordWalker(git).commit(c["c1"])
    small = next(a for a in rec.arraysets if a.name == "small")
    assert set(referenced_digests(git, [c["c1"]], skip={small.samples}).values()) == {"big"}


def test_leaf_ids_reads_no_leaf(hist, monkeypatch):
    repo, c = hist
    monkeypatch.setattr(leaves, "parsed_leaf", lambda *a, **k: pytest.fail("leaf read"))
    ids = leaf_ids(repo.git_repository(), [c["c1"], c["c2"]])
    assert len(ids) > 2


def test_commits_between_several_heads_lists_each_commit_once(hist):
    repo, c = hist
    git = repo.git_repository()
    both = reachable.commits_between(git, [c["c3"], c["c4"]], ())
    assert sorted(both) == sorted({c["c1"], c["c2"], c["c3"], c["c4"]})
    assert reachable.commits_between(git, [c["c3"], c["c4"]], [c["c2"]]) in (
        [c["c3"], c["c4"]],
        [c["c4"], c["c3"]],
    )


def test_the_transfer_module_answers_with_the_same_walk():
    from hangar_git.remotes import transfer

    assert transfer.leaf_ids is reachable.leaf_ids
    assert transfer.commits_between is reachable.commits_between


# ---- damage -------------------------------------------------------------------------
def test_key_in_the_wrong_leaf_is_named_and_the_others_kept(hist):
    repo, c = hist

    def move(git, root):
        def change(samples):
            names = sorted(samples)
            a = dict(parse_tree(read_raw(git, samples[names[0]][1])))
            b = parse_tree(read_raw(git, samples[names[1]][1]))
            key = sorted(b)[0]
            a[key] = b[key]
            samples[names[0]] = (MODE_TREE, write_tree(git, serialize_tree(a)))
            move.key, move.leaf = key, names[0]

        rewrite(git, root, ["arraysets", "big", "samples"], change)

    sha = craft(repo, "moved", move)
    git = repo.git_repository()
    walker = RecordWalker(git)
    problems = walker.check(sha)
    assert problems == [
        (
            f"arraysets/big/samples/{move.leaf}",
            f"sample key {move.key!r} is in the wrong fan-out leaf",
        )
    ]
    rec = walker.commit(sha)
    big = rec.arraysets[0]
    n = sum(len(r) for _, r in walker.iter_samples(big.samples))
    assert n == N_BIG  # the misplaced copy is left out, its original is counted
    with pytest.raises(CorruptRecordError, match="wrong fan-out leaf"):
        referenced_digests(git, [sha])
    # the damage is in another arrayset than the one asked for
    assert referenced_digests(git, [sha], {"small"}) == digests_of(repo, c["c3"], {"small"})


def test_damage_beside_the_samples_is_refused_only_when_strict(hist):
    repo, c = hist

    def bad_meta(git, root):
        rewrite(
            git,
            root,
            ["metadata"],
            lambda m: m.__setitem__("s:bin", (MODE_BLOB, write_blob(git, b"\xff"))),
        )

    sha = craft(repo, "badmeta", bad_meta)
    git = repo.git_repository()
    assert [p for p, _ in RecordWalker(git).check(sha)] == ["metadata/s:bin"]
    assert referenced_digests(git, [sha]) == digests_of(repo, c["c3"])
    with pytest.raises(CorruptRecordError, match="metadata/s:bin"):
        referenced_digests(git, [sha], strict=True)


def test_unreadable_commits(hist):
    repo, _ = hist

    def newer(git, root):
        blob = json.dumps({"hangar_git_format": FORMAT_VERSION + 1}).encode()
        root["hangar.json"] = (MODE_BLOB, write_blob(git, blob))

    def missing_samples(git, root):
        rewrite(
            git,
            root,
            ["arraysets", "small"],
            lambda a: a.__setitem__("samples", (MODE_TREE, b"\x42" * 20)),
        )

    git = repo.git_repository()
    future = craft(repo, "future", newer)
    walker = RecordWalker(git)
    rec = walker.commit(future)
    assert isinstance(rec.error, FormatVersionError) and rec.arraysets == ()
    assert [p for p, _ in walker.check(future)] == ["hangar.json"]
    with pytest.raises(FormatVersionError):
        referenced_digests(git, [future])
    gone = craft(repo, "gone", missing_samples)
    assert [p for p, _ in walker.check(gone)] == ["arraysets/small/samples"]
    with pytest.raises(CorruptRecordError, match="arraysets/small/samples"):
        referenced_digests(git, [gone])
    assert set(referenced_digests(git, [gone], {"big"}).values()) == {"big"}
    assert walker.check("0" * 40)[0][0] == ""  # no such commit


# ---- hostile trees: the walker never raises, the answers raise only hangar errors ---
PIECES = st.recursive(
    st.one_of(
        st.binary(max_size=40).map(lambda b: ("blob", b)),
        st.binary(min_size=20, max_size=20).map(lambda b: ("oid", b)),
    ),
    lambda kids: st.lists(
        st.tuples(
            st.sampled_from([b"40000", b"100644", b"160000", b"100755"]),
            st.sampled_from([b"i:0", b"i:07", b"s:a b", b"00", b"ab", b"abcde", b"zz", b"x"]),
            kids,
        ),
        max_size=3,
    ).map(lambda e: ("tree", e)),
    max_leaves=6,
)


def _write(git, node) -> bytes:
    kind, body = node
    if kind == "blob":
        return git.odb.write(ObjectType.BLOB, body).raw
    if kind == "oid":
        return body
    data = b"".join(m + b" " + n + b"\x00" + _write(git, c) for m, n, c in body)
    return git.odb.write(ObjectType.TREE, data).raw


@pytest.mark.parametrize("where", ["arraysets", "aset", "samples", "leaf", "metadata"])
def test_hostile_pieces(hist, where):
    repo, _ = hist
    git = repo.git_repository()
    outcomes: list[bool] = []

    @settings(max_examples=25, deadline=None, database=None)
    @given(piece=PIECES, mode=st.sampled_from([MODE_TREE, MODE_BLOB, MODE_LINK]))
    def run(piece, mode):
        oid = _write(git, piece)

        def put(git_, root):
            if where == "arraysets":
                rewrite(git_, root, ["arraysets"], lambda t: t.__setitem__("nums", (mode, oid)))
            elif where == "aset":
                rewrite(
                    git_,
                    root,
                    ["arraysets", "small"],
                    lambda t: t.__setitem__("samples", (mode, oid)),
                )
            elif where == "samples":
                rewrite(
                    git_,
                    root,
                    ["arraysets", "big", "samples"],
                    lambda t: t.__setitem__("0f", (mode, oid)),
                )
            elif where == "leaf":
                rewrite(
                    git_,
                    root,
                    ["arraysets", "small", "samples"],
                    lambda t: t.__setitem__("s:zz", (mode, oid)),
                )
            else:
                rewrite(git_, root, ["metadata"], lambda t: t.__setitem__("s:k", (mode, oid)))

        sha = craft(repo, "hostile", put)
        try:
            problems = RecordWalker(git).check(sha)
            assert all(isinstance(p, str) and isinstance(w, str) for p, w in problems)
            try:
                referenced_digests(git, [sha], strict=True)
            except HangarError:
                refused = True
            else:
                refused = False
            assert refused == bool(problems), problems
            outcomes.append(refused)
        finally:
            git.references.delete("refs/hangar/heads/hostile")

    run()
    assert any(outcomes)  # damage was made, and found
