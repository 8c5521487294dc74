"""PyTorch adapter: a map-style ``torch.utils.data.Dataset`` over a read checkout.

Importing this module imports torch; ``hangar_git`` itself never does (use
:func:`hangar_git.make_torch_dataset`, which imports this module on call).

Workers: the dataset holds only the repository path, the commit hash, the
arrayset names, the selected keys and their payload digests. ``DataLoader(num_workers=N)`` pickles
it (``spawn``) or copies it (``fork``) into each worker, where it opens a
read checkout of its own on first use; the samples are exactly those of
``num_workers=0``.

Batches: ``DataLoader`` asks for a whole batch of indices at once
(``__getitems__``), which is read through each arrayset's batch read path
straight into one tensor per arrayset (small arraysets, such as labels, are
read whole when the dataset is made, and batches taken from memory). A
worker sends a batch of up to :data:`PIPE_LIMIT` bytes to the main process
as plain bytes through its queue, a larger one in shared memory (as
``default_collate`` would). The samples handed to the collate
function are views of those tensors, of a subclass of the sample namedtuple
that ``default_collate`` knows (registered in its documented
``default_collate_fn_map``): it returns the tensors themselves instead of
converting and stacking every sample again. Any other collate function, or
a batch changed on the way, sees ordinary samples and gets the ordinary
result.

Variable-shape arraysets: the default collate stacks, so samples of unequal
shapes cannot share a batch. Pass ``collate_fn=PadCollate()`` (pad to the
largest shape in the batch, optionally returning the true shapes) or
``collate_fn=list_collate`` (a list of tensors per field).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torch.utils.data._utils.collate import collate, default_collate_fn_map

from ..naming import Key
from .common import SampleSource, pad_stack, sample_type


class HangarTorchDataset(Dataset):
    """Samples of one or more arraysets, zipped by key; made by :func:`make_torch_dataset`.

    ``dataset[i]`` is a namedtuple (one field per arrayset) of numpy arrays;
    torch's default collate turns a batch of them into a namedtuple of
    stacked tensors.

    Parameters
    ----------
    source : SampleSource
        The selected samples (their keys and payload digests) and how to read them.
    field_names : sequence of str or None
        Field names of the sample namedtuple (None: the arrayset names).
    """

    def __init__(self, source: SampleSource, field_names: Sequence[str] | None) -> None:
        self.source = source
        self._field_names = None if field_names is None else tuple(field_names)
        self._setup()

    def _setup(self) -> None:
        # (re-)registers the namedtuple class in this process (spawned workers)
        self.sample_type = sample_type(self._field_names, self.source.names)
        self._stacked_type = _stacked_sample_type(self.sample_type)
        self._tensor_specs = _tensor_specs(self.source)

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "_field_names": self._field_names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    @property
    def keys(self) -> list[Key]:
        """The sample key of each index."""
        return list(self.source.keys)

    @property
    def arrayset_names(self) -> tuple[str, ...]:
        """Names of the arraysets, in the order of each sample's fields."""
        return self.source.names

    def __len__(self) -> int:
        """The number of selected samples."""
        return len(self.source)

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(f"dataset indices must be ints, not {type(index).__name__}")
        i, n = operator.index(index), len(self.source)
        if not -n <= i < n:
            raise IndexError(f"dataset index {i} out of range for {n} samples")
        return i + n if i < 0 else i

    def __getitem__(self, index: int) -> Any:
        """``dataset[i]``: sample ``i`` (a namedtuple of arrays); negative indices count back."""
        make = self.sample_type
        return make(*(_array(column[0]) for column in self.source.read([self._index(index)])))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """The samples at ``indices``, read in one batch per arrayset.

        With fixed-shape arraysets of dtypes torch has, the batch is read into
        one tensor per arrayset and the samples are views of it (see the
        module's notes): ``default_collate`` then returns those tensors.
        """
        rows = self._rows(indices)
        specs = self._tensor_specs
        if specs is None or not rows:
            make = self.sample_type
            columns = self.source.read(rows)
            return [make(*map(_array, fields)) for fields in zip(*columns, strict=True)]
        n = len(rows)
        views = [np.empty((n, *shape), dtype) for dtype, shape in specs]
        # in a worker, a small batch goes to the main process through the
        # queue's pipe; a large one through shared memory (see _piped_type)
        piped = False
        if get_worker_info() is not None:
            piped = sum(v.nbytes for v in views) <= PIPE_LIMIT
            if not piped:
                shared = [torch.from_numpy(v).share_memory_() for v in views]
                views = [t.numpy() for t in shared]
        tensors = list(map(torch.from_numpy, views))
        self.source.read_stacked(rows, views)
        # per field, the views of its rows (0-d arrays for scalar samples, not
        # numpy scalars), zipped into samples without a Python call per sample
        at = _row_items(n)
        columns = [list(v) if v.ndim > 1 else list(map(v.__getitem__, at)) for v in views]
        samples: list[Any] = list(
            map(tuple.__new__, repeat(self._stacked_type), zip(*columns, strict=True))
        )
        return _StackedBatch(samples, tensors, piped)

    def _rows(self, indices: Sequence[int]) -> list[int]:
        """``indices`` as a list of non-negative ints (negative ones count back)."""
        rows = list(indices)
        n = len(self.source)
        # the samplers' case, checked without a Python call per index
        if rows and set(map(type, rows)) == {int} and min(rows) >= 0 and max(rows) < n:
            return rows
        return [self._index(i) for i in rows]

    def close(self) -> None:
        """Close the read checkouts this dataset opened in this process."""
        self.source.close()

    def __repr__(self) -> str:
        return (
            f"<HangarTorchDataset {len(self)} samples of {list(self.arrayset_names)} "
            f"at {self.source.commit[:12]}>"
        )


