"""The store's Blosc2 codec (hangar_git/store/blosc_codec.py): the C library
through ctypes gives python-blosc2's bytes, refuses what is not a chunk, and
spares a fresh process the import of the blosc2 package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangar_git.store import blosc_codec as _blosc
from hangar_git.store.codec import encode_block

CODEC = {"lz4": blosc2.Codec.LZ4, "zstd": blosc2.Codec.ZSTD}


def reference(raw: bytes, typesize: int, clevel: int, codec: str) -> bytes:
    return bytes(
        blosc2.compress(
            raw, typesize=typesize, clevel=clevel, filter=blosc2.Filter.SHUFFLE, codec=CODEC[codec]
        )
    )


@pytest.fixture(params=["ctypes", "package"])
def codec_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs through the C library and through the package fallback."""
    if request.param == "ctypes":
        assert _blosc._c() is not None, "the blosc2 wheel's C library was not found"
    else:
        monkeypatch.setattr(_blosc, "_c", lambda: None)
    return str(request.param)


def test_the_c_library_is_found_in_the_wheel() -> None:
    path = _blosc._library_path()
    assert path is not None and path.is_file()
    assert Path(blosc2.__file__).parent in path.parents


@settings(max_examples=60, deadline=None)
@given(
    raw=st.binary(min_size=0, max_size=5000),
    typesize=st.integers(1, 16),
    clevel=st.integers(0, 9),
    codec=st.sampled_from(["lz4", "zstd"]),
)
def test_chunks_match_python_blosc2(raw: bytes, typesize: int, clevel: int, codec: str) -> None:
    raw = raw[: len(raw) - len(raw) % typesize]  # python-blosc2 takes whole items only
    got = _blosc.compress(raw, typesize=typesize, clevel=clevel, codec=codec)
    assert got == reference(raw, typesize, clevel, codec)
    assert _blosc.decompress(got) == raw
    assert _blosc.cbuffer_nbytes(got) == len(raw)
    assert bytes(blosc2.decompress(got)) == raw


@pytest.mark.parametrize("size", [64, 784, 300_000, 3 << 20])
def test_round_trip_of_every_buffer_kind(codec_path: str, size: int) -> None:
    raw = np.random.default_rng(size).integers(0, 30, size, dtype=np.uint8).tobytes()
    chunk = reference(raw, 4, 5, "lz4")
    for src in (raw, memoryview(b"xx" + raw)[2:], np.frombuffer(raw, np.uint8)):
        got = _blosc.compress(src, typesize=4, clevel=5, codec="lz4", nthreads=2)
        assert _blosc.decompress(got) == raw
    for body in (chunk, memoryview(b"yy" + chunk)[2:]):
        out = _blosc.decompress(body)
        assert type(out) is bytes and out == raw


def test_what_is_not_a_chunk_is_refused(codec_path: str) -> None:
    chunk = reference(b"abcd" * 100, 4, 5, "lz4")
    for bad in (b"", b"short", chunk[:10]):
        with pytest.raises((ValueError, RuntimeError)):
            _blosc.decompress(bad)
        with pytest.raises((ValueError, RuntimeError)):
            _blosc.cbuffer_nbytes(bad)
    with pytest.raises((ValueError, RuntimeError)):
        _blosc.decompress(chunk[:-8])  # truncated body
    with pytest.raises(ValueError, match="codec"):
        _blosc.compress(b"x" * 100, typesize=1, clevel=5, codec="brotli")


