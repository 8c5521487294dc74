"""``git hangar pull``: fetch a branch, merge it into the current one, fetch its data.

A command of :mod:`hangar_git.cli` (the other collaboration commands are in
:mod:`.remotes`): the three steps every update took by hand, in one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import complete
from .common import (
    ProgressBars,
    emit_json,
    info,
    json_option,
    open_repo,
    remote_or_default,
    report_tags,
    short,
)
from .render import transfer_json, transfer_line

if TYPE_CHECKING:
    from ..repository import Repository


@click.command()
@click.argument("remote_name", metavar="[REMOTE", required=False, shell_complete=complete.remotes)
@click.argument("branch", metavar="[BRANCH]]", required=False, shell_complete=complete.branches)
@click.option(
    "--no-data", is_flag=True, help="Records only: do not fetch the payloads of the new head."
)
@click.option(
    "-s",
    "--strategy",
    type=click.Choice(["ours", "theirs"]),
    default=None,
    help="Resolve sample and metadata conflicts with our or their values.",
)
@json_option
def pull(
    remote_name: str | None,
    branch: str | None,
    no_data: bool,
    strategy: str | None,
    as_json: bool,
) -> None:
    """Fetch BRANCH from REMOTE and merge it into the current branch, with its data.

    REMOTE defaults to origin (or the only remote), BRANCH to the current
    branch's name. The merge is a fast-forward when it can be; with
    conflicts nothing changes and they are listed. Then, when REMOTE has a
    data URL, the payloads the new head needs are fetched (--no-data: not).
    """
    repo = open_repo()
    remote_name = remote_or_default(repo, remote_name) or ""
    target = repo.writer_branch
    branch = branch or target
    with ProgressBars("Receiving") as bars:
        tracking = repo.remote.fetch(remote_name, branch, progress=bars)
    report_tags(repo.remote, f"from {remote_name}")
    before = repo.branch_commit(target, required=False)
    msg = f"Merge {tracking} into '{target}'"
    sha = repo.merge(msg, target, tracking, strategy=strategy)
    how = (
        "up to date"
        if sha == before
        else ("fast-forward" if sha == repo.branch_commit(tracking) else "merge")
    )
    fetched = None
    if not no_data and _has_data_url(repo, remote_name):
        with ProgressBars("Fetching") as bars:
            repo.remote.fetch_data(remote_name, commit=sha, progress=bars)
        fetched = repo.remote.last_report
    if as_json:
        emit_json(
            {
                "remote": remote_name,
                "upstream": tracking,
                "branch": target,
                "before": before,
                "head": sha,
                "result": how,
                "payloads": transfer_json(fetched),
            }
        )
        return
    if how == "up to date":
        info(f"Already up to date with {tracking}")
    elif how == "fast-forward" and before is None:  # nothing here yet: the branch starts
        info(f"Branch {target!r} set up at {short(sha)} from {tracking}")
    elif how == "fast-forward":
        info(f"Fast-forward {target!r}: {short(before)}..{short(sha)}")
    else:
        info(f"Merged {tracking} into {target!r}: {short(sha)}")
    if fetched is not None and fetched.payloads:
        info(f"fetched {transfer_line(fetched)}")
    elif not no_data and not _has_data_url(repo, remote_name):
        info(
            f"remote {remote_name} has no data URL: payloads stay remote (set one with "
            f"`git hangar remote set-data {remote_name} URL`)"
        )


def _has_data_url(repo: Repository, name: str) -> bool:
    return any(r.name == name and r.data for r in repo.remote.list_all())


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (pull,)


def register(group: click.Group) -> None:
    """Add ``pull`` to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "pull", "register"]
