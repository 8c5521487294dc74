"""``git hangar fsck`` and ``git hangar gc``: check and tidy a repository.

Added to the main group with :func:`register` (``cli_maint.register(main)``).
Like ``cli_remote``, it imports ``cli`` only inside functions: ``cli`` imports
this module at its end, so a module-level import would be circular.
Both work on the hangar repository containing the current directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click


@click.command("fsck")
@click.option(
    "--full",
    is_flag=True,
    help="Also hash every git object, verify payloads no commit references, "
    "and check the payload index file itself.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def fsck(full: bool, as_json: bool) -> None:
    """Verify records, payloads and git objects.

    Reads the records of every commit on a hangar branch (local and
    remote-tracking) and of the staging area, checks that every payload
    they name is stored here and matches its digest, and has git check its
    objects. Every damaged sample of every commit is listed; the exit status
    is 1 when anything is damaged. Payloads that live only on a remote
    (after a partial clone) are counted as remote references, not damage;
    large payload files a killed writer left unindexed are warnings (exit
    status 0) that ``gc`` cleans up.
    """
    from .cli import CLIError, emit_json, info, open_repo
    from .fsck import verify

    repo = open_repo()
    with _stages() as on_progress:
        report = verify(repo, full=full, progress=on_progress)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "full": report.full,
                "commits": report.commits,
                "samples": report.samples,
                "payloads": report.payloads,
                "damaged": [_issue(s) for s in report.damaged],
                "remote_references": len(report.remote_references),
                "records": [
                    {"commit": r.commit, "path": r.path, "problem": r.problem}
                    for r in report.records
                ],
                "store": report.store,
                "git": report.git,
                "warnings": report.warnings,
            }
        )
    else:
        lines = report.summary().splitlines()
        if report.ok:  # a sound repository: the report only without --quiet
            for line in lines:
                info(line)
        else:  # damage is always listed (its last line becomes the error below)
            for line in lines[:-1]:
                click.echo(line)
    if not report.ok:
        raise CLIError(
            f"repository damaged: {len(report.damaged)} samples, {len(report.records)} "
            f"records, {len(report.store)} store and {len(report.git)} git problems "
            "(listed above)"
        )


@click.command("gc")
@click.option("-n", "--dry-run", is_flag=True, help="Only report what would be done.")
def gc(dry_run: bool) -> None:
    """Reclaim space: unreferenced payloads, dead pack bytes, loose git objects.

    Keeps every payload that a commit on a hangar branch (local or
    remote-tracking) or the staging area names, drops the others (including
    data added and removed before any commit), compacts mostly-dead pack
    files and repacks git's objects. Refused while a write checkout is open;
    safe while readers are reading.
    """
    from .cli import info, open_repo
    from .gc import gc as run_gc

    repo = open_repo()
    report = run_gc(repo, dry_run=dry_run)
    for line in report.summary().splitlines():
        info(line)


def _issue(s: Any) -> dict[str, Any]:
    return {
        "commit": s.commit,
        "arrayset": s.arrayset,
        "key": s.key,
        "digest": s.digest,
        "problem": s.problem,
    }


@contextlib.contextmanager
def _stages() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback ``(stage, done, total)`` drawing one bar per stage."""
    from .cli import progress

    stack = contextlib.ExitStack()
    state: dict[str, Any] = {"stage": None, "update": None, "done": 0}

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            stack.close()
            state["stage"], state["done"] = stage, 0
            state["update"] = stack.enter_context(progress(total, f"Verifying {stage}"))
        state["update"](done - state["done"])
        state["done"] = done

    with stack:
        yield on_progress


def register(group: click.Group) -> None:
    """Add ``fsck`` and ``gc`` to ``group``."""
    group.add_command(fsck)
    group.add_command(gc)


__all__ = ["fsck", "gc", "register"]
