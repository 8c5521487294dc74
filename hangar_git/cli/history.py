"""``git hangar log|summary|diff|merge``: history and merges (branches: :mod:`.branches`).

Commands of :mod:`hangar_git.cli`; each works on the hangar repository
containing the current directory.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from . import complete
from .common import (
    CLIError,
    emit_json,
    info,
    json_option,
    open_repo,
    resolve_startpoint,
    short,
)
from .render import (
    conflict_headline,
    conflict_lines,
    conflicts_json,
    diff_records_json,
    diff_records_lines,
)

if TYPE_CHECKING:
    from ..diff import BranchDiff, DiffRecords
    from ..refs import Startpoint
    from ..repository import Repository


#: a full commit hash in a line of the drawn graph
_HASH = re.compile(r"\b[0-9a-f]{40}\b")


# ---- log / summary ----------------------------------------------------------------------
@click.command()
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@click.option(
    "-n",
    "--max-count",
    "max_count",
    type=click.IntRange(min=1),
    metavar="N",
    help="Show only the N newest commits.",
)
@click.option("--time", "show_time", is_flag=True, help="Show commit times.")
@click.option("--user", "show_user", is_flag=True, help="Show commit authors.")
@json_option
def log(
    startpoint: str | None,
    max_count: int | None,
    show_time: bool,
    show_user: bool,
    as_json: bool,
) -> None:
    """Show the commit graph.

    Starts at STARTPOINT (a branch, tag, REMOTE/BRANCH or commit; default:
    the current branch's head). Drawn like `git log --graph --oneline`, with
    branch names and tags.
    """
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    if as_json:
        contents = repo.log(commit=sp.commit, return_contents=True)
        assert contents is not None
        if max_count is not None:
            keep = contents["order"][:max_count]
            contents["order"] = keep
            for field in ("ancestors", "specs"):
                contents[field] = {h: contents[field][h] for h in keep}
        labels = repo.branch_labels()
        contents["branches"] = {h: sorted(labels[h]) for h in contents["order"] if h in labels}
        tags: dict[str, list[str]] = {}
        for name, commit in repo.list_tags().items():
            if commit in contents["specs"]:
                tags.setdefault(commit, []).append(name)
        contents["tags"] = tags
        emit_json(contents)
        return
    text = repo.log_text(sp.commit, show_time=show_time, show_user=show_user)
    text = _with_tags(text, repo.list_tags())
    click.echo(_first_commits(text, max_count) if max_count is not None else text)


def _with_tags(graph: str, tags: dict[str, str]) -> str:
    """The drawn graph with ``(tag: NAME)`` after each tagged commit, as git decorates it."""
    if not tags:
        return graph
    at: dict[str, list[str]] = {}
    for name, commit in sorted(tags.items()):
        at.setdefault(commit, []).append(name)
    out: list[str] = []
    for line in graph.splitlines():
        head, sep, rest = line.partition(" : ")
        m = _HASH.search(head)
        if sep and m is not None and m.group(0) in at:
            labels = "".join(f" (tag: {t})" for t in at[m.group(0)])
            head = head[: m.end()] + labels + head[m.end() :]
        out.append(head + sep + rest)
    return "\n".join(out)


def _first_commits(graph: str, n: int) -> str:
    """The lines of a drawn graph up to its ``n``-th commit (commit lines hold '*')."""
    out: list[str] = []
    seen = 0
    for line in graph.splitlines():
        if "*" in line.split(" : ", 1)[0]:
            seen += 1
            if seen > n:
                break
        out.append(line)
    return "\n".join(out)


@click.command()
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@json_option
def summary(startpoint: str | None, as_json: bool) -> None:
    """Show what a commit holds.

    Arraysets, sample counts, schemas and metadata at STARTPOINT (default:
    the staging area's branch head).
    """
    from ..history import render_summary, summary_contents

    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    contents = summary_contents(repo, sp.commit)
    if as_json:
        emit_json(contents)
        return
    click.echo(render_summary(contents))


# ---- diff and merge ----------------------------------------------------------------------
@click.command()
@click.argument("a", required=False, metavar="[A]", shell_complete=complete.startpoints)
@click.argument("b", required=False, metavar="[B]", shell_complete=complete.startpoints)
@click.option("--stat", is_flag=True, help="A table of change counts per arrayset.")
@click.option("--name-only", is_flag=True, help="List the changed keys (A/D/M, one per line).")
@click.option(
    "--key",
    "sample",
    metavar="ARRAYSET/KEY",
    help="One sample on both sides and at the merge base: shapes, dtypes, differences.",
)
@json_option
def diff(
    a: str | None, b: str | None, stat: bool, name_only: bool, as_json: bool, sample: str | None
) -> None:
    """Show staged changes, or changes between commits.

    No argument: the staged changes. With one STARTPOINT A: from the
    staging area's branch head to A. With two: from A to B. Conflicts that
    a merge of the two would meet are listed too. --json lists the changed
    keys, with their types (as the Python diff results do); --stat --json
    only counts them.
    """
    repo = open_repo()
    if sample is not None:
        from ..history_tools.inspect import sample_diff_lines

        for line in sample_diff_lines(repo, a, b, sample):
            click.echo(line)
        return
    if a is None:
        st = repo.staged_state()
        if as_json:
            out = diff_records_json(st.diff, names=not stat)
            out.update({"from": st.base, "to": "staged", "branch": st.branch})
            emit_json(out)
            return
        lines = diff_records_lines(st.diff, stat=stat, names=name_only)
        for line in lines:
            click.echo(line)
        return
    names = not stat if as_json else name_only  # JSON: the keys, as Python gives them
    _diff_commits(repo, a, b, stat=stat, names=names, as_json=as_json)


def _diff_commits(
    repo: Repository, a: str, b: str | None, *, stat: bool, names: bool, as_json: bool
) -> None:
    """``diff A [B]``: the changes on each side since the merge base, and the conflicts."""
    if b is None:
        left, right = resolve_startpoint(repo, None), resolve_startpoint(repo, a)
    else:
        left, right = resolve_startpoint(repo, a), resolve_startpoint(repo, b)
    result, conflicts = repo.diff(left.commit, right.commit)  # (no checkout needed)
    changes = result.records  # the plain view (BranchDiff)
    if as_json:
        emit_json(
            {
                "from": left.commit,
                "to": right.commit,
                "merge_base": changes.base,
                "from_side": diff_records_json(changes.master, names=names),
                "to_side": diff_records_json(changes.dev, names=names),
                "incoming": diff_records_json(changes.incoming, names=names),
                "conflicts": conflicts_json(conflicts),
            }
        )
        return
    for title, records in _diff_sections(left, right, changes):
        click.echo(title)
        lines = diff_records_lines(records, stat=stat, names=names, indent="  ")
        for line in lines or ["  no changes"]:
            click.echo(line)
    all_conflicts = conflict_lines(conflicts, limit=None)
    if all_conflicts:
        click.echo(f"Conflicts a merge would meet ({len(all_conflicts)}):")
        for line in all_conflicts:
            click.echo(line)


def _diff_sections(
    left: Startpoint, right: Startpoint, changes: BranchDiff
) -> list[tuple[str, DiffRecords]]:
    """The titled parts of a diff between commits: one side's changes, or both sides'."""
    base = changes.base
    if base == left.commit:
        return [(f"From {left.label} to {right.label}:", changes.dev)]
    if changes.master.empty and base is not None:
        return [
            (
                f"On {right.label} since the merge base {short(base)} "
                f"({left.label} has no changes of its own):",
                changes.dev,
            )
        ]
    where = f"the merge base {short(base)}" if base else "nothing (no common history)"
    return [
        (f"On {left.label} since {where}:", changes.master),
        (f"On {right.label} since {where}:", changes.dev),
    ]


@click.command()
@click.argument("dev_branch", shell_complete=complete.startpoints)
@click.option(
    "-m",
    "--message",
    "message",
    metavar="MSG",
    help="Message of the merge commit (default: \"Merge branch 'DEV' into 'THIS'\").",
)
@click.option(
    "-s",
    "--strategy",
    type=click.Choice(["ours", "theirs"]),
    default=None,
    help="Resolve sample and metadata conflicts with our or their values "
    "(schema conflicts are never resolved).",
)
@json_option
def merge(dev_branch: str, message: str | None, strategy: str | None, as_json: bool) -> None:
    """Merge a branch into the staging area's branch.

    Merges DEV_BRANCH. A fast-forward when the history is linear, else a merge commit with both
    parents. A merge with conflicts changes nothing and lists them (--json
    prints them too, then exits with status 1).
    """
    from ..errors import MergeConflictError

    repo = open_repo()
    target = repo.writer_branch
    dev_head = repo.branch_commit(dev_branch)
    before = repo.branch_commit(target, required=False)
    msg = message or f"Merge branch '{dev_branch}' into '{target}'"
    out: dict[str, Any] = {"branch": target, "merged": dev_branch, "before": before}
    try:
        sha = repo.merge(msg, target, dev_branch, strategy=strategy)
    except MergeConflictError as exc:
        what = f"merge of {dev_branch!r} into {target!r}"
        if as_json:
            out.update(head=before, result="conflict", conflicts=conflicts_json(exc.conflicts))
            emit_json(out)
        raise CLIError(
            conflict_headline(what, exc.conflicts, strategy, retry="merge with"),
            conflict_lines(exc.conflicts, limit=50),
        ) from None
    if as_json:
        how = "up to date" if sha == before else ("fast-forward" if sha == dev_head else "merge")
        emit_json({**out, "head": sha, "result": how})
        return
    if sha == before:
        info(f"Already up to date: {target!r} contains {dev_branch!r}")
    elif sha == dev_head:
        info(f"Fast-forward {target!r}: {short(before)}..{short(sha)}")
    else:
        info(f"Merged {dev_branch!r} into {target!r}: {short(sha)}")


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (log, summary, diff, merge)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "diff", "log", "merge", "register", "summary"]
