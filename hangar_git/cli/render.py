"""Text and JSON forms of what ``git hangar`` prints: diffs, conflicts, the manual page.

Shared by the command modules and by :mod:`hangar_git.cli.common` (merge
conflicts in error messages). Pure formatting: nothing here opens a
repository or reads the click context, and nothing heavy is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from ..wording import plural

if TYPE_CHECKING:
    from ..diff import Changes, DiffRecords
    from ..diffref import StagedDiff

PROG = "git hangar"

#: how a merge describes each kind of conflict (the keys are ConflictRecords fields)
CONFLICT_KINDS = {
    "t1": "added on both sides with different values",
    "t21": "removed here, changed on the other branch",
    "t22": "changed here, removed on the other branch",
    "t3": "changed on both sides to different values",
}


# ---- conflicts ----------------------------------------------------------------------
def _plain(key: Any) -> Any:
    """The sample or metadata name of a record key of a diff's conflicts
    (``RawDataRecordKey``, ``MetadataRecordKey``); other keys as they are."""
    for field in ("data_name", "meta_name"):
        name = getattr(key, field, None)
        if name is not None:
            return name
    return key


def conflict_lines(conflicts: Any, limit: int | None = 50) -> list[str]:
    """``  <what> <key>: <kind>`` lines for a conflict report.

    Parameters
    ----------
    conflicts : dict
        As a merge gives it: ``{'aset', 'meta', 'sample'}`` (anything else: no lines).
    limit : int or None
        At most this many lines, then ``  ... and N more``; None for all.

    Returns
    -------
    list of str
    """
    lines: list[str] = []

    def add(fmt: Callable[..., str], rec: Any) -> None:
        for kind, text in CONFLICT_KINDS.items():
            for key in getattr(rec, kind, ()) or ():
                lines.append(f"  {fmt(_plain(key))}: {text} ({kind})")

    if isinstance(conflicts, dict):
        if conflicts.get("aset") is not None:
            add(lambda k: f"arrayset {k!r}", conflicts["aset"])
        if conflicts.get("meta") is not None:
            add(lambda k: f"metadata {k!r}", conflicts["meta"])
        for aset, rec in sorted((conflicts.get("sample") or {}).items()):
            add(lambda k, a=aset: f"sample {a}[{k!r}]", rec)
    if limit is not None and len(lines) > limit:
        rest = len(lines) - limit
        lines = [*lines[:limit], f"  ... and {rest} more"]
    return lines


def _only_arrayset_conflicts(conflicts: Any) -> bool:
    """True when a conflicts dict holds arrayset (schema) conflicts and no others."""
    if not isinstance(conflicts, dict) or not getattr(conflicts.get("aset"), "conflict", False):
        return False
    meta = getattr(conflicts.get("meta"), "conflict", False)
    return not meta and not any(
        getattr(r, "conflict", False) for r in (conflicts.get("sample") or {}).values()
    )


def conflict_headline(
    what: str, conflicts: Any, strategy: str | None = None, retry: str = "run it with"
) -> str:
    """The first line of the error of a merge, cherry-pick or revert that met conflicts.

    How many, that nothing changed, and the way out: ``--strategy`` for
    sample and metadata conflicts, never for arrayset (schema) conflicts.

    Parameters
    ----------
    what : str
        What was aborted (``merge of 'dev' into 'master'``).
    conflicts : dict
        As a merge gives it (anything else: counted as unknown).
    strategy : {None, 'ours', 'theirs'}
        The strategy the command ran with.
    retry : str
        How to run it again, before ``--strategy ours|theirs`` (``merge with``).

    Returns
    -------
    str
    """
    n = len(conflict_lines(conflicts, limit=None))
    count = f"{n} conflict{'s' if n != 1 else ''}" if n else "conflicts"
    if strategy is not None:
        hint = (
            f"--strategy {strategy} resolves sample and metadata conflicts, never "
            "arrayset (schema) conflicts"
        )
    elif _only_arrayset_conflicts(conflicts):
        hint = "no --strategy resolves arrayset (schema) conflicts: make the same change here first"
    else:
        hint = f"resolve them, or {retry} --strategy ours|theirs"
    return f"{what} aborted, nothing changed: {count} ({hint})"


def conflicts_json(conflicts: Any) -> dict[str, Any]:
    """JSON form of a conflicts dict (``{'aset', 'meta', 'sample', 'conflict_found'}``).

    Parameters
    ----------
    conflicts : dict
        As a merge or a diff between commits gives it.

    Returns
    -------
    dict
        ``conflict_found``, and the conflicting keys of ``arraysets``,
        ``metadata`` and ``samples`` per arrayset.
    """

    def rec(r: Any) -> dict[str, list[Any]]:
        return {k: [_plain(x) for x in getattr(r, k, ()) or ()] for k in CONFLICT_KINDS}

    if not isinstance(conflicts, dict):
        return {"conflict_found": False}
    return {
        "conflict_found": bool(conflicts.get("conflict_found")),
        "arraysets": rec(conflicts.get("aset")),
        "metadata": rec(conflicts.get("meta")),
        "samples": {
            a: rec(r)
            for a, r in sorted((conflicts.get("sample") or {}).items())
            if getattr(r, "conflict", True)
        },
    }


# ---- diffs ------------------------------------------------------------------------------
def _counts(ch: Changes) -> dict[str, int]:
    return {"added": len(ch.additions), "removed": len(ch.removals), "mutated": len(ch.mutations)}


def _keys(ch: Changes) -> dict[str, list[Any]]:
    return {
        "added": list(ch.additions),
        "removed": list(ch.removals),
        "mutated": list(ch.mutations),
    }


def _count_text(ch: Changes) -> str:
    c = _counts(ch)
    return ", ".join(f"{v} {k}" for k, v in c.items() if v) or "no change"


def diff_records_json(d: DiffRecords, *, names: bool = False) -> dict[str, Any]:
    """JSON form of a :class:`~hangar_git.diff.DiffRecords`.

    Parameters
    ----------
    d : DiffRecords
        The diff.
    names : bool
        List the changed metadata and sample keys, not only their counts.

    Returns
    -------
    dict
        ``arraysets``, ``metadata``, ``samples`` (per arrayset) and ``empty``.
    """
    out: dict[str, Any] = {
        "arraysets": _keys(d.aset),
        "metadata": _keys(d.meta) if names else _counts(d.meta),
        "samples": {a: (_keys(c) if names else _counts(c)) for a, c in sorted(d.samples.items())},
    }
    out["empty"] = bool(d.empty)
    return out


def _changed_asets(d: DiffRecords) -> tuple[list[str], set[str], set[str], set[str]]:
    """The arraysets a diff touches (sorted), and which were added, removed, re-schemed."""
    added = set(d.aset.additions)
    removed = set(d.aset.removals)
    mutated = set(d.aset.mutations)
    asets = sorted(added | removed | mutated | set(d.samples), key=str)
    return asets, added, removed, mutated


def _name_lines(d: DiffRecords, indent: str) -> list[str]:
    """``A/D/M<TAB>arrayset/key`` lines (``--name-only``)."""
    lines: list[str] = []
    asets, added, removed, mutated = _changed_asets(d)
    for a in asets:
        tag = " (new arrayset)" if a in added else " (removed)" if a in removed else ""
        if a in mutated:
            tag = " (schema changed)"
        if tag:
            lines.append(f"{indent}{a}{tag}")
        ch = d.samples.get(a)
        if ch is not None:
            for sym, keys in (("A", ch.additions), ("D", ch.removals), ("M", ch.mutations)):
                lines.extend(f"{sym}\t{a}/{k}" for k in keys)
    for sym, keys in (("A", d.meta.additions), ("D", d.meta.removals), ("M", d.meta.mutations)):
        lines.extend(f"{sym}\tmetadata/{k}" for k in keys)
    return lines


def _stat_bar(ch: Changes | None) -> str:
    c = _counts(ch) if ch is not None else {"added": 0, "removed": 0, "mutated": 0}
    return "+" * min(c["added"], 40) + "-" * min(c["removed"], 40) + "~" * min(c["mutated"], 40)


def diff_records_lines(
    d: DiffRecords | StagedDiff, *, stat: bool = False, names: bool = False, indent: str = "  "
) -> list[str]:
    """Text lines describing a DiffRecords.

    Parameters
    ----------
    d : DiffRecords or StagedDiff
        The diff (of a ``StagedDiff``, its ``records``).
    stat : bool
        A table of change counts per arrayset, with a total line.
    names : bool
        The changed keys, one per line (``A/D/M``), instead of counts.
    indent : str
        Put before each line.

    Returns
    -------
    list of str
    """
    # a StagedDiff (co.diff.staged()): its plain view
    recs: DiffRecords = getattr(d, "records", None) or d  # type: ignore[assignment]
    return _records_lines(recs, stat=stat, names=names, indent=indent)


def _records_lines(d: DiffRecords, *, stat: bool, names: bool, indent: str) -> list[str]:
    if names:
        return _name_lines(d, indent)
    lines: list[str] = []
    asets, added, removed, mutated = _changed_asets(d)
    total = 0
    for a in asets:
        ch = d.samples.get(a)
        tag = ""
        if a in added:
            tag = "new arrayset: "
        elif a in removed:
            tag = "arrayset removed: "
        elif a in mutated:
            tag = "schema changed: "
        n = sum(_counts(ch).values()) if ch is not None else 0
        total += n
        text = _count_text(ch) if ch is not None else "no sample change"
        if stat:
            lines.append(
                f"{indent}{a:<24} | {n:>8} {_stat_bar(ch)}"
                + (f"  ({tag.rstrip(': ')})" if tag else "")
            )
        else:
            lines.append(f"{indent}{tag}{a}: {text}")
    if not d.meta.empty:
        if stat:
            n = sum(_counts(d.meta).values())
            lines.append(f"{indent}{'(metadata)':<24} | {n:>8}")
        else:
            lines.append(f"{indent}metadata: {_count_text(d.meta)}")
    if stat:
        lines.append(
            f" {len(asets)} arrayset{'s' if len(asets) != 1 else ''} changed, "
            f"{total} sample{'s' if total != 1 else ''}, "
            f"{plural(sum(_counts(d.meta).values()), 'metadata key')}"
        )
    return lines


# ---- the manual page ------------------------------------------------------------------
def _roff(text: str) -> str:
    out = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def _walk(cmd: click.Command, ctx: click.Context) -> Iterator[tuple[click.Command, click.Context]]:
    yield cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(
                sub,
                click.Context(
                    sub, info_name=name, parent=ctx, terminal_width=72, max_content_width=72
                ),
            )


def manpage(root: click.Group, help_option_names: list[str]) -> str:
    """Roff source of the manual page git-hangar(1), generated from the commands.

    Parameters
    ----------
    root : click.Group
        The ``git hangar`` group; every visible command under it gets a section.
    help_option_names : list of str
        The root context's help options (``-h``, ``--help``).

    Returns
    -------
    str
        The page, as shipped in ``man/man1/git-hangar.1``.
    """
    root_ctx = click.Context(
        root,
        info_name=PROG,
        terminal_width=72,
        max_content_width=72,
        help_option_names=help_option_names,
    )
    parts = [
        '.TH GIT\\-HANGAR 1 "" "hangar\\-git" "Git Manual"',
        ".SH NAME",
        "git\\-hangar \\- version control for tensor data inside a git repository",
        ".SH SYNOPSIS",
        ".nf",
        _roff(f"{PROG} [-q] COMMAND [ARGS]..."),
        _roff(f"{PROG} -h | help [COMMAND]"),
        ".fi",
        ".SH DESCRIPTION",
    ]
    for cmd, ctx in _walk(root, root_ctx):
        if cmd is not root:
            parts.append(f".SS {_roff(ctx.command_path)}")
        parts += [".nf", _roff(cmd.get_help(ctx)), ".fi"]
    parts += [
        ".SH SEE ALSO",
        "git(1)",
        "",
    ]
    return "\n".join(parts)


# ---- transfers (issue 16) ------------------------------------------------------------
def megabytes(n: int) -> str:
    """Bytes as ``12.3 MB``."""
    return f"{n / 1e6:.1f} MB"


def transfer_line(rep: Any) -> str:
    """``3 payloads (1.2 MB, 4.0 MB/s) in 2 requests`` of a TransferReport."""
    rate = rep.raw_bytes / rep.seconds / 1e6 if rep.seconds > 0 else 0.0
    return (
        f"{plural(rep.payloads, 'payload')} ({megabytes(rep.raw_bytes)}, {rate:.1f} MB/s) in "
        f"{plural(rep.requests, 'request')}"
    )


def lookup_key(container: Any, text: str, what: str = "sample") -> Any:
    """The key ``text`` names in an arrayset or metadata: ``s:x``/``i:5`` explicitly,
    else a str key of that text, else an int key of that number.

    Raises
    ------
    LookupError
        An invalid explicit key, or no such key (shown as the command's error).
    """
    from ..naming import decode_key

    if text[:2] in ("s:", "i:"):
        try:
            return decode_key(text)
        except Exception:
            raise LookupError(f"invalid key {text!r}") from None
    if text in container:
        return text
    if text.isdigit() and int(text) in container:
        return int(text)
    where = f"arrayset {container.name!r}" if hasattr(container, "name") else "the metadata"
    raise LookupError(f"{where} has no {what} {text!r}")


def result_json(result: Any) -> dict[str, Any]:
    """The fields of a result dataclass (a GcReport, a PurgeReport ...) as JSON:
    nested results as objects, digests (bytes) in hex, sets as sorted lists."""
    import dataclasses

    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (set, frozenset)):
            return sorted((plain(x) for x in v), key=str)  # (keys may mix int and str)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    out: dict[str, Any] = plain(dataclasses.asdict(result))
    return out


def transfer_json(rep: Any) -> dict[str, Any] | None:
    """Every field of a TransferReport (its digests as hex), or None when there is none."""
    import dataclasses

    if rep is None:
        return None
    out = dataclasses.asdict(rep)
    for f, v in out.items():
        if isinstance(v, list):  # refused, absent: payload digests
            out[f] = [d.hex() if isinstance(d, bytes) else d for d in v]
    return out


__all__ = [
    "CONFLICT_KINDS",
    "PROG",
    "conflict_headline",
    "conflict_lines",
    "conflicts_json",
    "diff_records_json",
    "diff_records_lines",
    "lookup_key",
    "manpage",
    "megabytes",
    "plural",
    "result_json",
    "transfer_json",
    "transfer_line",
]
