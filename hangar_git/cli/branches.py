"""``git hangar branch|tag``: branches and tags, with git's spelling.

Commands of :mod:`hangar_git.cli`; each works on the hangar repository
containing the current directory. As in git, ``branch`` alone lists,
``branch NAME [STARTPOINT]`` creates and ``branch -d/-D NAME`` deletes;
``tag`` alone lists, ``tag NAME [COMMIT]`` creates and ``tag -d NAME``
deletes. The earlier spellings ``branch create|list|delete`` still work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import complete
from .common import (
    emit_json,
    info,
    json_option,
    open_repo,
    resolve_startpoint,
    short,
)

if TYPE_CHECKING:
    from ..repository import Repository

#: the first words that keep the spellings of the earlier ``branch`` subcommands
_LEGACY = ("create", "list", "delete")


# ---- branch ------------------------------------------------------------------------------
@click.command()
@click.argument(
    "args",
    nargs=-1,
    metavar="[NAME [STARTPOINT]]",
    shell_complete=complete.branches_then_startpoint,
)
@click.option(
    "-d",
    "--delete",
    "delete",
    is_flag=True,
    help="Delete branch NAME; refused when it holds commits no other branch has.",
)
@click.option(
    "-D",
    "force_delete",
    is_flag=True,
    help="Delete branch NAME even if its commits are on no other branch (same as -d --force).",
)
@click.option("-f", "--force", is_flag=True, help="With -d: delete even unmerged work.")
@click.option("-v", "--verbose", is_flag=True, help="Show each head commit and its message.")
@json_option
def branch(
    args: tuple[str, ...],
    delete: bool,
    force_delete: bool,
    force: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """List, create or delete branches.

    \b
    git hangar branch                   list (the current branch marked '*')
    git hangar branch NAME [STARTPOINT] create NAME (default: at the current head)
    git hangar branch -d NAME           delete NAME (-D: even unmerged work)

    Names may have parts, as feature/x. The current branch is the staging
    area's: the one `git hangar checkout` moves to. Remote-tracking branches
    are listed after the local ones. `branch create|list|delete` are the
    earlier spellings and still work (`branch create list` makes a branch
    named 'list').
    """
    repo = open_repo()
    words = list(args)
    if words and words[0] in _LEGACY:
        verb, words = words[0], words[1:]
        delete = delete or verb == "delete"
        if verb == "list" and not words:
            _branch_list(repo, verbose, as_json)
            return
        if verb == "create" and not delete and 1 <= len(words) <= 2:
            _branch_create(repo, words[0], words[1] if len(words) > 1 else None, as_json)
            return
        if verb == "delete" and len(words) == 1:
            _branch_delete(repo, words[0], force or force_delete, as_json)
            return
        raise click.UsageError(f"wrong arguments for `branch {verb}`")
    if delete or force_delete:
        if len(words) != 1:
            raise click.UsageError("branch -d/-D takes one branch NAME")
        _branch_delete(repo, words[0], force or force_delete, as_json)
    elif not words:
        _branch_list(repo, verbose, as_json)
    elif len(words) <= 2:
        _branch_create(repo, words[0], words[1] if len(words) > 1 else None, as_json)
    else:
        raise click.UsageError("branch takes at most NAME and STARTPOINT")


def _branch_create(repo: Repository, name: str, startpoint: str | None, as_json: bool) -> None:
    _check_new_branch(repo, name)
    sp = resolve_startpoint(repo, startpoint)
    repo.create_branch(name, base_commit=sp.commit)
    if as_json:
        emit_json({"name": name, "commit": sp.commit, "created": True})
        return
    info(f"Created branch {name!r} at {short(sp.commit)}")


def _branch_list(repo: Repository, verbose: bool, as_json: bool) -> None:
    current = repo.writer_branch
    heads = repo.branch_heads(messages=verbose and not as_json)
    if as_json:
        emit_json(
            [
                {
                    "name": h.name,
                    "commit": h.commit,
                    "remote": h.remote,
                    "current": (not h.remote and h.name == current),
                }
                for h in heads
            ]
        )
        return
    labels = [f"remotes/{h.name}" if h.remote else h.name for h in heads]
    width = max(map(len, labels), default=0)  # one column for the commits, as git has
    for h, label in zip(heads, labels, strict=True):
        mark = "*" if not h.remote and h.name == current else " "
        line = f"{mark} {label}"
        if verbose:
            msg = (h.message.splitlines() or [""])[0] if h.message else ""
            line = f"{mark} {label:<{width}} {short(h.commit)} {msg}".rstrip()
        click.echo(line)


def _branch_delete(repo: Repository, name: str, force: bool, as_json: bool) -> None:
    head = repo.remove_branch(name, force=force)
    if as_json:
        emit_json({"name": name, "commit": head, "deleted": True})
        return
    info(f"Deleted branch {name!r} (was {short(head)})")


# ---- tag ----------------------------------------------------------------------------------
@click.command()
@click.argument("name", required=False)
@click.argument("commit", required=False, metavar="[COMMIT]", shell_complete=complete.startpoints)
@click.option("-d", "--delete", "delete", is_flag=True, help="Delete tag NAME.")
@json_option
def tag(name: str | None, commit: str | None, delete: bool, as_json: bool) -> None:
    """List, create or delete tags: fixed names for commits.

    \b
    git hangar tag                 list the tags and their commits
    git hangar tag NAME [COMMIT]   tag COMMIT (any STARTPOINT; default: the current head)
    git hangar tag -d NAME         delete tag NAME

    A tag is a STARTPOINT wherever a branch is (log, summary, diff, export,
    checkout -b ...), is never moved by commits, and travels with push and
    fetch (refs/hangar/tags/*). A tag that exists is not moved: delete it
    first.
    """
    repo = open_repo()
    if delete:
        if name is None or commit is not None:
            raise click.UsageError("tag -d takes one tag NAME")
        sha = repo.remove_tag(name)
        if as_json:
            emit_json({"name": name, "commit": sha, "deleted": True})
            return
        info(f"Deleted tag {name!r} (was {short(sha)})")
        return
    if name is None:
        tags = repo.list_tags()
        if as_json:
            emit_json([{"name": n, "commit": c} for n, c in tags.items()])
            return
        for n, c in tags.items():
            click.echo(f"{n}\t{short(c)}")
        return
    sp = resolve_startpoint(repo, commit)
    sha = repo.create_tag(name, sp.commit)
    if as_json:
        emit_json({"name": name, "commit": sha, "created": True})
        return
    info(f"Tagged {short(sha)} as {name!r}")


def _check_new_branch(repo: Repository, name: str) -> None:
    """Raise (ValueError) unless branch ``name`` can be created in ``repo``."""
    from ..refs import check_new_branch

    check_new_branch(repo.git_repository(), name)


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (branch, tag)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "branch", "register", "tag"]
