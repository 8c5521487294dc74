"""Staging scanned arrays into an arrayset of a write checkout, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..naming import check_arrayset_name, encode_key
from .load import load_sources
from .scan import ArraySource, ImportConflictError, Progress

if TYPE_CHECKING:
    from ..arrayset import ArraysetDataWriter
    from ..checkout import WriterCheckout


@dataclass(frozen=True)
class ImportResult:
    """Outcome of :func:`import_arrays`."""

    arrayset: str
    added: int
    replaced: int
    created: bool
    #: existing samples given the value they already held (no change staged)
    unchanged: int = 0

    @property
    def total(self) -> int:
        """Samples the import touched: added, replaced and unchanged."""
        return self.added + self.replaced + self.unchanged


def plan_schema(
    sources: Sequence[ArraySource], *, variable_shape: bool = False
) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, (max) shape and variable-shape flag of a new arrayset holding ``sources``.

    Parameters
    ----------
    sources : sequence of ArraySource
        What :func:`~.scan.scan_paths` found.
    variable_shape : bool, optional
        Allow sources of one rank but different shapes (the maximum of each
        dimension is the arrayset's shape).

    Returns
    -------
    tuple of (numpy.dtype, tuple of int, bool)

    Raises
    ------
    ImportConflictError
        If the sources differ in dtype, in rank, or (without
        ``variable_shape``) in shape.
    """
    if not sources:
        raise ImportConflictError("no arrays to import")
    first = sources[0]
    shape = list(first.shape)
    for src in sources[1:]:
        if src.dtype != first.dtype:
            raise ImportConflictError(
                f"arrays differ in dtype: {first.describe()} is {first.dtype}, "
                f"{src.describe()} is {src.dtype}"
            )
        if src.shape != first.shape:
            if not variable_shape:
                raise ImportConflictError(
                    f"arrays differ in shape: {first.describe()} is {first.shape}, "
                    f"{src.describe()} is {src.shape}; import them into a variable-shape "
                    "arrayset (--variable-shape)"
                )
            if len(src.shape) != len(shape):
                raise ImportConflictError(
                    f"arrays differ in rank: {first.describe()} is {first.shape}, "
                    f"{src.describe()} is {src.shape}"
                )
            shape = [max(a, b) for a, b in zip(shape, src.shape, strict=True)]
    return first.dtype, tuple(shape), bool(variable_shape)


def check_fits(
    sources: Sequence[ArraySource],
    name: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    variable_shape: bool,
) -> None:
    """Raise ImportConflictError unless every source fits the arrayset schema.

    Parameters
    ----------
    sources : sequence of ArraySource
        What :func:`~.scan.scan_paths` found.
    name : str
        The arrayset, for messages.
    dtype : numpy.dtype
        Its dtype.
    shape : tuple of int
        Its (maximum) shape.
    variable_shape : bool
        Whether smaller shapes of its rank fit too.

    Raises
    ------
    ImportConflictError
        (a ValueError) naming the first source that does not fit.
    """
    for src in sources:
        if src.dtype != dtype:
            raise ImportConflictError(
                f"{src.describe()} has dtype {src.dtype}; arrayset {name!r} holds {dtype}"
            )
        if src.shape == shape:
            continue
        if not variable_shape:
            raise ImportConflictError(
                f"{src.describe()} has shape {src.shape}; arrayset {name!r} holds shape {shape}"
            )
        if len(src.shape) != len(shape) or any(
            g > m for g, m in zip(src.shape, shape, strict=True)
        ):
            raise ImportConflictError(
                f"{src.describe()} has shape {src.shape}, which does not fit the maximum "
                f"shape {shape} of arrayset {name!r}"
            )


