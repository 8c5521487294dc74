"""Remotes against a real S3 endpoint on 127.0.0.1 (SeaweedFS), through s3fs.

Credentials and the endpoint come from the environment (``AWS_*``), as for
any s3fs user; nothing is written to git config but the ``s3://`` URL. HTTP
requests are counted where aiobotocore sends them, independently of what
hangar-git reports.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hangar_git import IntegrityError, MissingPayloadError

try:
    from .remotes_support import (
        all_arrays,
        assert_same_data,
        bare_repo,
        empty_clone_target,
        make_repo,
    )
    from .s3_fixture import s3_env, s3_server
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        all_arrays,
        assert_same_data,
        bare_repo,
        empty_clone_target,
        make_repo,
    )
    from s3_fixture import s3_env, s3_server  # type: ignore[no-redef]

__all__ = ["s3_env", "s3_server"]  # fixtures used by name


@pytest.fixture
def http_requests(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts every HTTP request aiobotocore sends, by method."""
    from aiobotocore.endpoint import AioEndpoint

    counts: Counter = Counter()
    real = AioEndpoint._send

    async def counting(self, request):  # type: ignore[no-untyped-def]
        counts[request.method] += 1
        return await real(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", counting)
    return counts


def test_s3_push_clone_partial_fetch(tmp_path: Path, s3_env, http_requests: Counter):
    url = s3_env.fresh_url()
    alice = make_repo(tmp_path / "alice", n=3000)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=url)
    assert alice._git_repo().config["remote.origin.hangar-data"] == url
    cfg_text = (Path(alice._git_repo().path) / "config").read_text()
    assert s3_env.secret not in cfg_text and s3_env.key not in cfg_text
    assert alice.remote.ping("origin") >= 0

    http_requests.clear()
    alice.remote.push("origin", "master")
    rep = alice.remote.last_report
    assert rep.payloads == 6000 and rep.packs == 1
    # a listing, the marker check and write, a pack and its index, the final
    # listing: a handful of requests for 6000 samples
    assert sum(http_requests.values()) <= 10, dict(http_requests)
    assert http_requests["PUT"] == 3  # marker, pack, index

    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=url)
    http_requests.clear()
    budget = 1000 * 8
    bob.remote.fetch_data("origin", "master", arrayset_names=["labels"], max_num_bytes=budget)
    rep = bob.remote.last_report
    assert rep.payloads == 1000 and rep.raw_bytes <= budget
    assert sum(http_requests.values()) <= 4, dict(http_requests)  # list, index, ranged read
    assert rep.bytes_received < 3000 * 8 * 2 + 400_000  # not the images
    co = bob.checkout()
    assert len(co.arraysets["labels"].remote_reference_sample_keys) == 2000
    assert len(co.arraysets["images"].remote_reference_sample_keys) == 3000
    co.close()

    http_requests.clear()
    bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.payloads == 5000
    assert sum(http_requests.values()) <= 3, dict(http_requests)  # the index is cached
    assert_same_data(all_arrays(alice), all_arrays(bob))


def test_s3_lazy_read_and_corruption(tmp_path: Path, s3_env):
    import s3fs

    url = s3_env.fresh_url()
    alice = make_repo(tmp_path / "alice", n=100)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=url)
    alice.remote.push("origin", "master")
    expected = all_arrays(alice)

    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=url)
    co = bob.checkout(fetch_missing=True)
    np.testing.assert_array_equal(co.arraysets["images"][42], expected["images"][42])
    co.close()

    # corrupt the pack on the server: every payload of the damaged block is refused
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url[len("s3://") :]
    pack = next(p for p in fs.ls(f"{root}/packs") if p.endswith(".pack"))
    data = bytearray(fs.cat_file(pack))
    data[100] ^= 0xFF
    fs.pipe_file(pack, bytes(data))
    carol = empty_clone_target(tmp_path / "carol")
    carol.clone("Carol", "carol@example.org", str(bare), data=url)
    with pytest.raises(IntegrityError, match="refused"):
        carol.remote.fetch_data("origin", "master", arrayset_names=["images"])
    assert carol.remote.last_report.refused
    co = carol.checkout()
    with pytest.raises(MissingPayloadError):
        co.arraysets["images"][0]
    assert len(co.arraysets["images"].remote_reference_sample_keys) == 100
    co.close()


def test_s3_unreachable_and_bad_credentials(tmp_path: Path, s3_env, monkeypatch):
    alice = make_repo(tmp_path / "alice", n=5)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=s3_env.fresh_url())
    import s3fs

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(ConnectionError):
            alice.remote.ping("origin")
        with pytest.raises(PermissionError):
            alice.remote.push("origin", "master")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert alice.remote.list_all()[0].data.startswith("s3://")


def test_s3_large_payloads_as_objects(tmp_path: Path, s3_env, monkeypatch):
    from hangar_git.store import chunked

    monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
    alice = make_repo(tmp_path / "alice", n=3)
    co = alice.checkout(write=True)
    bigs = {i: np.random.default_rng(i).random((96, 128)) for i in range(2)}
    co.arraysets.init_arrayset("big", shape=(96, 128), dtype=np.float64).update(bigs)
    co.commit("large")
    co.close()
    url = s3_env.fresh_url()
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=url)
    alice.remote.push("origin", "master")
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=url)
    co = bob.checkout(fetch_missing=True)
    np.testing.assert_array_equal(co.arraysets["big"][1, 10:20, ::-3], bigs[1][10:20, ::-3])
    co.close()
    bob.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(alice), all_arrays(bob))


# ---- hostile objects on a shared bucket ------------------------------------------------
def test_s3_hostile_marker_index_and_object_refused(tmp_path: Path, s3_env):
    """On real S3: a marker of another format is refused; an index listed larger
    than any index may be is never read; a ``.hgc`` object listed far larger
    than its record allows is never downloaded; reads have timeouts."""
    import json

    import s3fs

    from hangar_git import FormatVersionError
    from hangar_git.remotes import bounded
    from hangar_git.remotes.data_transport import DataRemote
    from hangar_git.remotes.transfer import referenced_digests
    from hangar_git.store.chunked import SUFFIX

    url = s3_env.fresh_url()
    alice = make_repo(tmp_path / "alice", n=30)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=url)
    alice.remote.push("origin", "master")
    remote = DataRemote(url)
    assert remote.fs.config_kwargs["read_timeout"] == bounded.READ_TIMEOUT
    assert remote.fs.config_kwargs["connect_timeout"] == bounded.CONNECT_TIMEOUT

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url[len("s3://") :]
    fs.pipe_file(f"{root}/hangar-data.json", json.dumps({"hangar_git_data_format": 7}).encode())
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=url)
    with pytest.raises(FormatVersionError, match="format 7"):
        bob.remote.fetch_data("origin", "master")
    fs.pipe_file(f"{root}/hangar-data.json", json.dumps({"hangar_git_data_format": 1}).encode())

    # the packs go; a large object for a wanted digest, far larger than 8x8 uint8
    for p in fs.ls(f"{root}/packs"):
        fs.rm_file(p)
    git = bob._git_repo()
    head = str(git.references["refs/hangar/heads/master"].target)
    d = next(d for d, a in referenced_digests(git, [head]).items() if a == "images")
    fs.pipe_file(f"{root}/packs/{d.hex()}{SUFFIX}", b"\0" * (3 << 20))
    with pytest.raises(IntegrityError, match="refused"):
        bob.remote.fetch_data("origin", "master", arrayset_names=["images"])
    rep = bob.remote.last_report
    assert d in rep.refused and rep.bytes_received < 1 << 20
    tmp = bob._store.large_dir / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())
