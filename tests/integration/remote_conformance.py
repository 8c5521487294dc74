"""What every data remote must do: one test class, subclassed once per backend.

:class:`DataRemoteTests` is to data remotes what zarr-python's ``StoreTests``
is to its stores. A backend's tests are a subclass naming the backend class
:func:`~hangar_git.remotes.backends.open_store` must pick, and a ``url``
fixture giving a new, empty remote (see ``test_remote_conformance.py``)::

    class TestMemory(DataRemoteTests):
        backend = FsspecStore

        @pytest.fixture
        def url(self):
            return f"memory://hangar-{uuid.uuid4().hex}"

Three groups of tests, from the bottom up:

- the backend's verbs (:class:`~hangar_git.remotes.backends.RemoteStore`):
  put and get whole, by range and as files, list, exists, delete; writes
  all or nothing; names that would leave the root refused before any
  request; reads bounded by their limit; requests and bytes counted; and,
  where the backend can hold them (``special_files``), named pipes and
  symlinks out of the root refused without blocking;
- the pack layer (:class:`~hangar_git.remotes.data_remote.DataRemote`):
  the ``hangar-data.json`` format marker, packs sent and read back,
  incomplete or damaged packs counting as absent, indexes cached;
- push, clone and fetch-data end to end through a repository, with what a
  shared remote written by someone else can hold: corrupted blocks, forged
  packs, truncated or lost objects, oversized large objects, an unknown
  format.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from hangar_git import FormatVersionError, IntegrityError, MissingPayloadError
from hangar_git.remotes import bounded
from hangar_git.remotes.backends import RemoteStore, open_store
from hangar_git.remotes.data_remote import DataRemote
from hangar_git.remotes.layout import MARKER, PACKS, index_object, large_object, pack_object
from hangar_git.remotes.lookup import plan_ranges, split_blocks
from hangar_git.remotes.packbuilder import PackBuilder
from hangar_git.remotes.packformat import BLOCK_HEADER_SIZE, content_hash, decode_block
from hangar_git.safe_paths import UnsafePathError
from hangar_git.store import array_digest

try:
    from .remotes_support import (
        all_arrays,
        assert_same_data,
        bare_repo,
        bomb_index,
        empty_clone_target,
        fetch_tmp_left,
        make_repo,
        remote_heads,
        store_files,
    )
except ImportError:
    from remotes_support import (  # type: ignore[no-redef]
        all_arrays,
        assert_same_data,
        bare_repo,
        bomb_index,
        empty_clone_target,
        fetch_tmp_left,
        make_repo,
        remote_heads,
        store_files,
    )

MiB = 1 << 20
BIG = 1 << 30  # a limit no test object reaches

#: names that would leave the root, or are not names at all
ESCAPING_NAMES = [
    "../x",
    "packs/../../x",
    "/etc/passwd",
    "",
    "packs//x",
    ".",
    "packs/.",
    "..",
    "a\\b",
    "packs/x\0",
]

#: markers of another format, or not markers at all
BAD_MARKERS = [
    {"hangar_git_data_format": 2},
    {"hangar_git_data_format": "1"},
    {"something": 1},
    "not json",
]


@contextmanager
def never_blocks(seconds: int = 20) -> Iterator[None]:
    """Fail, instead of hanging the suite, if the block does not end in time."""

    def fail(*_: Any) -> None:
        raise TimeoutError("blocked (on a named pipe?)")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _packed(name: str) -> str:
    return f"{PACKS}/{name}"


def _marker_text(marker: object) -> str:
    return marker if isinstance(marker, str) else json.dumps(marker)


class DataRemoteTests:
    """Tests every data remote backend must pass.

    Subclasses set :attr:`backend` and override the ``url`` fixture.
    """

    #: the backend class :func:`open_store` must pick for :meth:`url`
    backend: ClassVar[type[RemoteStore]]

    @pytest.fixture
    def url(self) -> str:
        """A new, empty data remote (its root need not exist yet)."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, url: str) -> RemoteStore:
        return open_store(url)

    @pytest.fixture
    def remote(self, url: str) -> DataRemote:
        return DataRemote(url)

    @pytest.fixture
    def shared(self, url: str, tmp_path: Path) -> tuple[Any, Any, Path]:
        """Alice pushed 20 8x8 uint8 images and int64 labels; Bob cloned the records."""
        alice = make_repo(tmp_path / "alice", n=20)
        bare = bare_repo(tmp_path / "origin.git")
        alice.remote.add("origin", str(bare), data=url)
        alice.remote.push("origin", "master")
        bob = self.clone(tmp_path, bare, url, "bob")
        return alice, bob, bare

    @staticmethod
    def clone(tmp_path: Path, bare: Path, url: str, name: str) -> Any:
        repo = empty_clone_target(tmp_path / name)
        repo.clone(name.title(), f"{name}@example.org", str(bare), data=url)
        return repo

    # ======================================================================
    # the backend's verbs
    # ======================================================================
    def test_open_store_picks_the_backend(self, store: RemoteStore) -> None:
        assert type(store) is self.backend
        assert isinstance(store.special_files, bool)
        assert isinstance(store.renames_into_place, bool)

    def test_put_then_get_whole(self, store: RemoteStore) -> None:
        store.put(MARKER, b"at the root")
        store.put(_packed("a"), b"hello")
        assert store.get(_packed("a"), 5) == b"hello"
        assert store.get(MARKER, BIG) == b"at the root"
        assert store.get(_packed("a"), BIG) == b"hello"

    def test_missing_objects(self, store: RemoteStore, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            store.get(_packed("nope"), BIG)
        with pytest.raises(FileNotFoundError):
            store.get_file(_packed("nope"), tmp_path / "dst", BIG)
        assert not (tmp_path / "dst").exists()
        assert not store.exists(_packed("nope"))
        store.put(_packed("a"), b"a")
        (got,) = store.get_ranges([(_packed("nope"), 0, 4)])
        assert isinstance(got, FileNotFoundError)

    def test_get_ranges(self, store: RemoteStore) -> None:
        store.put(_packed("a"), bytes(range(100)))
        store.put(_packed("b"), b"0123456789")
        out = store.get_ranges(
            [(_packed("a"), 10, 20), (_packed("b"), 2, 5), (_packed("a"), 90, 200)]
        )
        assert out == [bytes(range(10, 20)), b"234", bytes(range(90, 100))]
        assert store.get_ranges([]) == []

    def test_list_dir(self, store: RemoteStore) -> None:
        assert store.list_dir(PACKS) == ({}, set())  # nothing written yet
        store.put(MARKER, b"{}")
        store.put(_packed("a"), b"abc")
        store.put(_packed("b"), b"abcde")
        store.put("other/c", b"c")
        sizes, unsafe = store.list_dir(PACKS)
        assert sizes == {"a": 3, "b": 5} and unsafe == set()
        assert store.list_dir("nothing") == ({}, set())

    def test_exists_and_delete(self, store: RemoteStore) -> None:
        store.put(_packed("a"), b"a")
        store.put(_packed("b"), b"b")
        assert store.exists(_packed("a"))
        store.delete([_packed("a"), _packed("never-there")])  # a missing one is no error
        assert not store.exists(_packed("a"))
        assert store.list_dir(PACKS)[0] == {"b": 1}
        with pytest.raises(FileNotFoundError):
            store.get(_packed("a"), BIG)

    def test_put_replaces_the_whole_object(self, store: RemoteStore) -> None:
        store.put(_packed("a"), b"x" * 1000)
        store.put(_packed("a"), b"short")
        assert store.get(_packed("a"), BIG) == b"short"
        assert store.list_dir(PACKS)[0] == {"a": 5}

    def test_put_parts_writes_the_pieces_one_after_the_other(self, store: RemoteStore) -> None:
        blob = np.random.default_rng(2).integers(0, 256, 5000, np.uint8).tobytes()
        parts = [blob[:7], memoryview(blob)[7:4000], b"", memoryview(blob)[4000:]]
        store.put_parts(_packed("p"), parts)
        assert store.get(_packed("p"), BIG) == blob
        assert store.list_dir(PACKS)[0] == {"p": 5000}
        store.put_parts(_packed("p"), [b"ab", b"c"])  # replaced whole
        assert store.get(_packed("p"), BIG) == b"abc"

    def test_a_failed_put_parts_leaves_the_old_object_and_nothing_else(
        self, store: RemoteStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.put(_packed("a"), b"old")
        real = store.fs.pipe_file

        def cut(path: str, data: Any, **kw: Any) -> None:
            if store.renames_into_place:
                real(path, list(data)[:1], **kw)
            raise OSError("connection cut")

        with monkeypatch.context() as m:
            m.setattr(store.fs, "pipe_file", cut)
            with pytest.raises(OSError, match="connection cut"):
                store.put_parts(_packed("a"), [b"new ", b"and longer"])
        assert store.get(_packed("a"), BIG) == b"old"
        assert store.list_dir(PACKS) == ({"a": 3}, set())

    def test_a_stream_is_named_when_finished_and_leaves_nothing_when_aborted(
        self, store: RemoteStore
    ) -> None:
        """A file system writes a pack piece by piece beside its name; an
        object store has no streams (each object is one request)."""
        stream = store.open_stream(PACKS)
        if not store.renames_into_place:
            assert stream is None
            return
        assert stream is not None
        stream.write([b"ab", memoryview(b"cde")])
        assert "s" not in store.list_dir(PACKS)[0]  # not seen before it is named
        stream.write([b"f"])
        assert stream.finish(_packed("s")) == 6
        assert store.get(_packed("s"), BIG) == b"abcdef"
        stream.abort()  # finished: kept
        cut = store.open_stream(PACKS)
        assert cut is not None
        cut.write([b"half"])
        cut.abort()
        assert store.list_dir(PACKS) == ({"s": 6}, set())  # no temporary left

    def test_a_failed_put_leaves_the_old_object_and_nothing_else(
        self, store: RemoteStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write cut in the middle: a file system's half-written temporary is
        removed and never seen; an object store's PUT is applied whole or not
        at all by the service, so the cut comes before anything lands."""
        store.put(_packed("a"), b"old")
        real = store.fs.pipe_file

        def cut(path: str, data: bytes, **kw: Any) -> None:
            if store.renames_into_place:
                real(path, data[: len(data) // 2], **kw)
            raise OSError("connection cut")

        monkeypatch.setattr(store.fs, "pipe_file", cut)
        with pytest.raises(OSError, match="connection cut"):
            store.put(_packed("a"), b"new and longer")
        with pytest.raises(OSError, match="connection cut"):
            store.put(_packed("b"), b"never whole")
        monkeypatch.undo()
        assert store.get(_packed("a"), BIG) == b"old"
        assert store.list_dir(PACKS) == ({"a": 3}, set())

    def test_put_file_and_get_file(self, store: RemoteStore, tmp_path: Path) -> None:
        src = tmp_path / "src"
        blob = np.random.default_rng(0).integers(0, 256, 3 * MiB, np.uint8).tobytes()
        src.write_bytes(blob)
        store.put_file(_packed("big.hgc"), src)
        assert store.list_dir(PACKS)[0] == {"big.hgc": 3 * MiB}
        dst = tmp_path / "dst"
        assert store.get_file(_packed("big.hgc"), dst, 4 * MiB) == 3 * MiB
        assert dst.read_bytes() == blob
        with pytest.raises(FileExistsError):  # never written over
            store.get_file(_packed("big.hgc"), dst, 4 * MiB)
        assert dst.read_bytes() == blob

    def test_get_file_is_bounded(self, store: RemoteStore, tmp_path: Path) -> None:
        """An object over the limit is refused; nothing is left behind locally."""
        store.put(_packed("x.hgc"), b"\0" * (3 * MiB))
        dst = tmp_path / "dst.tmp"
        before = store.bytes_received
        with pytest.raises(IntegrityError, match="more than"):
            store.get_file(_packed("x.hgc"), dst, MiB)
        assert not dst.exists()
        assert store.bytes_received - before <= MiB + 1
        assert store.get_file(_packed("x.hgc"), dst, 4 * MiB) == 3 * MiB

    def test_get_is_bounded(self, store: RemoteStore) -> None:
        store.put(_packed("a"), bytes(1000))
        before = store.bytes_received
        with pytest.raises(IntegrityError, match="more than"):
            store.get(_packed("a"), 100)
        assert store.bytes_received - before <= 101  # never more than limit + 1
        assert store.get(_packed("a"), 1000) == bytes(1000)

    @pytest.mark.parametrize("name", ESCAPING_NAMES)
    def test_names_leaving_the_root_refused(
        self, store: RemoteStore, tmp_path: Path, name: str
    ) -> None:
        src = tmp_path / "src"
        src.write_bytes(b"x")
        verbs = {
            "put": lambda: store.put(name, b"x"),
            "put_file": lambda: store.put_file(name, src),
            "get": lambda: store.get(name, BIG),
            "get_ranges": lambda: store.get_ranges([(_packed("a"), 0, 1), (name, 0, 1)]),
            "get_file": lambda: store.get_file(name, tmp_path / "dst", BIG),
            "exists": lambda: store.exists(name),
            "delete": lambda: store.delete([name]),
            "list_dir": lambda: store.list_dir(name),
        }
        for verb, call in verbs.items():
            with pytest.raises(UnsafePathError):
                call()
            assert store.requests == 0, verb  # refused before any request
        assert isinstance(UnsafePathError("x"), ValueError)
        assert not (tmp_path / "dst").exists()

    def test_requests_and_bytes_counted(self, store: RemoteStore, tmp_path: Path) -> None:
        store.put(_packed("a"), b"abc")
        store.put(_packed("b"), b"defgh")
        assert (store.requests, store.bytes_sent) == (2, 8)
        store.get(_packed("a"), BIG)
        store.get_ranges([(_packed("a"), 0, 2), (_packed("b"), 1, 3)])
        store.list_dir(PACKS)
        store.exists(_packed("a"))
        store.get_file(_packed("b"), tmp_path / "b", BIG)
        store.delete([_packed("a"), _packed("b")])
        assert store.requests == 2 + 1 + 2 + 1 + 1 + 1 + 2
        assert (store.bytes_sent, store.bytes_received) == (8, 3 + 4 + 5)

    # ======================================================================
    # packs on the backend
    # ======================================================================
    def test_format_marker_written_once(self, url: str, remote: DataRemote) -> None:
        assert remote.check_marker() is False  # a remote not written yet
        remote.ensure_marker()
        sent = remote.requests
        remote.ensure_marker()
        assert remote.requests == sent
        again = DataRemote(url)
        assert again.check_marker() is True
        fresh = DataRemote(url + "-fresh")  # a push's refresh found no marker: not read again
        fresh.refresh()
        sent = fresh.requests
        fresh.ensure_marker()
        assert fresh.requests == sent + 1 and fresh.check_marker() is True
        assert json.loads(again.store.get(MARKER, BIG)) == {"hangar_git_data_format": 1}
        remote.ping()

    @pytest.mark.parametrize("marker", BAD_MARKERS, ids=range(len(BAD_MARKERS)))
    def test_unknown_format_marker_refused(
        self, url: str, store: RemoteStore, marker: object
    ) -> None:
        text = _marker_text(marker)
        store.put(MARKER, text.encode())
        remote = DataRemote(url)
        with pytest.raises(FormatVersionError, match=r"format|marker"):
            remote.check_marker()
        with pytest.raises(FormatVersionError):
            DataRemote(url).ensure_marker()
        with pytest.raises(FormatVersionError):
            DataRemote(url).refresh()
        assert store.get(MARKER, BIG).decode() == text  # nothing written

    def test_oversized_marker_refused(self, url: str, store: RemoteStore) -> None:
        store.put(MARKER, b" " * (bounded.MAX_MARKER_BYTES + 1))
        remote = DataRemote(url)
        with pytest.raises(FormatVersionError, match="unreadable"):
            remote.check_marker()
        assert remote.bytes_received <= bounded.MAX_MARKER_BYTES + 1

    def test_pack_sent_and_read_back(self, url: str, remote: DataRemote) -> None:
        rng = np.random.default_rng(1)
        payloads = {
            bytes([i]) * 20: (kind, rng.integers(0, 256, n, np.uint8).tobytes())
            for i, (kind, n) in enumerate([("|u1|8,8", 64), ("<i8|1", 8), ("|u1|8,8", 64)])
        }
        builder = PackBuilder()
        for d, (kind, raw) in payloads.items():
            builder.add(d, kind, raw)
        pack = builder.seal()
        remote.ensure_marker()
        remote.upload(pack)
        assert all(d in remote.lookup() for d in payloads)  # the sender knows it at once
        assert remote.verify_uploaded([pack]) == []
        reader = DataRemote(url)
        assert list(reader.refresh()) == [pack.pack_id] and reader.damaged == []
        lk = reader.lookup()
        assert len(lk) == 3
        for d, (kind, raw) in payloads.items():
            found = lk.get(d)
            assert found is not None and found[1].kind == kind
            pid, e = found
            (plan,) = plan_ranges([(pid, e.boff, e.blen)])
            (data,) = reader.read_ranges([plan[:3]])
            ((_, block),) = split_blocks(data, plan[1], plan[3])
            assert decode_block(block)[e.ioff : e.ioff + e.ilen] == raw
        reader.remove_objects([pack_object(pack.pack_id), index_object(pack.pack_id)])
        assert reader.refresh() == {} and len(reader.lookup()) == 0
        assert remote.verify_uploaded([pack]) == [
            pack_object(pack.pack_id),
            index_object(pack.pack_id),
        ]

    def test_incomplete_and_damaged_packs_count_as_absent(
        self, url: str, remote: DataRemote, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Only a pack whose body and index are both there, at the sizes its
        index gives, and whose index passes its checks, counts."""
        store = remote.store
        packs = {}
        for i in range(4):
            builder = PackBuilder()
            builder.add(bytes([i]) * 20, "|u1|4", bytes([i]) * 4)
            packs[i] = builder.seal()
        builder = PackBuilder()  # 4: many payloads, a larger index
        n = 10_000
        builder.add_rows(
            [i.to_bytes(20, "big") for i in range(1000, 1000 + n)],
            "|u1|4",
            np.zeros((n, 4), np.uint8),
        )
        packs[4] = builder.seal()
        for pack in packs.values():
            remote.upload(pack)
        # 0: good; 1: no index (absent, not damaged); 2: body truncated
        store.delete([_packed(index_object(packs[1].pack_id))])
        store.put(_packed(pack_object(packs[2].pack_id)), packs[2].data[:-3])
        # 3: an index that is not the one named
        store.put(_packed(index_object(packs[3].pack_id)), packs[0].index)
        # 4: an index listed larger than any index may be: never read
        bomb = bomb_index(64 * MiB)  # and a zlib bomb, named by its hash
        assert len(bomb) < len(packs[4].index)
        monkeypatch.setattr(bounded, "MAX_INDEX_BYTES", len(packs[4].index) - 1)
        bomb_id = content_hash(bomb).hex()
        store.put(_packed(index_object(bomb_id)), bomb)
        store.put(_packed(pack_object(bomb_id)), b"\0" * 100)

        reader = DataRemote(url)
        assert list(reader.refresh()) == [packs[0].pack_id]
        assert sorted(reader.damaged) == sorted(
            [packs[2].pack_id, packs[3].pack_id, packs[4].pack_id, bomb_id]
        )
        assert bytes([0]) * 20 in reader.lookup() and bytes([1]) * 20 not in reader.lookup()
        # read: the indexes of 0, 2, 3 (pack 0's) and the bomb (not inflated); 4 never
        small = len(packs[0].index)
        assert reader.bytes_received == small + len(packs[2].index) + small + len(bomb)

    def test_large_objects_listed_beside_the_packs(self, remote: DataRemote) -> None:
        d = bytes(range(20))
        remote.store.put(_packed(large_object(d)), b"x" * 10)
        remote.store.put(_packed("not-a-digest.hgc"), b"x")
        remote.refresh()
        assert remote.large == {d: 10} and remote.damaged == []

    def test_indexes_read_once_with_a_cache(self, url: str, tmp_path: Path) -> None:
        first = DataRemote(url, tmp_path / "cache")
        builder = PackBuilder()
        builder.add(b"\1" * 20, "|u1|4", b"abcd")
        pack = builder.seal()
        first.ensure_marker()
        first.upload(pack)
        assert (tmp_path / "cache" / index_object(pack.pack_id)).exists()
        second = DataRemote(url, tmp_path / "cache")
        assert list(second.refresh()) == [pack.pack_id]
        assert second.requests == 2  # the listing and the marker: no index read
        third = DataRemote(url)
        third.refresh()
        assert third.requests == 3

    def test_ping(self, remote: DataRemote) -> None:
        remote.ping()  # a remote not written yet is an empty one
        remote.ensure_marker()
        remote.ping()

    # ======================================================================
    # end to end
    # ======================================================================
    def test_push_clone_fetch_data(self, shared: tuple[Any, Any, Path]) -> None:
        alice, bob, bare = shared
        head = alice.log(return_contents=True)["head"]
        assert remote_heads(bare) == {"refs/hangar/heads/master": head}
        assert bob.remote.fetch_data("origin", "master") == [head]
        assert bob.remote.last_report.payloads == 40
        assert_same_data(all_arrays(alice), all_arrays(bob))
        bob.remote.fetch_data("origin", "master")  # again: nothing to move
        assert bob.remote.last_report.payloads == 0 and bob.remote.last_report.requests == 0
        alice.remote.push("origin", "master")
        assert alice.remote.last_report.payloads == 0

    @pytest.mark.parametrize("suffix", [".pack", ".idx"])
    def test_push_verifies_payloads_landed_before_records(
        self,
        url: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        suffix: str,
    ) -> None:
        """An object that does not land whole stops the push before the records
        move, is never taken for present, and the rerun sends it again."""
        repo = make_repo(tmp_path / "alice", n=20)
        bare = bare_repo(tmp_path / "origin.git")
        repo.remote.add("origin", str(bare), data=url)
        real_put, real_parts = self.backend.put, self.backend.put_parts

        def lossy(store: RemoteStore, name: str, data: bytes) -> None:
            if name.endswith(suffix):
                data = data[: len(data) // 2]  # the connection dropped half of it, silently
            real_put(store, name, data)

        def lossy_parts(store: RemoteStore, name: str, parts: list[bytes]) -> None:
            if name.endswith(suffix):
                whole = b"".join(parts)
                parts = [whole[: len(whole) // 2]]
            real_parts(store, name, parts)

        real_open = self.backend.open_stream

        def lossy_stream(store: RemoteStore, folder: str) -> Any:
            stream = real_open(store, folder)  # a folder: the pack is written ahead
            if stream is None:
                return None
            real_finish = stream.finish

            def finish(name: str) -> int:
                if name.endswith(suffix):
                    stream.write([])
                    os.truncate(stream.tmp, stream.size // 2)  # half of it, silently
                return real_finish(name)

            stream.finish = finish
            return stream

        monkeypatch.setattr(self.backend, "put", lossy)
        monkeypatch.setattr(self.backend, "put_parts", lossy_parts)
        monkeypatch.setattr(self.backend, "open_stream", lossy_stream)
        with pytest.raises(IntegrityError, match="did not land whole"):
            repo.remote.push("origin", "master")
        assert remote_heads(bare) == {}  # nobody sees commits whose payloads are not there
        assert "refs/hangar/remotes/origin/master" not in repo._git_repo().references
        reader = DataRemote(url)  # a reader ignores the damaged pack: its payloads are absent
        assert reader.refresh() == {} and len(reader.damaged) == 1
        monkeypatch.setattr(self.backend, "put", real_put)
        monkeypatch.setattr(self.backend, "put_parts", real_parts)
        monkeypatch.setattr(self.backend, "open_stream", real_open)
        repo.remote.push("origin", "master")
        rep = repo.remote.last_report
        assert rep.payloads == 40 and rep.skipped == 0  # all sent again, the pack made whole
        assert remote_heads(bare) == {
            "refs/hangar/heads/master": repo.log(return_contents=True)["head"]
        }
        assert len(reader.refresh()) == 1 and reader.damaged == []
        bob = self.clone(tmp_path, bare, url, "bob")
        bob.remote.fetch_data("origin", "master")
        assert_same_data(all_arrays(repo), all_arrays(bob))

    def test_corrupted_block_refused(self, url: str, shared: tuple[Any, Any, Path], tmp_path):
        """Every payload of a block that fails its checksum is refused, and
        only those; they are not stored, the others are."""
        alice, bob, bare = shared
        expected = all_arrays(alice)
        co = bob.checkout(fetch_missing=True)  # a lazy read before the damage
        np.testing.assert_array_equal(co.arraysets["images"][5], expected["images"][5])
        co.close()
        remote = DataRemote(url)
        (pid,) = remote.refresh()
        entries = remote.refresh()[pid].entries
        label7 = array_digest(expected["labels"][7])
        entry = entries[label7]
        name = _packed(pack_object(pid))
        raw = bytearray(remote.store.get(name, BIG))
        raw[entry.boff + BLOCK_HEADER_SIZE + 3] ^= 0xFF
        remote.store.put(name, bytes(raw))
        victims = {d for d, e in entries.items() if e.boff == entry.boff}

        carol = self.clone(tmp_path, bare, url, "carol")
        with pytest.raises(IntegrityError, match="refused"):
            carol.remote.fetch_data("origin", "master")
        rep = carol.remote.last_report
        assert set(rep.refused) == victims
        assert rep.payloads == 40 - len(victims)
        co = carol.checkout()
        assert 7 in co.arraysets["labels"].remote_reference_sample_keys
        assert co.payloads.missing(victims) == victims
        with pytest.raises(MissingPayloadError):
            co.arraysets["labels"][7]
        assert co.arraysets["images"][0].shape == (8, 8)
        co.close()

    def test_damaged_pack_counts_as_absent_until_repaired(
        self, url: str, shared: tuple[Any, Any, Path]
    ) -> None:
        alice, bob, _ = shared
        store = open_store(url)
        (name,) = [n for n in store.list_dir(PACKS)[0] if n.endswith(".pack")]
        whole = store.get(_packed(name), BIG)
        store.put(_packed(name), whole[:-10])  # truncated behind our back
        with pytest.raises(MissingPayloadError, match="damaged"):
            bob.remote.fetch_data("origin", "master")
        assert len(bob.remote.last_report.absent) == 40
        co = bob.checkout()
        assert len(co.arraysets["images"].remote_reference_sample_keys) == 20
        co.close()
        store.put(_packed(name), whole)  # repaired: nothing here remembers the damage
        bob.remote.fetch_data("origin", "master")
        assert bob.remote.last_report.payloads == 40
        assert_same_data(all_arrays(alice), all_arrays(bob))

    def test_damaged_index_beside_a_good_pack(
        self, url: str, shared: tuple[Any, Any, Path]
    ) -> None:
        """A zlib bomb in a pack index is a damaged pack; the good pack still serves."""
        _alice, bob, _ = shared
        store = open_store(url)
        bomb = bomb_index(64 * MiB)
        pid = content_hash(bomb).hex()
        store.put(_packed(index_object(pid)), bomb)
        store.put(_packed(pack_object(pid)), b"\0" * 100)
        before = store_files(bob)
        bob.remote.fetch_data("origin", "master")
        assert bob.remote.last_report.payloads == 40
        remote = DataRemote(url)
        remote.refresh()
        assert pid in remote.damaged
        assert set(store_files(bob)) >= set(before)

    def test_absent_payloads_reported(self, url: str, shared: tuple[Any, Any, Path]) -> None:
        _alice, bob, _ = shared
        store = open_store(url)
        store.delete([_packed(n) for n in store.list_dir(PACKS)[0] if n.endswith(".idx")])
        # the pack is no longer discoverable: its payloads are absent
        with pytest.raises(MissingPayloadError, match="not on the data remote"):
            bob.remote.fetch_data("origin", "master")
        assert len(bob.remote.last_report.absent) == 40

    def test_payload_not_matching_its_digest_refused(
        self, url: str, shared: tuple[Any, Any, Path]
    ) -> None:
        """A well-formed pack whose bytes claim another payload's digest is refused."""
        alice, bob, _ = shared
        target = array_digest(all_arrays(alice)["images"][3])
        remote = DataRemote(url)
        remote.remove_objects(list(remote.list_packs()))
        forged = PackBuilder()
        forged.add(target, "|u1|8,8", bytes(64))  # sample 3's digest, other bytes
        remote.upload(forged.seal())
        with pytest.raises(IntegrityError):
            bob.remote.fetch_data("origin", "master", arrayset_names=["images"])
        rep = bob.remote.last_report
        assert rep.refused == [target] and rep.payloads == 0
        co = bob.checkout()
        with pytest.raises(MissingPayloadError):
            co.arraysets["images"][3]
        co.close()
        co = bob.checkout(fetch_missing=True)  # a lazy read refuses it the same way
        with pytest.raises(IntegrityError):
            co.arraysets["images"][3]
        co.close()

    @pytest.mark.parametrize("marker", [BAD_MARKERS[0], BAD_MARKERS[3]], ids=["format", "json"])
    def test_unknown_format_refused_by_fetch_and_push(
        self, url: str, shared: tuple[Any, Any, Path], marker: object
    ) -> None:
        """Nothing is read nor written: the local store and the remote stay as they are."""
        alice, bob, _ = shared
        store = open_store(url)
        text = _marker_text(marker)
        store.put(MARKER, text.encode())
        before = store_files(bob)
        with pytest.raises(FormatVersionError, match=r"format|marker"):
            bob.remote.fetch_data("origin", "master")
        assert _nonempty(store_files(bob)) == _nonempty(before)
        listing = store.list_dir(PACKS)
        co = alice.checkout(write=True)
        co.arraysets["labels"][999] = np.array([999], dtype=np.int64)
        co.commit("more")
        co.close()
        with pytest.raises(FormatVersionError):
            alice.remote.push("origin", "master")
        assert store.list_dir(PACKS) == listing
        assert store.get(MARKER, BIG).decode() == text

    def test_oversized_large_object_refused_unread(
        self, url: str, shared: tuple[Any, Any, Path]
    ) -> None:
        """A ``.hgc`` object for a wanted digest, listed far larger than its
        record (8x8 uint8) allows, is refused on its listed size."""
        alice, bob, _ = shared
        remote = DataRemote(url)
        remote.remove_objects(list(remote.list_packs()))
        d = array_digest(all_arrays(alice)["images"][0])
        remote.store.put(_packed(large_object(d)), b"\0" * (3 * MiB))
        with pytest.raises(IntegrityError, match="refused"):
            bob.remote.fetch_data("origin", "master", arrayset_names=["images"])
        rep = bob.remote.last_report
        assert d in rep.refused and rep.bytes_received < MiB
        assert fetch_tmp_left(bob) == []

    def test_large_payloads_travel_as_objects_of_their_own(
        self, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from hangar_git.store import chunked

        monkeypatch.setattr(chunked, "THRESHOLD", 64 * 1024)
        monkeypatch.setattr(chunked, "CHUNK_TARGET", 16 * 1024)
        repo = make_repo(tmp_path / "alice", n=5)
        bigs = {i: np.random.default_rng(i).random((96, 128)) for i in range(3)}  # 96 KiB each
        co = repo.checkout(write=True)
        co.arraysets.init_arrayset("big", shape=(96, 128), dtype=np.float64).update(bigs)
        co.commit("large arrays")
        co.close()
        bare = bare_repo(tmp_path / "origin.git")
        repo.remote.add("origin", str(bare), data=url)
        repo.remote.push("origin", "master")
        assert repo.remote.last_report.payloads == 13
        store = open_store(url)
        objects = sorted(n for n in store.list_dir(PACKS)[0] if n.endswith(".hgc"))
        assert len(objects) == 3
        repo.remote.push("origin", "master")  # nothing new: nothing sent
        assert repo.remote.last_report.payloads == 0
        assert sorted(n for n in store.list_dir(PACKS)[0] if n.endswith(".hgc")) == objects

        bob = self.clone(tmp_path, bare, url, "bob")
        co = bob.checkout()
        assert co.arraysets["big"].remote_reference_sample_keys == [0, 1, 2]
        with pytest.raises(MissingPayloadError, match=r"big\[1\]"):
            co.arraysets["big"][1]
        co.close()
        co = bob.checkout(fetch_missing=True)  # fetched on the spot, whole or for a slice
        np.testing.assert_array_equal(co.arraysets["big"][1, 3:9, ::-5], bigs[1][3:9, ::-5])
        np.testing.assert_array_equal(co.arraysets["big"].get_batch([2])[0], bigs[2])
        co.close()
        bob.remote.fetch_data("origin", "master")
        assert_same_data(all_arrays(repo), all_arrays(bob))
        assert bob.verify().ok

        # a damaged object is refused, never stored
        raw = bytearray(store.get(_packed(objects[0]), BIG))
        raw[-100] ^= 0xFF
        store.put(_packed(objects[0]), bytes(raw))
        carol = self.clone(tmp_path, bare, url, "carol")
        with pytest.raises(IntegrityError, match="refused"):
            carol.remote.fetch_data("origin", "master")
        assert carol.remote.last_report.refused == [bytes.fromhex(objects[0][:40])]
        co = carol.checkout()
        assert len(co.arraysets["big"].remote_reference_sample_keys) == 1
        co.close()
        assert fetch_tmp_left(carol) == []


class SpecialFileTests:
    """What a backend that can hold named pipes and symlinks (a local folder,
    ``special_files``) must refuse; mixed into its :class:`DataRemoteTests`
    subclass, so other backends are not asked."""

    def _special(self, store: RemoteStore) -> Path:
        assert store.special_files, "SpecialFileTests are for backends that hold special files"
        root = Path(store.root)
        (root / PACKS).mkdir(parents=True, exist_ok=True)
        return root

    def test_named_pipes_refused_without_blocking(self, store: RemoteStore, tmp_path: Path) -> None:
        root = self._special(store)
        os.mkfifo(root / PACKS / "p.idx")
        os.mkfifo(root / MARKER)
        with never_blocks():
            sizes, unsafe = store.list_dir(PACKS)
            assert "p.idx" in unsafe and "p.idx" not in sizes
            for name in (_packed("p.idx"), MARKER):
                with pytest.raises(IntegrityError, match="not a regular file"):
                    store.get(name, BIG)
                with pytest.raises(IntegrityError, match="not a regular file"):
                    store.get_file(name, tmp_path / "dst", BIG)
                assert not (tmp_path / "dst").exists()
                (got,) = store.get_ranges([(name, 0, 10)])
                assert isinstance(got, OSError)
            with pytest.raises(FormatVersionError, match="unreadable"):
                DataRemote(store.url).check_marker()

    def test_symlinks_out_of_the_root_refused(self, store: RemoteStore, tmp_path: Path) -> None:
        root = self._special(store)
        outside = tmp_path / "elsewhere"
        outside.write_bytes(b"secret")
        (root / PACKS / "out").symlink_to(outside)
        (root / "moved").write_bytes(b"inside")
        (root / PACKS / "in").symlink_to(root / "moved")
        sizes, unsafe = store.list_dir(PACKS)
        assert unsafe == {"out"} and sizes == {"in": 6}
        with pytest.raises(IntegrityError, match="outside"):
            store.get(_packed("out"), BIG)
        with pytest.raises(IntegrityError, match="outside"):
            store.get_file(_packed("out"), tmp_path / "dst", BIG)
        (got,) = store.get_ranges([(_packed("out"), 0, 6)])
        assert isinstance(got, OSError)
        # a link to a regular file inside the root reads as that file
        assert store.get(_packed("in"), BIG) == b"inside"
        assert store.get_ranges([(_packed("in"), 0, 3)]) == [b"ins"]


def _nonempty(files: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in files.items() if v}


def fresh_memory_url() -> str:
    """A new, empty ``memory://`` data remote."""
    return f"memory://hangar-test-{uuid.uuid4().hex[:12]}"


__all__ = ["BAD_MARKERS", "ESCAPING_NAMES", "DataRemoteTests", "fresh_memory_url", "never_blocks"]
