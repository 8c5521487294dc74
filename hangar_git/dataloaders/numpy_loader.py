"""A framework-free loader: batches of stacked numpy arrays from a read checkout.

:func:`make_numpy_loader` is the base the torch and tensorflow adapters share:
it selects samples once (validating everything up front, resolving their
payload digests), and each epoch reads one batch at a time through the batch
read path of each arrayset, so payloads that share a storage block are
decompressed once per batch. Several arraysets are zipped by sample key:
batch ``i`` holds the same keys in every field.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from ..naming import Key
from .common import SampleSource, pad_stack, sample_type

_RAGGED = ("list", "pad")


class NumpyLoader:
    """Iterable over batches of samples from one or more arraysets.

    Made by :func:`make_numpy_loader`. Each ``for`` loop over it is one epoch.
    It pickles (the handles it opens are reopened in the new process) and can
    be used as a context manager, which closes its handles at the end.

    Parameters
    ----------
    source : SampleSource
        The selected samples (their keys and payload digests) and how to read them.
    batch_size : int
        Samples per batch.
    shuffle : bool
        Read each epoch in a new random order.
    seed : int or None
        Seed of the shuffling generator.
    drop_last : bool
        Leave out a last batch smaller than ``batch_size``.
    field_names : sequence of str or None
        Field names of the batch namedtuple (None: the arrayset names).
    ragged : {'list', 'pad'}
        How a batch of a variable-shape arrayset is given (see
        :func:`make_numpy_loader`).
    pad_value : scalar
        Fill value for ``ragged='pad'``.
    """

    def __init__(
        self,
        source: SampleSource,
        batch_size: int,
        shuffle: bool,
        seed: int | None,
        drop_last: bool,
        field_names: Sequence[str] | None,
        ragged: str,
        pad_value: Any,
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.ragged = ragged
        self.pad_value = pad_value
        self._field_names = None if field_names is None else tuple(field_names)
        self.batch_type = sample_type(self._field_names, source.names)
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_rng_lock"], state["batch_type"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rng_lock = threading.Lock()
        self.batch_type = sample_type(self._field_names, self.source.names)

    # ---- description -----------------------------------------------------
    @property
    def keys(self) -> list[Key]:
        """The selected sample keys, in their unshuffled order."""
        return list(self.source.keys)

    @property
    def arrayset_names(self) -> tuple[str, ...]:
        """Names of the arraysets, in the order of each batch's fields."""
        return self.source.names

    @property
    def num_samples(self) -> int:
        """Number of selected samples."""
        return len(self.source)

    def __len__(self) -> int:
        """Number of batches in an epoch."""
        n, b = len(self.source), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __repr__(self) -> str:
        return (
            f"<NumpyLoader {self.num_samples} samples of {list(self.arrayset_names)} "
            f"at {self.source.commit[:12]}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}>"
        )

    # ---- iteration -------------------------------------------------------
    def epoch_indices(self) -> list[int]:
        """Indices into :attr:`keys` of one epoch in reading order.

        With ``shuffle`` each call draws the next permutation from the
        loader's generator, seeded by ``seed``: the sequence of epochs is
        reproducible, and every epoch differs.

        Returns
        -------
        list of int
            A permutation of ``range(num_samples)`` (the identity without ``shuffle``).
        """
        n = len(self.source)
        if not self.shuffle:
            return list(range(n))
        with self._rng_lock:
            order = self._rng.permutation(n)
        return order.tolist()

    def epoch_keys(self) -> list[Key]:
        """The keys of one epoch in reading order.

        Returns
        -------
        list of str or int
            The selected keys, in a new permutation when shuffling (drawn as
            :meth:`epoch_indices` does).
        """
        keys = self.source.keys
        return [keys[i] for i in self.epoch_indices()]

    def _batches(self, order: list[Any]) -> Iterator[list[Any]]:
        n, b = len(order), self.batch_size
        stop = n - n % b if self.drop_last else n
        for i in range(0, stop, b):
            yield order[i : i + b]

    def batches_of_keys(self) -> Iterator[list[Key]]:
        """The keys of each batch of one epoch.

        Returns
        -------
        Iterator of list of str or int
            One list of keys per batch, in reading order (a new permutation
            when shuffling).
        """
        return self._batches(self.epoch_keys())

    def collate(self, per_aset: list[list[np.ndarray]]) -> Any:
        """One batch from the arrays read per arrayset.

        Parameters
        ----------
        per_aset : list of list of numpy.ndarray
            For each arrayset, in field order, the samples of the batch.

        Returns
        -------
        namedtuple
            One field per arrayset: the samples stacked (a fixed-shape
            arrayset), else padded and stacked (``ragged='pad'``) or the list.
        """
        fields: list[Any] = []
        for arrays, (_, _, variable) in zip(per_aset, self.source.specs, strict=True):
            if not variable:
                fields.append(np.stack(arrays))
            elif self.ragged == "pad":
                fields.append(pad_stack(arrays, self.pad_value))
            else:
                fields.append(arrays)
        return self.batch_type(*fields)

    def __iter__(self) -> Iterator[Any]:
        """One epoch: each batch, read when the loop asks for it (see :meth:`collate`)."""
        collate = self.collate
        order = self.epoch_indices()
        with self.source.reader() as read:  # one checkout for the epoch
            for indices in self._batches(order):
                yield collate(read(indices))

    # ---- handles ---------------------------------------------------------
    def close(self) -> None:
        """Close the read checkouts this loader opened in this process."""
        self.source.close()

    def __enter__(self) -> NumpyLoader:
        """Use the loader in a ``with`` block; its handles close when the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the read checkouts the loader opened (see :meth:`close`)."""
        self.close()


