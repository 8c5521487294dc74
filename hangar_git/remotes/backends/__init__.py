"""Backends of a data remote: where its objects live, one module each.

- :mod:`.base`: :class:`RemoteStore`, the interface (verbs and capability flags).
- :mod:`.fsspec_store`: :class:`FsspecStore`, any fsspec filesystem
  (``s3://``, ``gs://``, ``memory://`` ...).
- :mod:`.local`: :class:`LocalStore`, a local folder: regular files only,
  writes renamed into place, plain ``os`` calls.

:func:`open_store` picks the backend from the URL's filesystem, as fsspec's
registry picks a filesystem from its protocol: a new backend is a module
here, an entry in :data:`BACKENDS`, and a subclass of the conformance tests
(``tests/integration/remote_conformance.py``). A local folder (a path,
``file://`` or ``local://``) is opened without importing fsspec at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import bounded
from .base import RemoteStore
from .fsspec_store import FsspecStore
from .local import LocalStore, local_root

#: backend of each fsspec protocol; others get :class:`FsspecStore`
BACKENDS: dict[str, type[RemoteStore]] = {"file": LocalStore, "local": LocalStore}


def backend_for(fs: Any) -> type[RemoteStore]:
    """The backend class for fsspec filesystem ``fs`` (from its protocols)."""
    protocol = fs.protocol
    for p in (protocol,) if isinstance(protocol, str) else tuple(protocol):
        if p in BACKENDS:
            return BACKENDS[p]
    return FsspecStore


def open_store(url: str, options: Mapping[str, Any] | None = None) -> RemoteStore:
    """Open the backend of data remote ``url``.

    Parameters
    ----------
    url : str
        An fsspec URL (a folder, ``s3://bucket/prefix``, ``memory://name`` ...).
    options : mapping, optional
        fsspec storage options (never credentials: those come from the
        environment or the backend's own configuration files). Object
        stores get read and connect timeouts unless set
        (:func:`~hangar_git.remotes.bounded.with_timeouts`). A local folder
        takes none (it is reached with plain ``os`` calls).

    Returns
    -------
    RemoteStore
        The backend, nothing requested yet.

    Raises
    ------
    ImportError
        If the URL's protocol needs a package that is not installed.
    """
    if local_root(url) is not None:
        return LocalStore(url)
    import fsspec  # only for remotes that are not local folders: it costs ~0.1 s

    opts = bounded.with_timeouts(fsspec.utils.get_protocol(url), options or {})
    fs, root = fsspec.core.url_to_fs(url, **opts)
    return backend_for(fs)(url, fs, root)


__all__ = ["BACKENDS", "FsspecStore", "LocalStore", "RemoteStore", "backend_for", "open_store"]
