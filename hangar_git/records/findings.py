"""What :class:`~.leaves.RecordWalker` finds in a commit's records.

Plain values, one per kind of tree read: :class:`CommitRecords` (the root),
:class:`ArraysetRecords`, :class:`SamplesTree` (fan-out levels) and
:class:`Leaf` (sample records), each with the *problems* found in it: pairs
``(path in the commit tree, what is wrong)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HangarError

#: ``(path in the commit tree, what is wrong)``; the path is ``''`` for the root
Problem = tuple[str, str]
#: fan-out directory names from a ``samples`` tree down to one leaf (``()``: flat)
LeafPath = tuple[str, ...]
#: sample records of one leaf: ``{encoded key: payload digest}``
Records = dict[str, bytes]


@dataclass(frozen=True)
class ArraysetRecords:
    """One entry of a commit's ``arraysets`` tree, as far as it could be read.

    Attributes
    ----------
    name : str
        The entry's name (an arrayset name, unless ``problems`` says otherwise).
    tree : bytes
        Raw id of the entry.
    schema : bytes or None
        Raw id of its schema blob; None when the arrayset cannot be used (no
        tree, no valid schema, or ``samples`` that is not a tree): its
        samples are then not walked.
    samples : bytes or None
        Raw id of its ``samples`` tree (None when it has no samples).
    problems : tuple of Problem
        Problems of the arrayset's tree and schema (not of its samples).
    """

    name: str
    tree: bytes
    schema: bytes | None
    samples: bytes | None
    problems: tuple[Problem, ...] = ()

    @property
    def readable(self) -> bool:
        """True when its schema is sound and its samples can be walked."""
        return self.schema is not None


@dataclass(frozen=True)
class CommitRecords:
    """The top of one commit's records: see :meth:`RecordWalker.commit`.

    Attributes
    ----------
    commit : str
        The commit's hash.
    arraysets : tuple of ArraysetRecords
        Every entry of its ``arraysets`` tree, in name order.
    metadata : bytes or None
        Raw id of its ``metadata`` tree.
    changes : bool
        Whether it carries a change log.
    problems : tuple of Problem
        Problems of the root tree and of the ``arraysets`` tree itself.
    error : HangarError or None
        Why none of its records can be read (a newer record format, a
        missing or malformed root tree); ``problems`` then says the same.
    trusted : bool
        Its root tree was checked whole on this machine before (see
        :mod:`.trust`), and the walker was asked to believe such verdicts.
    """

    commit: str
    arraysets: tuple[ArraysetRecords, ...] = ()
    metadata: bytes | None = None
    changes: bool = False
    problems: tuple[Problem, ...] = ()
    error: HangarError | None = None
    trusted: bool = False


@dataclass(frozen=True)
class SamplesTree:
    """The fan-out levels of one ``samples`` tree: its leaves, not parsed.

    Attributes
    ----------
    leaves : tuple of (LeafPath, bytes)
        Path and raw id of every leaf, in tree order.
    problems : tuple of Problem
        Problems of the fan-out levels, paths relative to the ``samples`` tree.
    """

    leaves: tuple[tuple[LeafPath, bytes], ...]
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Leaf:
    """The sample records of one leaf.

    Attributes
    ----------
    records : dict of str to bytes
        ``{encoded key: digest}`` of its sound records, in tree order (do
        not mutate it).
    problems : tuple of str
        What is wrong with the leaf, or with records left out of ``records``.
    """

    records: Records
    problems: tuple[str, ...] = ()


__all__ = [
    "ArraysetRecords",
    "CommitRecords",
    "Leaf",
    "LeafPath",
    "Problem",
    "Records",
    "SamplesTree",
]
