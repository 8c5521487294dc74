"""A shared data remote written by an attacker: every size is checked before
memory or disk is spent on it, only regular files are read, and an unknown
format is refused. Nothing changes locally when an object is refused.

Hostile objects (a zlib bomb in a pack index, a ``.hgc`` header claiming a
1 TB array, a sparse multi-GB object, a named pipe in place of an index, a
symlink out of the remote) are built here. What every backend must refuse
(an unknown format marker, oversized objects, damaged or forged packs, names
leaving the root, pipes and links where the backend can hold them) is tested
on each backend in ``test_remote_conformance.py``; this file keeps the
format's own limits and what only a local folder can hold.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from hangar_git import IntegrityError, MissingPayloadError
from hangar_git.remotes import bounded
from hangar_git.remotes import packformat as pf
from hangar_git.store import chunked

try:
    from .remotes_support import (
        bare_repo,
        bomb_index,
        empty_clone_target,
        fetch_tmp_left,
        make_repo,
        store_files,
    )
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        bare_repo,
        bomb_index,
        empty_clone_target,
        fetch_tmp_left,
        make_repo,
        store_files,
    )

MiB = 1 << 20


@pytest.fixture
def shared(tmp_path: Path):
    """Alice pushed 8x8 uint8 images and int64 labels; Bob cloned the records."""
    alice = make_repo(tmp_path / "alice", n=20)
    bare = bare_repo(tmp_path / "origin.git")
    data = tmp_path / "data"
    alice.remote.add("origin", str(bare), data=str(data))
    alice.remote.push("origin", "master")
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=str(data))
    return alice, bob, data


def _digests(repo, arrayset: str = "images") -> list[bytes]:
    from hangar_git.records.reachable import referenced_digests

    git = repo._git_repo()
    head = str(git.references["refs/hangar/heads/master"].target)
    return [d for d, a in referenced_digests(git, [head]).items() if a == arrayset]


def _nonempty(files: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in files.items() if v}


# ---- 2. bounded reads -----------------------------------------------------------------
def test_index_zlib_bomb_is_refused_with_bounded_memory():
    data = bomb_index(256 * MiB)
    pid = pf.content_hash(data).hex()
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match=r"declares|malformed"):
            pf.decode_index(pid, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, peak  # 36 bytes are allowed to come out, not 256 MiB


def test_index_blocks_beyond_the_pack_refused():
    index = pf.encode_index([b"\1" * 20], [0], ["|u1|8,8"], [90], [64], [0], [64], 100, b"\0" * 20)
    with pytest.raises(IntegrityError, match="beyond the end"):
        pf.decode_index(pf.content_hash(index).hex(), index)


def test_block_stating_a_huge_raw_length_refused_before_allocation():
    raw = bytes(1000)
    block = bytearray(pf.encode_block(raw, 1))
    assert block[4] == pf.CODEC_BLOSC2
    struct.pack_into("<Q", block, 8, 1 << 40)  # raw length: 1 TB
    struct.pack_into("<I", block, 16, zlib.crc32(bytes(block[pf.BLOCK_HEADER_SIZE :])))
    with pytest.raises(IntegrityError, match="more than"):
        pf.decode_block(bytes(block), "test", max_raw=16 * MiB)
    with pytest.raises(IntegrityError, match="wrong length"):
        pf.decode_block(bytes(block), "test")


def test_copy_is_bounded_even_when_the_size_lies(tmp_path):
    """A download stops at its limit when the stated size is stale or a lie,
    and the file it made is removed; a stated size over the limit is refused
    before the file is made."""
    dst = tmp_path / "dst.tmp"
    src = io.BytesIO(b"\0" * (3 * MiB))
    with pytest.raises(IntegrityError, match="more than"):
        bounded.copy_to_new_file(src, 10, dst, MiB, "x.hgc")  # claims 10 bytes
    assert not dst.exists() and src.tell() <= MiB + 1
    with pytest.raises(IntegrityError, match="more than"):
        bounded.copy_to_new_file(io.BytesIO(b""), 2 * MiB, dst, MiB, "x.hgc")
    assert not dst.exists()
    assert bounded.copy_to_new_file(io.BytesIO(b"ab"), None, dst, MiB, "x.hgc") == 2
    with pytest.raises(FileExistsError):  # an entry already there is never replaced
        bounded.copy_to_new_file(io.BytesIO(b"cd"), None, dst, MiB, "x.hgc")
    assert dst.read_bytes() == b"ab"


def _hgc(digest: bytes, kind: str, chunks: tuple[int, ...], n: int = 1) -> bytes:
    table = np.zeros(n, chunked.TABLE)
    return chunked.encode_header(digest, kind, chunks, table)


def _drop_packs(data: Path) -> None:
    for p in (data / "packs").iterdir():
        p.unlink()


def test_hgc_header_claiming_a_terabyte_refused_before_allocation(shared, tmp_path):
    """The object's header names the wanted digest (anyone can write that) and
    a 1 TB array in one chunk; the records say 8x8 uint8. Run in a child
    process so its peak memory is its own."""
    _alice, bob, data = shared
    d = _digests(bob)[0]
    _drop_packs(data)
    (data / "packs" / f"{d.hex()}{chunked.SUFFIX}").write_bytes(
        _hgc(d, "|u1|1000000,1000000", (1_000_000, 1_000_000))
    )
    script = textwrap.dedent(
        f"""
        import resource, sys, warnings
        warnings.simplefilter("ignore")
        from hangar_git import Repository, IntegrityError
        repo = Repository({str(bob.path)!r}, exists=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            repo.remote.fetch_data("origin", "master", arrayset_names=["images"])
        except IntegrityError as exc:
            print("REFUSED", len(repo.remote.last_report.refused))
        except Exception as exc:
            print("OTHER", type(exc).__name__, exc)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("GROWTH_KIB", peak - before)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    out = res.stdout
    assert "REFUSED" in out, (out, res.stderr[-2000:])
    growth = int(out.split("GROWTH_KIB")[1].split()[0])
    assert growth < 64 * 1024, out  # KiB: far below any 1 TB
    assert fetch_tmp_left(bob) == []


def test_hgc_chunk_geometry_checked(tmp_path):
    d = b"\7" * 20
    cases = {
        "payload": _hgc(d, "<f4|1024,1024", (256, 256), 16),  # 4 MiB > 64 B allowed
        "chunks": _hgc(d, "|u1|64", (128,)),  # chunk larger than the array
    }
    for what, blob in cases.items():
        p = tmp_path / f"{what}.hgc"
        p.write_bytes(blob)
        with pytest.raises(IntegrityError):
            bounded.check_large_header(p, d, 64 if what == "payload" else 1 << 30)
    p = tmp_path / "other.hgc"
    p.write_bytes(_hgc(b"\1" * 20, "|u1|64", (64,)))
    with pytest.raises(IntegrityError, match="holds payload"):
        bounded.check_large_header(p, d, 1 << 30)


def test_sparse_remote_object_is_not_copied(shared):
    _alice, bob, data = shared
    d = _digests(bob)[0]
    _drop_packs(data)
    big = data / "packs" / f"{d.hex()}{chunked.SUFFIX}"
    with open(big, "wb") as fh:
        fh.truncate(3800 * MiB)  # sparse: 3.8 GB listed, no disk used
    before = store_files(bob)
    with pytest.raises(IntegrityError, match="refused"):
        bob.remote.fetch_data("origin", "master", arrayset_names=["images"])
    rep = bob.remote.last_report
    assert d in rep.refused
    assert rep.bytes_received < MiB  # refused on its listed size: nothing read
    assert fetch_tmp_left(bob) == []
    assert _nonempty(store_files(bob)) == _nonempty(before)


# ---- 3. pipes and links ---------------------------------------------------------------
_FETCH_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
from hangar_git import Repository
repo = Repository(sys.argv[1], exists=True)
try:
    repo.remote.fetch_data("origin", "master")
    print("FETCHED", repo.remote.last_report.payloads)
except Exception as exc:
    print("ERROR", type(exc).__name__, exc)
"""


def _fetch_in_child(repo) -> str:
    """fetch_data in a child process: a regression blocks the child, not the suite."""
    try:
        res = subprocess.run(
            [sys.executable, "-c", _FETCH_CHILD, str(repo.path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("fetch_data blocked on a named pipe in the data remote")
    return res.stdout + res.stderr[-2000:]


def test_fifo_in_place_of_an_index_does_not_block_fetch(shared):
    _alice, bob, data = shared
    idx = next((data / "packs").glob("*.idx"))
    idx.unlink()
    os.mkfifo(idx)
    out = _fetch_in_child(bob)
    assert "ERROR MissingPayloadError" in out and "damaged" in out, out
    assert fetch_tmp_left(bob) == []


def test_fifo_in_place_of_a_pack_and_marker(shared):
    _alice, bob, data = shared
    pack = next((data / "packs").glob("*.pack"))
    size = pack.stat().st_size
    pack.unlink()
    os.mkfifo(pack)
    out = _fetch_in_child(bob)
    assert "ERROR MissingPayloadError" in out, out
    pack.unlink()
    pack.write_bytes(b"\0" * size)
    (data / "hangar-data.json").unlink()
    os.mkfifo(data / "hangar-data.json")
    out = _fetch_in_child(bob)
    assert "ERROR FormatVersionError" in out and "unreadable" in out, out


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    script = (
        "import sys\nfrom hangar_git.safe_paths import open_regular, NotRegularFileError\n"
        "try:\n    open_regular(sys.argv[1])\nexcept NotRegularFileError:\n    print('OK')\n"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", script, str(fifo)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("open_regular blocked on a named pipe")
    assert res.stdout.strip() == "OK", res.stderr


def test_symlink_leaving_the_remote_root_refused(shared, tmp_path):
    _alice, bob, data = shared
    idx = next((data / "packs").glob("*.idx"))
    outside = tmp_path / "elsewhere.idx"
    outside.write_bytes(idx.read_bytes())  # a perfectly good index, but outside the remote
    idx.unlink()
    idx.symlink_to(outside)
    with pytest.raises(MissingPayloadError, match="damaged"):
        bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.payloads == 0
    # a link to a regular file inside the remote's root is read as that file
    inside = data / "moved.idx"
    inside.write_bytes(outside.read_bytes())
    idx.unlink()
    idx.symlink_to(inside)
    bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.payloads == 40


def test_s3_options_get_timeouts():
    opts = bounded.with_timeouts("s3", {"client_kwargs": {"endpoint_url": "http://x"}})
    assert opts["config_kwargs"]["read_timeout"] == bounded.READ_TIMEOUT
    assert opts["config_kwargs"]["connect_timeout"] == bounded.CONNECT_TIMEOUT
    mine = bounded.with_timeouts("s3", {"config_kwargs": {"read_timeout": 5}})
    assert mine["config_kwargs"]["read_timeout"] == 5
    assert bounded.with_timeouts("file", {}) == {}