def _tensor_specs(source: SampleSource) -> list[tuple[np.dtype, tuple[int, ...]]] | None:
    """Per arrayset, the dtype and sample shape of a stacked batch; None when
    the samples cannot be stacked (variable shapes, a dtype torch lacks)."""
    if source.variable:
        return None
    specs = []
    for dtype, shape, _var in source.specs:
        try:
            torch.from_numpy(np.empty(0, dtype))
        except TypeError:
            return None
        specs.append((np.dtype(dtype), tuple(shape)))
    return specs


@functools.lru_cache(maxsize=16)
def _row_items(n: int) -> tuple[tuple[int, Any], ...]:
    """``((0, ...), (1, ...), ...)``: the items of ``n`` rows as 0-d views."""
    return tuple((i, Ellipsis) for i in range(n))


class _StackedBatch(list):  # type: ignore[type-arg]
    """The samples of one ``__getitems__`` call and the tensors they are views of."""

    def __init__(self, samples: list[Any], tensors: list[torch.Tensor], piped: bool) -> None:
        super().__init__(samples)
        self.tensors = tensors
        self.members = tuple(samples)
        #: collated into a batch that pickles its tensors as plain bytes
        self.piped = piped


_STACKED_TYPES: dict[type, type] = {}


def _stacked_sample_type(base: type) -> type:
    """The subclass of the sample namedtuple ``base`` whose instances come from
    a stacked batch; registered with ``default_collate``. Pickled, its
    instances are plain ``base`` samples."""
    made = _STACKED_TYPES.get(base)
    if made is None:

        def __reduce__(self: tuple[Any, ...]) -> tuple[type, tuple[Any, ...]]:
            return base, tuple(self)

        made = type(base.__name__, (base,), {"__slots__": (), "__reduce__": __reduce__})
        made.__qualname__ = base.__qualname__
        made.__module__ = base.__module__
        _STACKED_TYPES[base] = made
        default_collate_fn_map[made] = _collate_stacked
    return made


def _collate_stacked(batch: Sequence[Any], *, collate_fn_map: dict[Any, Any] | None = None) -> Any:
    """``default_collate`` of samples from a stacked batch: that batch's tensors,
    when ``batch`` is the very list ``__getitems__`` returned, unchanged."""
    base = type(batch[0]).__mro__[1]
    if (
        isinstance(batch, _StackedBatch)
        and len(batch) == len(batch.members)
        and all(map(operator.is_, batch, batch.members))
    ):
        return (_piped_type(base) if batch.piped else base)(*batch.tensors)
    # otherwise exactly what default_collate does with a namedtuple batch
    return base(
        *(collate(list(field), collate_fn_map=collate_fn_map) for field in zip(*batch, strict=True))
    )


#: the largest batch (bytes of all its tensors) a worker sends through the
#: pipe of its queue rather than in shared memory
PIPE_LIMIT = 1 << 20

_PIPED_TYPES: dict[type, type] = {}


