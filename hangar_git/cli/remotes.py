"""``git hangar remote|push|fetch|fetch-data|clone``: collaboration commands.

Commands of :mod:`hangar_git.cli`. Records travel with git, payloads with
fsspec; see :mod:`hangar_git.remotes`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from .common import identity_options, info, new_repo, open_repo, progress, resolve_startpoint, short

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)?\s*", re.I)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes in a size like ``500``, ``20KB``, ``1.5GB`` or ``64MiB``.

    Raises
    ------
    click.BadParameter
        If the text is not a size.
    """
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise click.BadParameter(f"not a size: {text!r} (e.g. 500MB, 2GB, 1048576)")
    unit = (m.group(2) or "").lower().rstrip("b")
    if unit not in _UNITS:
        raise click.BadParameter(f"unknown size unit in {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


_LABELS = {"records": "records", "payloads": "payloads (bytes)"}


class _Bars:
    """A progress callback ``(phase, done, total)`` drawing one bar per phase."""

    def __init__(self, verb: str) -> None:
        self._verb = verb
        self._stack = contextlib.ExitStack()
        self._bars: dict[str, tuple[Callable[[int], Any], list[int]]] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            label = f"{self._verb} {_LABELS.get(phase, phase)}"
            update = self._stack.enter_context(progress(total, label))
            bar = self._bars[phase] = (update, [0])
        update, last = bar
        if done > last[0]:
            update(done - last[0])
            last[0] = done

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _report_line(rep: Any) -> str:
    rate = rep.raw_bytes / rep.seconds / 1e6 if rep.seconds > 0 else 0.0
    return (
        f"{rep.payloads} payloads ({_mb(rep.raw_bytes)}, {rate:.1f} MB/s) in "
        f"{rep.requests} requests"
    )


# ---- remote ---------------------------------------------------------------------
@click.group()
def remote() -> None:
    """Manage remotes: a git remote for records plus a data URL for payloads."""


@remote.command("add")
@click.argument("name")
@click.argument("address", required=False)
@click.option(
    "--data",
    "data",
    metavar="URL",
    help="Where payloads go: a directory, s3://bucket/prefix, gs://..., "
    "sftp://..., any fsspec URL.",
)
@click.option(
    "--data-option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An fsspec storage option that is not a secret (e.g. "
    "endpoint_url=http://...); repeatable.",
)
def remote_add(name: str, address: str | None, data: str | None, options: tuple[str, ...]) -> None:
    """Add remote NAME: records go to the git ADDRESS, payloads to --data URL.

    An existing git remote NAME is reused (ADDRESS may then be left out).
    Credentials are never stored: git uses your ssh agent or credential
    helper, the data URL its usual environment (e.g. AWS_* variables).
    """
    opts: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"expected KEY=VALUE, not {item!r}", param_hint="--data-option"
            )
        opts[key] = value
    repo = open_repo()
    added = repo.remote.add(name, address, data=data, data_options=opts or None)
    info(
        f"added remote {added.name}: records {added.address}, "
        f"data {added.data or '(none: set one to push payloads)'}"
    )


@remote.command("list")
def remote_list() -> None:
    """List remotes: name, git address, data URL."""
    for r in open_repo().remote.list_all():
        click.echo(f"{r.name}\t{r.address}\t{r.data or '-'}")


@remote.command("remove")
@click.argument("name")
def remote_remove(name: str) -> None:
    """Remove remote NAME (its remote-tracking branches stay)."""
    removed = open_repo().remote.remove(name)
    info(f"removed remote {removed.name} ({removed.address})")


@remote.command("ping")
@click.argument("name")
def remote_ping(name: str) -> None:
    """Reach remote NAME's git address and data URL; print the round trip."""
    repo = open_repo()
    try:
        seconds = repo.remote.ping(name)
    except KeyError:
        raise click.ClickException(f"no remote named {name!r}") from None
    click.echo(f"{name}: reachable in {seconds * 1000:.0f} ms")


# ---- push / fetch / fetch-data --------------------------------------------------
@click.command()
@click.argument("remote_name", metavar="REMOTE")
@click.argument("branch")
def push(remote_name: str, branch: str) -> None:
    """Send BRANCH to REMOTE: the payloads it lacks, then the commits.

    Rejected when the remote branch has commits you do not have: fetch,
    merge REMOTE/BRANCH, and push again. An interrupted push can simply be
    rerun; what arrived is not sent again.
    """
    repo = open_repo()
    remotes = repo.remote
    with _Bars("Sending") as bars:
        remotes.push(remote_name, branch, progress=bars)
    rep = remotes.last_report
    extra = f": {_report_line(rep)}, {rep.packs} packs" if rep and rep.payloads else ""
    info(f"pushed {branch} to {remote_name}{extra}")


