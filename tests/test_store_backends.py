"""Every payload store backend passes :class:`PayloadStoreTests`: the
repository's packs, a directory of chunked files, and memory; plus what is
particular to each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hangar_git.store.backend_large import LargeFileStore
from hangar_git.store.backend_memory import MemoryStore
from hangar_git.store.backend_packs import PackPayloadStore
from hangar_git.store.digest import payload_from_array
from hangar_git.store.large_reader import LargeReader

try:
    from .store_conformance import PayloadStoreTests, PersistenceTests, assert_same, large_array
except ImportError:
    from store_conformance import (  # type: ignore[no-redef]
        PayloadStoreTests,
        PersistenceTests,
        assert_same,
        large_array,
    )


class TestPacks(PayloadStoreTests[PackPayloadStore], PersistenceTests[PackPayloadStore]):
    store_cls = PackPayloadStore

    def open_store(self, root: Path) -> PackPayloadStore:
        return PackPayloadStore(root)


class TestLargeFiles(PayloadStoreTests[LargeFileStore], PersistenceTests[LargeFileStore]):
    store_cls = LargeFileStore

    def open_store(self, root: Path) -> LargeFileStore:
        return LargeFileStore(root)


class TestMemory(PayloadStoreTests[MemoryStore]):
    store_cls = MemoryStore

    def open_store(self, root: Path) -> MemoryStore:
        return MemoryStore()

    def test_not_persistent(self, root: Path) -> None:
        p = payload_from_array(np.arange(4))
        with MemoryStore() as first:
            first.put(p)
        assert MemoryStore().missing([p.digest]) == [p.digest]


# ---- what is particular to a backend ------------------------------------------
@pytest.mark.parametrize("cls", [PackPayloadStore, LargeFileStore])
def test_region_of_a_large_payload_decodes_only_its_chunks(tmp_path, monkeypatch, cls):
    a = large_array()
    p = payload_from_array(a)
    with cls(tmp_path / "s") as store:
        store.put(p)
        store.flush()
        decoded: list[int] = []
        real = LargeReader._decode_to

        def spy(self, o, i, dst, local):
            decoded.append(i)
            return real(self, o, i, dst, local)

        monkeypatch.setattr(LargeReader, "_decode_to", spy)
        assert_same(store.get_region(p.digest, (slice(0, 8), slice(0, 8))), a[:8, :8])
        assert decoded == [0]


def test_a_damaged_large_file_is_listed_and_not_served(tmp_path):
    root = tmp_path / "s"
    ps = [payload_from_array(np.full(100, i, np.float32)) for i in range(3)]
    with LargeFileStore(root) as store:
        store.put_many(ps)
    victim = sorted(root.glob("*.hgc"))[1]
    raw = bytearray(victim.read_bytes())
    raw[30] ^= 0xFF  # inside the header: its CRC fails
    victim.write_bytes(bytes(raw))
    with LargeFileStore(root) as store:
        number = int(victim.stem)
        assert list(store.damaged) == [number] and "checksum" in store.damaged[number]
        assert len(store.missing(p.digest for p in ps)) == 1
        store.put(payload_from_array(np.ones(2)))  # a new file never takes a damaged one's number
        assert victim.read_bytes() == bytes(raw)


def test_pack_store_holds_the_write_lock_only_once_writing(tmp_path):
    p = payload_from_array(np.arange(5))
    with PackPayloadStore(tmp_path / "s") as first:
        first.put(p)
        first.flush()
        with PackPayloadStore(tmp_path / "s") as reader_only:  # reads need no lock
            assert_same(reader_only.get(p.digest), np.arange(5))
