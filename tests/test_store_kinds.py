"""Kind rows of the payload index given out by the store's writer: a new
kind costs no transaction of its own, its row is committed with the first
entries naming it (and stays to be committed when that commit fails), and a
kind whose row fails its check is refused."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hangar_git.errors import IntegrityError
from hangar_git.store import PackStore
from hangar_git.store.digest import kind_of, stacked_digests
from hangar_git.store.index import kind_check


@pytest.fixture
def store(tmp_path) -> PackStore:
    s = PackStore(tmp_path / "store")
    s.create()
    return s


def _kinds(store: PackStore) -> list[tuple[int, str, int]]:
    con = sqlite3.connect(store.index_path)
    try:
        return con.execute("SELECT id, kind, chk FROM kinds ORDER BY id").fetchall()
    finally:
        con.close()


def _rows(seed: int, shape=(5,), dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random((300, *shape)).astype(dtype)


def _read(store: PackStore, rows: np.ndarray) -> None:
    r = store.reader()
    try:
        got = [r.get(d) for d in stacked_digests(rows)]
    finally:
        r.close()
    np.testing.assert_array_equal(np.stack(got), rows)


def test_a_new_kind_row_is_committed_with_the_entries_naming_it(store):
    a, b = _rows(1), _rows(2, (3,), np.int16)
    w = store.writer()
    try:
        w.add_stacked(kind_of(a[0]), stacked_digests(a), a, flush=False)
        w.add_stacked(kind_of(b[0]), stacked_digests(b), b, flush=False)
        assert _kinds(store) == []  # no transaction of their own
        w.flush()
        got = _kinds(store)
        assert [k for _, k, _ in got] == [kind_of(a[0]), kind_of(b[0])]
        assert all(c == kind_check(i, k) for i, k, c in got)
        w.add_stacked(kind_of(a[0]), stacked_digests(a[:0]), a[:0])
        c = _rows(3)  # a kind known already: no new row
        w.add_stacked(kind_of(c[0]), stacked_digests(c), c)
    finally:
        w.close()
    assert len(_kinds(store)) == 2
    for rows in (a, b, c):
        _read(store, rows)


def test_kind_rows_of_a_failed_commit_are_committed_by_the_next(store, monkeypatch):
    a = _rows(4)
    w = store.writer()
    try:
        real = PackStore.commit_segments

        def failing(self, *args, **kwargs):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(PackStore, "commit_segments", failing)
        with pytest.raises(sqlite3.OperationalError):
            w.add_stacked(kind_of(a[0]), stacked_digests(a), a)
        assert _kinds(store) == []
        monkeypatch.setattr(PackStore, "commit_segments", real)
        w.flush()
    finally:
        w.close()
    assert [k for _, k, _ in _kinds(store)] == [kind_of(a[0])]
    _read(store, a)


def test_a_kind_whose_row_fails_its_check_is_refused_and_new_ids_pass_it(store):
    a, b = _rows(5), _rows(6, (2,))
    w = store.writer()
    try:
        w.add_stacked(kind_of(a[0]), stacked_digests(a), a)
    finally:
        w.close()
    con = sqlite3.connect(store.index_path)
    try:
        (kid,) = con.execute("SELECT id FROM kinds").fetchone()
        con.execute("UPDATE kinds SET chk=chk+1")
        con.commit()
    finally:
        con.close()
    w = store.writer()
    try:
        more = _rows(7)
        with pytest.raises(IntegrityError, match=f"kind row {kid} "):
            w.add_stacked(kind_of(more[0]), stacked_digests(more), more)
        w.add_stacked(kind_of(b[0]), stacked_digests(b), b)
    finally:
        w.close()
    ids = [i for i, _, _ in _kinds(store)]
    assert ids == [kid, kid + 1]
    _read(store, b)
