"""The row tables of a read checkout's arraysets (see
:meth:`hangar_git.payloads.PayloadAccess.row_table`): the stacked rows of an
arrayset keyed ``0 .. n-1`` as a mapping by encoded key, and a table's
entries by int key (the key-by-key hot path's form).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class DenseRows(Mapping[str, np.ndarray]):
    """The row table of an arrayset keyed ``0 .. n-1``: ``{'i:N': rows[N]}``
    without a dict.

    Parameters
    ----------
    rows : numpy.ndarray
        The stacked samples, row N the sample of key N (of a shape with at
        least one axis: a row of a stack of 0-d samples would be a scalar).
    """

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def _row(self, enc: object) -> int:
        if type(enc) is str and enc[:2] == "i:":
            digits = enc[2:]
            if digits.isdigit() and digits.isascii() and (digits == "0" or digits[0] != "0"):
                k = int(digits)
                if k < len(self.rows):
                    return k
        return -1

    def __getitem__(self, enc: str) -> np.ndarray:
        k = self._row(enc)
        if k < 0:
            raise KeyError(enc)
        return self.rows[k]

    def __contains__(self, enc: object) -> bool:
        return self._row(enc) >= 0

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[str]:
        return (f"i:{k}" for k in range(len(self.rows)))


def int_keyed(table: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """The entries of ``table`` under int keys (``'i:N'`` -> ``N``)."""
    joined = "\x00".join(table)
    if joined.startswith("i:") and "\x00s:" not in joined:  # all int keys: no loop
        return dict(zip(map(int, joined[2:].split("\x00i:")), table.values(), strict=True))
    return {int(k[2:]): a for k, a in table.items() if k[0] == "i"}


__all__ = ["DenseRows", "int_keyed"]
