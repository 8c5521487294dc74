"""A fetch-data lists the data remote's packs on a second thread while it
reads the records, a push while it works out what to send
(hangar_git/remotes/transfer.py EarlyRefresh): the network round trips of
an object store overlap that work; a fetch that finds everything here never
waits on the network; a refresh that failed early is made again where it
always was, and its error raised there; its requests count in the report."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hangar_git.remotes import steps, transfer
from hangar_git.remotes.data_remote import DataRemote

try:
    from .remotes_support import (
        all_arrays,
        assert_same_data,
        bare_repo,
        empty_clone_target,
        make_repo,
    )
except ImportError:  # pragma: no cover - run from the folder itself
    from remotes_support import (  # type: ignore[no-redef]
        all_arrays,
        assert_same_data,
        bare_repo,
        empty_clone_target,
        make_repo,
    )


@pytest.fixture
def pushed(tmp_path: Path):
    """Alice's repository pushed to a bare repo and a data folder, and Bob's
    records-only clone of it."""
    alice = make_repo(tmp_path / "alice", n=120)
    bare, data = bare_repo(tmp_path / "origin.git"), tmp_path / "data"
    alice.remote.add("origin", str(bare), data=str(data))
    alice.remote.push("origin", "master")
    bob = empty_clone_target(tmp_path / "bob")
    bob.clone("Bob", "bob@example.org", str(bare), data=str(data))
    return alice, bob


def test_the_remote_is_listed_while_the_records_are_read(pushed, monkeypatch):
    alice, bob = pushed
    listed = threading.Event()
    real_refresh, real_wanted = DataRemote.refresh, steps.wanted_payloads

    def refresh(self):
        got = real_refresh(self)
        listed.set()
        return got

    def wanted(*args, **kwargs):
        # one refresh after the other would never get past this
        assert listed.wait(30), "the remote was not listed while the records were read"
        return real_wanted(*args, **kwargs)

    monkeypatch.setattr(DataRemote, "refresh", refresh)
    monkeypatch.setattr(steps, "wanted_payloads", wanted)
    bob.remote.fetch_data("origin", "master")
    assert bob.remote.last_report.payloads > 0 and not bob.remote.last_report.refused
    assert_same_data(all_arrays(bob), all_arrays(alice))


def test_a_fetch_with_nothing_to_fetch_does_not_wait_for_the_listing(pushed, monkeypatch):
    _, bob = pushed
    bob.remote.fetch_data("origin", "master")  # everything here now
    release, finished = threading.Event(), threading.Event()
    real_refresh = DataRemote.refresh

    def slow_refresh(self):
        release.wait(30)  # a remote that does not answer
        try:
            return real_refresh(self)
        finally:
            finished.set()

    monkeypatch.setattr(DataRemote, "refresh", slow_refresh)
    try:
        bob.remote.fetch_data("origin", "master")
        assert not finished.is_set()  # returned with the listing still under way
        assert bob.remote.last_report.payloads == 0 and bob.remote.last_report.skipped > 0
    finally:
        release.set()
        assert finished.wait(30)


def test_a_listing_that_failed_early_is_made_again_and_raises_there(pushed, monkeypatch):
    alice, bob = pushed
    calls: list[str] = []
    real_refresh = DataRemote.refresh

    def refresh_down(self):
        calls.append(threading.current_thread().name)
        raise ConnectionError("the data remote is down")

    monkeypatch.setattr(DataRemote, "refresh", refresh_down)
    with pytest.raises(ConnectionError, match="is down"):
        bob.remote.fetch_data("origin", "master")
    assert calls == ["hangar-refresh", threading.current_thread().name]  # early, then again

    flaky = iter([ConnectionError("a blip")])

    def refresh_once_down(self):
        calls.append(threading.current_thread().name)
        err = next(flaky, None)
        if err is not None:
            raise err
        return real_refresh(self)

    calls.clear()
    monkeypatch.setattr(DataRemote, "refresh", refresh_once_down)
    bob.remote.fetch_data("origin", "master")  # the early one failed, the second is used
    assert calls == ["hangar-refresh", threading.current_thread().name]
    assert not bob.remote.last_report.refused
    assert_same_data(all_arrays(bob), all_arrays(alice))


@pytest.fixture
def alice(tmp_path: Path):
    """Alice's repository with remote 'origin' (bare repo and data folder), not pushed."""
    repo = make_repo(tmp_path / "alice", n=120)
    repo.remote.add("origin", str(bare_repo(tmp_path / "origin.git")), data=str(tmp_path / "d"))
    return repo


