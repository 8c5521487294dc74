"""Fresh arrays for bulk reads, laid on whole huge pages: :func:`empty_huge`.

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
"""

from __future__ import annotations

import numpy as np

#: the size of a huge page (x86-64, arm64 with 4 KiB base pages)
HUGE_PAGE = 2 * 1024**2
#: below this size numpy asks for no huge pages: a plain array is made
MIN_BYTES = 4 * 1024**2


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


__all__ = ["HUGE_PAGE", "MIN_BYTES", "empty_huge"]
