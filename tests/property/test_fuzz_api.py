"""Hostile input: every public entry point, fed wrong types, shapes, dtypes and names.

Each call must either work or raise one of the documented exception types
(ValueError, TypeError, KeyError/LookupError, PermissionError, RuntimeError, or
OSError where a path is concerned) with a message, never anything else, never an
IntegrityError; a call that fails must change nothing (staging area and refs
byte for byte); and ``fsck`` is clean afterwards. Also: no code path unpickles.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git import IntegrityError, Repository
from hangar_git.errors import FormatVersionError
from hangar_git.live_writers import LIVE_WRITERS

API_ERRORS = (ValueError, TypeError, LookupError, PermissionError, RuntimeError)
SETTINGS = settings(
    max_examples=int(os.environ.get("HANGAR_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


class Weird:
    """An object that misbehaves when looked at."""

    def __str__(self) -> str:
        raise RuntimeError("str() of Weird")

    def __index__(self) -> int:
        return 3

    def __len__(self) -> int:
        raise TypeError("len() of Weird")


NAMES = [
    "",
    ".",
    "..",
    "...",
    "/",
    "a/b",
    "../x",
    "\x00",
    "a\x00b",
    "x" * 201,
    "x" * 5000,
    "ü",
    "数据",
    "\u202e",
    "\n",
    " ",
    "a b",
    ".git",
    ".GIT",
    ".git.",
    ".git..",
    "-x",
    "x.lock",
    "s:abc",
    "i:1",
    "HEAD",
    "refs/heads/x",
    "~",
    "^",
    "a..b",
    "@{",
    "*",
    "?",
    "\\",
    "a\\b",
    "master",
    "0",
    "1" * 40,
    "ok",
    "ok.name",
    "-",
    "con",
    "nul",
    "%s%n",
    "{}",
    "a" * 200,
]


def weird_arrays() -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.matrix is pending deprecation
        return _weird_arrays()


def _weird_arrays() -> list[Any]:
    base = np.zeros((3, 4), np.float32)
    out: list[Any] = [
        np.array([1, "a", None], dtype=object),
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f4")]),
        np.zeros(3, dtype=">f4"),
        np.zeros(3, dtype=">i8"),
        np.zeros(3, dtype="datetime64[s]"),
        np.zeros(3, dtype="timedelta64[s]"),
        np.array(["ab", "c"]),
        np.array([b"ab"]),
        np.zeros(3, dtype="V4"),
        np.zeros((0,), np.float32),
        np.zeros((3, 0), np.float32),
        np.array(1.5, np.float32),
        base[:, ::2],
        np.asfortranarray(base),
        base.T,
        np.matrix([[1.0, 2.0]]),
        np.ma.masked_array(np.zeros(3, np.float32), mask=[0, 1, 0]),
        np.zeros((1,) * 32, np.float32),
        np.zeros(3, np.float16),
        np.zeros(3, np.complex64),
        np.ones(3, bool),
        np.zeros(3, np.uint64),
        np.full(3, np.nan, np.float32),
        np.zeros((2, 3), dtype=np.dtype((np.float32, (2,)))),
        np.zeros(3, np.float32),
        np.zeros((3,), np.float64),
        np.zeros((5, 5), np.int16),
        np.zeros((2, 2), np.int16),
        np.zeros(2, np.uint8),
        np.arange(6, dtype=np.float32),
        np.zeros((2, 3), np.float32),
        np.zeros((4, 3), np.float32),
    ]
    return out


ARRAYS = st.sampled_from(weird_arrays())
TEXT = st.one_of(
    st.sampled_from(NAMES), st.text(max_size=20), st.text(alphabet="ab.-_", min_size=1, max_size=8)
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(max_magnitude=5),
    st.binary(max_size=8),
    st.just(np.int64(3)),
    st.just(np.float32(2.5)),
    st.just(np.bool_(True)),
    st.just(Weird()),
    st.just(object()),
    st.just(Path("x")),
    st.just(math.inf),
    st.just(Ellipsis),
    st.just(slice(0, 2)),
)
HOSTILE = st.deferred(
    lambda: st.one_of(
        SCALARS,
        TEXT,
        ARRAYS,
        st.lists(st.one_of(SCALARS, TEXT), max_size=3),
        st.tuples(st.integers(-3, 6), st.integers(-3, 6)),
        st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
        st.dictionaries(TEXT, st.one_of(ARRAYS, SCALARS), max_size=3),
        st.sets(st.integers(0, 5), max_size=3),
        st.frozensets(TEXT, max_size=2),
    )
)


def _snapshot(repo: Repository) -> tuple[bytes, dict[str, str]]:
    git = repo._git_repo()
    journal = repo._journal_path()
    refs = {
        r: str(git.references[r].target) for r in git.references if r.startswith("refs/hangar/")
    }
    return (journal.read_bytes() if journal.exists() else b"", refs)


def attempt(
    repo: Repository, fn: Any, *args: Any, allowed: tuple = API_ERRORS, **kwargs: Any
) -> Any:
    """Call ``fn``; a documented error is fine, with a message and nothing changed."""
    before = _snapshot(repo)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except allowed as exc:
        assert not isinstance(exc, (IntegrityError, FormatVersionError)), repr(exc)
        assert str(exc) or isinstance(exc, KeyError), f"{type(exc).__name__} without message"
        assert _snapshot(repo) == before, f"{fn} failed with {exc!r} but changed the repository"
        return None


@pytest.fixture
def fuzz_repo(repo):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("fz_a", shape=(3,), dtype=np.float32)
    co.arraysets.init_arrayset("fz_v", shape=(5, 5), dtype=np.int16, variable_shape=True)
    co.arraysets.init_arrayset("fz_u", shape=(2,), dtype=np.uint8, named_samples=False)
    a["k0"] = np.zeros(3, np.float32)
    a[7] = np.ones(3, np.float32)
    co.metadata["m"] = "v"
    co.commit("fuzz base")
    co.close()
    repo.create_branch("fz-dev")
    yield repo
    for co in list(LIVE_WRITERS):
        co.close()
    rep = repo.verify(full=True)
    assert rep.ok, rep.summary()


# ---- entry points --------------------------------------------------------------------
@SETTINGS
@given(path=HOSTILE)
def test_open(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)  # "." and ".." must not reach a real repository
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            Repository(path)
        except (TypeError, ValueError, OSError) as exc:
            assert str(exc)


REPO_CALLS = [
    "checkout",
    "create_branch",
    "remove_branch",
    "log",
    "summary",
    "merge",
    "init",
    "verify",
    "gc",
    "remote.add",
    "remote.remove",
    "list_branches",
]


@SETTINGS
@given(which=st.sampled_from(REPO_CALLS), a=HOSTILE, b=HOSTILE, c=HOSTILE)
def test_repository_methods(fuzz_repo, which, a, b, c):
    repo = fuzz_repo
    calls = {
        "checkout": lambda: _close(repo.checkout(write=a, branch=b, commit=c)),
        "create_branch": lambda: repo.create_branch(a, b),
        "remove_branch": lambda: repo.remove_branch(a, force=False),
        "log": lambda: repo.log(branch=a, commit=b, return_contents=True),
        "summary": lambda: repo.summary(branch=a, commit=b, return_contents=True),
        "merge": lambda: repo.merge(a, b, c),
        "init": lambda: repo.init(a, b, remove_old=False),
        "verify": lambda: repo.verify(a),
        "gc": lambda: repo.gc(a),
        "remote.add": lambda: repo.remote.add(a, b, data=c),
        "remote.remove": lambda: repo.remote.remove(a),
        "list_branches": lambda: repo.list_branches(),
    }
    allowed = API_ERRORS + ((OSError,) if which == "init" else ())
    attempt(repo, calls[which], allowed=allowed)
    assert "master" in repo.list_branches()


def _close(co: Any) -> None:
    co.close()


WRITER_CALLS = [
    "add",
    "setitem",
    "update",
    "add_stacked",
    "get",
    "getitem",
    "get_batch",
    "remove",
    "contains",
    "delitem",
    "init_arrayset",
    "arraysets_get",
    "remove_aset",
    "multi_add",
    "meta_add",
    "meta_get",
    "meta_remove",
    "commit",
    "merge",
    "diff_branch",
    "diff_commit",
    "unnamed_add",
    "variable_add",
    "aset_contains",
]


@SETTINGS
@given(which=st.sampled_from(WRITER_CALLS), a=HOSTILE, b=HOSTILE, c=HOSTILE)
def test_writer_methods(fuzz_repo, which, a, b, c):
    repo = fuzz_repo
    co = repo.checkout(write=True)
    try:
        asets = co.arraysets
        aset, var, unnamed = asets["fz_a"], asets["fz_v"], asets["fz_u"]
        calls = {
            "add": lambda: aset.add(a, b),
            "setitem": lambda: aset.__setitem__(a, b),
            "update": lambda: aset.update(a),
            "add_stacked": lambda: aset.add_stacked(a, b),
            "get": lambda: aset.get(a),
            "getitem": lambda: aset[a],
            "get_batch": lambda: aset.get_batch(a),
            "remove": lambda: aset.remove(a),
            "contains": lambda: a in aset,
            "delitem": lambda: aset.__delitem__(a),
            "init_arrayset": lambda: asets.init_arrayset(a, shape=b, dtype=c, named_samples=True),
            "arraysets_get": lambda: asets[a],
            "remove_aset": lambda: asets.remove_aset(a),
            "multi_add": lambda: asets.multi_add(a),
            "meta_add": lambda: co.metadata.add(a, b),
            "meta_get": lambda: co.metadata.get(a),
            "meta_remove": lambda: co.metadata.remove(a),
            "commit": lambda: co.commit(a),
            "merge": lambda: co.merge(a, b),
            "diff_branch": lambda: co.diff.branch(a),
            "diff_commit": lambda: co.diff.commit(a),
            "unnamed_add": lambda: unnamed.add(a),
            "variable_add": lambda: var.add(a, "v1"),
            "aset_contains": lambda: a in asets,
        }
        if which == "remove_aset" and isinstance(a, str) and a in ("fz_a", "fz_v", "fz_u"):
            return
        attempt(repo, calls[which])
        # the writer still works after whatever happened
        aset["after"] = np.full(3, 2.0, np.float32)
        assert (aset["after"] == 2.0).all()
        del aset["after"]
    finally:
        co.close()


READER_CALLS = [
    "get",
    "getitem",
    "get_batch",
    "contains",
    "keys",
    "arraysets_get",
    "meta_get",
    "meta_contains",
    "diff_branch",
    "diff_commit",
    "slice",
]


@SETTINGS
@given(which=st.sampled_from(READER_CALLS), a=HOSTILE, b=HOSTILE)
def test_reader_methods(fuzz_repo, which, a, b):
    repo = fuzz_repo
    co = repo.checkout()
    try:
        aset = co.arraysets["fz_a"]
        calls = {
            "get": lambda: aset.get(a),
            "getitem": lambda: aset[a],
            "get_batch": lambda: aset.get_batch(a),
            "contains": lambda: a in aset,
            "keys": lambda: list(aset.keys()),
            "arraysets_get": lambda: co.arraysets.get(a),
            "meta_get": lambda: co.metadata[a],
            "meta_contains": lambda: a in co.metadata,
            "diff_branch": lambda: co.diff.branch(a),
            "diff_commit": lambda: co.diff.commit(a),
            "slice": lambda: aset[("k0", a)],
        }
        got = attempt(repo, calls[which])
        if which in ("get", "getitem") and got is not None:
            assert got.dtype == np.float32 and got.shape == (3,)
        with pytest.raises(TypeError):  # None on a read checkout, as in the reference
            co.arraysets.init_arrayset("x", prototype=np.zeros(2))
    finally:
        co.close()


@SETTINGS
@given(
    shape=HOSTILE,
    dtype=st.one_of(
        HOSTILE,
        st.sampled_from(
            [object, "O", "V8", "U3", "S2", "M8[s]", ">f4", [("a", "i4")], "f4,f4", "(2,)f4", None]
        ),
    ),
    proto=st.one_of(st.none(), ARRAYS),
    variable=HOSTILE,
    named=HOSTILE,
)
def test_init_arrayset_schemas(fuzz_repo, shape, dtype, proto, variable, named):
    repo = fuzz_repo
    co = repo.checkout(write=True)
    try:
        made = attempt(
            repo,
            co.arraysets.init_arrayset,
            "fz_new",
            shape=shape,
            dtype=dtype,
            prototype=proto,
            named_samples=named,
            variable_shape=variable,
        )
        if made is not None:
            dt = made.dtype
            assert dt.kind in "biufc" and dt.isnative and dt.fields is None
            assert all(isinstance(d, int) and d > 0 for d in made.shape)
            co.arraysets.remove_aset("fz_new")
    finally:
        co.close()


# ---- nothing unpickles ---------------------------------------------------------------
UNPICKLING = re.compile(
    r"\bpickle\.loads?\b|\bcPickle\b|\bdill\b|\bcloudpickle\b|\bjsonpickle\b|\bshelve\b"
    r"|\bmarshal\.loads?\b|allow_pickle\s*=\s*True|\bUnpickler\b|torch\.load\("
)


def test_nothing_unpickles():
    import hangar_git

    root = Path(hangar_git.__file__).parent
    hits = []
    for f in sorted(root.rglob("*.py")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if UNPICKLING.search(line):
                hits.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
            if re.search(r"\bnp\.load\(|numpy\.load\(", line) and "allow_pickle=False" not in line:
                hits.append(
                    f"{f.relative_to(root)}:{n}: np.load without allow_pickle=False: {line.strip()}"
                )
    assert not hits, "\n".join(hits)


def test_object_arrays_never_stored(fuzz_repo):
    co = fuzz_repo.checkout(write=True)
    try:
        for bad in (np.array([{"a": 1}], dtype=object), np.array([[1], "x"], dtype=object)):
            with pytest.raises(ValueError):
                co.arraysets["fz_a"]["o"] = bad
            with pytest.raises(ValueError):
                co.arraysets.init_arrayset("obj", prototype=bad)
    finally:
        co.close()
