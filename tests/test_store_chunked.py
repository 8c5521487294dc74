"""Chunked storage of large payloads (``hangar_git/store/chunked.py``): exact
round trips, partial reads equal to numpy's slicing, damage always detected
and named, and crash safety, both through the module and through a repository.

Thresholds are lowered so that the arrays stay small and the tests fast.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git import IntegrityError
from hangar_git.gc import gc
from hangar_git.store import chunked, large_reader
from hangar_git.store.chunked import LARGE_PACK, LargeFiles, LargeReader, Pending
from hangar_git.store.digest import array_digest, digest_bytes, kind_of


@pytest.fixture
def small_thresholds(monkeypatch):
    """Payloads of 64 KiB and more are chunked, in chunks of at most 8 KiB."""
    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    monkeypatch.setattr(chunked, "CHUNK_TARGET", 8 * 1024)


def write(root: Path, number: int, a: np.ndarray, chunks=None) -> tuple[LargeFiles, str, bytes]:
    """Store ``a`` (any layout) as file ``number`` under ``root``."""
    c = np.ascontiguousarray(a) if a.ndim else np.array(a)
    kind = kind_of(c)
    digest = digest_bytes(kind, c.tobytes())
    files = LargeFiles(root)
    files.tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = files.tmp_dir / f"{number}.tmp"
    size = chunked.write_file(tmp, digest, kind, a, chunks)
    files.place([Pending(number, digest, kind, size, tmp)], sync=False)
    return files, kind, digest


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


# --------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------
SHAPES = [(), (1,), (1000,), (7, 3), (33, 17, 5), (4, 5, 6, 7), (0, 4), (3, 0, 2)]
DTYPES = [np.float32, ">i4", "<u2", np.uint8, np.complex128, np.bool_, ">f8"]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_round_trip_shapes_dtypes_layouts(tmp_path, shape):
    rng = np.random.default_rng(len(shape))
    n = 0
    for dt in DTYPES:
        x = np.asarray(rng.random(shape) * 100).astype(dt)
        variants = [x, np.asfortranarray(x)]
        if x.ndim and x.shape[-1] > 1:
            variants.append(x[..., ::-1])  # not contiguous
        if x.ndim > 1:
            variants.append(x.T)
        for v in variants:
            tiny = (1,) * v.ndim if v.size <= 300 else tuple(max(1, s // 9) for s in v.shape)
            for chunks in (None, tuple(max(1, s // 3) for s in v.shape), tiny):
                n += 1
                files, kind, digest = write(tmp_path, n, v, chunks)
                r = LargeReader(files)
                got = r.read(n, kind)
                want = np.ascontiguousarray(v) if v.ndim else np.array(v)
                assert got.dtype == want.dtype and got.shape == want.shape
                assert np.array_equal(got, want)
                assert got.flags.c_contiguous and got.flags.writeable
                r.verify(n, digest, kind)
                r.close()


def test_compressible_arrays_are_compressed_random_ones_stored_raw(tmp_path):
    smooth = np.tile(np.arange(512, dtype=np.float32), (256, 1))
    noise = np.random.default_rng(0).random((256, 512), dtype=np.float32)
    files, kind, _ = write(tmp_path, 1, smooth)
    write(tmp_path, 2, noise)
    assert files.numbers()[1] < smooth.nbytes / 4
    assert files.numbers()[2] > noise.nbytes  # raw chunks plus the header
    r = LargeReader(files)
    assert np.array_equal(r.read(1, kind), smooth) and np.array_equal(r.read(2, kind), noise)
    assert {c[3] for c in r.open(1).chunks} == {chunked.CODEC_BLOSC2}
    assert {c[3] for c in r.open(2).chunks} == {chunked.CODEC_RAW}


def test_chunk_shapes():
    assert chunked.choose_chunks((512, 512, 3), 4, 128 * 1024) == (64, 128, 3)
    for shape, isz in [((5000, 5000, 3), 4), ((10**7,), 8), ((3, 1000, 1000), 2), ((2, 3), 8)]:
        c = chunked.choose_chunks(shape, isz, 128 * 1024)
        assert len(c) == len(shape) and all(1 <= a <= b for a, b in zip(c, shape, strict=True))
        assert np.prod(c) * isz <= 128 * 1024 or np.prod(c) == 1


def test_layout_byte_strides_are_numpys_and_place_each_chunk():
    from hangar_git.store.chunk_format import layout_of

    arr = np.arange(7 * 5 * 3, dtype=np.int16).reshape(7, 5, 3)
    lay = layout_of(arr.shape, arr.dtype, (2, 5, 3))
    assert lay.byte_strides == arr.strides == (30, 6, 2)
    flat = arr.tobytes()
    for i in range(lay.n):
        part = lay.part(i)
        assert part.contiguous
        got = np.frombuffer(flat[part.start : part.start + part.nbytes], arr.dtype)
        assert got.tolist() == arr[part.region].ravel().tolist()


@st.composite
def index_for(draw, shape):
    """A basic numpy index for ``shape``: ints, slices with steps (also
    negative, also out of range), an Ellipsis, fewer items than axes."""
    items = []
    for s in shape:
        if s and draw(st.booleans()) and draw(st.booleans()):
            items.append(draw(st.integers(-s, s - 1)))
        else:
            bound = st.none() | st.integers(-s - 3, s + 3)
            step = draw(st.sampled_from([None, 1, 2, 3, 7, -1, -2, -5]))
            items.append(slice(draw(bound), draw(bound), step))
    k = draw(st.integers(0, len(items)))
    if draw(st.booleans()):
        return (*items[:k], Ellipsis, *items[len(items) - draw(st.integers(0, len(items) - k)) :])
    return tuple(items[:k])


@st.composite
def array_and_index(draw):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    return shape, chunks, draw(index_for(shape))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(array_and_index())
def test_partial_reads_equal_numpy_slicing(tmp_path, case):
    shape, chunks, index = case
    a = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    number = abs(hash((shape, chunks))) % 10**9
    files = LargeFiles(tmp_path)
    if number not in files.numbers():
        write(tmp_path, number, a, chunks)
    r = LargeReader(files)
    want = a[index]
    got = r.read_region(number, index)
    assert type(got) is type(want)
    assert np.shape(got) == np.shape(want) and np.array_equal(got, want)
    if isinstance(got, np.ndarray):
        assert got.base is None or got.base is not a  # fresh
    r.close()


def test_partial_reads_other_indexes_and_errors(tmp_path):
    a = np.arange(6 * 7 * 5, dtype=np.float64).reshape(6, 7, 5)
    files, _kind, _ = write(tmp_path, 1, a, (2, 3, 2))
    r = LargeReader(files)
    for index in [([0, 3],), (None, 1), (a[:, 0, 0] > 10,), (slice(None), [1, 1], 0), ()]:
        assert np.array_equal(r.read_region(1, index), a[index])
    for bad in [(6,), (0, -8), (0, 0, 0, 0)]:
        with pytest.raises(IndexError):
            a[bad]
        with pytest.raises(IndexError):
            r.read_region(1, bad)


def test_a_partial_read_touches_only_its_chunks(tmp_path, monkeypatch):
    a = np.random.default_rng(0).random((512, 512, 3), dtype=np.float32)
    files, _kind, _ = write(tmp_path, 1, a)
    r = LargeReader(files)
    seen = []
    real = LargeReader._decode

    def spy(self, o, i, local):
        seen.append(i)
        return real(self, o, i, local)

    monkeypatch.setattr(LargeReader, "_decode", spy)
    assert np.array_equal(r.read_region(1, (slice(0, 64), slice(0, 64), slice(None))), a[:64, :64])
    assert seen == [0]
    seen.clear()
    assert np.array_equal(r.read_region(1, (slice(64, 120), 300)), a[64:120, 300])
    assert len(seen) == 1


def test_damaged_chunk_header_and_missing_file_are_named(tmp_path):
    a = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    files, _kind, digest = write(tmp_path, 7, a, (16, 64))
    path = files.path(7)
    r = LargeReader(files)
    o = r.open(7)
    off, length, _, _ = o.chunks[2]
    r.close()
    flip(path, off + length // 2)
    r = LargeReader(files)
    with pytest.raises(IntegrityError, match=rf"chunk 2 of {path}.*checksum"):
        r.read(7)
    with pytest.raises(IntegrityError, match="chunk 2"):
        r.verify(7, digest)
    # the other chunks still read
    assert np.array_equal(r.read_region(7, (slice(0, 16),)), a[:16])
    with pytest.raises(IntegrityError, match="chunk 2"):
        r.read_region(7, (40,))
    r.close()
    flip(path, 10)  # the header
    with pytest.raises(IntegrityError, match=str(path)):
        LargeReader(files).read(7)
    path.unlink()
    with pytest.raises(IntegrityError, match=f"{path} is missing"):
        LargeReader(files).read(7)


def test_newer_format_and_other_files_are_refused(tmp_path):
    files, _kind, _digest = write(tmp_path, 1, np.zeros((100, 100)))
    data = bytearray(files.path(1).read_bytes())
    data[4] = 99
    files.path(1).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="newer"):
        LargeReader(files).read(1)
    files.path(2).write_bytes(b"not a chunked file at all, not at all" * 4)
    with pytest.raises(IntegrityError, match="not a chunked payload file"):
        LargeReader(files).read(2)


def test_temporary_files_are_ignored_and_cleaned(tmp_path):
    files, _kind, _ = write(tmp_path, 1, np.ones((50, 50)))
    (files.tmp_dir / "0000000002.999.tmp").write_bytes(b"half written")
    assert set(files.numbers()) == {1}
    assert files.clean_temporary() == 1 and not list(files.tmp_dir.iterdir())


def test_many_files_in_one_batch_stay_open_while_read(tmp_path, monkeypatch):
    monkeypatch.setattr(large_reader, "OPEN_FILES", 3)
    arrays = [np.full((40, 40), i, np.int64) for i in range(10)]
    for i, a in enumerate(arrays):
        files, kind, _ = write(tmp_path, i + 1, a, (10, 40))
    r = LargeReader(files)
    outs = [np.empty((40, 40), np.int64) for _ in arrays]
    r.read_many([(i + 1, o) for i, o in enumerate(outs)], kind)
    assert all(np.array_equal(o, a) for o, a in zip(outs, arrays, strict=True))
    assert len(r._open) <= 3


# --------------------------------------------------------------------------
# through a repository
# --------------------------------------------------------------------------
def big(i: int, shape=(96, 128)) -> np.ndarray:
    return np.random.default_rng(i).random(shape, dtype=np.float64)  # 96 KiB


def large_files(repo) -> dict[int, int]:
    return LargeFiles(repo._store.large_dir).numbers()


def test_repository_round_trip_dedup_and_identity(repo, small_thresholds):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(96, 128), dtype=np.float64)
    s = co.arraysets.init_arrayset("s", shape=(3,), dtype=np.int64)
    a.update({i: big(i) for i in range(4)})
    a["copy"] = big(2)  # the same payload: no second file
    a.add_stacked(np.stack([big(10), big(11)]), [10, 11])
    s[0] = np.arange(3)
    # readable from the staging area before any commit, whole and by slices
    assert np.array_equal(a[3], big(3)) and np.array_equal(a[11, 5:9, ::-7], big(11)[5:9, ::-7])
    sha = co.commit("large and small")
    co.close()
    assert len(large_files(repo)) == 6
    r = repo._store.reader()
    loc = r.locate(array_digest(big(0)))
    assert loc.pack == LARGE_PACK and r.locate(array_digest(np.arange(3))).pack != LARGE_PACK
    r.close()
    co = repo.checkout(commit=sha)
    a = co.arraysets["a"]
    keys = [0, 1, 2, 3, "copy", 10, 11]
    want = {k: big(k if k != "copy" else 2) for k in keys}
    assert all(np.array_equal(x, want[k]) for k, x in zip(keys, a.get_batch(keys), strict=True))
    assert all(np.array_equal(x, want[k]) for k, x in a.items())
    corner = a[1, 0:8, 0:8]
    assert np.array_equal(corner, big(1)[:8, :8]) and not corner.flags.writeable
    assert a[1, 3, 4] == big(1)[3, 4]
    assert not a.contains_remote_references
    co.close()
    assert repo.verify().ok


def test_large_sample_hashed_while_written_is_stored_once(repo, small_thresholds, monkeypatch):
    """``aset[k] = a`` of a large array computes its digest while its file is
    written: an array stored already (by an earlier commit, or earlier in the
    same block) leaves no second file and no temporary one, and every key
    reads back its array."""
    from hangar_git.store import writer as writer_mod

    written = []
    orig = writer_mod.PackWriter.add_large
    monkeypatch.setattr(
        writer_mod.PackWriter, "add_large", lambda w, *a: written.append(1) or orig(w, *a)
    )
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(96, 128), dtype=np.float64)
    a[0] = big(0)
    co.commit("one")
    with a:
        a[1] = big(0)  # in an earlier commit
        a[2] = big(1)
        a[3] = big(1)  # earlier in this block
        a[4] = big(1).copy()
    co.commit("more")
    co.close()
    assert len(written) == 5
    assert len(large_files(repo)) == 2
    assert not list(LargeFiles(repo._store.large_dir).tmp_dir.iterdir())
    co = repo.checkout()
    got = co.arraysets["a"]
    assert all(np.array_equal(got[k], big(0 if k < 2 else 1)) for k in range(5))
    co.close()
    assert repo.verify().ok


def test_writing_random_large_arrays_does_not_import_blosc2(tmp_path):
    """Incompressible large arrays are stored raw: deciding so spares the
    blosc2 package's import (a third of a second in a fresh process)."""
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from hangar_git import Repository
        repo = Repository({str(tmp_path)!r}, exists=False)
        repo.init(user_name="t", user_email="t@example.org")
        co = repo.checkout(write=True)
        a = co.arraysets.init_arrayset("a", shape=(512, 512), dtype=np.float32)
        a[0] = np.random.default_rng(0).random((512, 512), dtype=np.float32)
        co.commit("raw")
        co.close()
        print("blosc2" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mixed_batch_of_small_and_large_samples(repo, small_thresholds):
    co = repo.checkout(write=True)
    v = co.arraysets.init_arrayset("v", shape=(200, 128), dtype=np.float32, variable_shape=True)
    arrays = {i: np.full((2 + 60 * (i % 4), 128), i, np.float32) for i in range(12)}
    v.update(arrays)
    co.commit("mixed")
    co.close()
    assert 0 < len(large_files(repo)) < 12
    co = repo.checkout()
    got = co.arraysets["v"].get_batch(list(range(12)))
    assert all(np.array_equal(g, arrays[i]) for i, g in enumerate(got))
    co.close()


def test_damaged_large_payload_names_the_sample_and_the_file(repo, small_thresholds):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(96, 128), dtype=np.float64)
    a.update({0: big(0), 1: big(1)})
    co.commit("two")
    co.close()
    r = repo._store.reader()
    loc = r.locate(array_digest(big(1)))
    o = r.large().open(loc.boff)
    off, _length, _, _ = o.chunks[-1]
    path = o.path
    r.close()
    flip(path, off + 5)
    co = repo.checkout()
    a = co.arraysets["a"]
    with pytest.raises(IntegrityError, match=rf"sample a\[1\].*{path.name}"):
        a[1]
    with pytest.raises(IntegrityError, match=r"sample a\[1\]"):
        a.get_batch([0, 1])
    with pytest.raises(IntegrityError, match=r"sample a\[1\]"):
        a[1, -1]  # a slice through the damaged chunk
    assert np.array_equal(a[1, 0:4], big(1)[:4])  # chunks before it are fine
    assert np.array_equal(a[0], big(0))
    co.close()
    rep = repo.verify()
    assert {(i.arrayset, i.key) for i in rep.damaged} == {("a", 1)}


