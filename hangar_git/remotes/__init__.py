"""Remotes: records through git, payloads through fsspec.

A remote is an ordinary git remote (the records: ``refs/hangar/*``) plus a
data URL beside it in git config (``remote.<name>.hangar-data``) where the
payloads live in packs, reached through fsspec (a directory, ``s3://``,
``gs://``, ``sftp://``, ``memory://`` ...). There is no server of our own:
git hosts and object stores do the serving.

- :mod:`.config`: the remote's settings in git config.
- :mod:`.git_transport`: push and fetch of ``refs/hangar/*`` with pygit2.
- the data remote, in layers (each module imports only those named before
  it here): :mod:`.layout` (names, format version, shared checks),
  :mod:`.bounded` (reads of what comes from outside), :mod:`.backends`
  (:class:`~.backends.RemoteStore`: a local folder, any fsspec filesystem),
  :mod:`.packformat` / :mod:`.packbuilder` / :mod:`.lookup` (the remote pack
  format), :mod:`.data_remote` (:class:`~.data_remote.DataRemote`: packs on a
  backend), :mod:`.large` (large payloads as objects of their own);
  :mod:`.data_transport` re-exports their names.
- :mod:`.transfer`: which payloads a push or fetch moves, and moving them.
- :mod:`.api`: :class:`Remotes` (``Repository.remote``); :mod:`.steps`: the
  steps of its push and data fetch; :mod:`.clone`: ``Repository.clone``.

Note: ``git push --mirror`` to a data remote's git repository also deletes
the remote's hangar refs that are not here; push hangar branches with
``git hangar push`` (or explicit ``refs/hangar/heads/<branch>`` refspecs).
"""

from .api import Remotes, lazy_fetcher_for
from .clone import clone_repository
from .config import RemoteInfo
from .git_transport import PushRejectedError
from .transfer import TransferReport

__all__ = [
    "PushRejectedError",
    "RemoteInfo",
    "Remotes",
    "TransferReport",
    "clone_repository",
    "lazy_fetcher_for",
]
