"""Remotes against a real S3 endpoint on 127.0.0.1 (SeaweedFS), through s3fs.

Credentials and the endpoint come from the environment (``AWS_*``), as for
any s3fs user; nothing is written to git config but the ``s3://`` URL. HTTP
requests are counted where aiobotocore sends them, independently of what
hangar-git reports.

What every data remote must do (large payloads, corrupted or forged packs, an
unknown format, oversized objects, read timeouts) runs on S3 too, in
``test_remote_conformance.py`` (``TestS3``); this file keeps what is S3's own:
the HTTP requests a push and a fetch cost, and credentials.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

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


# ---- hostile objects on a shared bucket ------------------------------------------------