def test_killed_writer_leaves_nothing_visible_and_gc_cleans_up(repo, small_thresholds, tmp_path):
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(96, 128), dtype=np.float64)
    co.commit("schema")
    co.close()
    child = textwrap.dedent(
        f"""
        import os, sys, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from hangar_git import Repository
        from hangar_git.store import chunked
        chunked.THRESHOLD = 64 * 1024
        real = os.replace
        calls = []
        def replace(a, b):
            if "large" in str(a):
                calls.append(a)
            if len(calls) == int(sys.argv[1]):
                os._exit(9)  # killed between two renames, before the index commit
            return real(a, b)
        os.replace = replace
        repo = Repository({str(repo.path)!r}, exists=False)
        co = repo.checkout(write=True)
        a = co.arraysets["a"]
        a.update({{i: np.full((96, 128), i, np.float64) for i in range(3)}})
        """
    )
    script = tmp_path / "child.py"
    script.write_text(child)
    for kill_at in (1, 3):
        res = subprocess.run([sys.executable, str(script), str(kill_at)], capture_output=True)
        assert res.returncode == 9, res.stderr.decode()
    assert large_files(repo)  # files renamed before the kill, never indexed
    co = repo.checkout(write=True)  # a new writer: temporary files are gone
    assert not list((repo._store.large_dir / "tmp").iterdir())
    assert len(co.arraysets["a"]) == 0
    co.close()
    assert repo.verify().ok
    rep = gc(repo)
    assert rep.large_files_deleted >= 1 and not large_files(repo)


