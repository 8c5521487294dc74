"""TensorFlow adapter: a ``tf.data.Dataset`` over a read checkout.

Importing this module imports tensorflow; ``hangar_git`` itself never does
(use :func:`hangar_git.make_tf_dataset`, which imports this module on call).

The dataset is built with ``tf.data.Dataset.from_generator``. The generator
reads chunks of samples through each arrayset's batch read path; for fixed-shape
arraysets a chunk is handed to tensorflow as one stacked tensor and split
into samples by ``unbatch()`` inside tensorflow, so no Python runs per
sample. Variable-shape arraysets are yielded one sample at a time, each
field with unknown dimensions (``None``); batch them with
``dataset.padded_batch(n)`` (zero padding to the batch's max shape) or
``dataset.ragged_batch(n)`` (``tf.RaggedTensor``).

Like every ``from_generator`` dataset it runs Python in the process that
made it (``tf.numpy_function``), so it cannot be serialised into a graph.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from ..naming import Key
from .common import SampleSource

#: samples read per generator step for fixed-shape arraysets
CHUNK = 256


def _specs(source: SampleSource, batched: bool) -> tuple[tf.TensorSpec, ...]:
    out = []
    for dtype, shape, variable in source.specs:
        dims: tuple[int | None, ...] = (None,) * len(shape) if variable else tuple(shape)
        if batched:
            dims = (None, *dims)
        out.append(tf.TensorSpec(shape=dims, dtype=tf.as_dtype(dtype)))
    return tuple(out)


def dataset_from_source(
    source: SampleSource, shuffle: bool, seed: int | None, chunk: int = CHUNK
) -> tf.data.Dataset:
    """The ``tf.data.Dataset`` of a :class:`SampleSource` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    lock = threading.Lock()
    n = len(source)
    per_sample = source.variable

    def epoch_order() -> list[int]:
        if not shuffle:
            return list(range(n))
        with lock:
            return rng.permutation(n).tolist()

    def generate() -> Iterator[tuple[np.ndarray, ...]]:
        order = epoch_order()
        # one checkout per running iterator; tensorflow may resume the generator
        # on another thread, never on two at once
        with source.reader() as read:
            for i in range(0, n, chunk):
                per_aset = read(order[i : i + chunk])
                if per_sample:
                    yield from zip(*per_aset, strict=True)
                else:
                    yield tuple(np.stack(arrays) for arrays in per_aset)

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=_specs(source, batched=not per_sample)
    )
    if not per_sample:
        ds = ds.unbatch()
    return ds.apply(tf.data.experimental.assert_cardinality(n))


def make_tf_dataset(
    arraysets: Any,
    keys: Iterable[Key] | None = None,
    index_range: slice | None = None,
    shuffle: bool = True,
    *,
    seed: int | None = None,
) -> tf.data.Dataset:
    """See :func:`hangar_git.make_tf_dataset`."""
    if not isinstance(shuffle, bool):
        raise ValueError(f"shuffle must be a bool, not {shuffle!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, not {seed!r}")
    source = SampleSource.from_arraysets(arraysets, keys, index_range)
    return dataset_from_source(source, shuffle, seed)


__all__ = ["dataset_from_source", "make_tf_dataset"]
