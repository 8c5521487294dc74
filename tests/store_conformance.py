"""What every payload store must do: one test class, subclassed once per backend.

:class:`PayloadStoreTests` is to :class:`~hangar_git.store.base.PayloadStore`
backends what zarr-python's ``StoreTests`` is to its stores (and
``tests/integration/remote_conformance.py`` to our data remotes). A backend's
tests are a subclass naming the backend class and saying how to open one on
a directory (see ``test_store_backends.py``)::

    class TestMemory(PayloadStoreTests[MemoryStore]):
        store_cls = MemoryStore

        def open_store(self, root: Path) -> MemoryStore:
            return MemoryStore()

Backends whose payloads outlive the store object (``persistent``) also mix
in :class:`PersistenceTests`, which reopen the directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pytest

from hangar_git.errors import MissingPayloadError
from hangar_git.store import chunked
from hangar_git.store.base import PayloadStore
from hangar_git.store.digest import Payload, digest_bytes, payload_from_array

S = TypeVar("S", bound=PayloadStore)


def sample_arrays(seed: int = 0) -> list[np.ndarray]:
    """Arrays of several kinds: image-like, floats, a 0-d, an empty, booleans."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 255, (28, 28), dtype=np.uint8),
        rng.standard_normal(3).astype(np.float32),
        np.array(7, np.int64),
        np.zeros((0, 3), np.float64),
        rng.integers(0, 2, (5, 4)).astype(bool),
        np.arange(24, dtype=">i4").reshape(2, 3, 4),
    ]


def large_array(seed: int = 1) -> np.ndarray:
    """An array over the chunked-file threshold (several chunks)."""
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(chunked.THRESHOLD / 4)) + 64
    return rng.standard_normal((side, side)).astype(np.float32)


def assert_same(got: Any, want: np.ndarray) -> None:
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


#: index expressions ``get_region`` must answer as numpy does
REGIONS: list[Any] = [
    (0,),
    (slice(2, 10), slice(None, None, 3)),
    (Ellipsis, 1),
    (-1, -1),
    (slice(None, None, -2),),
    (slice(5, 5),),
]


