"""Log and summary: what history and a commit hold, as text or as dicts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pygit2
from pygit2.enums import SortMode

from .commits import CODE_TRAILER
from .gitutil import HEADS, REMOTES

if TYPE_CHECKING:
    from .repository import Repository


def _split_message(raw: str) -> tuple[str, str | None]:
    lines = raw.rstrip("\n").split("\n")
    code = None
    if lines and lines[-1].startswith(CODE_TRAILER + ": "):
        code = lines[-1].split(": ", 1)[1].strip()
        lines = lines[:-1]
        while lines and not lines[-1].strip():
            lines.pop()
    return "\n".join(lines), code


def commit_spec(c: pygit2.Commit) -> dict[str, Any]:
    """Time, author, message and code commit of a commit."""
    message, code = _split_message(c.message)
    return {
        "commit_time": float(c.commit_time),
        "commit_user": c.author.name,
        "commit_email": c.author.email,
        "commit_message": message,
        "code_commit": code,
    }


def log_contents(git: pygit2.Repository, start: str) -> dict[str, Any]:
    """The graph of ancestors of ``start``, newest first."""
    order: list[str] = []
    ancestors: dict[str, list[str]] = {}
    specs: dict[str, dict[str, Any]] = {}
    for c in git.walk(pygit2.Oid(hex=start), SortMode.TOPOLOGICAL | SortMode.TIME):
        h = str(c.id)
        order.append(h)
        ancestors[h] = [str(p) for p in c.parent_ids]
        specs[h] = commit_spec(c)
    return {"head": start, "order": order, "ancestors": ancestors, "specs": specs}


def branch_labels(git: pygit2.Repository) -> dict[str, list[str]]:
    """commit -> names of the branches (and remote branches) pointing at it."""
    out: dict[str, list[str]] = {}
    for name in git.references:
        for prefix in (HEADS, REMOTES):
            if name.startswith(prefix):
                target = str(git.references[name].target)
                out.setdefault(target, []).append(name[len(prefix) :])
    return out


def render_log(
    git: pygit2.Repository,
    contents: dict[str, Any],
    *,
    show_time: bool = False,
    show_user: bool = False,
) -> str:
    """Text of the commit graph, drawn like ``git log --graph --oneline``."""
    labels = branch_labels(git)
    lines: list[str] = []
    columns: list[str] = []
    for h in contents["order"]:
        if h not in columns:
            columns.append(h)
        col = columns.index(h)
        parents = contents["ancestors"][h]
        spec = contents["specs"][h]
        graph = " ".join("*" if i == col else "|" for i in range(len(columns)))
        text = h
        for b in sorted(labels.get(h, [])):
            text += f" ({b})"
        if show_time:
            text += " (" + time.strftime("%d%b%Y %H:%M:%S", time.gmtime(spec["commit_time"])) + ")"
        if show_user:
            text += f" ({spec['commit_user']})"
        text += " : " + spec["commit_message"].split("\n", 1)[0]
        lines.append(f"{graph} {text}")
        new_cols = columns[:col]
        if parents:
            if parents[0] in columns:
                pass  # the first parent already has a column: this one ends
            else:
                new_cols.append(parents[0])
        extra = [p for p in parents[1:] if p not in columns and p not in new_cols]
        new_cols.extend(extra)
        new_cols.extend(c for c in columns[col + 1 :] if c not in new_cols)
        if len(parents) > 1:
            lines.append(
                " ".join("|" for _ in range(col + 1))
                + "\\"
                + (" " + " ".join("|" for _ in columns[col + 1 :]) if columns[col + 1 :] else "")
            )
        elif len(new_cols) < len(columns) and col < len(columns) - 1:
            lines.append(" ".join("|" for _ in range(col)) + (" " if col else "") + "|/")
        columns = new_cols
    return "\n".join(lines)


def summary_contents(repo: Repository, commit: str) -> dict[str, Any]:
    """What ``commit`` holds: spec, arraysets with counts and schemas, metadata."""
    co = repo.checkout(commit=commit)
    try:
        found = repo.git_repository().get(commit)
        if not isinstance(found, pygit2.Commit):
            raise ValueError(f"{commit} is not a commit")
        spec = commit_spec(found)
        asets = {}
        for name, aset in co.arraysets.items():
            asets[name] = {
                "num_samples": len(aset),
                "schema_hash": aset.schema_hash,
                "dtype": str(aset.dtype),
                "shape": aset.shape,
                "variable_shape": aset.variable_shape,
                "named_samples": aset.named_samples,
            }
        meta = dict(co.metadata.items())
    finally:
        co.close()
    disk = 0
    store = repo.payload_store.root
    for p in store.rglob("*"):
        if p.is_file():
            disk += p.stat().st_size
    return {
        "commit": commit,
        "spec": spec,
        "arraysets": asets,
        "metadata": meta,
        "path": repo.path,
        "disk_usage": disk,
    }


def render_summary(c: dict[str, Any]) -> str:
    s = c["spec"]
    out = [
        "Summary of Contents Contained in Data Repository",
        "=" * 50,
        "| Repository Info",
        "|" + "-" * 49,
        f"|  Base Directory: {c['path']}",
        f"|  Disk Usage: {c['disk_usage'] / 1e6:.2f} MB",
        "=" * 50,
        "| Commit Details",
        "|" + "-" * 49,
        f"|  Commit: {c['commit']}",
        f"|  Created: {time.asctime(time.gmtime(s['commit_time']))}",
        f"|  By: {s['commit_user']}",
        f"|  Email: {s['commit_email']}",
        f"|  Message: {s['commit_message']}",
    ]
    if s.get("code_commit"):
        out.append(f"|  Code Commit: {s['code_commit']}")
    out += [
        "=" * 50,
        "| DataSets",
        "|" + "-" * 49,
        f"|  Number of Named Arraysets: {len(c['arraysets'])}",
    ]
    for name, a in c["arraysets"].items():
        out += [
            f"|  * Arrayset Name: {name}",
            f"|    Num Arrays: {a['num_samples']}",
            "|    Details:",
            f"|    - schema_hash: {a['schema_hash']}",
            f"|    - schema_dtype: {a['dtype']}",
            f"|    - schema_is_var: {a['variable_shape']}",
            f"|    - schema_max_shape: {a['shape']}",
            f"|    - schema_is_named: {a['named_samples']}",
        ]
    out += [
        "=" * 50,
        "| Metadata:",
        "|" + "-" * 49,
        f"|  Number of Keys: {len(c['metadata'])}",
        "=" * 50,
    ]
    return "\n".join(out)
