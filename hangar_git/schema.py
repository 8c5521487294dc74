"""Arrayset schemas: what samples an arrayset accepts, and the checks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


MAX_RANK = 31
#: largest sample an arrayset may declare, in bytes (its maximum shape times
#: the item size): 256 TiB, far past what one array in memory can be, yet
#: room for generous maximum shapes of variable-shape arraysets
MAX_SAMPLE_BYTES = 1 << 48
_KINDS = frozenset("biufc")


def check_dtype(dtype: object) -> np.dtype:
    """Return ``dtype`` as a numpy dtype if arraysets can hold it."""
    import numpy as np

    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ValueError(f"invalid dtype {dtype!r}: {exc}") from None
    if dt.kind not in _KINDS or dt.fields is not None or dt.subdtype is not None:
        raise ValueError(
            f"dtype {dt} is not supported: use a bool, integer, float or complex dtype "
            "(object, string, structured and datetime dtypes are refused)"
        )
    if not dt.isnative:
        raise ValueError(f"dtype {dt.str} is not in native byte order; convert it first")
    return dt


def check_shape(shape: object) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of positive ints, else raise ValueError."""
    import numpy as np

    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)):
        raise ValueError(f"shape must be an int or a tuple of ints, not {shape!r}")
    out = []
    for d in shape:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise ValueError(f"shape must hold ints, not {d!r}")
        if d <= 0:
            raise ValueError(f"shape {tuple(shape)} has a zero or negative dimension")
        out.append(int(d))
    if len(out) > MAX_RANK:
        raise ValueError(f"rank {len(out)} exceeds the maximum rank of {MAX_RANK}")
    return tuple(out)


@dataclass(frozen=True)
class ArraysetSchema:
    """Schema of an arrayset (part of history; storage choices are not)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    variable_shape: bool = False
    named_samples: bool = True

    def __post_init__(self) -> None:
        size = self.dtype.itemsize
        for d in self.shape:
            size *= d
        if size > MAX_SAMPLE_BYTES:
            raise ValueError(
                f"shape {self.shape} of dtype {self.dtype} declares samples of {size} bytes, "
                f"more than the limit of {MAX_SAMPLE_BYTES} bytes"
            )

    def to_json(self) -> str:
        """Canonical JSON text: equal schemas give equal text."""
        return json.dumps(
            {
                "dtype": self.dtype.str,
                "named_samples": self.named_samples,
                "shape": list(self.shape),
                "variable_shape": self.variable_shape,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ArraysetSchema:
        """The schema of canonical JSON ``text`` (see :meth:`to_json`).

        Raises
        ------
        ValueError
            If the text is not JSON of a valid schema: a supported dtype, a
            shape of positive ints within :data:`MAX_RANK` and
            :data:`MAX_SAMPLE_BYTES`, bool flags.
        """
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            flags = (d["variable_shape"], d["named_samples"])
            if not all(isinstance(f, bool) for f in flags):
                raise ValueError("variable_shape and named_samples must be bools")
            if not isinstance(d["dtype"], str) or not isinstance(d["shape"], list):
                raise ValueError("dtype must be a str and shape a list")
            return cls(
                dtype=check_dtype(d["dtype"]),
                shape=check_shape(d["shape"]),
                variable_shape=flags[0],
                named_samples=flags[1],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"invalid schema: {exc!r}") from None

    @property
    def schema_hash(self) -> str:
        return hashlib.blake2b(self.to_json().encode(), digest_size=6).hexdigest()

    def validate(self, data: object) -> np.ndarray:
        """Return ``data`` if it fits this schema, else raise ValueError."""
        import numpy as np

        if type(data) is not np.ndarray:
            if not isinstance(data, np.ndarray) or isinstance(data, np.matrix):
                raise ValueError(f"sample data must be a numpy.ndarray, not {type(data).__name__}")
            data = np.asarray(data)
        if data.dtype != self.dtype:
            raise ValueError(
                f"sample dtype {data.dtype} does not match the arrayset dtype {self.dtype}"
            )
        if not data.flags.c_contiguous:
            raise ValueError("sample data must be a C-contiguous array (np.ascontiguousarray)")
        shape = data.shape
        if shape == self.shape and not self.variable_shape:
            return data
        if not self.variable_shape:
            raise ValueError(f"sample shape {shape} does not match the arrayset shape {self.shape}")
        if len(shape) != len(self.shape):
            raise ValueError(
                f"sample rank {len(shape)} does not match the arrayset rank {len(self.shape)}"
            )
        for got, mx in zip(shape, self.shape, strict=True):
            if got > mx:
                raise ValueError(f"sample shape {shape} exceeds the maximum shape {self.shape}")
            if got == 0:
                raise ValueError(f"sample shape {shape} has a zero-size dimension")
        return data
