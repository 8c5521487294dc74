"""The manifest records the writer produces are byte for byte those of the
reference encoder (the per-entry one the store shipped with format 1), for
payloads noted one by one, rows noted with their digests as a list or joined,
several kinds and records cut across blocks; and they decode back."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git.store import manifest
from hangar_git.store.checksum import crc32
from hangar_git.store.index import Location
from hangar_git.store.manifest import ManifestWriter, decode_record, manifest_path, record_length

# ---------------------------------------------------------------- the reference
MAGIC, VERSION = b"HGM1", 1
_HEAD = struct.Struct("<4sBBHIIII")
_U32 = struct.Struct("<I")
_KLEN = struct.Struct("<H")
_ROW = struct.Struct("<QQI")
ENTRY = np.dtype([("digest", "V20"), ("ioff", "<u4"), ("kind", "<u4")])
_IOFF, _KIND = itemgetter(3), itemgetter(5)


def reference_records(blocks: list[tuple[int, int, Any]], kind_ids: Mapping[str, int]) -> bytes:
    """The records of noted ``blocks`` as format 1 was first written, entry by
    entry (the store's code at d8fbc79, verbatim but for names)."""
    digests: list[bytes] = []
    ioffs: list[int] = []
    kinds: list[int] = []
    rows: list[tuple[int, int, int]] = []
    for boff, blen, what in blocks:
        if type(what) is tuple:
            kid, size, ds, span = what
            part = ds[span]
            n = len(part)
            digests += part
            ioffs += range(0, n * size, size) if size else [0] * n
            kinds += [kid] * n
        else:
            n = len(what)
            locs = what.values()
            digests += what
            ioffs += map(_IOFF, locs)
            kinds += map(_KIND, locs)
        rows.append((boff, blen, n))
    texts = {kid: text.encode() for text, kid in kind_ids.items()}  # a handful of kinds
    joined = b"".join(digests)
    ioff_all = np.array(ioffs, np.uint32)
    kind_all = np.array(kinds, np.uint32)
    out: list[bytes] = []
    part_rows: list[tuple[int, int, int]] = []
    start = pos = 0
    for boff, blen, n in rows:  # cut into records, a block's entries over two if need be
        while n:
            take = min(n, manifest.RECORD_ENTRIES - (pos - start))
            part_rows.append((boff, blen, take))
            pos += take
            n -= take
            if pos - start == manifest.RECORD_ENTRIES:
                out.append(_ref_encode(texts, part_rows, joined, ioff_all, kind_all, start, pos))
                part_rows, start = [], pos
    if part_rows:
        out.append(_ref_encode(texts, part_rows, joined, ioff_all, kind_all, start, pos))
    return b"".join(out)


def _ref_encode(
    texts: Mapping[int, bytes],
    rows: list[tuple[int, int, int]],
    digests: bytes,
    ioffs: np.ndarray,
    kinds: np.ndarray,
    start: int,
    stop: int,
) -> bytes:
    """One record: block ``rows`` and entries ``start:stop`` of the flat arrays."""
    kids = kinds[start:stop]
    ents = np.empty(stop - start, ENTRY)
    ents["digest"] = np.frombuffer(digests, "V20", stop - start, 20 * start)
    ents["ioff"] = ioffs[start:stop]
    k0 = int(kids[0])
    if len(kids) == 1 or (kids == k0).all():  # the usual case: one kind
        uk = [k0]
        ents["kind"] = 0
    else:
        srt = np.sort(kids)  # np.unique, without the import of numpy.ma it makes (30 ms)
        u = srt[np.concatenate(([True], srt[1:] != srt[:-1]))]
        uk = u.tolist()
        ents["kind"] = np.searchsorted(u, kids)
    # a kind id the writer does not know (never so) gets an empty text: refused on reading
    ktab = b"".join([_KLEN.pack(len(t)) + t for t in (texts.get(k, b"") for k in uk)])
    body = b"".join([ktab, *[_ROW.pack(*r) for r in rows], ents.tobytes()])
    head = _HEAD.pack(MAGIC, VERSION, 0, 0, len(uk), len(rows), stop - start, len(ktab))
    return b"".join((head, _U32.pack(crc32(head)), body, _U32.pack(crc32(body))))


# ---------------------------------------------------------------- the cases
def _digests(seed: int, n: int) -> list[bytes]:
    return [hashlib.blake2b(f"{seed}.{i}".encode(), digest_size=20).digest() for i in range(n)]


#: a noted block: ("rows", kind id, size, entries, digests joined?) or ("items", [(ioff, kind)])
block_st = st.one_of(
    st.tuples(
        st.just("rows"),
        st.integers(1, 4),
        st.sampled_from([0, 1, 4, 16, 1000]),
        st.integers(0, 40),
        st.booleans(),
    ),
    st.tuples(
        st.just("items"),
        st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 4)), max_size=12),
    ),
)


