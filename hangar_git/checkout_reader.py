"""The base both kinds of checkout share, and the read checkout of one commit.

:class:`Checkout` is the small public surface the objects a checkout hands
out (arraysets, metadata, diff) use; :class:`ReaderCheckout` reads one
commit. The write-enabled checkout is :class:`hangar_git.checkout.WriterCheckout`
(both are re-exported from :mod:`hangar_git.checkout`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .arraysets import Arraysets, ReaderArraysets
from .diff_source import CheckoutDiffSource
from .errors import ClosedError
from .handles import HandleSet
from .metadata import MetadataReader
from .payloads import PayloadAccess
from .records.snapshot import TreeRecords, commit_tree
from .records.view import CommitView
from .store.hugepages import reuse_freed

if TYPE_CHECKING:
    from .repository import Repository
    from .userdiff import ReaderUserDiff


class Checkout:
    """Shared machinery of reader and writer checkouts.

    Besides the user API, a checkout offers the objects it hands out
    (arraysets, metadata, diff) and the modules beside it (importers,
    dataloaders, transfers) a small public surface, so that none of them
    reaches into its private attributes: :attr:`view`, :attr:`payloads`,
    :attr:`closed`, :attr:`repository`, :meth:`check_open`,
    :meth:`hand_out`, :meth:`begin_batch` / :meth:`end_batch`, and on the
    write checkout the staging primitives (``stage_*``, :meth:`sync`).

    Attributes
    ----------
    view : CommitView
        The records this checkout reads (a :class:`StagedView` for the writer).
    payloads : PayloadAccess
        Reads (and for the writer, writes) of the payloads behind the records.
    closed : bool
        True once :meth:`close` ran; every use then raises :class:`ClosedError`.
    """

    view: CommitView
    payloads: PayloadAccess

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self.closed = False
        #: what this checkout handed out: stale once it closes
        self._handles = HandleSet()
        cls = ReaderArraysets if isinstance(self, ReaderCheckout) else Arraysets
        self._arraysets = self._handles.add(cls(self))

    @property
    def repository(self) -> Repository:
        """The repository this checkout was opened on."""
        return self._repo

    def check_open(self) -> None:
        """Raise unless the checkout is open.

        Raises
        ------
        ClosedError
            Once :meth:`close` ran.
        """
        if self.closed:
            raise ClosedError("this checkout is closed; open a new one with Repository.checkout()")

    def hand_out(self, obj: Any) -> Any:
        """Remember ``obj`` (an accessor given to the user) to make it stale on close.

        Parameters
        ----------
        obj : Any
            Any object that can be weakly referenced (arraysets, metadata,
            diff ...): when the checkout closes, every use of it raises
            :class:`ClosedError` (see :class:`~hangar_git.handles.HandleSet`).

        Returns
        -------
        Any
            ``obj`` itself.
        """
        return self._handles.add(obj)

    @property
    def arraysets(self) -> Arraysets:
        """The arraysets of this checkout (see :class:`Arraysets`)."""
        self.check_open()
        return self._arraysets

    def __enter__(self) -> Checkout:
        """Use the checkout in a ``with`` block; it closes when the block ends."""
        self.check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the checkout at the end of a ``with`` block (errors propagate)."""
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # batching hooks (no-ops for readers)
    def begin_batch(self) -> None:
        """Open a batch: staged payloads are flushed once, at the outermost :meth:`end_batch`."""

    def end_batch(self, exc: BaseException | None = None) -> None:
        """Close a batch opened by :meth:`begin_batch`.

        Parameters
        ----------
        exc : BaseException, optional
            The error that ended the batch, if one did.
        """


class ReaderCheckout(Checkout):
    """Read-only checkout of one commit; any number may be open at once.

    Readers never block writers, other readers or other processes; a reader
    sees exactly the commit it was opened on for its whole life. Open one
    with :meth:`Repository.checkout <hangar_git.repository.Repository.checkout>`.

    Parameters
    ----------
    repo : Repository
        The repository to read.
    commit : str
        Full hash of the commit to read.
    """

    def __init__(self, repo: Repository, commit: str) -> None:
        super().__init__(repo)
        reuse_freed()  # the arrays of bulk reads: fewer page faults in a fresh process
        self._commit = commit
        git = repo.git_repository()
        self.view = CommitView(TreeRecords(git, commit_tree(git, commit)))
        self.payloads = PayloadAccess(self.view, repo.payload_store.reader(), None)
        self._metadata = self.hand_out(MetadataReader(self))
        self._diff: ReaderUserDiff | None = None

    @property
    def metadata(self) -> MetadataReader:
        """Metadata of this commit (see :class:`MetadataReader`)."""
        self.check_open()
        return self._metadata

    @property
    def commit_hash(self) -> str:
        """Hash of the commit this checkout reads."""
        self.check_open()
        return self._commit

    @property
    def diff(self) -> ReaderUserDiff:
        """Diff methods relative to this checkout's commit."""
        self.check_open()
        if self._diff is None:
            from .userdiff import ReaderUserDiff

            self._diff = self.hand_out(ReaderUserDiff(CheckoutDiffSource(self)))
        return self._diff

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support: a read checkout reopens its commit in the process
        that unpickles it (once per process and commit)."""
        self.check_open()
        return (_shared_reader, (type(self._repo), self._repo.path, self._commit))

    def close(self) -> None:
        """Release file handles; later use raises :class:`ClosedError`."""
        if not self.closed:
            self.closed = True
            self._handles.close()
            self.payloads.reader.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<ReaderCheckout (closed)>"
        return (
            "Hangar ReaderCheckout\n"
            "    Writer       : False\n"
            f"    Commit Hash  : {self._commit}\n"
            f"    Num Arraysets : {len(self.view.aset_names())}\n"
            f"    Num Metadata : {len(self.view.meta_keys())}\n"
        )


#: (repository class, path, commit) -> the read checkout unpickled for it in this process
_SHARED_READERS: dict[tuple[type, str, str], ReaderCheckout] = {}


def _shared_reader(repo_cls: type, path: str, commit: str) -> ReaderCheckout:
    """A read checkout of ``commit`` in the repository at ``path``, opened once
    per process (what an unpickled reader, or its arraysets, reads through)."""
    key = (repo_cls, path, commit)
    co = _SHARED_READERS.get(key)
    if co is None or co.closed:
        co = _SHARED_READERS[key] = repo_cls(path).checkout(commit=commit)
    return co


__all__ = ["Checkout", "ReaderCheckout"]