def make_numpy_loader(
    arraysets: Any,
    keys: Iterable[Key] | None = None,
    index_range: slice | None = None,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    *,
    field_names: Sequence[str] | None = None,
    ragged: Literal["list", "pad"] = "list",
    pad_value: Any = 0,
) -> NumpyLoader:
    """Batches of stacked numpy arrays from arraysets of a read checkout, zipped by key.

    Parameters
    ----------
    arraysets : ArraysetDataReader or list or tuple of them
        Arraysets of one read checkout (any commit); write-enabled ones are refused.
    keys : sequence of str or int, optional
        The samples, in this order; each in every arrayset. Wins over ``index_range``.
    index_range : slice, optional
        Without ``keys``: a slice of the keys common to all the arraysets,
        sorted (int keys ascending, then str keys ascending).
    batch_size : int, optional
        Samples per batch (default 64).
    shuffle : bool, optional
        Read each epoch in a new random order (default False).
    seed : int, optional
        Seed of the shuffling: the same seed gives the same sequence of epochs.
    drop_last : bool, optional
        Leave out a last batch smaller than ``batch_size``.
    field_names : list or tuple of str, optional
        Field names of the batch namedtuple (default: the arrayset names).
    ragged : {'list', 'pad'}, optional
        A variable-shape arrayset's batch as a list of arrays (default), or as
        one array padded to the batch's largest shape with ``pad_value``.
    pad_value : scalar, optional
        Fill value for ``ragged='pad'`` (default 0).

    Returns
    -------
    NumpyLoader
        Iterable of ``len(loader)`` batches per epoch, each a namedtuple with
        one field per arrayset: a new array of shape ``(batch, *sample_shape)``.

    Raises
    ------
    TypeError
        Not arrayset accessors (or of a write checkout), ``index_range`` not
        a slice, or ``keys`` a single key.
    ValueError
        Bad ``batch_size``, ``ragged`` or ``field_names``; arraysets of
        different commits or repositories; an empty selection.
    KeyError
        If a key in ``keys`` is missing from an arrayset.
    MissingPayloadError
        (a FileNotFoundError) Before any batch is read, naming the selected
        samples whose payloads are not on this machine.

    Examples
    --------
    >>> asets = [co.arraysets["images"], co.arraysets["labels"]]  # doctest: +SKIP
    >>> loader = make_numpy_loader(asets, batch_size=128, shuffle=True)  # doctest: +SKIP
    >>> for images, labels in loader:  # doctest: +SKIP
    ...     train_step(images, labels)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, not {flag!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, not {seed!r}")
    if ragged not in _RAGGED:
        raise ValueError(f"ragged must be one of {_RAGGED}, not {ragged!r}")
    source = SampleSource.from_arraysets(arraysets, keys, index_range, field_names)
    return NumpyLoader(source, batch_size, shuffle, seed, drop_last, field_names, ragged, pad_value)


__all__ = ["NumpyLoader", "make_numpy_loader"]