class PayloadStoreTests(Generic[S]):
    """The conformance tests of a payload store backend.

    Subclasses set :attr:`store_cls` and implement :meth:`open_store`.
    """

    store_cls: ClassVar[type[PayloadStore]]

    def open_store(self, root: Path) -> S:
        """A store on directory ``root`` (new, or as left by an earlier one)."""
        raise NotImplementedError

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "store"

    @pytest.fixture
    def store(self, root: Path) -> Iterator[S]:
        s = self.open_store(root)
        yield s
        s.close()

    # ---- the interface -------------------------------------------------
    def test_is_a_payload_store_with_boolean_capabilities(self, store: S) -> None:
        assert isinstance(store, PayloadStore) and isinstance(store, self.store_cls)
        for flag in (
            "supports_writes",
            "supports_deletes",
            "supports_listing",
            "supports_partial_reads",
            "persistent",
        ):
            assert isinstance(getattr(store, flag), bool), flag

    def test_put_then_get_many_in_order(self, store: S) -> None:
        arrays = sample_arrays()
        store.put_many(payload_from_array(a) for a in arrays)
        digests = [payload_from_array(a).digest for a in arrays]
        got = store.get_many(digests[::-1])
        for g, a in zip(got, arrays[::-1], strict=True):
            assert_same(g, a)
        assert_same(store.get(digests[0]), arrays[0])

    def test_reads_are_fresh_writeable_and_independent(self, store: S) -> None:
        a = np.arange(12, dtype=np.int16).reshape(3, 4)
        p = payload_from_array(a)
        store.put(p)
        one, two = store.get_many([p.digest, p.digest])
        one[0, 0] = 99
        assert two[0, 0] == 0 and store.get(p.digest)[0, 0] == 0
        a[1, 1] = 77  # the caller's array after the put: the store kept its bytes
        assert store.get(p.digest)[1, 1] == 5

    def test_absent_payloads_raise_missing(self, store: S) -> None:
        here = payload_from_array(np.ones(4, np.uint8))
        store.put(here)
        absent = digest_bytes("|u1|4", b"\x02" * 4)
        with pytest.raises(MissingPayloadError, match=absent.hex()):
            store.get(absent)
        with pytest.raises(MissingPayloadError):
            store.get_many([here.digest, absent])
        with pytest.raises(MissingPayloadError):
            store.get_region(absent, (0,))

    def test_missing_keeps_first_seen_order_once_each(self, store: S) -> None:
        arrays = [np.full(3, i, np.int32) for i in range(6)]
        ps = [payload_from_array(a) for a in arrays]
        store.put_many(ps[::2])
        ask = [ps[5].digest, ps[0].digest, ps[1].digest, ps[5].digest, ps[3].digest]
        assert store.missing(ask) == [ps[5].digest, ps[1].digest, ps[3].digest]
        assert store.missing([]) == []
        assert store.contains(ps[2].digest) and ps[2].digest in store
        assert not store.contains(ps[1].digest)

    def test_putting_a_payload_again_stores_it_once(self, store: S) -> None:
        p = payload_from_array(np.arange(5, dtype=np.uint16))
        store.put_many([p, p])
        store.put(p)
        store.flush()
        assert list(store.digests()) == [p.digest]

    def test_digests_lists_every_payload_once(self, store: S) -> None:
        ps = [payload_from_array(a) for a in sample_arrays(3)]
        assert list(store.digests()) == []
        store.put_many(ps[:3])
        store.flush()
        store.put_many(ps[2:])
        got = list(store)
        assert sorted(got) == sorted(p.digest for p in ps) and len(got) == len(ps)

    def test_delete(self, store: S) -> None:
        ps = [payload_from_array(np.full(8, i, np.float64)) for i in range(4)]
        store.put_many(ps)
        store.flush()
        assert store.delete([ps[1].digest, ps[1].digest, ps[3].digest]) == 2
        assert store.missing(p.digest for p in ps) == [ps[1].digest, ps[3].digest]
        with pytest.raises(MissingPayloadError):
            store.get(ps[1].digest)
        assert_same(store.get(ps[2].digest), np.full(8, 2, np.float64))
        assert store.delete([ps[1].digest]) == 0
        assert sorted(store.digests()) == sorted([ps[0].digest, ps[2].digest])
        store.put(ps[1])  # stored again after its deletion
        assert_same(store.get(ps[1].digest), np.full(8, 1, np.float64))

    @pytest.mark.parametrize("index", REGIONS, ids=repr)
    def test_get_region_as_numpy_indexes(self, store: S, index: Any) -> None:
        a = np.arange(20 * 12, dtype=np.float32).reshape(20, 12)
        p = payload_from_array(a)
        store.put(p)
        assert_same(store.get_region(p.digest, index), a[index])

    def test_large_payload_whole_and_by_region(self, store: S) -> None:
        a = large_array()
        p = payload_from_array(a)
        small = payload_from_array(np.arange(10, dtype=np.uint8))
        store.put_many([p, small])
        store.flush()
        big, little = store.get_many([p.digest, small.digest])
        assert_same(big, a)
        assert_same(little, np.arange(10, dtype=np.uint8))
        for index in [(slice(100, 300), slice(7, 500, 5)), (-3,), (5, 9)]:
            assert_same(store.get_region(p.digest, index), a[index])

    def test_many_small_payloads_in_one_batch(self, store: S) -> None:
        arrays = [np.full((4, 4), i, np.int32) for i in range(3000)]
        ps = [payload_from_array(a) for a in arrays]
        store.put_many(ps)
        store.flush()
        order = list(range(0, 3000, 7))[::-1]
        got = store.get_many([ps[i].digest for i in order])
        for g, i in zip(got, order, strict=True):
            assert_same(g, arrays[i])

    @pytest.mark.parametrize(
        "bad",
        [
            Payload(b"\x01" * 19, "|u1|4", memoryview(b"abcd")),
            Payload(b"\x01" * 20, "|u1|4", memoryview(b"abc")),
            Payload(b"\x01" * 20, "not a kind", memoryview(b"abcd")),
            Payload(b"\x01" * 20, "<f4|2", memoryview(b"abcd")),
        ],
        ids=["short digest", "short data", "bad kind", "data of another size"],
    )
    def test_malformed_payloads_store_nothing(self, store: S, bad: Payload) -> None:
        good = payload_from_array(np.arange(6, dtype=np.int8))
        with pytest.raises(ValueError):
            store.put_many([good, bad])
        store.flush()
        assert store.missing([good.digest, bad.digest]) == [good.digest, bad.digest]
        assert list(store.digests()) == []

    def test_context_manager_closes_the_store(self, root: Path) -> None:
        p = payload_from_array(np.arange(3, dtype=np.uint32))
        with self.open_store(root) as store:
            store.put(p)
            assert_same(store.get(p.digest), np.arange(3, dtype=np.uint32))


class PersistenceTests(Generic[S]):
    """For backends whose payloads outlive the store object: flushed payloads
    and deletions are seen by another store object opened on the directory."""

    def open_store(self, root: Path) -> S:
        raise NotImplementedError

    def test_is_persistent(self, store: S) -> None:
        assert store.persistent is True

    def test_flushed_payloads_read_from_a_new_store(self, root: Path) -> None:
        arrays = [*sample_arrays(7), large_array(2)]
        ps = [payload_from_array(a) for a in arrays]
        first = self.open_store(root)
        first.put_many(ps)
        first.flush()
        second = self.open_store(root)
        try:
            assert second.missing(p.digest for p in ps) == []
            for g, a in zip(second.get_many([p.digest for p in ps]), arrays, strict=True):
                assert_same(g, a)
        finally:
            second.close()
            first.close()

    def test_closed_store_keeps_payloads_and_deletions(self, root: Path) -> None:
        ps = [payload_from_array(np.full(6, i, np.int16)) for i in range(5)]
        with self.open_store(root) as store:
            store.put_many(ps)
        with self.open_store(root) as store:
            assert store.delete([ps[0].digest, ps[4].digest]) == 2
        with self.open_store(root) as store:
            assert sorted(store.digests()) == sorted(p.digest for p in ps[1:4])
            assert_same(store.get(ps[2].digest), np.full(6, 2, np.int16))