def import_arrays(
    co: WriterCheckout,
    name: str,
    sources: Sequence[ArraySource],
    *,
    variable_shape: bool = False,
    progress: Progress | None = None,
    batch_bytes: int = 256 * 1024 * 1024,
) -> ImportResult:
    """Stage the arrays of ``sources`` into arrayset ``name`` of a write checkout.

    The arrayset is created from the sources when it does not exist (fixed
    shape, or with ``variable_shape`` the largest shape of the sources as
    maximum). Existing samples with the same keys are replaced. All checks
    run before anything is staged; if loading fails later (or the import is
    interrupted), the staging area is restored to what it was, and the
    error propagates.

    Parameters
    ----------
    co : WriterCheckout
        An open write checkout.
    name : str
        Arrayset name.
    sources : sequence of ArraySource
        What :func:`scan_paths` found.
    variable_shape : bool, optional
        Create a new arrayset with variable shape (ignored when it exists).
    progress : callable, optional
        Called with the number of arrays staged since the last call.
    batch_bytes : int, optional
        Arrays are written in batches of about this many bytes (each batch
        durable when it ends).

    Returns
    -------
    ImportResult
        Counts of added, replaced and unchanged samples.

    Raises
    ------
    ValueError
        Invalid arrayset name; an arrayset of unnamed samples.
    ImportConflictError
        (a ValueError) the arrays do not fit the arrayset.
    NotAnArrayError
        (a ValueError) a file changed or became unreadable after the scan.
    """
    check_arrayset_name(name)
    if not sources:
        raise ImportConflictError("no arrays to import")
    asets = co.arraysets
    created = name not in asets
    dtype, shape, var = _target_schema(co, name, sources, created, variable_shape)
    encs = [encode_key(s.key) for s in sources]
    view = co.view
    prior = {} if created else {e: view.get(name, e) for e in encs}
    replaced = sum(1 for d in prior.values() if d is not None)
    was_clean = not co.has_staged_changes
    touched: list[str] = []
    try:
        if created:
            aset = asets.init_arrayset(name, shape=shape, dtype=dtype, variable_shape=var)
        else:
            aset = asets[name]
        _stage_batches(aset, sources, encs, touched, progress, batch_bytes)
    except BaseException as exc:
        try:
            _rollback(co, name, created, was_clean, prior, touched)
        except Exception as rb:  # keep the original error; say the undo failed too
            exc.add_note(f"restoring the staging area failed as well: {rb}")
        raise
    same = sum(1 for e, d in prior.items() if d is not None and view.get(name, e) == d)
    return ImportResult(name, len(sources) - replaced, replaced - same, created, same)


def _target_schema(
    co: WriterCheckout,
    name: str,
    sources: Sequence[ArraySource],
    created: bool,
    variable_shape: bool,
) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, (max) shape and variable-shape flag of the arrayset to import
    into: planned from ``sources`` when it is ``created``, else its own once
    every source is found to fit."""
    if created:
        return plan_schema(sources, variable_shape=variable_shape)
    aset = co.arraysets[name]
    if not aset.named_samples:
        raise ValueError(
            f"arrayset {name!r} holds unnamed samples; imported arrays are stored "
            "under their file or member names, so they need a named arrayset"
        )
    dtype, shape, var = aset.dtype, tuple(aset.shape), aset.variable_shape
    check_fits(sources, name, dtype, shape, var)
    return dtype, shape, var


def _stage_batches(
    aset: ArraysetDataWriter,
    sources: Sequence[ArraySource],
    encs: list[str],
    touched: list[str],
    progress: Progress | None,
    batch_bytes: int,
) -> None:
    """Load and stage ``sources`` in batches of about ``batch_bytes`` (each
    durable when it ends), noting in ``touched`` each key as it is staged."""
    loader = load_sources(sources)
    finished = False
    while not finished:
        finished = True
        nbytes = 0
        with aset:
            for src, arr in loader:
                touched.append(encs[len(touched)])
                aset[src.key] = arr
                if progress is not None:
                    progress(1)
                nbytes += arr.nbytes
                if nbytes >= batch_bytes and len(touched) < len(encs):
                    finished = False
                    break


def _rollback(
    co: WriterCheckout,
    name: str,
    created: bool,
    was_clean: bool,
    prior: dict[str, bytes | None],
    touched: list[str],
) -> None:
    """Undo what an interrupted import staged (see :func:`import_arrays`)."""
    if co.closed:
        return
    if was_clean:
        if co.has_staged_changes:
            co.reset_staging_area()  # back to a clean staging area (closes the checkout)
        return
    if created:
        if co.view.has_aset(name):
            co.arraysets.remove_aset(name)
    else:
        co.begin_batch()
        try:
            for enc in touched:
                old = prior.get(enc)
                if old is None:
                    co.unstage_sample(name, enc)
                else:
                    co.restore_sample(name, enc, old)
        finally:
            co.end_batch()
    co.sync()


__all__ = ["ImportResult", "check_fits", "import_arrays", "plan_schema"]
