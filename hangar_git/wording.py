"""Counts in messages for people: ``1 payload``, ``2 payloads``.

One helper for every layer (store, records, remotes, history tools, the CLI),
so no message says "1 payloads"; it imports nothing.
"""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1.

    Parameters
    ----------
    n : int
        The count.
    word : str
        The singular form.
    many : str, optional
        The plural form, when it is not ``word + "s"``.

    Returns
    -------
    str
        E.g. ``plural(1, "pack")`` is ``"1 pack"``, ``plural(2, "pack")``
        ``"2 packs"``.
    """
    return f"{n} {word if n == 1 else (many or word + 's')}"


def are(n: int) -> str:
    """``is`` for one, ``are`` for any other count."""
    return "is" if n == 1 else "are"


def were(n: int) -> str:
    """``was`` for one, ``were`` for any other count."""
    return "was" if n == 1 else "were"
