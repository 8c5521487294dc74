"""Fresh arrays of bulk reads laid on whole huge pages (:mod:`hangar_git.store.hugepages`).

A large array that starts on a 2 MiB boundary and ends on one is backed by
huge pages only (numpy asks for them from 4 MiB on): a read into it takes
a page fault per 2 MiB, not per 4 KiB. Small arrays are plain ones.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pytest

from hangar_git.store.hugepages import HUGE_PAGE, MIN_BYTES, empty_huge


@pytest.mark.parametrize(
    "shape, dtype",
    [((60_000, 28, 28), np.uint8), ((1000, 1031), np.float64), ((MIN_BYTES,), np.uint8)],
)
def test_a_large_array_starts_and_ends_on_huge_page_bounds(shape, dtype):
    a = empty_huge(shape, np.dtype(dtype))
    assert a.shape == shape and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % HUGE_PAGE == 0
    room = a.base.ctypes.data + a.base.nbytes - a.ctypes.data  # to the end of the allocation
    assert room >= -(-a.nbytes // HUGE_PAGE) * HUGE_PAGE  # the last huge page is whole
    a[...] = 7  # every byte of it is usable
    assert int(a.reshape(-1)[-1]) == 7 and int(a.reshape(-1)[0]) == 7


@pytest.mark.parametrize("shape", [(10,), (0, 3), (MIN_BYTES // 8 - 1,)])
def test_a_small_array_is_a_plain_one(shape):
    a = empty_huge(shape, np.dtype(np.int64))
    assert a.shape == shape and a.dtype == np.int64 and a.base is None


def test_the_row_table_of_a_large_arrayset_is_laid_on_huge_pages(repo):
    """The stacked table key-by-key reads copy from (built whole, 5 MB here)."""
    n = 5000
    data = np.random.default_rng(0).integers(0, 255, (n, 1000), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("big", shape=(1000,), dtype=np.uint8).add_stacked(data, range(n))
    co.commit("big")
    co.close()
    rc = repo.checkout()
    aset = rc.arraysets["big"]
    with aset:
        stack = rc.payloads.int_rows["big"]
        assert isinstance(stack, np.ndarray) and stack.shape == (n, 1000)
        assert stack.ctypes.data % HUGE_PAGE == 0
        for k in (0, 1, n // 2, n - 1):
            np.testing.assert_array_equal(aset[k], data[k])
    rc.close()


_REUSE_CHILD = """
import resource, sys
import numpy as np
from hangar_git.store import hugepages

if sys.argv[1] == "reuse":
    hugepages.reuse_freed()
    hugepages.reuse_freed()  # (once is enough: a second call does nothing)
faults = []
for _ in range(2):  # an arrayset's metadata array written, freed, and another one
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 20, np.uint8)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    del a
print(faults[1])
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc on Linux",
)
def test_a_read_checkout_has_memory_freed_before_used_again(repo):
    """After :func:`reuse_freed` (which a read checkout calls), a 1 MiB array
    made after another was freed takes that one's memory: no page faults;
    without it, each is new memory, a page fault per 4 KiB (in a fresh
    process, where glibc's mmap threshold has not risen yet)."""
    import hangar_git.checkout_reader as checkout_reader

    def second_array_faults(mode: str) -> int:
        got = subprocess.run(
            [sys.executable, "-c", _REUSE_CHILD, mode], capture_output=True, text=True, check=True
        )
        return int(got.stdout)

    assert second_array_faults("reuse") < 16
    assert second_array_faults("plain") > 128  # what it spares
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=(2,), dtype=np.uint8).add_stacked(
        np.zeros((3, 2), np.uint8), range(3)
    )
    co.commit("a")
    co.close()
    calls: list[int] = []
    real = checkout_reader.reuse_freed
    checkout_reader.reuse_freed = lambda: calls.append(1) or real()
    try:
        repo.checkout().close()
    finally:
        checkout_reader.reuse_freed = real
    assert calls == [1]
