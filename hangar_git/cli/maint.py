"""``git hangar lock|help|fsck|gc``: the writer lock, help, checking and tidying.

Commands of :mod:`hangar_git.cli`; ``lock``, ``fsck`` and ``gc`` work on the
hangar repository containing the current directory, ``help`` on the commands
of the group it belongs to (``git hangar``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..procs import pid_alive
from .common import (
    COMPLETE_VAR,
    CONTEXT_SETTINGS,
    CLIError,
    HangarGroup,
    emit_json,
    holder_text,
    info,
    json_option,
    open_repo,
    progress,
    warn,
)
from .render import manpage, plural, result_json

if TYPE_CHECKING:
    from ..fsck import FsckReport


# ---- lock -------------------------------------------------------------------------------
@click.group(cls=HangarGroup)
def lock() -> None:
    """Inspect or release the writer lock."""


@lock.command("status")
@json_option
def lock_status(as_json: bool) -> None:
    """Show whether the writer lock is held, and by whom.

    --json gives "held" and "holder" (pid, host, user, since), as `status
    --json` does under "writer_lock".
    """
    repo = open_repo()
    held = repo.writer_lock_held
    holder = repo.writer_lock_holder() if held else None
    if as_json:
        emit_json({"held": held, "holder": holder})
        return
    click.echo("Writer lock: " + (f"held by {holder_text(holder)}" if held else "free"))


@lock.command("release")
@click.option(
    "-f", "--force", is_flag=True, help="Break the lock even though a live process holds it."
)
@json_option
def lock_release(force: bool, as_json: bool) -> None:
    """Release the writer lock.

    A writer process that dies releases the lock by itself. A lock held by a
    live process is only broken with --force: do that only when that process
    will never write again. --json gives "held" (before), "holder" and
    "released".
    """
    import socket

    repo = open_repo()
    if not repo.writer_lock_held:
        if as_json:
            emit_json({"held": False, "holder": None, "released": False})
        else:
            info("The writer lock is free.")
        return
    holder = repo.writer_lock_holder()
    if not force:
        raise CLIError(
            f"the writer lock is held by {holder_text(holder)}; pass --force to break it "
            "(only if that process will never write again)"
        )
    if (
        holder is not None
        and holder.get("host") == socket.gethostname()
        and pid_alive(int(holder["pid"]))
    ):
        warn(f"breaking the lock of live process {holder['pid']}")
    repo.force_release_writer_lock()
    if as_json:
        emit_json({"held": True, "holder": holder, "released": True})
    else:
        info("Writer lock released.")


# ---- help -------------------------------------------------------------------------------
@click.command("help")
@click.argument("command", nargs=-1)
@click.option("--man", is_flag=True, help="Print the manual page (roff source) instead.")
@click.option(
    "--install-man",
    is_flag=True,
    help="Write the manual page git-hangar.1, so that `git hangar --help` "
    "finds it (needed after an editable install).",
)
@click.option(
    "--to",
    "man_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Folder for --install-man (default: <python prefix>/share/man/man1).",
)
@click.option(
    "--completion",
    "shell",
    type=click.Choice(["bash", "zsh", "fish"]),
    help="Print the shell completion script for SHELL (see the CLI reference).",
)
@click.pass_context
def help_(
    ctx: click.Context,
    command: tuple[str, ...],
    man: bool,
    install_man: bool,
    man_dir: str | None,
    shell: str | None,
) -> None:
    """Show the help of a command.

    `git hangar --help` is answered by git, which shows the manual page
    git-hangar(1): a pip install puts it in <prefix>/share/man/man1, where
    man finds it when <prefix>/bin is on PATH. When man cannot find it
    (editable installs, pyenv shims), write it with --install-man [--to DIR]
    and make DIR/.. part of MANPATH if needed.
    """
    root = ctx.find_root()
    if shell is not None:
        click.echo(completion_script(root.command, shell))
        return
    if man:
        click.echo(_root_manpage(root), nl=False)
        return
    if install_man:
        _install_manpage(_root_manpage(root), man_dir)
        return
    cmd: click.Command = root.command
    sub_ctx = root
    for name in command:
        nxt = cmd.get_command(sub_ctx, name) if isinstance(cmd, click.Group) else None
        if nxt is None:
            raise click.UsageError(f"no such command {' '.join(command)!r}", ctx=ctx)
        sub_ctx = click.Context(nxt, info_name=name, parent=sub_ctx)
        cmd = nxt
    click.echo(cmd.get_help(sub_ctx))


#: completes `git hangar ...` through git's own bash completion, which calls _git_hangar
_GIT_BASH_SHIM = """
_git_hangar() {
    local COMP_WORDS=(git-hangar "${words[@]:2}") COMP_CWORD=$((cword - 1))
    _git_hangar_completion git-hangar
}"""


def completion_script(group: click.Command, shell: str) -> str:
    """click's completion script of ``git-hangar`` for ``shell``; for bash, also the
    function git's bash completion calls for ``git hangar``.

    Parameters
    ----------
    group : click.Command
        The ``git hangar`` group.
    shell : str
        ``bash``, ``zsh`` or ``fish``.

    Returns
    -------
    str
        A script to source (``eval "$(git hangar help --completion bash)"``).
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    source = cls(group, {}, "git-hangar", COMPLETE_VAR).source()
    return source + (_GIT_BASH_SHIM if shell == "bash" else "")


