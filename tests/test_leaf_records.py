"""Sample records of leaf trees read in array passes (:mod:`hangar_git.records.leaf_records`):
the same records and key hashes as the regular expression and ``zlib.crc32``,
and no answer for anything that is not plainly a chain of canonical records."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git.records import reachable
from hangar_git.records.layout import serialize_links
from hangar_git.records.leaf_records import key_crc32, parse_records


def _digest(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=20).digest()


def _regex_records(data: bytes) -> tuple[list[bytes], list[int]] | None:
    """Keys and record ends as the regular expression of
    :func:`reachable.tree_digests` reads them."""
    names = reachable._RECORD_RE.findall(data)
    ends = np.cumsum([len(k) + 28 for k in names]).tolist()
    if not names or ends[-1] != len(data):
        return None
    return names, ends


def _keys(recs) -> list[bytes]:
    return [bytes(row[:n]) for row, n in zip(recs.keys, recs.lens.tolist(), strict=True)]


def _check_agrees(data: bytes) -> bool:
    """Whenever :func:`parse_records` answers, the regular expression reads the same."""
    recs = parse_records(data)
    if recs is None:
        return False
    want = _regex_records(data)
    assert want is not None
    assert _keys(recs) == want[0]
    assert recs.ends.tolist() == want[1]
    return True


def test_records_and_hashes_of_int_and_string_keys():
    keys = ["i:0", "i:7", "i:12345", "s:a", "s:A-b_c.d", "s:" + "x" * 200, "i:9" * 1]
    links = {k: _digest(i) for i, k in enumerate(keys)}
    data = serialize_links(dict(sorted(links.items())))
    assert _check_agrees(data)
    recs = parse_records(data)
    assert recs is not None
    assert recs.keys.shape[1] == 202  # the longest key: the shorter ones near the end are padded
    want = [zlib.crc32(k) for k in _keys(recs)]
    assert key_crc32(recs.keys, recs.lens).tolist() == want


def test_a_long_key_last_and_short_keys_near_the_end():
    """Keys within the widest key's width of the data's end are copied apart."""
    links = {"s:" + "z" * 200: _digest(1), "i:1": _digest(2), "i:2": _digest(3)}
    data = b"".join(serialize_links({k: v}) for k, v in links.items())
    assert _check_agrees(data)
    recs = parse_records(data)
    assert recs is not None
    assert _keys(recs)[1:] == [b"i:1", b"i:2"]
    assert not recs.keys[1:, 3:].any()  # zero past each key


@pytest.mark.parametrize(
    "bad",
    [
        b"i:01",  # a leading zero
        b"i:1a",  # not a digit
        b"s:a b",  # a space
        b"s:a/b",
        b"x:1",  # no such prefix
        b"i1",
        b"i:",  # empty
        b"s:" + b"y" * 201,  # too long
        b"s:a\x00b",  # a NUL
        b"i:1\x00\x00",
    ],
)
def test_a_key_not_canonical_gets_no_answer(bad):
    good = serialize_links({"i:1": _digest(1), "i:2": _digest(2)})
    data = good + b"160000 " + bad + b"\x00" + _digest(3)
    assert parse_records(data) is None
    assert _regex_records(data) is None  # (the regular expression refuses it too)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"160000 i:1\x00" + b"a" * 19,  # short
        serialize_links({"i:1": _digest(1)}) + b"x",  # bytes after
        b"x" + serialize_links({"i:1": _digest(1)}),  # bytes before
        serialize_links({"i:1": _digest(1)}).replace(b"160000", b"100644"),
        b"40000 i:1\x00" + _digest(1),
    ],
)
def test_anything_but_a_chain_of_records_gets_no_answer(data):
    assert parse_records(data) is None


def test_an_id_holding_the_mode_is_left_to_the_regular_expression():
    """An id with ``160000 `` in it: no answer here, and tree_digests still reads it."""
    odd = b"abc160000 defghijklm"
    assert len(odd) == 20
    links = {"i:1": _digest(1), "i:2": odd, "i:3": _digest(3)}
    data = serialize_links(links)
    assert parse_records(data) is None
    assert reachable.tree_digests([data], [()], trusted=False) == b"".join(links.values())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 10**12).map(lambda i: f"i:{i}"),
            st.text("ab_.-Z09", min_size=1, max_size=30).map(lambda s: f"s:{s}"),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3),
)
def test_answers_only_what_the_regular_expression_reads(keys, flips):
    """Well formed records, then a few bytes changed: an answer, when there is
    one, is the regular expression's, and the key hashes are ``zlib.crc32``."""
    data = bytearray(serialize_links({k: _digest(i) for i, k in enumerate(sorted(set(keys)))}))
    assert _check_agrees(bytes(data))
    for at, value in flips:
        data[at % len(data)] = value
    if _check_agrees(bytes(data)):
        recs = parse_records(bytes(data))
        assert recs is not None
        want = [zlib.crc32(k) for k in _keys(recs)]
        assert key_crc32(recs.keys, recs.lens).tolist() == want
