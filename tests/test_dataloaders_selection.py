"""The dataloaders' default selection from key tables (selection.table_selection)
is exactly select_keys' selection from the records."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hangar_git import MissingPayloadError
from hangar_git.dataloaders import selection
from hangar_git.dataloaders.common import SampleSource
from hangar_git.dataloaders.selection import select_keys, table_selection

KEYS = [7, 0, 3, 12, 100, 5, 64, 2, 9]  # not dense, not in order


@pytest.fixture
def rco(repo):
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("images", shape=(3,), dtype=np.int32)
    lab = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
    dense = co.arraysets.init_arrayset("dense", shape=(), dtype=np.int64)
    odd = co.arraysets.init_arrayset("odd", shape=(), dtype=np.int64)
    named = co.arraysets.init_arrayset("named", shape=(), dtype=np.int64)
    with img, lab, dense, odd, named:
        for k in KEYS:
            img[k] = np.full(3, k, np.int32)
            lab[k] = np.array(k % 4)  # labels share payloads
        for k in range(20):
            dense[k] = np.array(-k)
        for k in KEYS[:-1]:  # one key fewer
            odd[k] = np.array(k)
        for k in ["b", "a", "c"]:
            named[k] = np.array(ord(k))
    co.commit("data")
    co.close()
    co = repo.checkout()
    yield co
    co.close()


def from_records(asets, index_range):
    records = [dict(a.checkout.view.iter_items(a.name)) for a in asets]
    keys, encs = select_keys(asets, None, index_range, records)
    return keys, encs, [[r[e] for e in encs] for r in records]


RANGES = [None, slice(2, 6), slice(None, None, -1), slice(1, None, 3), slice(-3, None)]


@pytest.mark.parametrize("index_range", RANGES)
@pytest.mark.parametrize("names", [("images", "labels"), ("dense",), ("labels",)])
def test_the_table_selection_is_the_records_selection(rco, names, index_range):
    asets = [rco.arraysets[n] for n in names]
    got = table_selection(asets, index_range)
    assert got is not None
    keys, encs, digests = from_records(asets, index_range)
    assert (got.keys, got.encs, got.digests) == (keys, encs, digests)
    assert all(type(k) is int for k in got.keys) and all(type(d) is bytes for d in got.digests[0])


def test_other_selections_are_left_to_select_keys(rco):
    a = rco.arraysets
    assert table_selection([a["named"]], None) is None  # str keys
    assert table_selection([a["images"], a["odd"]], None) is None  # different keys
    assert table_selection([a["images"]], slice(50, 60)) is None  # empty
    # which select_keys then selects, warns about or refuses, as before
    with pytest.warns(UserWarning, match="different keys"):
        source = SampleSource.from_arraysets([a["images"], a["odd"]])
    assert source.keys == sorted(KEYS[:-1])
    with pytest.raises(ValueError, match="no samples selected"):
        SampleSource.from_arraysets([a["images"]], index_range=slice(50, 60))
    assert SampleSource.from_arraysets(a["named"]).keys == ["a", "b", "c"]


def test_a_source_made_from_key_tables_reads_as_from_records(rco, monkeypatch):
    from hangar_git.dataloaders import common

    monkeypatch.setattr(common, "COLUMN_LIMIT", 40)  # 4 labels whole, 4 images by entries
    asets = [rco.arraysets["images"], rco.arraysets["labels"]]
    fast = SampleSource.from_arraysets(asets, index_range=slice(1, None, 2), preload=True)
    monkeypatch.setattr(selection, "table_selection", lambda asets, index_range: None)
    monkeypatch.setattr("hangar_git.dataloaders.common.table_selection", lambda a, r: None)
    slow = SampleSource.from_arraysets(asets, index_range=slice(1, None, 2), preload=True)
    assert (fast.keys, fast.encs, fast.digests) == (slow.keys, slow.encs, slow.digests)
    assert fast._small == [False, True]
    rows = list(range(len(fast)))[::-1]
    outs = []
    for source in (fast, slow):
        out = [np.empty((len(rows), 3), np.int32), np.empty(len(rows), np.int64)]
        source.read_stacked(rows, out)
        outs.append(out)
    want = [k for k in sorted(KEYS)[1::2]][::-1]
    assert outs[0][0].tolist() == outs[1][0].tolist() == [[k] * 3 for k in want]
    assert outs[0][1].tolist() == outs[1][1].tolist() == [k % 4 for k in want]
    fast.close()
    slow.close()


def test_payloads_not_here_are_reported_with_key_tables(
    repo, tmp_path, records_only_copy, monkeypatch
):
    from hangar_git.dataloaders import common

    monkeypatch.setattr(common, "COLUMN_LIMIT", 0)  # checked through the entries
    co = repo.checkout(write=True)
    with co.arraysets.init_arrayset("images", shape=(3,), dtype=np.int32) as img:
        for k in range(30):
            img[k] = np.full(3, k, np.int32)
    co.commit("data")
    co.close()
    here = {k: np.full(3, k, np.int32) for k in range(0, 30, 3)}  # a third of them local
    clone = records_only_copy(repo, tmp_path / "clone", {"images": here})
    rco = clone.checkout()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert table_selection([rco.arraysets["images"]], None) is not None
    with pytest.raises(MissingPayloadError) as err:
        SampleSource.from_arraysets(rco.arraysets["images"], preload=True)
    missing = [k for k in range(30) if k % 3]
    assert err.value.remote_keys == {"images": missing}  # type: ignore[attr-defined]
    local = SampleSource.from_arraysets(rco.arraysets["images"], keys=list(here), preload=True)
    out = np.empty((10, 3), np.int32)
    local.read_stacked(list(range(10))[::-1], [out])
    assert out[:, 0].tolist() == list(here)[::-1]
    local.close()
    rco.close()