def test_peak_memory_of_write_and_read_stays_near_the_array(repo, small_thresholds):
    x = np.random.default_rng(5).random((1024, 1024), dtype=np.float64)  # 8 MiB
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", prototype=x)
    tracemalloc.start()
    a["x"] = x
    co.commit("one")
    write_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    co.close()
    co = repo.checkout()
    tracemalloc.start()
    got = co.arraysets["a"]["x"]
    read_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    co.close()
    assert np.array_equal(got, x)
    assert write_peak < 0.25 * x.nbytes, write_peak  # no copy of the array
    assert read_peak < 1.25 * x.nbytes, read_peak  # the array returned, little else


def test_values_batches_of_huge_samples_are_not_huge(repo, small_thresholds, monkeypatch):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("a", shape=(96, 128), dtype=np.float64)
    a.update({i: big(i) for i in range(5)})
    co.commit("five")
    co.close()
    co = repo.checkout()
    aset = co.arraysets["a"]
    monkeypatch.setattr(type(aset), "_schema", property(lambda self: _huge(self)))
    assert aset._batch_size(None) == 1
    co.close()


def _huge(aset):
    from hangar_git.schema import ArraysetSchema

    return ArraysetSchema(np.dtype(np.float64), (40_000, 40_000), False, True)


def test_sync_is_on_by_default():
    assert chunked.SYNC is True


