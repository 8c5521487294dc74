"""Fresh memory for bulk reads, with few page faults: :func:`empty_huge`, :func:`reuse_freed`.

Every page of a fresh array is a page fault when first written (about
1.2 us each on the 2-core VM the benchmarks ran on): reading 47 MB into a
new array takes 11,500 of them in 4 KiB pages, and 23 in 2 MiB pages.
numpy asks for transparent huge pages for arrays of 4 MiB or more
(``madvise(MADV_HUGEPAGE)``), but the kernel backs only the 2 MiB-aligned
stretches lying wholly inside the allocation, and where the allocation
starts is chance: an unlucky one leaves its first and last 2 MiB in 4 KiB
pages (about 750 faults for 47 MB instead of 24). :func:`empty_huge`
allocates up to 2 MiB more and hands out the aligned part, so the array
covers whole huge pages only. The extra memory is address space, never
touched.

The metadata of a bulk read (key tables, index entries, places: arrays of
hundreds of KiB to a few MiB, most short-lived) meets another cause:
glibc's ``malloc`` maps each allocation above its mmap threshold
afresh (every page a fault when first written) and unmaps it when freed,
while smaller ones come from the heap, where freed memory is used again.
The threshold starts at 128 KiB and rises to the size of the largest
mapped allocation freed (up to 32 MiB), so until a program frees some
large array each of those arrays is new memory. :func:`reuse_freed` frees
one untouched :data:`REUSE_BYTES` array at once (no page of it is ever
faulted in), as the first large free of any numpy program would: in a
fresh process that cuts a 60,000-sample read's page faults by about a
fifth. What it costs: up to twice that much freed memory may stay with
the process instead of going back to the system at once (glibc's trim
threshold follows). Elsewhere than glibc it is an allocation and a free.
"""

from __future__ import annotations

import numpy as np

#: the size of a huge page (x86-64, arm64 with 4 KiB base pages)
HUGE_PAGE = 2 * 1024**2
#: below this size numpy asks for no huge pages: a plain array is made
MIN_BYTES = 4 * 1024**2
#: the allocation :func:`reuse_freed` makes and frees (glibc's mmap threshold after it)
REUSE_BYTES = 4 * 1024**2

_reused = False


def reuse_freed() -> None:
    """Have ``malloc`` serve allocations below :data:`REUSE_BYTES` from
    memory freed before, from now on in this process (see the module's
    docstring); once per process, later calls do nothing."""
    global _reused
    if not _reused:
        _reused = True
        np.empty(REUSE_BYTES, np.uint8)  # allocated and freed at once, never written


def empty_huge(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, starting on a huge-page boundary and
    followed by the rest of its last huge page when it takes at least
    :data:`MIN_BYTES` (a C-contiguous, writeable view of a larger array).

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy.dtype

    Returns
    -------
    numpy.ndarray
    """
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    span = -(-nbytes // HUGE_PAGE) * HUGE_PAGE  # whole huge pages
    raw = np.empty(span + HUGE_PAGE, np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE
    return raw[start : start + nbytes].view(dtype).reshape(shape)


__all__ = ["HUGE_PAGE", "MIN_BYTES", "REUSE_BYTES", "empty_huge", "reuse_freed"]