def _piped_type(base: type) -> type:
    """The subclass of the batch namedtuple ``base`` that a worker returns for
    a small batch: pickled, its tensors travel as plain bytes and are rebuilt
    as tensors of a plain ``base`` batch in the main process.

    torch pickles a tensor between processes by moving it to shared memory
    and passing a file descriptor over a new connection to the sender, about
    a millisecond of the main process's time per tensor; a batch of a few
    hundred kilobytes is copied through the pipe in a fraction of that.
    """
    made = _PIPED_TYPES.get(base)
    if made is None:
        reduce = {"__slots__": (), "__reduce__": _reduce_piped}
        made = type(base.__name__, (base,), reduce)
        made.__qualname__ = base.__qualname__
        made.__module__ = base.__module__
        _PIPED_TYPES[base] = made
    return made


def _reduce_piped(self: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    base = type(self).__mro__[1]
    if all(type(t) is torch.Tensor and not t.requires_grad for t in self):
        try:  # a field changed on its way to a dtype numpy lacks: pickled as usual
            return _rebuild_piped, (base, tuple(t.numpy() for t in self))
        except (TypeError, RuntimeError):
            pass
    return base, tuple(self)


def _rebuild_piped(base: type, arrays: tuple[np.ndarray, ...]) -> Any:
    """A ``base`` batch of tensors from the arrays a worker pickled."""
    return base(*map(torch.from_numpy, arrays))


def _array(x: Any) -> np.ndarray:
    """``x`` as an array: the batch read gives 0-d samples as numpy scalars."""
    return x if type(x) is np.ndarray else np.asarray(x)


def _as_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


class PadCollate:
    """Collate for variable-shape samples: pad each field to the batch's max shape.

    Every dimension is padded at its end with ``pad_value``; fields of equal
    shapes are simply stacked. Picklable, so it works with worker processes.

    Parameters
    ----------
    pad_value : scalar, optional
        Fill value (default 0).
    with_shapes : bool, optional
        When True, return ``(batch, shapes)`` where ``shapes`` has the same
        fields, each an int64 tensor ``(batch_size, rank)`` of the samples'
        true shapes.

    Examples
    --------
    >>> loader = DataLoader(dset, batch_size=8, collate_fn=PadCollate())  # doctest: +SKIP
    """

    def __init__(self, pad_value: Any = 0, with_shapes: bool = False) -> None:
        self.pad_value = pad_value
        self.with_shapes = with_shapes

    def __call__(self, batch: Sequence[Any]) -> Any:
        """Collate ``batch`` (a list of samples) into padded tensors; see the class."""
        if not batch:
            raise ValueError("cannot collate an empty batch")
        kind = type(batch[0])
        padded, shapes = [], []
        for column in zip(*batch, strict=True):
            arrays = [np.asarray(x) for x in column]
            padded.append(torch.from_numpy(pad_stack(arrays, self.pad_value)))
            shapes.append(torch.tensor([a.shape for a in arrays], dtype=torch.int64))
        out = kind(*padded)
        return (out, kind(*shapes)) if self.with_shapes else out

    def __repr__(self) -> str:
        return f"PadCollate(pad_value={self.pad_value!r}, with_shapes={self.with_shapes})"


def list_collate(batch: Sequence[Any]) -> Any:
    """Collate for variable-shape samples: each field a list of tensors.

    Parameters
    ----------
    batch : sequence of namedtuple
        The samples of one batch, as the dataset gives them.

    Returns
    -------
    namedtuple
        Of the samples' type: each field the list of that field's tensors,
        one per sample, each its own shape.

    Raises
    ------
    ValueError
        If ``batch`` is empty.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    kind = type(batch[0])
    return kind(*([_as_tensor(x) for x in column] for column in zip(*batch, strict=True)))


def make_torch_dataset(
    arraysets: Any,
    keys: Iterable[Key] | None = None,
    index_range: slice | None = None,
    field_names: Sequence[str] | None = None,
) -> HangarTorchDataset:
    """See :func:`hangar_git.make_torch_dataset`."""
    # small arraysets (labels) are read whole now: forked workers inherit them
    source = SampleSource.from_arraysets(arraysets, keys, index_range, field_names, preload=True)
    return HangarTorchDataset(source, field_names)


__all__ = ["HangarTorchDataset", "PadCollate", "list_collate", "make_torch_dataset"]
