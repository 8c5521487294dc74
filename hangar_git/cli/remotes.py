"""``git hangar remote|push|fetch|fetch-data|clone``: collaboration (pull: :mod:`.sync`).

Commands of :mod:`hangar_git.cli`. Records travel with git, payloads with
fsspec; see :mod:`hangar_git.remotes`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import click

from . import complete
from .common import (
    CLIError,
    HangarGroup,
    ProgressBars,
    emit_json,
    identity_options,
    info,
    json_option,
    new_repo,
    one_line,
    open_repo,
    remote_or_default,
    report_tags,
    resolve_startpoint,
    short,
    warn,
)
from .render import lookup_key, plural, transfer_json, transfer_line

if TYPE_CHECKING:
    from ..repository import Repository

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


# ---- remote ---------------------------------------------------------------------
class RemoteGroup(HangarGroup):
    """``remote``'s subcommands, and git's other spelling of one (``rm``)."""

    ALIASES: ClassVar[dict[str, str]] = {"rm": "remove"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand ``cmd_name``, or the one it is git's alias of."""
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))


@click.group(cls=RemoteGroup, invoke_without_command=True, subcommand_metavar="[COMMAND] [ARGS]...")
@click.option("-v", "--verbose", is_flag=True, help="Also show each git address and data URL.")
@json_option
@click.pass_context
def remote(ctx: click.Context, verbose: bool, as_json: bool) -> None:
    """Manage remotes: a git remote for records plus a data URL for payloads.

    Without a subcommand, list them (as `remote list`): names, with -v also
    addresses and data URLs.
    """
    if ctx.invoked_subcommand is None:
        _list_remotes(verbose=verbose, as_json=as_json)


