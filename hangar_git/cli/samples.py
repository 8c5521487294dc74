"""``git hangar ls|rm|meta``: list and remove samples, read and write metadata.

Commands of :mod:`hangar_git.cli`; each works on the hangar repository
containing the current directory. ``rm`` and ``meta set|rm`` stage their
change on the current branch (commit it with ``git hangar commit``); ``ls``
and ``meta get|list`` read a commit. A KEY is a str key of that text, else
an int key of that number; ``s:NAME`` or ``i:NUMBER`` picks the type.
"""

from __future__ import annotations

from typing import Any

import click

from . import complete
from .common import (
    CLIError,
    HangarGroup,
    emit_json,
    info,
    json_option,
    open_repo,
    reader,
    resolve_startpoint,
    writer,
)
from .render import lookup_key, plural


# ---- ls ------------------------------------------------------------------------------
@click.command("ls")
@click.argument("arrayset", required=False)
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@click.option("-l", "--long", "long_", is_flag=True, help="Also shape, dtype and where.")
@json_option
def ls(arrayset: str | None, startpoint: str | None, long_: bool, as_json: bool) -> None:
    """List the arraysets, or the sample keys of ARRAYSET.

    At STARTPOINT (default: the current branch's head). With --long, each
    key with its shape and dtype, and 'remote' when its payload is not on
    this machine (fetch it with `git hangar fetch-data`).
    """
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    with reader(repo, sp.commit) as co:
        if arrayset is None:
            rows = [
                {"name": n, "num_samples": len(a), "dtype": str(a.dtype), "shape": a.shape}
                for n, a in co.arraysets.items()
            ]
            if as_json:
                emit_json(rows)
                return
            for r in rows:
                click.echo(r["name"] if not long_ else _aset_line(r))
            return
        if arrayset not in co.arraysets:
            raise CLIError(f"no arrayset named {arrayset!r} at {sp.label}")
        aset = co.arraysets[arrayset]
        keys = sorted(aset.keys(), key=lambda k: (isinstance(k, str), k))
        strs = _str_keys(keys)
        if not long_ and not as_json:
            for k in keys:
                click.echo(_key_text(k, strs))
            return
        rows = _sample_rows(aset, keys)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"]) if r["shape"] is not None else "?"
        click.echo(f"{_key_text(r['key'], strs)}\t{shape}\t{r['dtype']}\t{r['where']}")


def _aset_line(r: dict[str, Any]) -> str:
    shape = "x".join(str(d) for d in r["shape"])
    return f"{r['name']}\t{plural(r['num_samples'], 'sample')}\t{shape}\t{r['dtype']}"


def _key_text(key: Any, strs: frozenset[str] = frozenset()) -> str:
    """A key as it is printed: as it is, but ``i:N`` for an int key when the str key
    ``'N'`` exists too (so what is printed names the same key when typed back)."""
    return f"i:{key}" if isinstance(key, int) and str(key) in strs else str(key)


def _str_keys(keys: Any) -> frozenset[str]:
    return frozenset(k for k in keys if isinstance(k, str))


def _sample_rows(aset: Any, keys: list[Any]) -> list[dict[str, Any]]:
    """``key``, ``shape``, ``dtype`` and ``where`` (local/remote) of each sample."""
    remote = set(aset.remote_reference_sample_keys)
    rows = []
    for k in keys:
        shape: Any = tuple(aset.shape)
        if aset.variable_shape:
            shape = tuple(aset[k].shape) if k not in remote else None
        rows.append(
            {
                "key": k,
                "shape": shape,
                "dtype": str(aset.dtype),
                "where": "remote" if k in remote else "local",
            }
        )
    return rows