@click.command()
@click.argument("remote_name", metavar="REMOTE")
@click.argument("branch", required=False)
def fetch(remote_name: str, branch: str | None) -> None:
    """Fetch the commits of BRANCH (all branches if omitted) from REMOTE.

    Records only: they land on REMOTE/BRANCH, ready to merge; get their
    payloads with `git hangar fetch-data`.
    """
    repo = open_repo()
    with _Bars("Receiving") as bars:
        if branch is None:
            names = repo.remote.fetch_all(remote_name, progress=bars)
        else:
            names = [repo.remote.fetch(remote_name, branch, progress=bars)]
    for n in names:
        head = repo.branch_commit(n, required=False)
        info(f"{n} -> {short(head) if head is not None else '?'}")


@click.command("fetch-data")
@click.argument("remote_name", metavar="REMOTE")
@click.argument("startpoint")
@click.option(
    "-d", "--aset", "asets", multiple=True, metavar="ASET", help="Only this arrayset (repeatable)."
)
@click.option(
    "-n",
    "--nbytes",
    metavar="NBYTES",
    help="Stop before fetching more than this many bytes (e.g. 500MB, 2GB).",
)
@click.option(
    "-a", "--all-history", is_flag=True, help="Also the data of every ancestor of STARTPOINT."
)
def fetch_data(
    remote_name: str, startpoint: str, asets: tuple[str, ...], nbytes: str | None, all_history: bool
) -> None:
    """Fetch the payloads of STARTPOINT (branch, REMOTE/BRANCH or commit) from REMOTE.

    Every payload is verified against its digest before it is stored.
    """
    budget = parse_size(nbytes) if nbytes is not None else None
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    remotes = repo.remote
    with _Bars("Fetching") as bars:
        remotes.fetch_data(
            remote_name,
            commit=sp.commit,
            arrayset_names=list(asets) or None,
            max_num_bytes=budget,
            retrieve_all_history=all_history,
            progress=bars,
        )
    rep = remotes.last_report
    if rep is None or not rep.payloads:
        here = rep.skipped if rep is not None else 0
        info(f"nothing fetched for {sp.label} ({here} payloads already here)")
    else:
        info(f"fetched {_report_line(rep)}")


# ---- clone ------------------------------------------------------------------------
def _default_dir(url: str) -> str:
    path = urlsplit(url).path if "://" in url else url.rsplit(":", 1)[-1]
    name = Path(path.rstrip("/")).name or "hangar-repo"
    return name[:-4] if name.endswith(".git") and len(name) > 4 else name


@click.command()
@click.argument("git_url", metavar="GIT_URL")
@click.argument("directory", required=False, metavar="[DIR]")
@click.option("--data", "data", metavar="URL", help="The data URL where the payloads are.")
@click.option(
    "--remote",
    "remote_name",
    default="origin",
    show_default=True,
    help="Name of the remote to create.",
)
@identity_options
@click.option("--overwrite", is_flag=True, help="Replace a hangar repository that exists in DIR.")
def clone(
    git_url: str,
    directory: str | None,
    data: str | None,
    remote_name: str,
    user_name: str | None,
    user_email: str | None,
    overwrite: bool,
) -> None:
    """Clone the records of GIT_URL into DIR; payloads stay remote until fetched.

    Samples are remote references until `git hangar fetch-data` brings their
    payloads (or a checkout opened with fetch_missing reads them).
    """
    target = Path(directory or _default_dir(git_url))
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    if "://" not in git_url and Path(git_url).exists():
        git_url = str(Path(git_url).resolve())
    try:
        repo = new_repo(target)
        with _Bars("Receiving") as bars:
            branch = repo.clone(
                user_name,
                user_email,
                git_url,
                remove_old=overwrite,
                data=data,
                remote_name=remote_name,
                progress=bars,
            )
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    info(
        f"cloned {git_url} into {os.fspath(target)} (branch {branch}; payloads stay on "
        f"the remote until `git hangar fetch-data {remote_name} {branch}`)"
    )


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (remote, push, fetch, fetch_data, clone)


def register(group: click.Group) -> None:
    """Add ``remote``, ``push``, ``fetch``, ``fetch-data`` and ``clone`` to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "clone", "fetch", "fetch_data", "parse_size", "push", "register", "remote"]
