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

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from hangar_git.remotes import data_transport as dt
from hangar_git.remotes.data_remote import DataRemote

try:
    from .remotes_support import (
        all_arrays,
        assert_same_data,
        bare_repo,
        empty_clone_target,
        make_repo,
        remote_heads,
    )
    from .s3_fixture import s3_env, s3_server
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        all_arrays,
        assert_same_data,
        bare_repo,
        empty_clone_target,
        make_repo,
        remote_heads,
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


# ---- an upload cut midway ---------------------------------------------------------------
@pytest.fixture
def cut_uploads(monkeypatch: pytest.MonkeyPatch, s3_env) -> dict:
    """Cuts the connection halfway through the body of every PUT (retries too)
    of the ``nth`` distinct object whose name ends in ``suffix``: the server
    gets half the bytes its Content-Length promised, then a reset."""
    import s3fs
    from aiobotocore.endpoint import AioEndpoint

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # a fresh client, without botocore's retries
    s3fs.S3FileSystem.clear_instance_cache()
    plan: dict = {"suffix": ".pack", "nth": 3, "on": True, "seen": [], "cut": []}
    real = AioEndpoint._send

    async def cutting(self, request):  # type: ignore[no-untyped-def]
        path = request.url.split("?")[0]
        if plan["on"] and request.method == "PUT" and path.endswith(plan["suffix"]):
            if path not in plan["seen"]:
                plan["seen"].append(path)
            if plan["seen"].index(path) == plan["nth"] - 1:
                raw = request.body  # a BytesIO (or bytes), signed already
                body = raw.getvalue() if hasattr(raw, "getvalue") else bytes(raw)

                async def half():  # type: ignore[no-untyped-def]
                    yield body[: len(body) // 2]
                    await asyncio.sleep(0)
                    raise ConnectionResetError("connection cut midway through the upload")

                request.body = half()
                plan["cut"].append(path)
        return await real(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", cutting)
    yield plan
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("suffix", [".pack", ".idx"])
def test_s3_upload_cut_midway_is_never_read(
    tmp_path: Path, s3_env, cut_uploads, suffix, monkeypatch
):
    """A push whose third pack body (or index) is cut off halfway fails before
    any record moves; nothing of the cut object reads as part of a pack (the
    remote shows the complete packs only, none damaged); the next push sends
    only what did not land, and a clone fetches every array intact."""
    monkeypatch.setattr(dt, "PACK_TARGET", 2048)  # many small packs
    cut_uploads["suffix"] = suffix
    url = s3_env.fresh_url()
    alice = make_repo(tmp_path / "alice", n=300)
    bare = bare_repo(tmp_path / "origin.git")
    alice.remote.add("origin", str(bare), data=url)
    with pytest.raises(Exception) as failed:
        alice.remote.push("origin", "master")
    assert cut_uploads["cut"], f"the upload was not cut: {failed.value!r}"
    assert remote_heads(bare) == {}  # acknowledged nothing: records go last

    dr = DataRemote(url)
    listing = dr.list_packs()
    cut_name = cut_uploads["cut"][0].rsplit("/", 1)[1]
    assert cut_name not in listing  # the server kept nothing of the cut upload
    indexes = dr.refresh()
    assert dr.damaged == []
    # the two packs uploaded whole before the cut, and any uploading beside it; not the cut one
    assert len(indexes) >= 2 and cut_name.rsplit(".", 1)[0] not in indexes
    stranded = [n for n in listing if n.endswith(".pack") and n[:-5] not in indexes]
    assert len(stranded) == (1 if suffix == ".idx" else 0)  # a body without its index: unread
    landed = sum(len(i.digests) for i in indexes.values())

    cut_uploads["on"] = False
    alice.remote.push("origin", "master")
    rep = alice.remote.last_report
    assert rep.skipped == landed and rep.payloads == 600 - landed
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=url)
    bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.refused == [] and bob.remote.last_report.payloads == 600
    assert_same_data(all_arrays(alice), all_arrays(bob))