@pytest.mark.parametrize("cores", [1, 2, 4])
@pytest.mark.parametrize("what", ["raw", "compressed", "strided"])
def test_chunk_threads_leave_a_core_to_the_digest_and_write_raw_chunks_on_one(
    tmp_path, monkeypatch, cores, what
):
    """A digest still being computed (a function) has a core of its own: the
    chunks are compressed or copied on one thread fewer than there are cores
    (one at least), on every core with the digest known; raw chunks straight
    from a C-contiguous array are written by one thread either way."""
    from hangar_git.store import threads

    monkeypatch.setattr(threads, "WORKERS", cores)
    seen = []
    real = chunked.run_parallel

    def spy(fn, n, workers=None):
        seen.append(workers)
        return real(fn, n, workers)

    monkeypatch.setattr(chunked, "run_parallel", spy)
    arr = np.random.default_rng(3).random((256, 512), dtype=np.float32)
    if what == "compressed":
        arr = np.tile(np.arange(512, dtype=np.float32), (256, 1))
    elif what == "strided":
        arr = arr[:, ::2]
    kind = kind_of(arr)
    digest = digest_bytes(kind, np.ascontiguousarray(arr).data.cast("B"))
    files = LargeFiles(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    chunked.write_file(files.path(1), lambda: digest, kind, arr)
    chunked.write_file(files.path(2), digest, kind, arr)
    assert seen == ([1, 1] if what == "raw" else [max(1, cores - 1), None])
    r = LargeReader(files)
    try:
        for number in (1, 2):  # (chunks in the order threads finished them)
            np.testing.assert_array_equal(r.read(number, kind), arr)
    finally:
        r.close()
