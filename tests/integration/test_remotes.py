"""Remotes end to end: a bare repository by path and through git daemon, and a
local-directory data remote (the S3 endpoint has its own test file).

What every data remote backend must do, damaged and hostile remotes included,
is tested once for all backends in ``test_remote_conformance.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pygit2
import pytest

from hangar_git import MergeConflictError, MissingPayloadError
from hangar_git.remotes import PushRejectedError, RemoteInfo, lookup
from hangar_git.remotes import data_transport as dt  # transfer reads PACK_TARGET there
from hangar_git.remotes.data_remote import DataRemote
from hangar_git.remotes.layout import check_kind
from hangar_git.remotes.packformat import decode_index

try:
    from .remotes_support import (
        all_arrays,
        assert_same_data,
        bare_repo,
        count_requests,
        empty_clone_target,
        git_daemon,
        git_http,
        make_repo,
        open_repo,
        remote_heads,
    )
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        all_arrays,
        assert_same_data,
        bare_repo,
        count_requests,
        empty_clone_target,
        git_daemon,
        git_http,
        make_repo,
        open_repo,
        remote_heads,
    )

__all__ = ["count_requests", "git_daemon", "git_http"]  # fixtures used by name


@pytest.fixture
def origin(tmp_path: Path):
    """A populated repository with remote 'origin': bare repo by path + data directory."""
    repo = make_repo(tmp_path / "alice", n=300)
    bare = bare_repo(tmp_path / "origin.git")
    data = tmp_path / "data"
    repo.remote.add("origin", str(bare), data=str(data))
    return repo, bare, data


def clone_of(tmp_path: Path, bare: Path, data: Path, name: str = "bob"):
    repo = empty_clone_target(tmp_path / name)
    repo.clone(name.title(), f"{name}@example.org", str(bare), data=str(data))
    return repo


# ---- configuration -----------------------------------------------------------------
def test_add_list_remove(repo, tmp_path):
    bare = bare_repo(tmp_path / "r.git")
    info = repo.remote.add("origin", str(bare), data=str(tmp_path / "d"))
    assert isinstance(info, RemoteInfo)
    name, address = info  # unpacks like the reference's two-tuple
    assert (name, address) == ("origin", str(bare))
    assert info.data == str(tmp_path / "d")
    assert repo.remote.list_all() == [info]
    assert repo.remote.list_all()[0].data == str(tmp_path / "d")
    cfg = repo._git_repo().config
    assert cfg["remote.origin.hangar-data"] == str(tmp_path / "d")
    assert "+refs/hangar/heads/*:refs/hangar/remotes/origin/*" in list(
        cfg.get_multivar("remote.origin.fetch")
    )
    # a plain `git fetch origin` also follows the data history
    with pytest.raises(ValueError, match="already exists"):
        repo.remote.add("origin", str(bare), data=str(tmp_path / "other"))
    assert repo.remote.list_all()[0].data == str(tmp_path / "d")  # unchanged
    removed = repo.remote.remove("origin")
    assert removed.name == "origin"
    assert repo.remote.list_all() == []
    assert "origin" not in list(repo._git_repo().remotes.names())
    with pytest.raises(ValueError, match="no remote"):
        repo.remote.remove("origin")


def test_add_reuses_existing_git_remote(repo, tmp_path):
    bare = bare_repo(tmp_path / "code.git")
    git = repo._git_repo()
    git.remotes.create("origin", str(bare))
    with pytest.raises(ValueError, match="already exists with address"):
        repo.remote.add("origin", str(tmp_path / "elsewhere.git"), data=str(tmp_path / "d"))
    info = repo.remote.add("origin", data=str(tmp_path / "d"))  # address from git config
    assert info.address == str(bare)
    assert "+refs/heads/*:refs/remotes/origin/*" in git.remotes["origin"].fetch_refspecs
    repo.remote.remove("origin")
    # the user's own git remote stays, without hangar's settings
    assert git.remotes["origin"].url == str(bare)
    assert git.remotes["origin"].fetch_refspecs == ["+refs/heads/*:refs/remotes/origin/*"]
    assert repo.remote.list_all() == []


@pytest.mark.parametrize(
    "bad",
    [
        dict(name="bad/name", address="x"),
        dict(name="", address="x"),
        dict(name="o", address=""),
        dict(name="o", address="x", data="nosuchproto://b/p"),
        dict(name="o", address="x", data="s3://b/p", data_options={"secret": "s"}),
        dict(name="o", address="x", data="s3://b/p", data_options={"aws_access_key_id": "k"}),
    ],
)
def test_add_refuses_bad_input(repo, bad):
    name = bad.pop("name")
    address = bad.pop("address")
    with pytest.raises(ValueError):
        repo.remote.add(name, address, **bad)
    assert repo.remote.list_all() == []
    assert list(repo._git_repo().remotes.names()) == []


@pytest.mark.parametrize(
    "address,data,options",
    [
        ("https://alice:s3cret@git.example.org/team/data.git", None, None),
        ("ssh://git:pw@git.example.org/team/data.git", None, None),
        ("https://git.example.org/x.git?access_token=abc", None, None),
        ("REPO", "sftp://bob:pw@files.example.org/data", None),
        ("REPO", "s3://AKIAXXXX:secret@bucket/prefix", None),
        ("REPO", "https://store.example.org/data?sig=abc&sv=2020", None),
        ("REPO", "s3://b/p", {"client_kwargs": {"aws_secret_access_key": "s"}}),
        ("REPO", "s3://b/p", {"config_kwargs": {"proxies": [{"password": "s"}]}}),
    ],
)
def test_credentials_never_stored_in_git_config(repo, tmp_path, address, data, options):
    """A URL or option carrying a secret is refused, by add and by clone alike."""
    address = str(tmp_path) if address == "REPO" else address
    cfg_path = Path(repo._git_repo().path) / "config"
    before = cfg_path.read_text()
    with pytest.raises(ValueError, match=r"password|credential"):
        repo.remote.add("origin", address, data=data, data_options=options)
    assert cfg_path.read_text() == before
    assert repo.remote.list_all() == []
    if options is None:
        target = empty_clone_target(tmp_path / "clone")
        with pytest.raises(ValueError, match=r"password|credential"):
            target.clone("T", "t@example.org", address, data=data)
        assert not target.initialized
        assert list((tmp_path / "clone").iterdir()) == []


def test_user_names_in_urls_are_fine(repo, tmp_path):
    """A user name alone is not a secret: the password comes from the usual places."""
    info = repo.remote.add(
        "origin",
        "https://alice@git.example.org/team/data.git",
        data="sftp://bob@files.example.org/data",
        data_options={"client_kwargs": {"region_name": "eu-west-1"}},
    )
    assert info.address == "https://alice@git.example.org/team/data.git"
    assert repo.remote.list_all()[0].data == "sftp://bob@files.example.org/data"
    repo.remote.add("scp", "git@git.example.org:team/data.git")
    assert [r.name for r in repo.remote.list_all()] == ["origin", "scp"]


def test_data_options_stored_without_secrets(repo, tmp_path):
    info = repo.remote.add(
        "o", str(tmp_path), data="memory://bucket/p", data_options={"skip_instance_cache": True}
    )
    assert info.data == "memory://bucket/p"
    cfg = repo._git_repo().config
    assert cfg["remote.o.hangar-data-options"] == '{"skip_instance_cache": true}'


def test_ping(origin, tmp_path):
    repo, _bare, _data = origin
    assert repo.remote.ping("origin") >= 0
    with pytest.raises(KeyError):
        repo.remote.ping("nope")
    repo.remote.add("gone", str(tmp_path / "missing.git"), data=str(tmp_path / "d2"))
    with pytest.raises(ConnectionError):
        repo.remote.ping("gone")


# ---- push, clone, fetch-data ------------------------------------------------------------
def test_push_clone_fetch_data_roundtrip(origin, tmp_path):
    repo, bare, data = origin
    head = repo.log(return_contents=True)["head"]
    assert repo.remote.push("origin", "master") == "master"
    rep = repo.remote.last_report
    assert rep.payloads == 600 and rep.packs == 1
    assert remote_heads(bare) == {"refs/hangar/heads/master": head}
    ref = repo._git_repo().references["refs/hangar/remotes/origin/master"]
    assert str(ref.target) == head
    assert sorted(p.suffix for p in (data / "packs").iterdir()) == [".idx", ".pack"]
    fsck = subprocess.run(
        ["git", "--git-dir", str(bare), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr

    bob = clone_of(tmp_path, bare, data)
    assert bob.list_branches() == ["master"]
    assert bob.log(return_contents=True)["head"] == head
    co = bob.checkout()
    assert co.arraysets["images"].contains_remote_references
    assert len(co.arraysets["images"].remote_reference_sample_keys) == 300
    assert co.arraysets.contains_remote_references == {"images": True, "labels": True}
    assert {n: len(k) for n, k in co.arraysets.remote_sample_keys.items()} == {
        "images": 300,
        "labels": 300,
    }
    assert co.metadata["source"] == "test"  # records are all here
    with pytest.raises(MissingPayloadError, match="fetch-data"):
        co.arraysets["images"][0]
    co.close()
    assert bob.remote.fetch_data("origin", "master") == [head]
    assert bob.remote.last_report.payloads == 600
    assert_same_data(all_arrays(repo), all_arrays(bob))
    co = bob.checkout()
    assert not co.arraysets["images"].contains_remote_references
    assert co.arraysets.contains_remote_references == {"images": False, "labels": False}
    co.close()
    # again: nothing to move
    bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.payloads == 0
    assert bob.remote.last_report.requests == 0
    repo.remote.push("origin", "master")
    assert repo.remote.last_report.payloads == 0


def test_push_only_sends_what_the_remote_lacks(origin):
    repo, _bare, data = origin
    repo.remote.push("origin", "master")
    co = repo.checkout(write=True)
    co.arraysets["images"][1000] = np.full((8, 8), 7, np.uint8)
    co.arraysets["labels"][0] = np.array([-1], np.int64)
    co.commit("two changes")
    co.close()
    repo.remote.push("origin", "master")
    rep = repo.remote.last_report
    assert rep.payloads == 2 and rep.packs == 1
    assert len(list((data / "packs").glob("*.idx"))) == 2


def test_partial_clone_one_arrayset_under_budget(origin, tmp_path):
    repo, bare, data = origin
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    budget = 100 * 8  # a hundred int64 labels
    commits = bob.remote.fetch_data(
        "origin", "master", arrayset_names=["labels"], max_num_bytes=budget
    )
    assert len(commits) == 1
    rep = bob.remote.last_report
    assert rep.payloads == 100 and rep.raw_bytes <= budget
    co = bob.checkout()
    labels = co.arraysets["labels"]
    missing = set(labels.remote_reference_sample_keys)
    assert len(missing) == 200
    have = [k for k in labels if k not in missing]
    assert len(have) == 100
    for k in have:
        assert labels[k][0] == k
    assert len(co.arraysets["images"].remote_reference_sample_keys) == 300
    co.close()
    # the rest of that arrayset, then everything
    bob.remote.fetch_data("origin", "master", arrayset_names=["labels"])
    assert bob.remote.last_report.payloads == 200
    bob.remote.fetch_data("origin", commit=commits[0][:10])
    assert bob.remote.last_report.payloads == 300
    assert_same_data(all_arrays(repo), all_arrays(bob))


def test_fetch_data_all_history(origin, tmp_path):
    repo, bare, data = origin
    co = repo.checkout(write=True)
    co.arraysets["images"][0] = np.zeros((8, 8), np.uint8)
    co.commit("overwrite sample 0")
    co.close()
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.payloads == 600
    first = repo.log(return_contents=True)["order"][-1]
    co = bob.checkout(commit=first)
    assert co.arraysets["images"].remote_reference_sample_keys == [0]
    co.close()
    commits = bob.remote.fetch_data("origin", "master", retrieve_all_history=True)
    assert len(commits) == 2
    assert bob.remote.last_report.payloads == 1
    assert_same_data(all_arrays(repo, first), all_arrays(bob, first))


def test_lazy_reads_fetch_on_the_spot(origin, tmp_path):
    repo, bare, data = origin
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    expected = all_arrays(repo)
    co = bob.checkout(fetch_missing=True)
    np.testing.assert_array_equal(co.arraysets["images"][5], expected["images"][5])
    batch = co.arraysets["labels"].get_batch([1, 2, 3])
    assert [int(b[0]) for b in batch] == [1, 2, 3]
    assert len(co.arraysets["images"].remote_reference_sample_keys) == 299
    assert len(co.arraysets["labels"].remote_reference_sample_keys) == 297
    co.close()
    # a write checkout can read lazily too (payloads go through its own store writer)
    co = bob.checkout(write=True, fetch_missing="origin")
    np.testing.assert_array_equal(co.arraysets["images"][9], expected["images"][9])
    co.arraysets["labels"][9] = np.array([90], np.int64)
    co.commit("edit after lazy read")
    co.close()
    # without fetch_missing, a remote reference is a clear error
    co = bob.checkout()
    with pytest.raises(MissingPayloadError, match=r"images\[6\].*fetch-data"):
        co.arraysets["images"][6]
    co.close()
    with pytest.raises(ValueError):
        bob.checkout(fetch_missing="nope")


def test_fetch_records_only_and_merge_remote_branch(origin, tmp_path):
    repo, bare, data = origin
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    co = repo.checkout(write=True)
    co.arraysets["labels"][300] = np.array([300], np.int64)
    co.metadata["round"] = "2"
    new = co.commit("alice adds a label")
    co.close()
    repo.remote.push("origin", "master")
    # the remote is an ordinary git remote: plain `git fetch` follows the data branches
    subprocess.run(["git", "fetch", "-q", "origin"], cwd=bob.path, check=True)
    git = bob._git_repo()
    assert str(git.references["refs/hangar/remotes/origin/master"].target) == new
    assert bob.remote.fetch("origin", "master") == "origin/master"
    assert str(git.references["refs/hangar/remotes/origin/master"].target) == new
    old = bob.log(return_contents=True)["head"]
    assert old != new  # the local branch did not move
    co = bob.checkout(commit=new)  # readable, records only
    assert co.metadata["round"] == "2"
    assert co.arraysets["labels"].remote_reference_sample_keys  # payloads not fetched
    co.close()
    assert bob.merge("take alice's work", "master", "origin/master") == new  # fast-forward
    with pytest.raises(ValueError, match="no branch"):
        bob.remote.fetch("origin", "nosuchbranch")


def test_two_clones_collaborate_with_conflict(origin, tmp_path):
    alice, bare, data = origin
    alice.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    carol = clone_of(tmp_path, bare, data, name="carol")

    # bob and carol both work on master; bob pushes first
    co = bob.checkout(write=True)
    co.arraysets["labels"][1000] = np.array([1], np.int64)
    co.arraysets["labels"][5] = np.array([55], np.int64)
    co.commit("bob")
    co.close()
    bob.remote.push("origin", "master")

    co = carol.checkout(write=True)
    co.arraysets["labels"][2000] = np.array([2], np.int64)
    co.arraysets["labels"][5] = np.array([77], np.int64)  # conflicts with bob's 55
    co.commit("carol")
    co.close()
    with pytest.raises(PushRejectedError, match="fetch") as exc:
        carol.remote.push("origin", "master")
    assert "merge" in str(exc.value)
    assert isinstance(exc.value, RuntimeError)

    carol.remote.fetch("origin", "master")
    with pytest.raises(MergeConflictError):
        carol.merge("merge bob", "master", "origin/master")
    # resolve: carol takes bob's value for the conflicting key, then merges
    co = carol.checkout(write=True)
    co.arraysets["labels"][5] = np.array([55], np.int64)
    co.commit("agree with bob on sample 5")
    co.close()
    merged = carol.merge("merge bob", "master", "origin/master")
    carol.remote.push("origin", "master")
    assert remote_heads(bare)["refs/hangar/heads/master"] == merged

    # bob gets carol's work: a fast-forward, then her payloads
    bob.remote.fetch("origin", "master")
    assert bob.merge("take carol", "master", "origin/master") == merged
    bob.remote.fetch_data("origin", "master", arrayset_names=["labels"])
    co = bob.checkout()
    labels = co.arraysets["labels"]
    assert int(labels[2000][0]) == 2 and int(labels[1000][0]) == 1
    assert int(labels[5][0]) == 55
    co.close()
    # and alice, who only pushed at first, follows
    alice.remote.fetch("origin", "master")
    alice.merge("sync", "master", "origin/master")
    alice.remote.fetch_data("origin", "master")
    bob.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(alice), all_arrays(bob))


def test_push_from_partial_clone_to_another_remote_refused(origin, tmp_path):
    """Payloads neither here nor on the target: a clear error, and nothing sent."""
    repo, bare, data = origin
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    bob.remote.fetch_data("origin", "master", arrayset_names=["labels"])
    mirror, mirror_data = bare_repo(tmp_path / "mirror.git"), tmp_path / "mirror-data"
    bob.remote.add("mirror", str(mirror), data=str(mirror_data))
    with pytest.raises(MissingPayloadError, match="fetch-data"):
        bob.remote.push("mirror", "master")
    assert remote_heads(mirror) == {}
    assert not mirror_data.exists() or not list(mirror_data.rglob("*.pack"))
    bob.remote.fetch_data("origin", "master")
    bob.remote.push("mirror", "master")
    assert bob.remote.last_report.payloads == 600
    carol = clone_of(tmp_path, mirror, mirror_data, "carol")
    carol.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(repo), all_arrays(carol))


def test_push_rejected_before_any_upload(origin, tmp_path):
    alice, bare, data = origin
    alice.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    co = bob.checkout(write=True)
    co.arraysets["labels"][777] = np.array([7], np.int64)
    co.commit("bob")
    co.close()
    bob.remote.push("origin", "master")
    co = alice.checkout(write=True)
    co.arraysets["images"][999] = np.ones((8, 8), np.uint8)
    co.commit("alice")
    co.close()
    before = sorted(p.name for p in (data / "packs").iterdir())
    with pytest.raises(PushRejectedError):
        alice.remote.push("origin", "master")
    assert sorted(p.name for p in (data / "packs").iterdir()) == before


def test_new_branch_push_and_fetch(origin, tmp_path):
    alice, bare, data = origin
    alice.remote.push("origin", "master")
    alice.create_branch("dev")
    co = alice.checkout(write=True, branch="dev")
    co.arraysets["images"][5000] = np.full((8, 8), 3, np.uint8)
    dev = co.commit("dev work")
    co.close()
    alice.remote.push("origin", "dev")
    assert alice.remote.last_report.payloads == 1
    assert remote_heads(bare)["refs/hangar/heads/dev"] == dev
    bob = clone_of(tmp_path, bare, data)
    assert "origin/dev" in [b for b in _tracking(bob)]
    bob.remote.fetch_data("origin", "origin/dev", arrayset_names=["images"])
    co = bob.checkout(commit=dev)
    assert int(co.arraysets["images"][5000][0, 0]) == 3
    co.close()


def _tracking(repo) -> list[str]:
    prefix = "refs/hangar/remotes/"
    return [r[len(prefix) :] for r in repo._git_repo().references if r.startswith(prefix)]


# ---- integrity -----------------------------------------------------------------------
def test_object_dtype_kind_refused():
    assert not check_kind("|O|1", 8)
    assert not check_kind("<f8|2", 8)  # wrong size
    assert check_kind("<f8|2", 16)
    assert check_kind("|u1|", 1)


# ---- interruptions and request counts ---------------------------------------------------
def test_interrupted_push_resumes_without_resending(origin, tmp_path, monkeypatch):
    repo, bare, data = origin
    monkeypatch.setattr(dt, "PACK_TARGET", 2048)  # ~ a pack per 2 KiB: many packs
    real_upload = DataRemote.upload
    sent: list[str] = []

    def flaky(self, pack):
        if len(sent) == 3:
            raise ConnectionError("network cut")
        sent.append(pack.pack_id)
        return real_upload(self, pack)

    monkeypatch.setattr(DataRemote, "upload", flaky)
    with pytest.raises(ConnectionError):
        repo.remote.push("origin", "master")
    assert remote_heads(bare) == {}  # records are pushed last: nothing visible yet
    assert len(list((data / "packs").glob("*.idx"))) == 3

    resent: list[str] = []

    def counting(self, pack):
        resent.append(pack.pack_id)
        return real_upload(self, pack)

    monkeypatch.setattr(DataRemote, "upload", counting)
    repo.remote.push("origin", "master")
    rep = repo.remote.last_report
    assert not set(resent) & set(sent)
    assert rep.skipped > 0 and rep.payloads + rep.skipped == 600
    assert rep.payloads == 600 - sum(
        len(decode_index(p, (data / "packs" / f"{p}.idx").read_bytes()).entries) for p in sent
    )
    bob = clone_of(tmp_path, bare, data)
    bob.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(repo), all_arrays(bob))


def test_interrupted_fetch_resumes(origin, tmp_path, monkeypatch):
    repo, bare, data = origin
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    from hangar_git.remotes import transfer

    monkeypatch.setattr(transfer, "FETCH_BATCH", 1)  # one ranged read per batch
    monkeypatch.setattr(lookup, "COALESCE_GAP", -1)  # no coalescing: one read per block
    real = DataRemote.read_ranges
    calls = []

    def flaky(self, ranges):
        if len(calls) == 1:
            raise ConnectionError("network cut")
        calls.append(ranges)
        return real(self, ranges)

    monkeypatch.setattr(DataRemote, "read_ranges", flaky)
    with pytest.raises(ConnectionError):
        bob.remote.fetch_data("origin", "master")
    monkeypatch.setattr(DataRemote, "read_ranges", real)
    co = bob.checkout()
    still = len(co.arraysets["images"].remote_reference_sample_keys) + len(
        co.arraysets["labels"].remote_reference_sample_keys
    )
    co.close()
    assert 0 < still < 600
    bob.remote.fetch_data("origin", "master")
    rep = bob.remote.last_report
    assert rep.skipped > 0 and rep.payloads < 600
    assert_same_data(all_arrays(repo), all_arrays(bob))


def test_requests_grow_with_packs_not_samples(tmp_path, count_requests):
    repo = make_repo(tmp_path / "big", n=5000)
    bare = bare_repo(tmp_path / "big.git")
    repo.remote.add("origin", str(bare), data=str(tmp_path / "data"))
    repo.remote.push("origin", "master")
    rep = repo.remote.last_report
    assert rep.payloads == 10000 and rep.packs == 1
    pushed = sum(c.total for c in count_requests)
    assert pushed <= 12, [dict(c.calls) for c in count_requests]
    assert rep.requests <= 12

    clone = empty_clone_target(tmp_path / "c")
    clone.clone("C", "c@example.org", str(bare), data=str(tmp_path / "data"))
    before = sum(c.total for c in count_requests)
    clone.remote.fetch_data("origin", "master")
    fetched = sum(c.total for c in count_requests) - before
    assert clone.remote.last_report.payloads == 10000
    assert fetched <= 6, [dict(c.calls) for c in count_requests]


def _sixty_thousand(path: Path):
    """60,000 small samples (8x8 uint8 images, distinct int64 labels), one commit."""
    path.mkdir()
    repo = open_repo(path)
    repo.init(user_name="M", user_email="m@example.org")
    rng = np.random.default_rng(60)
    co = repo.checkout(write=True)
    images = co.arraysets.init_arrayset("images", shape=(8, 8), dtype=np.uint8)
    labels = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    images.update(dict(enumerate(rng.integers(0, 256, (60_000, 8, 8), dtype=np.uint8))))
    labels.update({i: np.array([i], np.int64) for i in range(60_000)})
    co.commit("60,000 samples")
    co.close()
    return repo


def test_60000_samples_requests_grow_with_packs_not_samples(tmp_path, monkeypatch, count_requests):
    """The issue's figure: pushing and fetching 60,000 small samples costs a few
    requests per pack, whatever the number of samples in them."""
    repo = _sixty_thousand(tmp_path / "src")
    runs = {}
    for label, pack_target in (("one pack", dt.PACK_TARGET), ("many packs", 512 * 1024)):
        monkeypatch.setattr(dt, "PACK_TARGET", pack_target)
        bare, data = bare_repo(tmp_path / f"{label}.git"), tmp_path / f"{label}-data"
        repo.remote.add(label.replace(" ", "-"), str(bare), data=str(data))
        count_requests.clear()
        repo.remote.push(label.replace(" ", "-"), "master")
        push = repo.remote.last_report
        push_fs = sum(c.total for c in count_requests)
        clone = clone_of(tmp_path, bare, data, name=label.replace(" ", ""))
        count_requests.clear()
        clone.remote.fetch_data("origin", "master")
        fetch = clone.remote.last_report
        fetch_fs = sum(c.total for c in count_requests)
        assert push.payloads == fetch.payloads == 120_000
        runs[label] = (push.packs, push.requests, push_fs, fetch.requests, fetch_fs)
    (p1, push1, fs1, fetch1, ffs1), (pn, pushn, fsn, fetchn, ffsn) = runs.values()
    assert p1 == 1 and pn >= 8
    # push: a listing, the marker, a pack and its index per pack, the check listing
    assert push1 <= 7 and pushn - push1 == 2 * (pn - 1), runs
    assert fs1 <= 12 and fsn - fs1 <= 4 * (pn - 1), runs  # local files: write + rename each
    # fetch-data: a listing, the marker (its format is checked), then per pack its
    # index and one ranged read (a local remote reads its regular files directly)
    assert fetch1 <= 4 and fetchn <= 2 + 2 * pn, runs
    assert ffs1 <= 3 and ffsn <= 1 + 2 * pn, runs


# ---- errors --------------------------------------------------------------------------
def test_errors_are_clear_and_change_nothing(origin, tmp_path):
    repo, bare, data = origin
    with pytest.raises(ValueError, match="no remote"):
        repo.remote.push("nope", "master")
    with pytest.raises(ValueError, match="no branch"):
        repo.remote.push("origin", "nosuch")
    with pytest.raises(ValueError):
        repo.remote.push("origin", "bad/name")
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    with pytest.raises(ValueError, match="not both"):
        bob.remote.fetch_data("origin", branch="master", commit="abcd")
    with pytest.raises(ValueError):
        bob.remote.fetch_data("origin")
    with pytest.raises(ValueError, match="no arrayset"):
        bob.remote.fetch_data("origin", "master", arrayset_names=["nope"])
    with pytest.raises(ValueError):
        bob.remote.fetch_data("origin", "master", max_num_bytes=-1)
    with pytest.raises(ValueError, match="no branch"):
        bob.remote.fetch_data("origin", "nosuch")
    co = bob.checkout()
    assert len(co.arraysets["images"].remote_reference_sample_keys) == 300
    co.close()
    # a remote without a data URL cannot receive payloads
    plain = bare_repo(tmp_path / "plain.git")
    repo.remote.add("plain", str(plain))
    with pytest.raises(ValueError, match="no data URL"):
        repo.remote.push("plain", "master")
    assert remote_heads(plain) == {}


def test_clone_refusals(origin, tmp_path):
    repo, bare, data = origin
    empty = bare_repo(tmp_path / "empty.git")
    target = empty_clone_target(tmp_path / "t")
    with pytest.raises(ValueError, match="nothing to clone"):
        target.clone("T", "t@example.org", str(empty), data=str(data))
    assert not target.initialized
    assert not (tmp_path / "t" / ".git").exists()
    with pytest.raises(ConnectionError):
        target.clone("T", "t@example.org", str(tmp_path / "missing.git"), data=str(data))
    assert not target.initialized
    repo.remote.push("origin", "master")
    with pytest.raises(ValueError, match="identity"):  # no git config identity here
        target.clone(None, None, str(bare), data=str(data))
    assert not target.initialized
    assert list((tmp_path / "t").iterdir()) == []
    repo.remote.push("origin", "master")
    bob = clone_of(tmp_path, bare, data)
    with pytest.raises(OSError, match="already exists"):
        bob.clone("B", "b@example.org", str(bare), data=str(data))
    assert bob.clone("B", "b@example.org", str(bare), data=str(data), remove_old=True) == "master"


# ---- git daemon ----------------------------------------------------------------------
def test_push_fetch_through_git_daemon(tmp_path, git_daemon):
    base, url = git_daemon
    bare_repo(base / "team.git")
    alice = make_repo(tmp_path / "alice", n=50)
    alice.remote.add("origin", f"{url}/team.git", data=str(tmp_path / "data"))
    assert alice.remote.ping("origin") >= 0
    alice.remote.push("origin", "master")
    head = alice.log(return_contents=True)["head"]
    assert remote_heads(base / "team.git") == {"refs/hangar/heads/master": head}

    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", f"{url}/team.git", data=str(tmp_path / "data"))
    bob.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(alice), all_arrays(bob))
    co = bob.checkout(write=True)
    co.arraysets["labels"][99] = np.array([99], np.int64)
    new = co.commit("bob over git://")
    co.close()
    bob.remote.push("origin", "master")
    alice.remote.fetch("origin", "master")
    assert alice.merge("ff", "master", "origin/master") == new
    alice.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(alice), all_arrays(bob))
    # the git remote is an ordinary one: plain git sees the data branches
    out = subprocess.run(
        ["git", "ls-remote", f"{url}/team.git"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{new}\trefs/hangar/heads/master" in out
    assert pygit2.Repository(str(base / "team.git")).references["refs/hangar/heads/master"]


def test_push_rejected_through_git_daemon(tmp_path, git_daemon, monkeypatch):
    """Over git://, a remote ahead is refused before anything is sent, and a remote
    that moves during the push (git refuses the update) gives the same advice."""
    from hangar_git.remotes import git_transport as gt

    base, url = git_daemon
    bare_repo(base / "race.git")
    alice = make_repo(tmp_path / "alice", n=20)
    alice.remote.add("origin", f"{url}/race.git", data=str(tmp_path / "data"))
    alice.remote.push("origin", "master")
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", f"{url}/race.git", data=str(tmp_path / "data"))
    for repo, key in ((bob, 100), (alice, 200)):
        co = repo.checkout(write=True)
        co.arraysets["labels"][key] = np.array([key], np.int64)
        co.commit(f"add {key}")
        co.close()
    bob.remote.push("origin", "master")
    theirs = remote_heads(base / "race.git")
    with pytest.raises(PushRejectedError, match=r"git hangar fetch origin master.*merge"):
        alice.remote.push("origin", "master")
    # the remote moved after alice looked at it: git itself refuses the update
    real = gt.list_heads
    monkeypatch.setattr(gt, "list_heads", lambda git, name, cb: {})  # a stale view
    with pytest.raises(PushRejectedError, match=r"git hangar fetch origin master.*merge"):
        alice.remote.push("origin", "master")
    monkeypatch.setattr(gt, "list_heads", real)
    assert remote_heads(base / "race.git") == theirs
    # fetch, merge, push: accepted
    alice.remote.fetch("origin", "master")
    merged = alice.merge("merge bob", "master", "origin/master")
    alice.remote.push("origin", "master")
    assert remote_heads(base / "race.git") == {"refs/hangar/heads/master": merged}


# ---- authentication ---------------------------------------------------------------------
def test_credentials_from_git_credential_helper(repo, tmp_path):
    """https passwords come from git's credential helpers, never from our config."""
    from pygit2.enums import CredentialType

    from hangar_git.remotes.git_transport import Callbacks

    helper = tmp_path / "helper.sh"
    helper.write_text(
        "#!/bin/sh\n"
        'test "$1" = get || exit 0\n'
        "cat > /dev/null\n"
        "echo username=alice\n"
        "echo password=s3cret\n"
    )
    helper.chmod(0o755)
    repo._git_repo().config["credential.helper"] = str(helper)
    cb = Callbacks(repo.path)
    cred = cb.credentials(
        "https://git.example.org/team/data.git", None, CredentialType.USERPASS_PLAINTEXT
    )
    assert cred.credential_tuple == ("alice", "s3cret")
    # explicit credentials for one call win on the first attempt
    cb = Callbacks(repo.path, username="bob", password="tok")
    cred = cb.credentials("https://git.example.org/x.git", None, CredentialType.USERPASS_PLAINTEXT)
    assert cred.credential_tuple == ("bob", "tok")
    # no helper: a clear error instead of a prompt that would hang
    del repo._git_repo().config["credential.helper"]
    cb = Callbacks(repo.path)
    with pytest.raises(pygit2.GitError, match="credential helper"):
        cb.credentials("https://git.example.org/x.git", None, CredentialType.USERPASS_PLAINTEXT)
    assert "password" not in (Path(repo._git_repo().path) / "config").read_text()


