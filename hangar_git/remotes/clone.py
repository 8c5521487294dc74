"""``Repository.clone``: a repository initialised from a remote's records.

The remote's branches are listed first (nothing is created for an address
that holds none); a clone that fails part way leaves the directory as it
found it. Payloads are not fetched: see :meth:`Remotes.fetch_data`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2

from ..gitutil import HEADS
from ..naming import check_remote_name
from . import config as rc
from . import git_transport as gt
from .api import Remotes
from .transfer import Progress

if TYPE_CHECKING:
    from ..repository import Repository


def clone_repository(
    repo: Repository,
    user_name: str | None,
    user_email: str | None,
    remote_address: str,
    *,
    remove_old: bool = False,
    data: str | None = None,
    remote_name: str = "origin",
    data_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> str:
    """Initialise ``repo`` from a remote's records (see :meth:`Repository.clone`)."""
    check_remote_name(remote_name)
    address = rc.normalize_address(remote_address)
    rc.check_no_credentials(address, "git address")
    if data is not None:
        data = rc.normalize_data_url(data)
    if repo.initialized and not remove_old:
        raise OSError(f"a hangar repository already exists at {repo.path}")
    found = repo.git_repository_found()
    if found is not None:
        existing = rc.git_remote_url(found, remote_name)
        if existing is not None and not rc.same_address(existing, address):
            raise ValueError(
                f"git remote {remote_name!r} already exists with address {existing!r}: "
                "clone under another remote name"
            )
    with tempfile.TemporaryDirectory(prefix="hangar-clone-") as tmp:
        scratch = pygit2.init_repository(tmp, bare=True)
        heads = gt.list_heads_url(address, scratch, gt.Callbacks(repo.path))
        del scratch
    branches = sorted(h[len(HEADS) :] for h in heads)
    if not branches:
        raise ValueError(f"{remote_address} holds no hangar branches: nothing to clone")
    created_git = found is None
    had_remote = found is not None and rc.git_remote_url(found, remote_name) is not None
    try:
        repo.init(user_name, user_email, remove_old=remove_old)
        git = repo.git_repository()
        remotes = Remotes(repo)
        if rc.is_hangar_remote(git, remote_name):
            rc.remove_remote(git, remote_name)
        remotes.add(remote_name, address, data=data, data_options=data_options)
        remotes.fetch_all(remote_name, progress=progress)
        main = "master" if "master" in branches else branches[0]
        target = git.references[gt.remote_tracking_ref(remote_name, main)].target
        git.references.create(HEADS + main, target, force=True)
    except BaseException:
        _undo_clone(repo, created_git, had_remote, remote_name)
        raise
    return main


def _undo_clone(repo: Repository, created_git: bool, had_remote: bool, remote_name: str) -> None:
    """Leave the directory as a failed clone found it (best effort)."""
    git = repo.git_repository_found()
    if git is None:
        return
    if created_git:
        gitdir = Path(git.path)
        repo.forget_git_repository()
        shutil.rmtree(gitdir, ignore_errors=True)
        return
    with contextlib.suppress(Exception):
        if not had_remote and rc.git_remote_url(git, remote_name) is not None:
            rc.remove_remote(git, remote_name)
    for ref in [r for r in git.references if r.startswith("refs/hangar/")]:
        with contextlib.suppress(Exception):
            git.references.delete(ref)
    hdir = repo.hangar_dir
    if hdir is not None:
        shutil.rmtree(hdir, ignore_errors=True)


__all__ = ["clone_repository"]
