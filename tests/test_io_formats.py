"""Importing arrays from .npy/.npz/HDF5 files and folders, and exporting them back."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from hangar_git.io_formats import (
    ImportConflictError,
    NotAnArrayError,
    export_arrays,
    import_arrays,
    load_array,
    load_sources,
    plan_schema,
    scan_file,
    scan_paths,
    sniff_format,
)


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return path


def staged_snapshot(co) -> tuple:
    """Everything the staging area shows: arraysets, their samples, and the diff."""
    asets = {}
    for name in co.arraysets:
        a = co.arraysets[name]
        asets[name] = sorted((str(k), a[k].tobytes()) for k in a)
    return asets, co.diff.staged()


# ---- scanning -----------------------------------------------------------------------
def test_scan_npy_reads_header_only(tmp_path):
    p = save(tmp_path / "img_001.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    (src,) = scan_file(p)
    assert (src.key, src.fmt, src.member) == ("img_001", "npy", None)
    assert src.dtype == np.int16 and src.shape == (3, 4)
    assert src.nbytes == 24


def test_big_endian_and_fortran_arrays_load_native_c_contiguous(tmp_path):
    be = np.arange(6, dtype=">f8").reshape(2, 3)
    fo = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    res = scan_paths([save(tmp_path / "be.npy", be), save(tmp_path / "fo.npy", fo)])
    assert [s.dtype for s in res.sources] == [np.dtype("<f8"), np.dtype(np.int32)]
    for src, expect in zip(res.sources, (be, fo), strict=True):
        arr = load_array(src.path)
        assert arr.flags.c_contiguous and arr.dtype.isnative
        np.testing.assert_array_equal(arr, expect)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"just some text\n", "not a valid .npy"),
        (b"", "not a valid .npy"),
    ],
)
def test_npy_suffix_but_not_an_array(tmp_path, content, message):
    p = tmp_path / "notes.npy"
    p.write_bytes(content)
    with pytest.raises(NotAnArrayError, match=message):
        scan_file(p)


def test_truncated_npy_is_refused(tmp_path):
    p = save(tmp_path / "t.npy", np.zeros(1000, np.float64))
    p.write_bytes(p.read_bytes()[:-8])
    with pytest.raises(NotAnArrayError, match="truncated"):
        scan_file(p)


def test_load_notices_files_changed_after_the_scan(tmp_path):
    p = save(tmp_path / "a.npy", np.arange(6, dtype=np.int32))
    (src,) = scan_file(p)
    np.save(p, np.arange(6, dtype=np.float32))  # same size, other dtype in the header
    with pytest.raises(NotAnArrayError, match="changed since it was scanned"):
        list(load_sources([src]))
    np.save(p, np.arange(6, dtype=np.int32))
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(NotAnArrayError, match="truncated"):
        list(load_sources([src]))
    p.write_bytes(p.read_bytes()[:9])
    with pytest.raises(NotAnArrayError, match="header cut short"):
        scan_file(p)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(NotAnArrayError, match="Python objects"):
        scan_file(p)


def test_unsupported_dtype_and_empty_array_are_refused(tmp_path):
    with pytest.raises(NotAnArrayError, match="not supported"):
        scan_file(save(tmp_path / "s.npy", np.array(["ab", "cd"])))
    with pytest.raises(NotAnArrayError, match="zero-size"):
        scan_file(save(tmp_path / "e.npy", np.zeros((0, 3))))


def test_explicit_file_of_unknown_kind(tmp_path):
    txt = tmp_path / "readme.txt"
    txt.write_text("hello")
    with pytest.raises(NotAnArrayError, match="not an array file"):
        scan_file(txt)
    with pytest.raises(FileNotFoundError):
        scan_file(tmp_path / "missing.npy")
    # an array file without the usual suffix is recognised by its first bytes
    raw = tmp_path / "blob.bin"
    raw.write_bytes(save(tmp_path / "x.npy", np.ones(3)).read_bytes())
    assert sniff_format(raw) == "npy"
    assert scan_file(raw)[0].key == "blob"


def test_bad_key_from_file_name(tmp_path):
    p = save(tmp_path / "my scan.npy", np.ones(3))
    with pytest.raises(NotAnArrayError, match="cannot be stored under key 'my scan'"):
        scan_file(p)


def test_npz_members(tmp_path):
    p = tmp_path / "pack.npz"
    np.savez(p, a=np.ones(3, np.float32), b=np.zeros((2, 2), np.float32))
    srcs = scan_file(p)
    assert [(s.key, s.member, s.shape) for s in srcs] == [("a", "a", (3,)), ("b", "b", (2, 2))]
    np.testing.assert_array_equal(load_array(p, "b"), np.zeros((2, 2), np.float32))
    with pytest.raises(NotAnArrayError, match="holds 2 arrays"):
        load_array(p)


def test_npz_that_is_not_an_array_archive(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(NotAnArrayError, match=r"not a valid \.npz"):
        scan_file(bad)
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("notes.txt", "hi")
    with pytest.raises(NotAnArrayError, match="not an array"):
        scan_file(odd)


def test_hdf5_datasets_nested_keys(tmp_path):
    p = tmp_path / "data.h5"
    with h5py.File(p, "w") as f:
        f["top"] = np.arange(4, dtype=np.uint8)
        f.create_group("train")["x1"] = np.ones((2, 3), np.float32)
    srcs = scan_file(p)
    assert [(s.key, s.member) for s in srcs] == [("top", "top"), ("train.x1", "train/x1")]
    np.testing.assert_array_equal(load_array(p, "train/x1"), np.ones((2, 3), np.float32))


def test_hdf5_refusals(tmp_path):
    p = tmp_path / "strings.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("names", data=["a", "b"], dtype=h5py.string_dtype())
    with pytest.raises(NotAnArrayError, match=r"variable-length|not supported"):
        scan_file(p)
    fake = tmp_path / "fake.h5"
    fake.write_text("not hdf5")
    with pytest.raises(NotAnArrayError, match="not a readable HDF5"):
        scan_file(fake)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w"):
        pass
    with pytest.raises(NotAnArrayError, match="no datasets"):
        scan_file(empty)


def test_folder_scan(tmp_path):
    d = tmp_path / "d"
    save(d / "b.npy", np.ones(2))
    save(d / "a.npy", np.ones(2))
    save(d / "sub" / "c.npy", np.ones(2))
    save(d / ".hidden.npy", np.ones(2))
    (d / "README").write_text("x")
    res = scan_paths([d])
    assert [s.key for s in res.sources] == ["a", "b"]
    assert sorted(p.name for p in res.skipped) == ["README", "sub"]
    assert [s.key for s in scan_paths([d], recursive=True).sources] == ["a", "b", "c"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotAnArrayError, match="holds no array files"):
        scan_paths([empty])


def test_duplicate_keys_across_inputs(tmp_path):
    one = save(tmp_path / "x" / "k.npy", np.ones(2))
    two = save(tmp_path / "y" / "k.npy", np.ones(2))
    with pytest.raises(ImportConflictError, match="two inputs give the sample key 'k'"):
        scan_paths([one, two])


def test_plan_schema(tmp_path):
    a = scan_file(save(tmp_path / "a.npy", np.ones((2, 5), np.float32)))
    b = scan_file(save(tmp_path / "b.npy", np.ones((4, 3), np.float32)))
    c = scan_file(save(tmp_path / "c.npy", np.ones((4, 3), np.float64)))
    d = scan_file(save(tmp_path / "d.npy", np.ones(4, np.float32)))
    assert plan_schema(a + a) == (np.dtype(np.float32), (2, 5), False)
    with pytest.raises(ImportConflictError, match=r"differ in shape.*--variable-shape"):
        plan_schema(a + b)
    assert plan_schema(a + b, variable_shape=True) == (np.dtype(np.float32), (4, 5), True)
    with pytest.raises(ImportConflictError, match="differ in dtype"):
        plan_schema(b + c)
    with pytest.raises(ImportConflictError, match="differ in rank"):
        plan_schema(a + d, variable_shape=True)


# ---- importing into an arrayset ------------------------------------------------------
def make_folder(d: Path, n: int, shape=(3, 4), dtype=np.float32, start=0) -> dict[str, Path]:
    out = {}
    for i in range(start, start + n):
        out[f"s{i:04d}"] = save(d / f"s{i:04d}.npy", np.full(shape, i, dtype))
    return out


def test_import_creates_arrayset_and_replaces(repo, tmp_path):
    make_folder(tmp_path / "d", 30)
    with repo.checkout(write=True) as co:
        res = import_arrays(co, "imgs", scan_paths([tmp_path / "d"]).sources, batch_bytes=100)
        assert (res.created, res.added, res.replaced) == (True, 30, 0)
        aset = co.arraysets["imgs"]
        assert aset.shape == (3, 4) and aset.dtype == np.float32 and len(aset) == 30
        np.testing.assert_array_equal(aset["s0007"], np.full((3, 4), 7, np.float32))
        co.commit("first")
        save(tmp_path / "e" / "s0007.npy", np.full((3, 4), -1, np.float32))
        save(tmp_path / "e" / "new.npy", np.full((3, 4), -2, np.float32))
        res = import_arrays(co, "imgs", scan_paths([tmp_path / "e"]).sources)
        assert (res.created, res.added, res.replaced) == (False, 1, 1)
        save(tmp_path / "f" / "s0008.npy", np.full((3, 4), 8, np.float32))  # as committed
        res = import_arrays(co, "imgs", scan_paths([tmp_path / "f"]).sources)
        assert (res.added, res.replaced, res.unchanged, res.total) == (0, 0, 1, 1)
        assert co.arraysets["imgs"]["s0007"][0, 0] == -1
        staged = co.diff.staged()
        assert staged.samples["imgs"].additions == ("new",)
        assert staged.samples["imgs"].mutations == ("s0007",)


def test_import_variable_shape(repo, tmp_path):
    save(tmp_path / "d" / "a.npy", np.ones((2, 5), np.uint8))
    save(tmp_path / "d" / "b.npy", np.ones((4, 3), np.uint8))
    srcs = scan_paths([tmp_path / "d"]).sources
    with repo.checkout(write=True) as co:
        with pytest.raises(ImportConflictError):
            import_arrays(co, "v", srcs)
        assert "v" not in co.arraysets
        import_arrays(co, "v", srcs, variable_shape=True)
        aset = co.arraysets["v"]
        assert aset.variable_shape and aset.shape == (4, 5)
        assert aset["b"].shape == (4, 3)


def test_import_checks_existing_schema_before_staging(written_repo, tmp_path):
    # the fixture's 'aset' holds float32 (5, 7)
    save(tmp_path / "ok.npy", np.zeros((5, 7), np.float32))
    save(tmp_path / "wrong.npy", np.zeros((5, 8), np.float32))
    save(tmp_path / "wrongtype.npy", np.zeros((5, 7), np.float64))
    with written_repo.checkout(write=True) as co:
        for bad, msg in (("wrong.npy", "has shape"), ("wrongtype.npy", "has dtype")):
            srcs = scan_paths([tmp_path / "ok.npy", tmp_path / bad]).sources
            with pytest.raises(ImportConflictError, match=msg):
                import_arrays(co, "aset", srcs)
        assert co.diff.status() == "CLEAN"
        with pytest.raises(ValueError, match="invalid arrayset name"):
            import_arrays(co, "bad name", scan_paths([tmp_path / "ok.npy"]).sources)


def test_failed_import_restores_clean_staging_area(written_repo, tmp_path):
    files = make_folder(tmp_path / "d", 20, shape=(5, 7))
    srcs = scan_paths([tmp_path / "d"]).sources
    save(files["s0015"], np.zeros((2, 2), np.float32))  # changes after the scan
    co = written_repo.checkout(write=True)
    try:
        with pytest.raises(NotAnArrayError, match="changed since it was scanned"):
            import_arrays(co, "aset", srcs, batch_bytes=200)
    finally:
        co.close()
    with written_repo.checkout(write=True) as co:
        assert co.diff.status() == "CLEAN"
        assert not co._journal.has_entries
        assert len(co.arraysets["aset"]) == 10


def test_failed_import_restores_dirty_staging_area(written_repo, tmp_path):
    files = make_folder(tmp_path / "d", 20, shape=(5, 7))
    # keys '3' and '4' already exist in the fixture: they are replaced, then put back
    save(tmp_path / "d" / "3.npy", np.full((5, 7), 33, np.float32))
    save(tmp_path / "d" / "4.npy", np.full((5, 7), 44, np.float32))
    srcs = scan_paths([tmp_path / "d"]).sources
    with written_repo.checkout(write=True) as co:
        co.arraysets["aset"]["staged-before"] = np.full((5, 7), 9, np.float32)
        co.arraysets["aset"]["3"] = np.full((5, 7), 3.5, np.float32)
        co.metadata["note"] = "kept"
        before = staged_snapshot(co)
        files["s0019"].write_bytes(files["s0019"].read_bytes()[:-20])  # truncated later
        with pytest.raises(NotAnArrayError):
            import_arrays(co, "aset", srcs, batch_bytes=100)
        assert staged_snapshot(co) == before
        # and for an arrayset the import itself created
        with pytest.raises(NotAnArrayError):
            import_arrays(co, "fresh", srcs)
        assert "fresh" not in co.arraysets
        assert staged_snapshot(co) == before


def test_interrupted_import_is_undone(repo, tmp_path):
    make_folder(tmp_path / "d", 10)
    srcs = scan_paths([tmp_path / "d"]).sources
    calls = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == 6:
            raise KeyboardInterrupt

    with repo.checkout(write=True) as co, pytest.raises(KeyboardInterrupt):
        import_arrays(co, "imgs", srcs, progress=progress)
    with repo.checkout(write=True) as co:
        assert "imgs" not in co.arraysets and co.diff.status() == "CLEAN"


def test_import_refuses_unnamed_arrayset(repo, tmp_path):
    save(tmp_path / "a.npy", np.ones(3, np.float32))
    with repo.checkout(write=True) as co:
        co.arraysets.init_arrayset("u", shape=3, dtype=np.float32, named_samples=False)
        with pytest.raises(ValueError, match="unnamed samples"):
            import_arrays(co, "u", scan_paths([tmp_path / "a.npy"]).sources)


def test_import_from_npz_and_hdf5(repo, tmp_path):
    np.savez(tmp_path / "p.npz", a=np.ones(4, np.int32), b=np.full(4, 2, np.int32))
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f["c"] = np.full(4, 3, np.int32)
        f.create_group("g")["d"] = np.full(4, 4, np.int32)
    srcs = scan_paths([tmp_path / "p.npz", tmp_path / "h.h5"]).sources
    with repo.checkout(write=True) as co:
        import_arrays(co, "n", srcs)
        aset = co.arraysets["n"]
        assert sorted(aset.keys()) == ["a", "b", "c", "g.d"]
        assert aset["g.d"][0] == 4


# ---- export ----------------------------------------------------------------------------
def test_export_npy_is_byte_identical(repo, tmp_path):
    rng = np.random.default_rng(1)
    originals = {}
    for i in range(25):
        originals[f"k{i}"] = save(
            tmp_path / "in" / f"k{i}.npy", rng.random((3, 2)).astype(np.float32)
        )
    with repo.checkout(write=True) as co:
        import_arrays(co, "r", scan_paths([tmp_path / "in"]).sources)
        co.commit("r")
    seen = []
    with repo.checkout() as co:
        files = export_arrays(co.arraysets["r"], tmp_path / "out", progress=seen.append)
    assert len(files) == 25 and sum(seen) == 25
    for key, src in originals.items():
        assert (tmp_path / "out" / f"{key}.npy").read_bytes() == src.read_bytes()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_export_npz_and_hdf5_round_trip(written_repo, tmp_path):
    with written_repo.checkout() as co:
        aset = co.arraysets["aset"]
        (npz,) = export_arrays(aset, tmp_path / "o", "npz")
        (h5,) = export_arrays(aset, tmp_path / "o", "hdf5")
        expect = {str(k): aset[k] for k in aset}
    assert npz.name == "aset.npz" and h5.name == "aset.h5"
    with np.load(npz) as z:
        assert sorted(z.files) == sorted(expect)
        for k, v in expect.items():
            np.testing.assert_array_equal(z[k], v)
    with h5py.File(h5, "r") as f:
        for k, v in expect.items():
            np.testing.assert_array_equal(f[k][()], v)
    assert sorted(s.key for s in scan_paths([npz]).sources) == sorted(expect)


def test_export_refuses_to_overwrite(written_repo, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "3.npy").write_text("mine")
    with written_repo.checkout() as co:
        aset = co.arraysets["aset"]
        with pytest.raises(FileExistsError):
            export_arrays(aset, out)
        assert sorted(p.name for p in out.iterdir()) == ["3.npy"]
        assert (out / "3.npy").read_text() == "mine"
        export_arrays(aset, out, overwrite=True)
        assert len(list(out.glob("*.npy"))) == 10
        with pytest.raises(ValueError, match="unknown export format"):
            export_arrays(aset, out, "csv")


def test_export_key_collision(repo, tmp_path):
    with repo.checkout(write=True) as co:
        a = co.arraysets.init_arrayset("a", shape=2, dtype=np.int8)
        a["1"] = np.ones(2, np.int8)
        a[1] = np.zeros(2, np.int8)
        co.commit("both keys")
    with repo.checkout() as co, pytest.raises(ValueError, match="would both be exported"):
        export_arrays(co.arraysets["a"], tmp_path / "o")


def test_scan_never_opens_a_named_pipe(tmp_path):
    """A FIFO named like an array file is passed over in a folder and refused
    by name, without blocking (run in a child: a regression hangs the child)."""
    import os
    import subprocess
    import sys

    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "a.npy", np.arange(3))
    os.mkfifo(d / "b.npy")
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from hangar_git.io_formats import scan_paths, NotAnArrayError\n"
        "r = scan_paths([sys.argv[1]])\n"
        "print([s.key for s in r.sources], [p.name for p in r.skipped])\n"
        "try:\n    scan_paths([Path(sys.argv[1]) / 'b.npy'])\n"
        "except NotAnArrayError:\n    print('REFUSED')\n"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", script, str(d)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("scanning blocked on a named pipe")
    assert res.stdout.split("\n")[:2] == ["['a'] ['b.npy']", "REFUSED"], res.stderr