def _capture_early(monkeypatch) -> list[transfer.EarlyRefresh]:
    made: list[transfer.EarlyRefresh] = []
    real = transfer.EarlyRefresh.__init__

    def init(self, remote):
        real(self, remote)
        made.append(self)

    monkeypatch.setattr(transfer.EarlyRefresh, "__init__", init)
    return made


def test_a_push_lists_the_remote_while_it_works_out_what_to_send(alice, monkeypatch):
    listed = threading.Event()
    real_refresh, real_todo = DataRemote.refresh, steps.payloads_to_push

    def refresh(self):
        got = real_refresh(self)
        listed.set()
        return got

    def payloads_to_push(*args, **kwargs):
        assert listed.wait(30), "the remote was not listed while the payloads were worked out"
        return real_todo(*args, **kwargs)

    monkeypatch.setattr(DataRemote, "refresh", refresh)
    monkeypatch.setattr(steps, "payloads_to_push", payloads_to_push)
    made = _capture_early(monkeypatch)
    alice.remote.push("origin", "master")
    rep = alice.remote.last_report
    assert rep.payloads > 0 and len(made) == 1
    # the early listing's requests count in the push's, as when it was made in line
    assert rep.requests == made[0].remote.requests - made[0].before[0] > rep.packs * 2


def test_a_fetch_counts_the_early_listing_in_its_requests(pushed, monkeypatch):
    _, bob = pushed
    made = _capture_early(monkeypatch)
    bob.remote.fetch_data("origin", "master")
    rep = bob.remote.last_report
    assert len(made) == 1 and rep.payloads > 0
    assert rep.requests == made[0].remote.requests - made[0].before[0]
    listing_and_reads = rep.requests
    assert listing_and_reads >= 2  # at least the listing and one ranged read


def test_a_push_whose_early_listing_failed_lists_again_and_raises_there(alice, monkeypatch):
    calls: list[str] = []

    def refresh_down(self):
        calls.append(threading.current_thread().name)
        raise ConnectionError("the data remote is down")

    monkeypatch.setattr(DataRemote, "refresh", refresh_down)
    with pytest.raises(ConnectionError, match="is down"):
        alice.remote.push("origin", "master")
    assert calls == ["hangar-refresh", threading.current_thread().name]
    assert alice.remote.last_report.payloads == 0


def test_a_push_with_no_new_commit_does_not_list_the_data_remote(alice, tmp_path, monkeypatch):
    alice.remote.push("origin", "master")
    calls: list[str] = []
    real_refresh = DataRemote.refresh

    def refresh(self):
        calls.append(threading.current_thread().name)
        return real_refresh(self)

    monkeypatch.setattr(DataRemote, "refresh", refresh)
    made = _capture_early(monkeypatch)
    alice.remote.push("origin", "master")  # the remote has every commit: nothing to send
    assert made == [] and calls == []
    rep = alice.remote.last_report
    assert rep.payloads == 0 and rep.requests == 0

    # a data URL changed since: every payload is offered again, the new one listed
    alice.remote.set_data("origin", str(tmp_path / "elsewhere"))
    alice.remote.push("origin", "master")
    assert len(made) == 1 and calls[0] == "hangar-refresh"
    assert alice.remote.last_report.payloads > 0
