"""One sample at two commits and at their merge base: what a conflict is made of.

When a merge conflicts on a sample, :func:`compare_sample` reads it on both
sides and at the merge base, and says for each pair how it differs: shapes,
dtypes, how many elements differ and by how much at most
(``git hangar diff A B --key ARRAYSET/KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..naming import decode_key, encode_key
from ..records.snapshot import TreeRecords, commit_tree
from ..records.validate import check_payload
from ..schema import ArraysetSchema

if TYPE_CHECKING:
    from ..repository import Repository

Key = str | int


@dataclass(frozen=True)
class SampleSide:
    """The sample at one commit.

    Attributes
    ----------
    label : str
        What the commit was named by (a branch, a hash, or ``merge base``).
    commit : str
        Its hash.
    array : numpy.ndarray or None
        The sample; None when the commit does not hold it.
    """

    label: str
    commit: str
    array: np.ndarray | None

    def describe(self) -> str:
        """``shape (2, 3), dtype float32``, or ``absent``."""
        if self.array is None:
            return "absent"
        return f"shape {self.array.shape}, dtype {self.array.dtype}"


@dataclass(frozen=True)
class Difference:
    """How two arrays differ.

    Attributes
    ----------
    equal : bool
        Same shape, dtype and values (NaN equals NaN).
    differing : int or None
        Elements whose values differ (None when the shapes differ).
    size : int
        Elements compared.
    max_abs : float or None
        Largest absolute difference (None when the shapes differ or the
        values are not numbers).
    """

    equal: bool
    differing: int | None
    size: int
    max_abs: float | None

    def describe(self) -> str:
        """A few words for people."""
        if self.equal:
            return "identical"
        if self.differing is None:
            return "shapes differ"
        text = f"{self.differing} of {self.size} elements differ"
        if self.max_abs is not None:
            text += f", max abs diff {self.max_abs:.6g}"
        return text


def difference(x: np.ndarray, y: np.ndarray) -> Difference:
    """How ``y`` differs from ``x``."""
    if x.shape != y.shape:
        return Difference(False, None, max(x.size, y.size), None)
    try:
        ne = ~((x == y) | (_isnan(x) & _isnan(y)))
    except (TypeError, ValueError):
        ne = np.ones(x.shape, bool)
    differing = int(np.count_nonzero(ne))
    max_abs: float | None = None
    if x.dtype.kind in "biufc" and y.dtype.kind in "biufc":
        wide = np.result_type(x.dtype, y.dtype, np.float64)
        delta = np.abs(x.astype(wide) - y.astype(wide)) if x.size else np.zeros(0)
        max_abs = float(np.nanmax(delta)) if differing and delta.size else 0.0
    equal = differing == 0 and x.dtype == y.dtype
    return Difference(equal, differing, int(x.size), max_abs)


def _isnan(a: np.ndarray) -> np.ndarray:
    return np.isnan(a) if a.dtype.kind in "fc" else np.zeros(a.shape, bool)


@dataclass(frozen=True)
class SampleComparison:
    """A sample of ``arrayset`` at commits ``a`` and ``b`` and their merge base.

    Attributes
    ----------
    arrayset : str
    key : str or int
        The sample key found (a digit string names an int key when no str
        key of that text exists).
    a, b : SampleSide
        The two sides.
    base : SampleSide or None
        Their merge base; None when they share no history.
    """

    arrayset: str
    key: Key
    a: SampleSide
    b: SampleSide
    base: SampleSide | None

    def between(self) -> Difference | None:
        """How ``b`` differs from ``a`` (None when either lacks the sample)."""
        if self.a.array is None or self.b.array is None:
            return None
        return difference(self.a.array, self.b.array)

    def lines(self) -> list[str]:
        """The comparison as lines for people."""
        out = [f"{self.arrayset}[{self.key!r}]"]
        sides = [s for s in (self.base, self.a, self.b) if s is not None]
        width = max(len(s.label) for s in sides)
        for side in sides:
            text = f"  {side.label:<{width}}  {side.commit[:10]}  {side.describe()}"
            if side is not self.base and self.base is not None:
                text += f"; vs merge base: {_vs(self.base.array, side.array)}"
            out.append(text)
        out.append(f"  {self.a.label} vs {self.b.label}: {_vs(self.a.array, self.b.array)}")
        return out


def _vs(x: np.ndarray | None, y: np.ndarray | None) -> str:
    if x is None and y is None:
        return "absent on both"
    if x is None:
        return "added"
    if y is None:
        return "removed"
    return difference(x, y).describe()


def _candidates(key: Key) -> list[Key]:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ValueError(f"a sample key is a str or int, not {key!r}")
    if isinstance(key, int):
        return [key]
    if key[:2] in ("s:", "i:"):
        return [decode_key(key)]
    return [key, int(key)] if key.isdigit() else [key]


def _side(
    repo: Repository, label: str, commit: str, arrayset: str, keys: list[Key]
) -> tuple[SampleSide, Key | None]:
    """The sample at ``commit``, and the key of ``keys`` it is held under.

    The record is found through the one fan-out leaf that holds it, and the
    payload read from the local store, verified against its digest (and its
    kind against the schema unless the records were built here); a payload
    not stored here is read through a checkout, which says why it cannot
    be (or fetches it).
    """
    git = repo.git_repository()
    records = TreeRecords(git, commit_tree(git, commit))
    if arrayset not in records.aset_entries:
        return SampleSide(label, commit, None), None
    samples = records.samples(arrayset)
    for k in keys:
        enc = encode_key(k)
        digest = samples.get(enc)
        if digest is None:
            continue
        reader = repo.payload_store.reader()
        try:
            loc = reader.locate(digest)
            arr = reader.read(loc, digest) if loc is not None else None
        finally:
            reader.close()
        if arr is None:
            with repo.checkout(commit=commit) as co:
                arr = np.asarray(co.arraysets[arrayset][k])
        elif not records.payloads_trusted:
            schema = ArraysetSchema.from_json(records.schema_text(arrayset))
            arr = check_payload(schema, arr, arrayset, enc)
        return SampleSide(label, commit, arr), k
    return SampleSide(label, commit, None), None


def compare_sample(
    repo: Repository, a: str | None, b: str, arrayset: str, key: Key
) -> SampleComparison:
    """Read sample ``arrayset[key]`` at STARTPOINTs ``a``, ``b`` and their merge base.

    Parameters
    ----------
    repo : Repository
    a, b : str
        Branch names (local or ``remote/branch``) or commit hash prefixes;
        ``a`` None for the head of the staging area's branch.
    arrayset : str
    key : str or int
        The key; ``s:NAME``/``i:NUMBER`` pick the type, a digit string
        means the int key when no str key of that text exists.

    Returns
    -------
    SampleComparison

    Raises
    ------
    LookupError
        If ``a`` or ``b`` names no data commit, or no side holds the sample.
    """
    git = repo.git_repository()
    left, right = repo.resolve_startpoint(a), repo.resolve_startpoint(b)
    a = a if a is not None else left.branch or left.commit[:10]
    base_oid = git.merge_base(left.commit, right.commit)
    keys = _candidates(key)
    targets = [(a, left.commit), (b, right.commit)]
    if base_oid is not None:
        targets.append(("merge base", str(base_oid)))
    found = [_side(repo, label, commit, arrayset, keys) for label, commit in targets]
    held = [k for _, k in found if k is not None]
    if not held:
        raise LookupError(f"no sample {key!r} of arrayset {arrayset!r} at {a}, {b} or their base")
    chosen = min(held, key=keys.index)  # the str key where a side holds it, on every side
    if any(k is not None and k != chosen for _, k in found):
        found = [
            (side, k) if k == chosen else _side(repo, side.label, side.commit, arrayset, [chosen])
            for side, k in found
        ]
        held = [chosen]
    base = found[2][0] if base_oid is not None else None
    return SampleComparison(arrayset, held[0], found[0][0], found[1][0], base)


def parse_sample_spec(spec: str) -> tuple[str, Key]:
    """``ARRAYSET/KEY`` as ``(arrayset, key)``; the key as :func:`compare_sample` takes it.

    Raises
    ------
    ValueError
        Unless ``spec`` has a non-empty arrayset and key around a ``/``.
    """
    name, sep, key = spec.partition("/")
    if not sep or not name or not key:
        raise ValueError(f"{spec!r}: expected ARRAYSET/KEY (e.g. images/0001)")
    return name, key


def sample_diff_lines(repo: Repository, a: str | None, b: str | None, spec: str) -> list[str]:
    """``git hangar diff [A] B --key ARRAYSET/KEY``: the sample at the two
    STARTPOINTs (one given: the branch head and it) and their merge base."""
    if a is None:
        raise ValueError("--key compares two STARTPOINTs: give A (and B)")
    left, right = (None, a) if b is None else (a, b)
    arrayset, key = parse_sample_spec(spec)
    return compare_sample(repo, left, right, arrayset, key).lines()


__all__ = [
    "Difference",
    "SampleComparison",
    "SampleSide",
    "compare_sample",
    "difference",
    "parse_sample_spec",
    "sample_diff_lines",
]