def test_a_fresh_process_reads_and_writes_without_the_blosc2_package(tmp_path: Path) -> None:
    """The point of the module: blosc2's import (250-300 ms) is not paid by a
    command that writes or reads samples of the pack store."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from hangar_git import Repository

        repo = Repository({str(tmp_path)!r}, exists=False)
        repo.init(user_name="t", user_email="t@example.com")
        co = repo.checkout(write=True)
        aset = co.arraysets.init_arrayset("x", shape=(64,), dtype=np.float32)
        with aset:
            for i in range(50):
                aset[i] = np.full(64, i, np.float32)
        co.commit("x")
        co.close()
        co = repo.checkout()
        assert all(co.arraysets["x"][i][0] == i for i in range(50))
        co.close()
        print("blosc2" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def _mixed(seed: int, size: int, noise: float) -> bytes:
    """``size`` bytes of which about ``noise`` are random, the rest runs of a
    few values: compressible to any ratio, near the 95% bar too."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 4, size, dtype=np.uint8)
    pick = rng.random(size) < noise
    out[pick] = rng.integers(0, 256, int(pick.sum()), dtype=np.uint8)
    return out.tobytes()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([64, 100, 784, 4096, 65_536, 70_001]),
    noise=st.sampled_from([0.0, 0.3, 0.8, 0.9, 0.95, 0.97, 1.0]),
    typesize=st.sampled_from([1, 4, 8]),
    shift=st.integers(-40, 40),
)
def test_compress_below_is_compress_when_the_chunk_fits(seed, size, noise, typesize, shift):
    raw = _mixed(seed, size, noise)
    chunk = _blosc.compress(raw, typesize=typesize, clevel=5, codec="lz4")
    for limit in (len(chunk) + shift, len(chunk), len(chunk) + 1, -(-size * 95 // 100)):
        if not 32 < limit <= size:  # the limits it is made for: below the raw size
            continue
        want = chunk if len(chunk) < limit else None
        got = _blosc.compress_below(raw, limit, typesize=typesize, clevel=5, codec="lz4")
        assert got == want, (limit, len(chunk))


def test_compress_below_through_the_package_and_its_refusals(codec_path: str) -> None:
    raw = _mixed(1, 5000, 0.5)
    chunk = _blosc.compress(raw, typesize=1, clevel=5, codec="lz4")
    assert _blosc.compress_below(raw, len(chunk) + 1, typesize=1, clevel=5, codec="lz4") == chunk
    assert _blosc.compress_below(raw, len(chunk), typesize=1, clevel=5, codec="lz4") is None
    with pytest.raises(ValueError, match="codec"):
        _blosc.compress_below(raw, 4000, typesize=1, clevel=5, codec="brotli")
    with pytest.raises(ValueError, match="no room"):
        _blosc.compress_below(raw, 32, typesize=1, clevel=5, codec="lz4")


def test_compress_into_through_the_package_and_its_refusals(codec_path: str) -> None:
    raw = _mixed(1, 5000, 0.1)
    chunk = _blosc.compress(raw, typesize=1, clevel=5, codec="lz4")
    out = np.zeros(5000, np.uint8)
    args = {"typesize": 1, "clevel": 5, "codec": "lz4"}
    assert _blosc.compress_into(raw, out, len(chunk) + 1, **args) == len(chunk)
    assert out[: len(chunk)].tobytes() == chunk
    assert _blosc.compress_into(raw, out, len(chunk), **args) is None
    assert _blosc.compress_into(raw, out[: len(chunk) - 1], 5000, **args) is None  # out too short
    with pytest.raises(ValueError, match="codec"):
        _blosc.compress_into(raw, out, 4000, typesize=1, clevel=5, codec="brotli")
    with pytest.raises(ValueError, match="no room"):
        _blosc.compress_into(raw, out, 32, **args)
    with pytest.raises(ValueError, match="writable"):
        _blosc.compress_into(raw, out[::2], 4000, **args)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    spans=st.lists(st.sampled_from([0.0, 0.3, 0.97, 1.0]), min_size=1, max_size=6),
    span=st.sampled_from([63, 64, 4096, 16_384]),
    tail=st.integers(0, 100),
    map_from=st.sampled_from([0, 1 << 40]),
)
def test_parts_of_spans_are_the_blocks_and_leave_what_does_not_compress_in_place(
    seed, spans, span, tail, map_from
):
    """encode_parts gives, part after part, encode_block of each span; a block
    that does not compress is its header and a view of the input (no copy)."""
    from hangar_git.store import codec

    old = codec._SCRATCH_MAP
    codec._SCRATCH_MAP = map_from  # the scratch buffer mapped, or numpy's memory
    try:
        raw = b"".join(_mixed(seed + i, span, noise) for i, noise in enumerate(spans))
        raw += _mixed(seed, tail, 1.0)
        src = np.frombuffer(raw, np.uint8)
        parts, lengths = codec.encode_parts(memoryview(raw), span, 4)
    finally:
        codec._SCRATCH_MAP = old
    want = [encode_block(raw[s : s + span], 4) for s in range(0, len(raw), span)]
    assert b"".join(bytes(p) for p in parts) == b"".join(want)
    assert lengths == [len(b) for b in want]
    raw_spans = [s for s, b in zip(range(0, len(raw), span), want, strict=True) if b[4] == 0]
    views = [p for p in parts if np.shares_memory(np.frombuffer(p, np.uint8), src)]
    assert [np.frombuffer(v, np.uint8).ctypes.data - src.ctypes.data for v in views] == raw_spans


def test_parts_after_many_spans_that_do_not_compress_try_one_in_skip_after():
    """Past SKIP_AFTER raw blocks in a row only every SKIP_AFTER-th span is
    tried (the others stored as raw blocks); once one compresses, every span
    is tried again. Each block is sound either way."""
    from hangar_git.store import blosc_codec, codec
    from hangar_git.store.block_format import BLOCK_MAGIC, CODEC_RAW, CRC, HEADER
    from hangar_git.store.checksum import crc32

    span, k = 4096, codec.SKIP_AFTER
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, 20 * span, dtype=np.uint8).tobytes()
    raw = noise + bytes(12 * span)  # 20 spans that do not compress, 12 that do
    tries: list[int] = []
    real = blosc_codec.compress_into

    def counting(chunk, *args, **kwargs):
        tries.append(1)
        return real(chunk, *args, **kwargs)

    blosc_codec.compress_into = counting
    try:
        parts, lengths = codec.encode_parts(memoryview(raw), span, 1)
    finally:
        blosc_codec.compress_into = real
    misses, tried = 0, []
    for i in range(32):  # the spans tried, as the rule above picks them
        tried.append(misses < k or not misses % k)
        misses = 0 if tried[-1] and i >= 20 else misses + 1
    assert len(tries) == sum(tried) < 32
    want = []
    for i, s in enumerate(range(0, len(raw), span)):
        chunk = raw[s : s + span]
        if tried[i]:
            want.append(encode_block(chunk, 1))
        else:
            want.append(HEADER.pack(BLOCK_MAGIC, CODEC_RAW, span) + CRC.pack(crc32(chunk)) + chunk)
    assert b"".join(bytes(p) for p in parts) == b"".join(want)
    assert lengths == [len(b) for b in want]
    assert [b[4] for b in want[20:]].count(CODEC_RAW) < k  # compressible spans stored raw
