"""Shell completion of the names a user types: branches, tags, remotes.

Click calls these when the shell asks for completions of an argument (see
``git hangar help --completion``); each reads the hangar repository that
contains the current directory and never fails: outside a repository, or on
any error, it offers nothing and the shell falls back to its default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..repository import Repository


def _repo() -> Repository | None:
    from .common import new_repo, repo_path

    repo = new_repo(repo_path())
    return repo if repo.has_git and repo.initialized else None


def _matching(names: list[str], incomplete: str) -> list[str]:
    return sorted({n for n in names if n.startswith(incomplete)})


def branches(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Local branch names starting with ``incomplete``."""
    try:
        repo = _repo()
        return _matching(repo.list_branches(), incomplete) if repo else []
    except Exception:  # completion must never fail the shell
        return []


def startpoints(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Branches (local, then ``remote/branch``) and tags starting with ``incomplete``."""
    try:
        repo = _repo()
        if repo is None:
            return []
        names = [b.name for b in repo.branch_heads()] + list(repo.list_tags())
        return _matching(names, incomplete)
    except Exception:  # completion must never fail the shell
        return []


def remotes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Names of the remotes set up for data, starting with ``incomplete``."""
    try:
        repo = _repo()
        return _matching([r.name for r in repo.remote.list_all()], incomplete) if repo else []
    except Exception:  # completion must never fail the shell
        return []


def branches_then_startpoint(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[str]:
    """``branch [NAME [STARTPOINT]]``: a branch name first, then a STARTPOINT."""
    done = ctx.params.get(param.name or "") or ()
    return (startpoints if done else branches)(ctx, param, incomplete)


__all__ = ["branches", "branches_then_startpoint", "remotes", "startpoints"]