def _note(blocks_spec: list[tuple], seed: int) -> tuple[list[tuple[int, int, Any]], list]:
    """Blocks as the writer notes them (for the reference) and the calls making them."""
    noted: list[tuple[int, int, Any]] = []
    calls: list = []
    boff = 0
    for b, spec in enumerate(blocks_spec):
        blen = 20 + 7 * b
        if spec[0] == "rows":
            _, kid, size, n, joined = spec
            ds = _digests(seed * 1000 + b, n + 3)  # the span is rows 2..n+2 of them
            span = slice(2, 2 + n)
            noted.append((boff, blen, (kid, size, ds, span)))
            calls.append(("rows", boff, blen, kid, size, b"".join(ds) if joined else ds, span))
        else:
            ds = _digests(seed * 1000 + b, len(spec[1]))
            pairs = zip(ds, spec[1], strict=True)
            items = {d: Location(1, boff, blen, io, 4, k) for d, (io, k) in pairs}
            noted.append((boff, blen, items))
            calls.append(("items", boff, blen, items))
        boff += blen
    return noted, calls


def _written(tmp: Path, calls: list, kind_ids: Mapping[str, int]) -> bytes:
    """The manifest file a writer makes of ``calls``, sealed in pack 1."""
    path = manifest_path(tmp, 1)
    path.unlink(missing_ok=True)
    w = ManifestWriter(tmp)
    try:
        for c in calls:
            if c[0] == "rows":
                w.add_rows(*c[1:])
            else:
                w.add_items(*c[1:])
        w.seal(1, kind_ids)
        with w.synced():
            pass
    finally:
        w.close()
    return path.read_bytes() if path.exists() else b""


KINDS = {"<f4|4": 1, "|u1|28,28": 2, "<i8|": 3}  # kind id 4: unknown to the writer


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(block_st, min_size=1, max_size=8),
    per_record=st.sampled_from([1, 3, 7, 50, 4096]),
    seed=st.integers(0, 10**6),
)
def test_records_are_those_of_the_reference_encoder(tmp_path_factory, blocks, per_record, seed):
    tmp = tmp_path_factory.mktemp("m")
    noted, calls = _note(blocks, seed)
    with mock.patch.object(manifest, "RECORD_ENTRIES", per_record):
        want = reference_records(noted, KINDS)
        got = _written(tmp, calls, KINDS)
    assert got == want
    # and they decode to the entries noted, in order
    pos, seen = 0, []
    while pos < len(got):
        n = record_length(got[pos : pos + manifest.HEAD_SIZE])
        rec = decode_record(got[pos : pos + n])
        seen += [bytes(d) for d in rec.entries["digest"]]
        pos += n
    want_digests = []
    for _, _, what in noted:
        want_digests += what[2][what[3]] if type(what) is tuple else list(what)
    assert seen == want_digests


def test_a_large_bulk_flush_is_that_of_the_reference_encoder(tmp_path):
    """300k rows of 16 bytes in blocks of 4,096, the digests joined, as a bulk
    write notes them: records cut at :data:`RECORD_ENTRIES`, identical bytes."""
    n, per = 30_000, 4096
    ds = _digests(7, n)
    joined = b"".join(ds)
    spans = [slice(a, min(n, a + per)) for a in range(0, n, per)]
    noted = [(k * 70_000, 70_000, (1, 16, ds, s)) for k, s in enumerate(spans)]
    calls = [("rows", k * 70_000, 70_000, 1, 16, joined, s) for k, s in enumerate(spans)]
    got = _written(tmp_path, calls, KINDS)
    assert got == reference_records(noted, KINDS)
    assert len(got) > 28 * n


def test_a_joined_span_must_be_contiguous(tmp_path):
    w = ManifestWriter(tmp_path)
    w.add_rows(0, 40, 1, 4, b"".join(_digests(1, 6)), slice(0, 6, 2))
    with pytest.raises(ValueError, match="contiguous"):
        w.seal(1, KINDS)
    w.close()


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 2), st.booleans(), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    per_record=st.sampled_from([1, 5, 64, 4096]),
    seed=st.integers(0, 10**6),
)
def test_blocks_cut_from_one_joined_run_are_those_of_the_reference_encoder(
    tmp_path_factory, cuts, per_record, seed
):
    """Blocks noted from one joined digest buffer, as a bulk write notes them:
    spans one after the other (filled as one run), with gaps, empty ones,
    another kind or size, or another buffer between them (each breaks a run)."""
    tmp = tmp_path_factory.mktemp("r")
    total = sum(n + gap for n, gap, _, _ in cuts)
    ds, ds2 = _digests(seed, total), _digests(seed + 1, total)
    joined, other = b"".join(ds), b"".join(ds2)
    noted: list[tuple[int, int, Any]] = []
    calls: list = []
    at = boff = 0
    for k, (n, gap, other_kind, other_buf) in enumerate(cuts):
        at += gap
        span = slice(at, at + n)
        kid, size = (3, 8) if other_kind else (2, 784)
        blen = 100 + k
        noted.append((boff, blen, (kid, size, ds2 if other_buf else ds, span)))
        calls.append(("rows", boff, blen, kid, size, other if other_buf else joined, span))
        at += n
        boff += blen
    with mock.patch.object(manifest, "RECORD_ENTRIES", per_record):
        want = reference_records(noted, KINDS)
        got = _written(tmp, calls, KINDS)
    assert got == want
