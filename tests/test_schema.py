"""Unit tests of arrayset schemas: dtype and shape checks, canonical JSON,
and sample validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar_git.schema import MAX_RANK, ArraysetSchema, check_dtype, check_shape

OK_DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"]


@pytest.mark.parametrize("dt", OK_DTYPES)
def test_check_dtype_accepts_numeric(dt):
    assert check_dtype(dt) == np.dtype(dt)
    assert check_dtype(np.dtype(dt).type) == np.dtype(dt)


@pytest.mark.parametrize(
    "dt",
    [
        object,
        "O",
        "U3",
        "S3",
        "V8",
        "M8[s]",
        "m8[s]",
        [("a", "i4")],
        ">i4" if np.little_endian else "<i4",
        ("i4", (2,)),
        "nonsense",
        3.5,
    ],
)
def test_check_dtype_refuses(dt):
    with pytest.raises(ValueError):
        check_dtype(dt)


@pytest.mark.parametrize(
    "shape,expect",
    [
        (3, (3,)),
        ((3,), (3,)),
        ([1, 2], (1, 2)),
        ((), ()),
        (np.int32(4), (4,)),
        ((np.int64(2), 5), (2, 5)),
        ((1,) * MAX_RANK, (1,) * MAX_RANK),
    ],
)
def test_check_shape_accepts(shape, expect):
    got = check_shape(shape)
    assert got == expect and all(type(d) is int for d in got)


@pytest.mark.parametrize(
    "shape",
    [0, -1, (0,), (2, 0), (2, -3), (1,) * (MAX_RANK + 1), "3", (2.0,), (True,), True, None, {2: 3}],
)
def test_check_shape_refuses(shape):
    with pytest.raises(ValueError):
        check_shape(shape)


def test_json_is_canonical_and_roundtrips():
    s = ArraysetSchema(np.dtype("u1"), (28, 28), False, True)
    text = s.to_json()
    assert json.loads(text) == {
        "dtype": "|u1",
        "named_samples": True,
        "shape": [28, 28],
        "variable_shape": False,
    }
    assert " " not in text
    assert ArraysetSchema.from_json(text) == s
    assert ArraysetSchema.from_json(text).to_json() == text


@given(
    dt=st.sampled_from(OK_DTYPES),
    shape=st.lists(st.integers(1, 1000), max_size=4).map(tuple),
    var=st.booleans(),
    named=st.booleans(),
)
def test_schema_roundtrip_and_hash(dt, shape, var, named):
    s = ArraysetSchema(np.dtype(dt), shape, var, named)
    back = ArraysetSchema.from_json(s.to_json())
    assert back == s and back.schema_hash == s.schema_hash
    other = ArraysetSchema(np.dtype(dt), shape, not var, named)
    assert other.schema_hash != s.schema_hash


def test_validate_fixed():
    s = ArraysetSchema(np.dtype("f4"), (2, 3))
    a = np.zeros((2, 3), np.float32)
    assert s.validate(a) is a
    for bad in (
        np.zeros((2, 3), np.float64),
        np.zeros((3, 2), np.float32),
        np.zeros((2, 2), np.float32),
        np.zeros((2, 3, 1), np.float32),
        np.zeros((2, 6), np.float32)[:, ::2],
        np.asfortranarray(a),
        [[0.0] * 3] * 2,
        "abc",
        None,
    ):
        with pytest.raises(ValueError):
            s.validate(bad)


def test_validate_ndarray_subclass_is_accepted_as_plain_array():
    class Sub(np.ndarray):
        pass

    s = ArraysetSchema(np.dtype("i8"), (4,))
    got = s.validate(np.arange(4).view(Sub))
    assert type(got) is np.ndarray and got.tolist() == [0, 1, 2, 3]


def test_validate_variable():
    s = ArraysetSchema(np.dtype("u1"), (4, 5), variable_shape=True)
    for ok in ((4, 5), (1, 1), (4, 1), (2, 5)):
        s.validate(np.zeros(ok, np.uint8))
    for bad in ((5, 5), (4, 6), (0, 3), (3, 0), (4,), (1, 1, 1)):
        with pytest.raises(ValueError):
            s.validate(np.zeros(bad, np.uint8))


def test_rank_zero_schema():
    s = ArraysetSchema(np.dtype("f8"), ())
    s.validate(np.array(1.5))
    with pytest.raises(ValueError):
        s.validate(np.array([1.5]))
