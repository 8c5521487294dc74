"""A segment row holds exactly the packed 32-byte entries (:data:`ENTRY`, key
big-endian) and their CRC, whatever the layout of the array handed in."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hangar_git.store.checksum import crc32
from hangar_git.store.index import ENTRY, insert_segment, parse_run

NATIVE = np.dtype(
    [("key", "<u8"), ("tail", "V12"), ("block", "<u4"), ("ioff", "<u4"), ("kind", "<u4")]
)


def _entries(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    e = np.zeros(n, ENTRY)
    e["key"] = np.sort(rng.integers(0, 2**63, n, dtype=np.int64)).astype(np.uint64)
    e["tail"] = np.frombuffer(rng.bytes(12 * n), "V12")
    e["block"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    e["ioff"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    e["kind"] = rng.integers(0, 9, n, dtype=np.uint32)
    return e


@pytest.mark.parametrize("layout", ["packed", "strided", "native keys"])
def test_a_segment_row_is_the_packed_entries(layout):
    e = _entries(1000)
    given = {"packed": e, "strided": np.repeat(e, 2)[::2], "native keys": e.astype(NATIVE)}[layout]
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE segments (id INTEGER PRIMARY KEY, n INT, chk INT, entries BLOB)")
    sid = insert_segment(con, given)
    n, chk, blob = con.execute("SELECT n, chk, entries FROM segments WHERE id=?", (sid,)).fetchone()
    assert isinstance(blob, bytes) and blob == e.tobytes()  # big-endian keys, 32 bytes a row
    assert n == 1000 and chk == crc32(blob)
    run = parse_run(sid, n, chk, blob)
    assert not isinstance(run, str) and (run.entries == e).all()


def test_an_empty_segment_row_holds_no_bytes():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE segments (id INTEGER PRIMARY KEY, n INT, chk INT, entries BLOB)")
    sid = insert_segment(con, np.zeros(0, ENTRY))
    assert con.execute("SELECT n, chk, entries FROM segments WHERE id=?", (sid,)).fetchone() == (
        0,
        crc32(b""),
        b"",
    )


def test_a_segment_that_does_not_fit_raises_a_full_disk_and_leaves_no_row():
    """The entries are written into the row after it is inserted: on a full
    disk (``SQLITE_FULL``, which the writer reports as ENOSPC) the insert
    fails as a whole and the transaction holds nothing of it."""
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE TABLE segments (id INTEGER PRIMARY KEY, n INT, chk INT, entries BLOB)")
    insert_segment(con, _entries(10))
    (pages,) = con.execute("PRAGMA page_count").fetchone()
    con.execute(f"PRAGMA max_page_count={pages + 4}")
    con.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as info:
        insert_segment(con, _entries(5000))
    assert info.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    if con.in_transaction:
        con.execute("ROLLBACK")
    assert con.execute("SELECT n FROM segments").fetchall() == [(10,)]
