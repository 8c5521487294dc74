"""``git hangar cherry-pick|revert|purge|schema``: history tools.

Commands of :mod:`hangar_git.cli`; each works on the hangar repository
containing the current directory, over :mod:`hangar_git.history_tools`.
"""

from __future__ import annotations

from typing import Any

import click

from . import complete
from .common import CLIError, emit_json, info, json_option, open_repo, short
from .render import conflict_headline, conflict_lines, conflicts_json, result_json

_STRATEGY = click.option(
    "-s",
    "--strategy",
    type=click.Choice(["ours", "theirs"]),
    default=None,
    help="Resolve sample and metadata conflicts with the branch's values (ours) or "
    "the commit's (theirs); schema conflicts are never resolved.",
)
_MESSAGE = click.option("-m", "--message", "message", metavar="MSG", help="Message of the commit.")


def _apply(
    verb: str, commit: str, strategy: str | None, message: str | None, as_json: bool
) -> None:
    from ..errors import MergeConflictError

    repo = open_repo()
    branch = repo.writer_branch
    before = repo.branch_commit(branch, required=False)
    sha = repo.resolve_startpoint(commit).commit
    run = repo.cherry_pick if verb == "cherry-pick" else repo.revert
    out: dict[str, Any] = {"branch": branch, "commit": sha, "before": before}
    try:
        new = run(sha, strategy=strategy, message=message)
    except MergeConflictError as exc:
        if as_json:
            out.update(head=before, result="conflict", conflicts=conflicts_json(exc.conflicts))
            emit_json(out)
        what = f"{verb} of {short(sha)} onto {branch!r}"
        raise CLIError(
            conflict_headline(what, exc.conflicts, strategy),
            conflict_lines(exc.conflicts, limit=50),
        ) from None
    done = "applied" if verb == "cherry-pick" else "reverted"
    if as_json:
        emit_json({**out, "head": new, "result": "up to date" if new == before else done})
    elif new == before:
        info(f"Nothing to do: {branch!r} has that change already (no commit made)")
    else:
        info(f"{done.capitalize()} {short(sha)} on {branch!r}: {short(new)}")


@click.command("cherry-pick")
@click.argument("commit", shell_complete=complete.startpoints)
@_STRATEGY
@_MESSAGE
@json_option
def cherry_pick(commit: str, strategy: str | None, message: str | None, as_json: bool) -> None:
    """Apply one commit's change to the staging area's branch.

    COMMIT (a branch head or a commit hash) is compared with its first
    parent, and that change is merged three-way into the branch head as a
    new commit. Conflicts are those of a merge; with conflicts nothing changes
    (--json prints them too, then exits with status 1).
    """
    _apply("cherry-pick", commit, strategy, message, as_json)


@click.command()
@click.argument("commit", shell_complete=complete.startpoints)
@_STRATEGY
@_MESSAGE
@json_option
def revert(commit: str, strategy: str | None, message: str | None, as_json: bool) -> None:
    """Undo one commit's change on the staging area's branch.

    A new commit sets every key COMMIT changed back to its value in COMMIT's
    first parent; a key a later commit changed again is a conflict (nothing
    changes then; --json prints them too, then exits with status 1).
    """
    _apply("revert", commit, strategy, message, as_json)


def _key(text: str) -> str | int:
    """A sample or metadata key typed by the user: ``s:NAME``, ``i:NUMBER`` or NAME."""
    from ..naming import decode_key

    if text[:2] in ("s:", "i:"):
        try:
            return decode_key(text)
        except ValueError:
            raise click.BadParameter(f"invalid key {text!r}") from None
    if text.isdigit():
        raise click.BadParameter(
            f"{text!r} could be the int key or the str key: write i:{text} or s:{text}"
        )
    return text


@click.command()
@click.argument("arrayset", required=False)
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option("--meta", "meta", multiple=True, metavar="KEY", help="A metadata key to purge.")
@click.option("--dry-run", is_flag=True, help="List what would change; change nothing.")
@click.option(
    "--data-remote",
    "data_remote",
    metavar="NAME",
    help="Also remove the purged payloads from the data remote of remote NAME.",
)
@json_option
def purge(
    arrayset: str | None,
    keys: tuple[str, ...],
    meta: tuple[str, ...],
    dry_run: bool,
    data_remote: str | None,
    as_json: bool,
) -> None:
    """Remove samples from all history: every branch and tag.

    Rewrites the history of every local branch and tag that holds one of
    the KEYs of ARRAYSET (or a --meta key): commit ids change, old -> new is
    printed per branch and tag (--dry-run also lists every commit and
    payload). Then the payloads and old commits only that history needed
    are deleted from this machine (reflogs of the hangar refs are expired).
    Remotes keep the old history until you run the force-push printed.
    Write a key that is all digits as i:N (int) or s:N (str).
    """
    if keys and arrayset is None:
        raise click.UsageError("name the ARRAYSET of the keys")
    if arrayset is not None and not keys and not meta:
        raise click.UsageError("name the KEYs of ARRAYSET to purge")
    repo = open_repo()
    report = repo.purge(
        arrayset if keys else None,
        [_key(k) for k in keys],
        meta_keys=[_key(k) for k in meta],
        dry_run=dry_run,
        data_remote=data_remote,
    )
    if as_json:
        emit_json({**result_json(report), "push_commands": report.push_commands()})
        return
    if not report.commits and not report.remote_refs and not report.data_remote:
        info("Nothing to purge: no commit holds those keys")
        return
    for line in report.summary().splitlines():
        click.echo(line)


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(d) for d in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected D[,D...] (e.g. 64,64)") from None


@click.command()
@click.argument("arrayset")
@click.option("--max-shape", "shape", metavar="D,D,...", help="The new (maximum) shape.")
@click.option("--variable-shape", is_flag=True, help="Make a fixed-shape arrayset variable-shape.")
@click.option("--rename", metavar="NAME", help="A new name for the arrayset.")
@click.option("--dtype", metavar="DTYPE", help="Cast every sample to DTYPE (e.g. float32).")
@click.option("--force", is_flag=True, help="Allow a dtype cast that can lose values.")
@_MESSAGE
@json_option
def schema(
    arrayset: str,
    shape: str | None,
    variable_shape: bool,
    rename: str | None,
    dtype: str | None,
    force: bool,
    message: str | None,
    as_json: bool,
) -> None:
    """Change an arrayset's schema, or rename it, as a commit.

    Raise the maximum shape of a variable-shape arrayset, make a fixed-shape
    one variable-shape (its shape becomes the maximum), or rename it: records
    only, whatever its size. --dtype casts every sample (a cast that can lose
    values needs --force). Older commits keep their own schema.
    """
    repo = open_repo()
    branch = repo.writer_branch
    before = repo.branch_commit(branch, required=False)
    sha = repo.change_arrayset(
        arrayset,
        shape=_shape(shape),
        variable_shape=True if variable_shape else None,
        rename=rename,
        dtype=dtype,
        force=force,
        message=message,
    )
    if as_json:
        out = {"branch": branch, "arrayset": arrayset, "name": rename or arrayset}
        emit_json({**out, "before": before, "head": sha})
        return
    info(f"Changed arrayset {arrayset!r} on {branch!r}: {short(sha)}")


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (cherry_pick, revert, purge, schema)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "cherry_pick", "purge", "register", "revert", "schema"]