def _list_remotes(*, verbose: bool, as_json: bool) -> None:
    remotes = open_repo().remote.list_all()
    if as_json:
        emit_json([{"name": r.name, "address": r.address, "data": r.data} for r in remotes])
        return
    for r in remotes:
        click.echo(f"{r.name}\t{r.address}\t{r.data or '-'}" if verbose else r.name)


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
@json_option
def remote_add(
    name: str, address: str | None, data: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Add remote NAME: records go to the git ADDRESS, payloads to --data URL.

    An existing git remote NAME is reused (ADDRESS may then be left out),
    and so is a hangar remote without a data URL (as a clone without --data
    leaves origin): --data sets it.
    Credentials are never stored: git uses your ssh agent or credential
    helper, the data URL its usual environment (e.g. AWS_* variables).
    """
    repo = open_repo()
    opts = _options(options)
    added = repo.remote.add(name, address, data=data, data_options=opts or None)
    if as_json:
        emit_json({"name": added.name, "address": added.address, "data": added.data})
        return
    info(
        f"added remote {added.name}: records {added.address}, "
        f"data {added.data or '(none: set one to push payloads)'}"
    )


@remote.command("list")
@json_option
def remote_list(as_json: bool) -> None:
    """List remotes: name, git address, data URL."""
    _list_remotes(verbose=True, as_json=as_json)


@remote.command("set-data")
@click.argument("name", shell_complete=complete.remotes)
@click.argument("url")
@click.option(
    "--data-option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An fsspec storage option that is not a secret; repeatable.",
)
@json_option
def remote_set_data(name: str, url: str, options: tuple[str, ...], as_json: bool) -> None:
    """Set the data URL of remote NAME (where its payloads are) to URL.

    For a remote added or cloned without --data, or to point at a moved
    bucket. Nothing else of the remote changes.
    """
    info_ = open_repo().remote.set_data(name, url, data_options=_options(options) or None)
    if as_json:
        emit_json({"name": info_.name, "address": info_.address, "data": info_.data})
        return
    info(f"remote {info_.name}: data {info_.data}")


def _options(items: tuple[str, ...]) -> dict[str, Any]:
    """``--data-option KEY=VALUE`` items as a dict."""
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"expected KEY=VALUE, not {item!r}", param_hint="--data-option"
            )
        opts[key] = value
    return opts


@remote.command("remove")
@click.argument("name", shell_complete=complete.remotes)
@json_option
def remote_remove(name: str, as_json: bool) -> None:
    """Remove remote NAME (its remote-tracking branches stay)."""
    removed = open_repo().remote.remove(name)
    if as_json:
        emit_json({"name": removed.name, "address": removed.address, "data": removed.data})
        return
    info(f"removed remote {removed.name} ({removed.address})")


@remote.command("ping")
@click.argument("name", shell_complete=complete.remotes)
@json_option
def remote_ping(name: str, as_json: bool) -> None:
    """Reach remote NAME's git address and data URL; print the round trip."""
    repo = open_repo()
    try:
        seconds = repo.remote.ping(name)
    except KeyError:
        raise click.ClickException(f"no remote named {name!r}") from None
    if as_json:
        emit_json({"name": name, "seconds": seconds})
        return
    click.echo(f"{name}: reachable in {seconds * 1000:.0f} ms")


# ---- push / fetch / pull ------------------------------------------------------------
@click.command()
@click.argument("remote_name", metavar="[REMOTE", required=False, shell_complete=complete.remotes)
@click.argument("branch", metavar="[BRANCH]]", required=False, shell_complete=complete.branches)
@json_option
def push(remote_name: str | None, branch: str | None, as_json: bool) -> None:
    """Send BRANCH to REMOTE: the payloads it lacks, then the commits and tags.

    REMOTE defaults to origin (or the only remote), BRANCH to the current
    branch. The tags at the pushed commits go too; a tag the remote has is
    never moved. Rejected when the remote branch has commits you do not
    have: pull, and push again. An interrupted push can simply be rerun;
    what arrived is not sent again.
    """
    repo = open_repo()
    remote_name = remote_or_default(repo, remote_name) or ""
    branch = branch or repo.writer_branch
    remotes = repo.remote
    with ProgressBars("Sending") as bars:
        remotes.push(remote_name, branch, progress=bars)
    rep = remotes.last_report
    tags = remotes.last_tags
    if as_json:
        emit_json(
            {
                "remote": remote_name,
                "branch": branch,
                "commit": repo.branch_commit(branch),
                "payloads": transfer_json(rep),
                "tags": {"added": tags.added, "kept": tags.kept} if tags else None,
            }
        )
        return
    extra = f": {transfer_line(rep)}, {plural(rep.packs, 'pack')}" if rep and rep.payloads else ""
    info(f"pushed {branch} to {remote_name}{extra}")
    report_tags(remotes, f"sent to {remote_name}")


@click.command()
@click.argument("remote_name", metavar="[REMOTE", required=False, shell_complete=complete.remotes)
@click.argument("branch", metavar="[BRANCH]]", required=False, shell_complete=complete.branches)
@json_option
def fetch(remote_name: str | None, branch: str | None, as_json: bool) -> None:
    """Fetch the commits of BRANCH (all branches and tags if omitted) from REMOTE.

    REMOTE defaults to origin (or the only remote). Records only: they land
    on REMOTE/BRANCH, ready to merge (or pull); get their payloads with
    `git hangar fetch-data`. Tags at the fetched commits come too, and with
    no BRANCH every tag; a tag you have is never moved.
    """
    repo = open_repo()
    remote_name = remote_or_default(repo, remote_name) or ""
    with ProgressBars("Receiving") as bars:
        if branch is None:
            names = repo.remote.fetch_all(remote_name, progress=bars)
        else:
            names = [repo.remote.fetch(remote_name, branch, progress=bars)]
    heads = {n: repo.branch_commit(n, required=False) for n in names}
    tags = repo.remote.last_tags
    if as_json:
        emit_json(
            {
                "remote": remote_name,
                "branches": heads,
                "tags": {"added": tags.added, "kept": tags.kept} if tags else None,
            }
        )
        return
    for n, head in heads.items():
        info(f"{n} -> {short(head) if head is not None else '?'}")
    report_tags(repo.remote, f"from {remote_name}")


@click.command("fetch-data")
@click.argument("remote_name", metavar="[REMOTE", required=False, shell_complete=complete.remotes)
@click.argument(
    "startpoint", metavar="[STARTPOINT", required=False, shell_complete=complete.startpoints
)
@click.argument("keys", nargs=-1, metavar="[KEY...]]]")
@click.option(
    "-d", "--aset", "asets", multiple=True, metavar="ASET", help="Only this arrayset (repeatable)."
)
@click.option(
    "--nbytes",
    metavar="NBYTES",
    help="Stop before fetching more than this many bytes (e.g. 500MB, 2GB).",
)
@click.option(
    "-a", "--all-history", is_flag=True, help="Also the data of every ancestor of STARTPOINT."
)
@json_option
def fetch_data(
    remote_name: str | None,
    startpoint: str | None,
    keys: tuple[str, ...],
    asets: tuple[str, ...],
    nbytes: str | None,
    all_history: bool,
    as_json: bool,
) -> None:
    """Fetch the payloads of STARTPOINT (branch, tag, REMOTE/BRANCH or commit) from REMOTE.

    REMOTE defaults to origin (or the only remote), STARTPOINT to the current
    branch. With KEY... (and one -d ASET), only those samples. Every payload
    is verified against its digest before it is stored.
    """
    budget = parse_size(nbytes) if nbytes is not None else None
    repo = open_repo()
    remote_name = remote_or_default(repo, remote_name) or ""
    sp = resolve_startpoint(repo, startpoint or repo.writer_branch)
    if keys:
        _fetch_keys(repo, remote_name, sp.commit, asets, keys, as_json)
        return
    remotes = repo.remote
    with ProgressBars("Fetching") as bars:
        remotes.fetch_data(
            remote_name,
            commit=sp.commit,
            arrayset_names=list(asets) or None,
            max_num_bytes=budget,
            retrieve_all_history=all_history,
            progress=bars,
        )
    rep = remotes.last_report
    if as_json:
        emit_json({"remote": remote_name, "commit": sp.commit, "payloads": transfer_json(rep)})
    elif rep is None or not rep.payloads:
        here = rep.skipped if rep is not None else 0
        info(f"nothing fetched for {sp.label} ({plural(here, 'payload')} already here)")
    else:
        info(f"fetched {transfer_line(rep)}")


def _fetch_keys(
    repo: Repository,
    remote_name: str,
    commit: str,
    asets: tuple[str, ...],
    keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """``fetch-data REMOTE STARTPOINT -d ASET KEY...``: those samples' payloads only."""
    if len(asets) != 1:
        raise click.UsageError("KEY... needs exactly one -d ASET")
    co = repo.checkout(commit=commit, fetch_missing=remote_name)
    try:
        if asets[0] not in co.arraysets:
            raise CLIError(f"no arrayset named {asets[0]!r} at {short(commit)}")
        aset = co.arraysets[asets[0]]
        found = [lookup_key(aset, k) for k in keys]  # every key checked first
        remote = set(aset.remote_reference_sample_keys)
        wanted = [k for k in dict.fromkeys(found) if k in remote]
        for key in wanted:
            aset[key]  # a read through the lazy fetcher stores the verified payload
    finally:
        co.close()
    if as_json:
        emit_json({"remote": remote_name, "commit": commit, "fetched": wanted})
        return
    here = len(set(found)) - len(wanted)
    extra = f" ({plural(here, 'payload')} already here)" if here else ""
    info(f"fetched {plural(len(wanted), 'payload')} of {asets[0]!r}{extra}")


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
    "--data-only",
    is_flag=True,
    help="Only hangar's data records, no git clone of the code (into DIR, which may "
    "be an existing git work tree).",
)
@click.option(
    "--remote",
    "remote_name",
    default="origin",
    show_default=True,
    help="Name of the remote to create.",
)
@identity_options
@click.option("--overwrite", is_flag=True, help="Replace a hangar repository that exists in DIR.")
@json_option
def clone(
    git_url: str,
    directory: str | None,
    data: str | None,
    data_only: bool,
    remote_name: str,
    user_name: str | None,
    user_email: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Clone GIT_URL into DIR: the code (git clone) and the data records.

    Runs `git clone` (code, git branches) and then sets hangar up in the
    new work tree with every data branch and tag of GIT_URL. Payloads stay
    on the data URL until `git hangar fetch-data` (or `pull`) brings them.
    With --data-only, only the data records are cloned into DIR (the way to
    add them to a work tree you cloned already: `git hangar clone
    --data-only URL .`).
    """
    from ..remotes.config import check_no_credentials

    target = Path(directory or _default_dir(git_url))
    if "://" not in git_url and Path(git_url).exists():
        git_url = str(Path(git_url).resolve())
    check_no_credentials(git_url, "git address")  # before git sees (and prints) it
    created = not target.exists()
    if not data_only and not created and any(target.iterdir()):
        raise CLIError(
            f"{os.fspath(target)} exists and is not empty: clone into a new directory, "
            "or pass --data-only to add the data records to a work tree there"
        )
    target.mkdir(parents=True, exist_ok=True)
    try:
        if not data_only:
            _git_clone(git_url, target, remote_name)
        repo = new_repo(target)
        with ProgressBars("Receiving") as bars:
            branch = repo.clone(
                user_name,
                user_email,
                git_url,
                remove_old=overwrite,
                data=data,
                remote_name=remote_name,
                progress=bars,
            )
    except BaseException as exc:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, ValueError) and str(exc).startswith("no identity"):
            raise CLIError(
                "no identity for commits: pass --name and --email, or set "
                "`git config user.name` and `git config user.email`"
            ) from None
        raise
    _clone_report(repo, target, git_url, data, data_only, remote_name, branch, as_json)


def _clone_report(
    repo: Repository,
    target: Path,
    git_url: str,
    data: str | None,
    data_only: bool,
    remote_name: str,
    branch: str,
    as_json: bool,
) -> None:
    """What ``clone`` made, and what comes next."""
    if as_json:
        made = next(r for r in repo.remote.list_all() if r.name == remote_name)
        emit_json(
            {
                "path": os.fspath(target.resolve()),
                "branch": branch,
                "remote": made.name,
                "address": made.address,
                "data": made.data,
                "code": not data_only,
            }
        )
        return
    what = "data records" if data_only else "code and data records"
    nxt = f"payloads stay on {data} until `git hangar fetch-data {remote_name} {branch}`"
    if not data:
        nxt = f"no data URL: set one with `git hangar remote set-data {remote_name} URL`"
    info(f"cloned {what} of {git_url} into {os.fspath(target)} (branch {branch}; {nxt})")


def _git_clone(url: str, target: Path, remote_name: str) -> None:
    """``git clone`` of ``url`` into the empty directory ``target`` (git's own errors shown)."""
    git = shutil.which("git")
    if git is None:
        raise CLIError("git is not installed: install it, or clone with --data-only")
    args = [git, "clone", "--quiet", "--origin", remote_name, url, os.fspath(target)]
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        detail = one_line(res.stderr) or f"exit status {res.returncode}"
        raise CLIError(f"cannot reach git remote {url} (git clone failed): {detail}")
    for line in res.stderr.splitlines():
        if "empty repository" in line:
            continue  # data only, no code yet: fine
        if line.strip():
            warn(line.strip().removeprefix("warning: "))


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (remote, push, fetch, fetch_data, clone)


def register(group: click.Group) -> None:
    """Add ``remote``, ``push``, ``fetch``, ``fetch-data`` and ``clone`` to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = [
    "COMMANDS",
    "clone",
    "fetch",
    "fetch_data",
    "parse_size",
    "push",
    "register",
    "remote",
]