# ---- rm ------------------------------------------------------------------------------
@click.command("rm", short_help="Remove samples of an arrayset, or the arrayset.")
@click.argument("arrayset")
@click.argument("keys", nargs=-1, metavar="[KEY...]")
@click.option("-r", "--recursive", is_flag=True, help="Remove the whole arrayset.")
@json_option
def rm(arrayset: str, keys: tuple[str, ...], recursive: bool, as_json: bool) -> None:
    """Remove samples KEY... of ARRAYSET, or with -r the arrayset itself.

    The removal is staged on the current branch: commit it with `git hangar
    commit`, or undo it with `git hangar reset`. Every KEY is checked first:
    when one is missing, nothing is removed.
    """
    if recursive == bool(keys):
        raise click.UsageError("give KEY... to remove samples, or -r alone for the arrayset")
    repo = open_repo()
    with writer(repo) as co:
        if arrayset not in co.arraysets:
            raise CLIError(f"no arrayset named {arrayset!r} on branch {co.branch_name}")
        if recursive:
            n = len(co.arraysets[arrayset])
            co.arraysets.remove_aset(arrayset)
            if as_json:
                emit_json({"arrayset": arrayset, "removed_arrayset": True, "num_samples": n})
                return
            info(
                f"Removed arrayset {arrayset!r} ({plural(n, 'sample')}); staged on branch "
                f"{co.branch_name}"
            )
            return
        aset = co.arraysets[arrayset]
        found, missing = [], []
        for text in keys:
            try:
                found.append(lookup_key(aset, text))
            except LookupError:
                missing.append(text)
        if missing:
            raise CLIError(
                f"arrayset {arrayset!r} has no sample {', '.join(map(repr, missing))}: "
                "nothing removed"
            )
        for key in dict.fromkeys(found):
            aset.remove(key)
        if as_json:
            emit_json({"arrayset": arrayset, "removed": list(dict.fromkeys(found))})
            return
        info(
            f"Removed {plural(len(set(found)), 'sample')} from {arrayset!r}; staged on branch "
            f"{co.branch_name}"
        )


# ---- meta ----------------------------------------------------------------------------
@click.group(cls=HangarGroup)
def meta() -> None:
    """Read and write metadata: small str labels kept with each commit."""


@meta.command("list")
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@json_option
def meta_list(startpoint: str | None, as_json: bool) -> None:
    """List the metadata at STARTPOINT (default: the current branch's head)."""
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    with reader(repo, sp.commit) as co:
        items = sorted(co.metadata.items(), key=lambda kv: (isinstance(kv[0], str), kv[0]))
    if as_json:
        emit_json([{"key": k, "value": v} for k, v in items])
        return
    strs = _str_keys(k for k, _ in items)
    for k, v in items:
        click.echo(f"{_key_text(k, strs)}\t{v}")


@meta.command("get")
@click.argument("key")
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@json_option
def meta_get(key: str, startpoint: str | None, as_json: bool) -> None:
    """Print the value of metadata KEY at STARTPOINT (default: the current head)."""
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    with reader(repo, sp.commit) as co:
        k = lookup_key(co.metadata, key, "key")
        value = co.metadata[k]
    if as_json:
        emit_json({"key": k, "value": value})
        return
    click.echo(value)


@meta.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--int", "int_key", is_flag=True, help="KEY is an int key.")
@json_option
def meta_set(key: str, value: str, int_key: bool, as_json: bool) -> None:
    """Set metadata KEY to VALUE, staged on the current branch.

    KEY is a str key unless --int (or i:NUMBER) is given.
    """
    from ..naming import decode_key

    repo = open_repo()
    k: Any = decode_key(key) if key[:2] in ("s:", "i:") else key
    if int_key:
        if not key.isdigit():
            raise click.BadParameter(f"{key!r} is not an int >= 0", param_hint="KEY")
        k = int(key)
    with writer(repo) as co:
        co.metadata[k] = value
        branch = co.branch_name
    if as_json:
        emit_json({"key": k, "value": value, "branch": branch})
        return
    info(f"Set {k!r}; staged on branch {branch}")


@meta.command("rm")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@json_option
def meta_rm(keys: tuple[str, ...], as_json: bool) -> None:
    """Remove metadata KEY..., staged on the current branch (all or nothing)."""
    repo = open_repo()
    with writer(repo) as co:
        found = [lookup_key(co.metadata, k, "key") for k in keys]
        for k in dict.fromkeys(found):
            co.metadata.remove(k)
        if as_json:
            emit_json({"removed": list(dict.fromkeys(found)), "branch": co.branch_name})
            return
        n = len(set(found))
        info(f"Removed {plural(n, 'metadata key')}; staged on branch {co.branch_name}")


#: the commands of this module
COMMANDS: tuple[click.Command, ...] = (ls, rm, meta)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "ls", "meta", "register", "rm"]
