"""Payload digests: every helper gives the digest of its definition.

The digest is part of the record format: blake2b with a 20-byte digest over
the kind header (``dtype.str|d0,d1,...``), a NUL and the C-order bytes. The
helpers (per array, per stacked row, per row of bytes) are checked here
against that definition computed directly with :mod:`hashlib`, on random
rows of many dtypes and sizes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git.store import digest as digest_mod
from hangar_git.store.digest import (
    array_digest,
    digest_bytes,
    kind_of,
    row_digests,
    stacked_digests,
)
from hangar_git.store.uncommitted import last_occurrences

DTYPES = ["|u1", "<i2", ">i4", "<i8", "<f2", "<f4", ">f8", "|b1", "<c8", "<U3"]
ROW_SHAPES = [(), (0,), (1,), (3,), (28, 28), (7, 5, 3), (2, 1100), (64, 520)]


def _definition(arr: np.ndarray) -> bytes:
    kind = arr.dtype.str + "|" + ",".join(str(s) for s in arr.shape)
    return hashlib.blake2b(kind.encode() + b"\x00" + arr.tobytes(), digest_size=20).digest()


def _rows(dtype: str, shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).integers(0, 256, n * int(np.prod(shape)) * 16, np.uint8)
    dt = np.dtype(dtype)
    count = n * int(np.prod(shape))
    if dt.kind == "b":
        return (raw[:count] & 1).astype(dt).reshape(n, *shape)
    if dt.kind == "U":
        return np.array([chr(65 + int(b) % 26) * 3 for b in raw[:count]], dtype=dt).reshape(
            n, *shape
        )
    return np.frombuffer(raw[: count * dt.itemsize].tobytes(), dt).reshape(n, *shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_every_helper_gives_the_defined_digest(dtype, shape):
    rows = _rows(dtype, shape, 5, seed=len(shape) * 31 + len(dtype))
    one = [rows[i, ...].copy() for i in range(len(rows))]  # 0-d rows stay arrays of dtype
    want = [_definition(r) for r in one]
    assert [array_digest(r) for r in one] == want
    assert stacked_digests(rows) == want
    assert stacked_digests(rows).joined == b"".join(want)  # held joined (see digest_run)
    assert row_digests(kind_of(one[0]), [r.tobytes() for r in one]) == want


def test_distinct_kinds_give_distinct_digests_of_the_same_bytes():
    a = np.arange(12, dtype=np.int32)
    digests = {array_digest(a), array_digest(a.reshape(3, 4)), array_digest(a.view(np.float32))}
    assert len(digests) == 3


# row sizes on both sides of the ways stacked_digests hashes rows: copies of
# spans of _COPY_SPAN bytes (rows not dividing it), views from _VIEW_MIN
# bytes, every core from 64 KiB
_SIZES = st.sampled_from(
    [1, 3, 8, 16, 127, 128, 129, 784, 2047, 2048, 2049, 4095, 4096, 65535, 65536, 70001]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=_SIZES,
    n=st.integers(1, 40),
    dtype=st.sampled_from(["|u1", ">i2", "<f4", "|V1"]),
    seed=st.integers(0, 2**32 - 1),
    spans=st.sampled_from([None, 64, 1000]),
)
def test_stacked_digests_equal_digest_bytes_of_each_row(size, n, dtype, seed, spans):
    dt = np.dtype(dtype)
    if size % dt.itemsize:
        size = size * dt.itemsize
    raw = np.random.default_rng(seed).integers(0, 256, n * size, np.uint8)
    rows = raw.view(dt).reshape(n, size // dt.itemsize)
    kind = kind_of(rows[0])
    want = [digest_bytes(kind, rows[i].tobytes()) for i in range(n)]
    with pytest.MonkeyPatch.context() as mp:
        if spans is not None:  # small spans: many rows cross from one copy to the next
            mp.setattr(digest_mod, "_COPY_SPAN", spans)
        assert stacked_digests(rows) == want
    assert row_digests(kind, [rows[i].tobytes() for i in range(n)]) == want


#: rows of 8 bytes or fewer (those looked at for repeats), and one of 9
_SMALL_ROWS = [
    *[(dt, shape) for dt in ("|u1", "<i2", "|b1", "<f2") for shape in [(), (1,), (3,)]],
    *[(dt, shape) for dt in (">i4", "<i8", ">f8") for shape in [(), (1,)]],
    (">i4", (2,)),
    ("|u1", (9,)),
]


@pytest.mark.parametrize(("dtype", "shape"), _SMALL_ROWS)
@pytest.mark.parametrize("values", [3, 700, None])  # few distinct rows, half, all
def test_stacked_digests_of_small_repeating_rows_are_each_rows_digest(dtype, shape, values):
    """Small rows that repeat (labels) are hashed once per distinct value: each
    row still gets its own row's digest, in order."""
    rng = np.random.default_rng(5)
    n = 3000
    pool = _rows(dtype, shape, values or n, 9)
    rows = pool[rng.integers(0, len(pool), n)] if values else pool
    rows = np.ascontiguousarray(rows)
    want = [_definition(rows[i : i + 1].reshape(shape)) for i in range(n)]  # (0-d: as stored)
    got = stacked_digests(rows)
    assert got == want
    assert got.joined == b"".join(want)


@pytest.mark.parametrize("span", [2, 257, 300, 1 << 16, (1 << 16) + 1, 1 << 40])
def test_repeating_labels_of_any_span_of_values_get_each_rows_digest(span):
    """Labels whose values lie within 65,536 of each other are grouped by a
    radix sort of their offsets, others by a sort of the values: either way
    each row gets its own row's digest, and the rows where each value is last
    are told right."""
    rng = np.random.default_rng(span % 97)
    pool = np.array([7, 7 + span - 1, 7 + span // 2, 7 + span // 3], np.int64)
    rows = pool[rng.integers(0, len(pool), (5000, 1))]
    want = [_definition(rows[i : i + 1].reshape(1)) for i in range(len(rows))]
    got = stacked_digests(rows)
    assert got == want
    # (hashed once per value: where each is last, as a sort of the digests finds it)
    assert got.last is not None
    assert got.last.tolist() == last_occurrences(got.joined).tolist()