def _root_manpage(root: click.Context) -> str:
    """The manual page of the group ``root`` runs (``git hangar``)."""
    group = root.command
    assert isinstance(group, click.Group)
    return manpage(group, CONTEXT_SETTINGS["help_option_names"])


def _install_manpage(page_text: str, man_dir: str | None) -> None:
    """``help --install-man``: write git-hangar.1 and say whether man finds it there."""
    target = Path(man_dir) if man_dir else Path(sys.prefix) / "share" / "man" / "man1"
    target.mkdir(parents=True, exist_ok=True)
    page = target / "git-hangar.1"
    tmp = target / f".git-hangar.1.tmp-{os.getpid()}"
    tmp.write_text(page_text)
    os.replace(tmp, page)
    if _man_finds(page):
        info(f"Wrote {page}; `git hangar --help` shows it")
    else:
        info(
            f"Wrote {page}, where man does not look: for `git hangar --help` to find "
            f"it, add {target.parent.resolve()} to MANPATH (export "
            f'MANPATH="{target.parent.resolve()}:$MANPATH")'
        )


def _man_finds(page: Path) -> bool:
    """True when ``man -w git-hangar`` (as git will run it) resolves to ``page``."""
    import shutil
    import subprocess

    if shutil.which("man") is None:
        return False
    try:
        res = subprocess.run(
            ["man", "-w", "git-hangar"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    found = [Path(p) for p in res.stdout.split()]
    return any(p.exists() and p.resolve() == page.resolve() for p in found)


# ---- fsck / gc ------------------------------------------------------------------------------
@click.command("fsck")
@click.option(
    "--full",
    is_flag=True,
    help="Also hash every git object, verify payloads no commit references, "
    "and check the payload index file itself.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="First repair what can be put back: branch refs naming a missing commit "
    "go back to their last whole commit, an unreadable payload index is rebuilt "
    "from the packs. Then verify.",
)
@click.option(
    "-n", "--dry-run", is_flag=True, help="With --repair: only say what would be repaired."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def fsck(full: bool, repair: bool, dry_run: bool, as_json: bool) -> None:
    """Verify records, payloads and git objects (and repair them with --repair).

    Reads the records of every commit on a hangar branch (local and
    remote-tracking) and of the staging area, checks that every payload
    they name is stored here and matches its digest, and has git check its
    objects. Every damaged sample of every commit is listed; the exit status
    is 1 when anything is damaged. Payloads that live only on a remote
    (after a partial clone) are counted as remote references, not damage;
    large payload files a killed writer left unindexed are warnings (exit
    status 0) that ``gc`` cleans up.
    """
    from ..fsck import verify

    if dry_run and not repair:
        raise click.UsageError("--dry-run goes with --repair")
    repo = open_repo()
    if repair:
        repaired = repo.repair(dry_run=dry_run)
        for line in repaired.summary().splitlines():
            click.echo(line, err=as_json)
        if dry_run:
            return
    with _stages() as on_progress:
        report = verify(repo, full=full, progress=on_progress)
    if as_json:
        emit_json(_report_json(report))
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
            f"repository damaged: {plural(len(report.damaged), 'sample')}, "
            f"{plural(len(report.records), 'record')}, {len(report.store)} store and "
            f"{len(report.git)} git problems (listed above)"
        )


@click.command("gc")
@click.option("-n", "--dry-run", is_flag=True, help="Only report what would be done.")
@json_option
def gc(dry_run: bool, as_json: bool) -> None:
    """Reclaim space: unreferenced payloads, dead pack bytes, loose git objects.

    Keeps every payload that a commit on a hangar branch (local or
    remote-tracking) or the staging area names, drops the others (including
    data added and removed before any commit), compacts mostly-dead pack
    files and repacks git's objects. Refused while a write checkout is open;
    safe while readers are reading.
    """
    repo = open_repo()
    report = repo.gc(dry_run=dry_run)
    if as_json:
        emit_json(result_json(report))
        return
    for line in report.summary().splitlines():
        info(line)


def _report_json(report: FsckReport) -> dict[str, Any]:
    """``fsck --json``: the report as JSON."""
    return {
        "ok": report.ok,
        "full": report.full,
        "commits": report.commits,
        "samples": report.samples,
        "payloads": report.payloads,
        "damaged": [_issue(s) for s in report.damaged],
        "remote_references": len(report.remote_references),
        "records": [
            {"commit": r.commit, "path": r.path, "problem": r.problem} for r in report.records
        ],
        "store": report.store,
        "git": report.git,
        "warnings": report.warnings,
    }


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


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (lock, help_, fsck, gc)


def register(group: click.Group) -> None:
    """Add ``lock``, ``help``, ``fsck`` and ``gc`` to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "fsck", "gc", "help_", "lock", "register"]