def test_ssh_credentials_from_agent_then_key_files(tmp_path, monkeypatch, isolated_git):
    from pygit2.enums import CredentialType

    from hangar_git.remotes.git_transport import Callbacks

    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    ssh = isolated_git / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519").write_text("not a real key")
    (ssh / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test")
    cb = Callbacks(None)
    first = cb.credentials("ssh://git@example.org/x.git", "git", CredentialType.SSH_KEY)
    assert isinstance(first, pygit2.KeypairFromAgent)
    second = cb.credentials("ssh://git@example.org/x.git", "git", CredentialType.SSH_KEY)
    assert second.credential_tuple[0] == "git"
    assert second.credential_tuple[2] == str(ssh / "id_ed25519")
    with pytest.raises(pygit2.GitError, match="ssh-agent"):
        cb.credentials("ssh://git@example.org/x.git", "git", CredentialType.SSH_KEY)


def test_push_and_clone_over_https_with_credential_helper(tmp_path, git_http):
    """An authenticated HTTP git host: the password comes from git's credential helper."""
    root, url, handler = git_http
    bare_repo(root / "team.git")
    helper = tmp_path / "helper.sh"
    helper.write_text(
        '#!/bin/sh\ntest "$1" = get || exit 0\ncat > /dev/null\n'
        "echo username=alice\necho password=s3cret\n"
    )
    helper.chmod(0o755)
    subprocess.run(["git", "config", "--global", "credential.helper", str(helper)], check=True)
    alice = make_repo(tmp_path / "alice", n=20)
    alice.remote.add("origin", f"{url}/team.git", data=str(tmp_path / "data"))
    alice.remote.push("origin", "master")
    assert remote_heads(root / "team.git") == {
        "refs/hangar/heads/master": alice.log(return_contents=True)["head"]
    }
    assert handler.attempts["auth"] > 0 and handler.attempts["anonymous"] > 0
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", f"{url}/team.git", data=str(tmp_path / "data"))
    bob.remote.fetch_data("origin", "master")
    assert_same_data(all_arrays(alice), all_arrays(bob))
    # wrong password: a clear error, not a hang
    helper.write_text(
        '#!/bin/sh\ntest "$1" = get || exit 0\ncat > /dev/null\n'
        "echo username=alice\necho password=wrong\n"
    )
    with pytest.raises(ConnectionError):
        bob.remote.fetch("origin", "master")


def _add_dev(repo, n: int = 20) -> None:
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["labels"] as labs:
        for i in range(n):
            labs[1000 + i] = np.array([1000 + i], dtype=np.int64)
    co.commit("dev labels")
    co.close()


@pytest.mark.parametrize("how", ["set_data", "remove_and_add"])
def test_a_new_data_url_gets_every_payload_of_the_remotes_commits(origin, tmp_path, how):
    """After the data URL changes, the remote's commits (known here from
    earlier pushes) say nothing of what the new URL holds: the next push
    sends every payload they need, other branches' included, once."""
    repo, bare, _ = origin
    _add_dev(repo)
    repo.remote.push("origin", "master")
    repo.remote.push("origin", "dev")
    moved = tmp_path / "moved-data"
    if how == "set_data":
        repo.remote.set_data("origin", str(moved))
    else:
        repo.remote.remove("origin")
        repo.remote.add("origin", str(bare), data=str(moved))
    repo.remote.push("origin", "master")  # no new commit on master
    assert repo.remote.last_report.payloads == 620  # master's 600 and dev's 20
    repo.remote.push("origin", "master")
    assert repo.remote.last_report.payloads == 0  # once: the mark is cleared
    bob = clone_of(tmp_path, bare, moved)
    bob.remote.fetch("origin", "dev")
    for branch in ("master", "dev"):
        bob.remote.fetch_data("origin", branch)
        head = repo.branch_commit(branch)
        assert_same_data(all_arrays(repo, head), all_arrays(bob, head))


def test_the_same_data_url_again_resends_nothing(origin):
    repo, _, data = origin
    repo.remote.push("origin", "master")
    repo.remote.set_data("origin", str(data))
    repo.remote.push("origin", "master")
    assert repo.remote.last_report.payloads == 0


def test_object_store_push_cuts_packs_at_send_target(tmp_path, monkeypatch):
    """On an object store a push cuts its packs at send_target (each sent
    while the next is built); a local folder still gets one pack; both
    clones read every array back."""
    monkeypatch.setattr(dt, "OBJECT_STORE_PACK_TARGET", 4096)
    alice = make_repo(tmp_path / "alice", n=300)  # 300 x 64 + 300 x 8 bytes
    packs = {}
    for name, data in (("mem", "memory://h5-send-target"), ("dir", str(tmp_path / "d"))):
        bare = bare_repo(tmp_path / f"{name}.git")
        alice.remote.add(name, str(bare), data=data)
        alice.remote.push(name, "master")
        packs[name] = alice.remote.last_report.packs
        bob = empty_clone_target(tmp_path / f"bob-{name}")
        bob.clone("Bob", "bob@example.org", str(bare), data=data)
        bob.remote.fetch_data("origin", "master")
        assert_same_data(all_arrays(alice), all_arrays(bob))
    assert packs["dir"] == 1 and packs["mem"] >= 5, packs
