"""Dataloaders: feed arraysets of a read checkout to numpy, PyTorch or TensorFlow.

- :func:`make_numpy_loader`: batches of stacked numpy arrays (no framework).
- :func:`make_torch_dataset`: a ``torch.utils.data.Dataset`` for ``DataLoader``,
  correct with worker processes (``fork`` and ``spawn``).
- :func:`make_tf_dataset`: a ``tf.data.Dataset``.

All three zip several arraysets by sample key, select samples with ``keys``
or ``index_range``, refuse write-enabled checkouts, and report samples whose
payloads are not on this machine before any data is read. torch and
tensorflow are optional (``pip install 'hangar-git[torch]'``,
``'hangar-git[tensorflow]'``) and imported only when their function is called.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

from ..naming import Key
from .common import SampleSource
from .numpy_loader import NumpyLoader, make_numpy_loader

_EXTRAS = {"torch": "torch", "tensorflow": "tensorflow"}


def _require(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this dataloader needs {module}, which is not installed: "
            f"pip install 'hangar-git[{_EXTRAS[module]}]' (or install {module} itself)"
        ) from exc


def make_torch_dataset(
    arraysets: Any,
    keys: Iterable[Key] | None = None,
    index_range: slice | None = None,
    field_names: Sequence[str] | None = None,
) -> Any:
    """A ``torch.utils.data.Dataset`` of arraysets of a read checkout.

    Each item is a namedtuple with one field per arrayset (the samples of one
    key), holding numpy arrays; ``DataLoader``'s default collate makes
    stacked tensors of them. ``DataLoader`` reads a whole batch of indices in
    one call through each arrayset's batch path.

    Worker processes (``num_workers > 0``, with the ``fork`` or ``spawn``
    start method) give exactly the samples of ``num_workers=0``: the dataset
    holds only the repository path, commit hash, arrayset names, keys and
    the keys' payload digests, and each process opens its own read checkout
    on first use.

    Variable-shape arraysets: samples of unequal shapes cannot be stacked by
    the default collate; pass ``collate_fn=PadCollate()`` (zero-pad to the
    batch's max shape; ``PadCollate(with_shapes=True)`` also returns the true
    shapes) or ``collate_fn=list_collate`` (lists of tensors), both from
    :mod:`hangar_git.dataloaders.torch_loader`.

    Parameters
    ----------
    arraysets : ArraysetDataReader or list or tuple of them
        Arraysets of one read checkout (any commit); write-enabled checkouts
        are refused.
    keys : sequence of str or int, optional
        The samples, in this order (index ``i`` is ``keys[i]``); each must be
        in every arrayset. Takes priority over ``index_range``.
    index_range : slice, optional
        Without ``keys``: a slice of the keys common to all the arraysets,
        sorted (int keys ascending, then str keys ascending).
    field_names : list or tuple of str, optional
        Field names of the sample namedtuple; default: the arrayset names
        (names that are not identifiers become ``_0``, ``_1``, ...).

    Returns
    -------
    torch.utils.data.Dataset
        A :class:`~hangar_git.dataloaders.torch_loader.HangarTorchDataset`.

    Raises
    ------
    ImportError
        If torch is not installed (with the install command).
    TypeError
        Not arrayset accessors; an arrayset of a write-enabled checkout;
        ``index_range`` not a slice; ``keys`` a single key.
    ValueError
        Bad ``field_names``; arraysets of different commits or repositories;
        an empty selection.
    KeyError
        If a key in ``keys`` is missing from an arrayset.
    MissingPayloadError
        (a FileNotFoundError) if selected samples are remote references whose
        payloads are not on this machine, listing them.

    Examples
    --------
    >>> from torch.utils.data import DataLoader                           # doctest: +SKIP
    >>> co = repo.checkout()                                              # doctest: +SKIP
    >>> asets = [co.arraysets['images'], co.arraysets['labels']]          # doctest: +SKIP
    >>> dset = make_torch_dataset(asets, index_range=slice(0, 50_000))    # doctest: +SKIP
    >>> loader = DataLoader(dset, batch_size=64, shuffle=True, num_workers=2)  # doctest: +SKIP
    >>> for batch in loader:                                              # doctest: +SKIP
    ...     train_step(batch.images, batch.labels)
    """
    _require("torch")
    from .torch_loader import make_torch_dataset as impl

    return impl(arraysets, keys, index_range, field_names)


def make_tf_dataset(
    arraysets: Any,
    keys: Iterable[Key] | None = None,
    index_range: slice | None = None,
    shuffle: bool = True,
    *,
    seed: int | None = None,
) -> Any:
    """A ``tf.data.Dataset`` of arraysets of a read checkout.

    Each element is a tuple with one tensor per arrayset (the samples of one
    key). Samples are read in chunks through each arrayset's batch path and
    fed to ``tf.data.Dataset.from_generator``; fixed-shape arraysets are
    split into samples inside tensorflow (``unbatch``). Call ``.batch(n)``,
    ``.prefetch(...)`` etc. on the result as usual.

    Variable-shape arraysets: their elements have unknown dimensions
    (``None``); batch with ``.padded_batch(n)`` (zero padding to the batch's
    max shape) or ``.ragged_batch(n)`` (``tf.RaggedTensor``).

    ``from_generator`` runs Python in this process (``tf.numpy_function``):
    the dataset cannot be serialised into a graph and run elsewhere.

    Parameters
    ----------
    arraysets : ArraysetDataReader or list or tuple of them
        Arraysets of one read checkout (any commit); write-enabled checkouts
        are refused.
    keys : sequence of str or int, optional
        The samples, in this order; each must be in every arrayset. Takes
        priority over ``index_range``.
    index_range : slice, optional
        Without ``keys``: a slice of the keys common to all the arraysets,
        sorted (int keys ascending, then str keys ascending).
    shuffle : bool, optional
        Read every iteration (epoch) in a new random order over all the
        selected samples (default True). A global shuffle: no buffer needed.
    seed : int, optional
        Seed of the shuffling generator: the same seed gives the same
        sequence of epochs.

    Returns
    -------
    tf.data.Dataset
        Of known cardinality (``len(ds)`` is the number of samples).

    Raises
    ------
    ImportError
        If tensorflow is not installed (with the install command).
    TypeError, ValueError, KeyError, MissingPayloadError
        As :func:`make_torch_dataset`; ValueError also for a non-bool
        ``shuffle`` or a bad ``seed``.

    Examples
    --------
    >>> co = repo.checkout()                                              # doctest: +SKIP
    >>> asets = [co.arraysets['images'], co.arraysets['labels']]          # doctest: +SKIP
    >>> ds = make_tf_dataset(asets, seed=0).batch(512).prefetch(2)        # doctest: +SKIP
    >>> for images, labels in ds:                                         # doctest: +SKIP
    ...     train_step(images, labels)
    """
    _require("tensorflow")
    from .tf_loader import make_tf_dataset as impl

    return impl(arraysets, keys, index_range, shuffle, seed=seed)


def __getattr__(name: str) -> Any:
    # torch-only helpers, importable from here without importing torch eagerly
    if name in ("HangarTorchDataset", "PadCollate", "list_collate"):
        _require("torch")
        from . import torch_loader

        return getattr(torch_loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NumpyLoader",
    "SampleSource",
    "make_numpy_loader",
    "make_tf_dataset",
    "make_torch_dataset",
]
