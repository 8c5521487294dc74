"""``git hangar``: the command line of hangar-git, built with click.

Every command works on the hangar repository of the git repository that
contains the current directory (or ``$GIT_DIR`` when git sets it). Errors are
one line on stderr (``error: ...``) with exit status 1, usage errors exit
with 2; no traceback is shown (set ``HANGAR_GIT_DEBUG=1`` to see one).

Other modules add their commands to :data:`main` with one call, e.g.
``cli_remote.register(main)`` doing ``main.add_command(...)``; any command
added that way gets ``-q/--quiet`` and the error handling for free.

``git hangar --help`` is answered by git itself: git turns it into ``git help
hangar``, which shows the manual page ``git-hangar(1)``. That page is
generated from this module (``git hangar help --man``) and shipped in
``man/man1/git-hangar.1``; ``git hangar -h`` and ``git hangar help
[COMMAND]`` always print the help directly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__

if TYPE_CHECKING:
    from .diff import Changes, DiffRecords
    from .repository import Repository

PROG = "git hangar"
QUIET_KEY = "hangar_git.quiet"
DEBUG_ENV = "HANGAR_GIT_DEBUG"
SHORT = 8  # digits of a commit hash shown in messages

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: where commands are listed in the help (commands not named here go under "Other")
SECTIONS: dict[str, tuple[str, ...]] = {
    "Start a repository": ("init", "clone"),
    "Stage and commit": ("status", "add", "commit", "reset", "checkout"),
    "History and data": ("log", "summary", "diff", "show", "export"),
    "Branch and merge": ("branch", "merge"),
    "Collaborate": ("remote", "push", "fetch", "fetch-data"),
    "Maintenance": ("lock", "fsck", "gc", "help"),
}


# ---- errors --------------------------------------------------------------------
class CLIError(click.ClickException):
    """An error reported as ``error: <message>`` (plus optional detail lines)."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {_one_line(self.format_message())}", err=True)
        for line in self.details:
            click.echo(line, err=True)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    return _one_line(text) or type(exc).__name__


def _translate(exc: Exception) -> CLIError:
    """The one-line error a user sees for an exception raised by the library."""
    from .errors import HangarError, MergeConflictError, NotInitializedError, WriterLockError

    if isinstance(exc, MergeConflictError):
        return CLIError(_conflict_headline(exc), _conflict_lines(exc.conflicts))
    if isinstance(exc, WriterLockError):
        return CLIError(_lock_message(exc))
    if isinstance(exc, NotInitializedError):
        return CLIError("not a hangar repository: run `git hangar init` first")
    if isinstance(exc, (HangarError, ValueError, LookupError, OSError, RuntimeError)):
        return CLIError(_exc_text(exc))
    return CLIError(
        f"internal error: {type(exc).__name__}: {_exc_text(exc)} "
        f"(set {DEBUG_ENV}=1 to see the traceback)"
    )


def _conflict_headline(exc: Exception) -> str:
    n = len(_conflict_lines(getattr(exc, "conflicts", None), limit=None))
    what = f"{n} conflict{'s' if n != 1 else ''}" if n else "conflicts"
    return (
        f"merge aborted, nothing changed: {what} (resolve them, or merge with "
        "--strategy ours|theirs)"
    )


_CONFLICT_KINDS = {
    "t1": "added on both sides with different values",
    "t21": "removed here, changed on the other branch",
    "t22": "changed here, removed on the other branch",
    "t3": "changed on both sides to different values",
}


def _conflict_lines(conflicts: Any, limit: int | None = 50) -> list[str]:
    """``  <what> <key>: <kind>`` lines for a conflict report (``conflicts`` as the merge gives)."""
    lines: list[str] = []

    def add(fmt: Callable[..., str], rec: Any) -> None:
        for kind, text in _CONFLICT_KINDS.items():
            for key in getattr(rec, kind, ()) or ():
                lines.append(f"  {fmt(key)}: {text} ({kind})")

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


def _lock_holder(repo: Repository) -> dict[str, Any] | None:
    assert repo._hdir is not None
    try:
        info = json.loads((repo._hdir / "writer.json").read_text())
        return {k: info[k] for k in ("pid", "host", "user", "since")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _holder_text(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
    return f"pid {holder['pid']} on {holder['host']} (user {holder['user']}, since {since})"


def _lock_message(exc: Exception) -> str:
    holder = None
    repo = _current_repo()
    if repo is not None:
        holder = _lock_holder(repo)
    return (
        f"the writer lock is held by {_holder_text(holder)}: a write checkout is open there. "
        "Close it; only if that process is gone for good, run `git hangar lock release --force`"
    )


# ---- the command classes ------------------------------------------------------------
def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[QUIET_KEY] = True


def _quiet_option() -> click.Option:
    return click.Option(
        ["-q", "--quiet"],
        is_flag=True,
        expose_value=False,
        callback=_set_quiet,
        help="No progress bars or informational messages.",
    )


def _ensure_quiet(cmd: click.Command) -> None:
    if not any("--quiet" in getattr(p, "opts", ()) for p in cmd.params):
        cmd.params.append(_quiet_option())
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _ensure_quiet(sub)


class HangarGroup(click.Group):
    """A click group whose commands all take ``-q`` and list in sections."""

    group_class = type  # subgroups are HangarGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _ensure_quiet(cmd)
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        cmds = [(n, self.get_command(ctx, n)) for n in self.list_commands(ctx)]
        visible = {n: c for n, c in cmds if c is not None and not c.hidden}
        if not visible:
            return
        width = formatter.width - 6 - max(len(n) for n in visible)
        if self.parent_is_root(ctx):
            placed: set[str] = set()
            for title, names in SECTIONS.items():
                rows = [(n, visible[n].get_short_help_str(width)) for n in names if n in visible]
                placed.update(n for n in names if n in visible)
                if rows:
                    with formatter.section(title):
                        formatter.write_dl(rows)
            rest = [(n, c.get_short_help_str(width)) for n, c in visible.items() if n not in placed]
            if rest:
                with formatter.section("Other commands"):
                    formatter.write_dl(rest)
        else:
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(width)) for n, c in visible.items()])

    @staticmethod
    def parent_is_root(ctx: click.Context) -> bool:
        return ctx.parent is None


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    click.echo(f"warning: {_one_line(str(message))}", err=True)


class RootGroup(HangarGroup):
    """The ``git hangar`` group: turns every error into one line on stderr."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        prog_name = prog_name or PROG
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        with warnings.catch_warnings():
            # a warning (a journal set aside, say) is one line, as errors are
            warnings.showwarning = _show_warning
            self._run_standalone(args, prog_name, complete_var, **extra)

    def _run_standalone(
        self, args: Any, prog_name: str, complete_var: str | None, **extra: Any
    ) -> None:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a group run without its command: its help
            code = 2
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} -h')"
            click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
            code = 2
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.Abort:
            click.echo("Aborted.", err=True)
            code = 130
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            err = _translate(exc)
            err.show()
            code = err.exit_code
        sys.exit(code)


# ---- shared helpers ----------------------------------------------------------------
def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(QUIET_KEY))


def info(message: str) -> None:
    """Print an informational line on stdout unless ``--quiet``."""
    if not _quiet():
        click.echo(message)


def warn(message: str) -> None:
    """Print ``warning: ...`` on stderr unless ``--quiet``."""
    if not _quiet():
        click.echo(f"warning: {message}", err=True)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout."""
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


@contextlib.contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], Any]]:
    """A progress bar on stderr when it is a terminal; silent when piped or ``--quiet``."""
    if _quiet() or length <= 0 or not _isatty(sys.stderr):
        yield _no_progress
        return
    with click.progressbar(
        length=length, label=label, file=sys.stderr, show_pos=True, show_eta=True, width=30
    ) as bar:
        yield bar.update


def _no_progress(n: int = 1) -> None:
    """Progress callback that shows nothing."""


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_OPENED: list[Repository] = []  # the repository this invocation opened (for error messages)


def _current_repo() -> Repository | None:
    return _OPENED[-1] if _OPENED else None


def _repo_path() -> str:
    return os.environ.get("GIT_DIR") or os.getcwd()


def open_repo() -> Repository:
    """The hangar repository containing the current directory (cached per invocation).

    Raises
    ------
    CLIError
        If there is no git repository, or no hangar repository in it.
    """
    ctx = click.get_current_context()
    repo = ctx.meta.get("hangar_git.repo")
    if repo is not None:
        return repo
    from .repository import Repository

    path = _repo_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    if repo._git is None:
        raise CLIError(
            f"not a git repository (nor any parent of {path}): run `git hangar init` to "
            "create one with hangar data"
        )
    if not repo.initialized:
        raise CLIError(
            f"not a hangar repository: {repo.path} has no hangar data; run `git hangar init`"
        )
    ctx.meta["hangar_git.repo"] = repo
    _OPENED[:] = [repo]
    return repo


def short(sha: str | None) -> str:
    return sha[:SHORT] if sha else "(none)"


def writer_branch(repo: Repository) -> str:
    """Branch the staging area (the write checkout) is on."""
    return repo._writer_branch()


def _check_branch_exists(repo: Repository, name: str) -> None:
    from .naming import check_branch_name

    check_branch_name(name)
    if name not in repo.list_branches():
        raise CLIError(f"no branch named {name!r} (see `git hangar branch list`)")


@dataclass
class Startpoint:
    """A resolved STARTPOINT: the commit, and the branch name when one was given."""

    commit: str
    branch: str | None

    @property
    def label(self) -> str:
        return self.branch if self.branch else short(self.commit)


def resolve_startpoint(repo: Repository, spec: str | None) -> Startpoint:
    """Resolve a branch name (local or ``remote/branch``) or commit hash prefix.

    ``None`` means the head of the staging area's branch.

    Raises
    ------
    CLIError
        Unknown branch or commit, a commit that holds no hangar data, or no
        commit yet.
    """
    from .gitutil import HEADS, REMOTES, branch_head, resolve_commit

    git = repo._git_repo()
    if spec is None:
        branch = writer_branch(repo)
        head = branch_head(git, branch)
        if head is None:
            raise CLIError(f"branch {branch!r} has no commits yet")
        return Startpoint(head, branch)
    for prefix in (HEADS, REMOTES):
        try:
            ref = git.references.get(prefix + spec)
        except (ValueError, KeyError, Exception):  # invalid reference names
            ref = None
        if ref is not None:
            return Startpoint(str(ref.target), spec)
    try:
        sha = resolve_commit(git, spec)
    except ValueError:
        raise CLIError(
            f"unknown branch or commit {spec!r} (see `git hangar branch list`)"
        ) from None
    commit = git.get(sha)
    if commit is None or "hangar.json" not in commit.tree:  # type: ignore[attr-defined]
        raise CLIError(f"commit {short(sha)} is not a hangar data commit")
    return Startpoint(sha, None)


@contextlib.contextmanager
def writer(repo: Repository, branch: str | None = None) -> Iterator[Any]:
    """The write checkout on ``branch`` (default: the staging area's branch), closed after."""
    co = repo.checkout(write=True, branch=branch or writer_branch(repo))
    try:
        yield co
    finally:
        co.close()


@contextlib.contextmanager
def reader(repo: Repository, commit: str) -> Iterator[Any]:
    """A read checkout of ``commit``, closed after."""
    co = repo.checkout(commit=commit)
    try:
        yield co
    finally:
        co.close()


@dataclass
class StagedState:
    """What the staging area holds, read without taking the writer lock."""

    branch: str
    base: str | None
    head: str | None
    diff: DiffRecords
    stale: bool  # changes are staged on a base the branch has moved away from


def staged_state(repo: Repository) -> StagedState:
    """Read the staging area (journal) read-only and diff it against its base."""
    from .diff import staged_diff
    from .gitutil import branch_head
    from .records.snapshot import TreeRecords, commit_tree
    from .records.staging import Journal
    from .records.view import StagedView

    git = repo._git_repo()
    journal = Journal.peek(repo._journal_path())
    if journal is None:
        journal = Journal(repo._journal_path())  # empty, on master
    head = branch_head(git, journal.branch)
    if journal.pending_commit and journal.pending_commit == head:
        journal.asets, journal.meta, journal.base = {}, {}, head  # the commit landed
    base = journal.base if journal.has_entries else head
    journal.base = base
    view = StagedView(TreeRecords(git, commit_tree(git, base)), journal)
    diff = staged_diff(view)
    return StagedState(journal.branch, base, head, diff, journal.has_entries and base != head)


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
    """JSON form of a :class:`~hangar_git.diff.DiffRecords` (sample keys only with ``names``)."""
    out: dict[str, Any] = {
        "arraysets": _keys(d.aset),
        "metadata": _keys(d.meta) if names else _counts(d.meta),
        "samples": {a: (_keys(c) if names else _counts(c)) for a, c in sorted(d.samples.items())},
    }
    out["empty"] = bool(d.empty)
    return out


def diff_records_lines(
    d: DiffRecords, *, stat: bool = False, names: bool = False, indent: str = "  "
) -> list[str]:
    """Text lines describing a DiffRecords: counts per arrayset, or keys with ``names``."""
    lines: list[str] = []
    added = set(d.aset.additions)
    removed = set(d.aset.removals)
    mutated = set(d.aset.mutations)
    asets = sorted(added | removed | mutated | set(d.samples), key=str)
    if names:
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
            c = _counts(ch) if ch is not None else {"added": 0, "removed": 0, "mutated": 0}
            bar = (
                "+" * min(c["added"], 40)
                + "-" * min(c["removed"], 40)
                + "~" * min(c["mutated"], 40)
            )
            lines.append(
                f"{indent}{a:<24} | {n:>8} {bar}" + (f"  ({tag.rstrip(': ')})" if tag else "")
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
            f"{sum(_counts(d.meta).values())} metadata key(s)"
        )
    return lines


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


# ---- the root group -----------------------------------------------------------------
def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"{PROG} version {__version__}")
    ctx.exit(0)


@click.group(
    cls=RootGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog=(
        "STARTPOINT is a branch name or a commit hash (a unique prefix is enough). "
        "Run `git hangar COMMAND -h` for the options of a command. "
        "`git hangar --help` is routed by git to the manual page git-hangar(1); "
        "`git hangar -h` and `git hangar help` print this help directly."
    ),
)
@click.option(
    "-v",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the hangar-git version and exit.",
)
def main() -> None:
    """Version control for tensor data, inside your git repository.

    Arrays are committed, branched, diffed and merged on their own refs
    (refs/hangar/*); your code branches, index and work tree are never
    touched.
    """


main.params.append(_quiet_option())


# ---- init / status / add / commit / checkout / reset ------------------------------
@main.command()
@click.option(
    "--name",
    "user_name",
    metavar="NAME",
    help="Author name for commits (default: git config user.name).",
)
@click.option(
    "--email",
    "user_email",
    metavar="EMAIL",
    help="Author email for commits (default: git config user.email).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete an existing hangar repository here (all its data and history) and start afresh.",
)
def init(user_name: str | None, user_email: str | None, overwrite: bool) -> None:
    """Create a hangar repository in this git repository.

    Creates the git repository first when the current directory is not in
    one. Your git HEAD, index and work tree are left alone.
    """
    from .repository import Repository

    path = _repo_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    if repo.initialized and not overwrite:
        raise CLIError(
            f"a hangar repository already exists in {repo.path}; pass --overwrite to delete "
            "it and start afresh"
        )
    if repo.initialized and repo.writer_lock_held:
        raise CLIError(
            f"cannot overwrite: the writer lock is held by {_holder_text(_lock_holder(repo))}"
        )
    try:
        hdir = repo.init(user_name=user_name, user_email=user_email, remove_old=overwrite)
    except ValueError as exc:
        if str(exc).startswith("no identity"):
            raise CLIError(
                "no identity for commits: pass --name and --email, or set "
                "`git config user.name` and `git config user.email`"
            ) from None
        raise
    info(f"Initialized empty hangar repository in {hdir}")


@main.command()
@json_option
def status(as_json: bool) -> None:
    """Show the branch, staged changes and writer lock.

    Staged changes are counted per arrayset. Reads without taking the
    writer lock, so it works while a write checkout is open elsewhere.
    """
    repo = open_repo()
    st = staged_state(repo)
    held = repo.writer_lock_held
    holder = _lock_holder(repo) if held else None
    if as_json:
        emit_json(
            {
                "branch": st.branch,
                "base": st.base,
                "head": st.head,
                "status": "CLEAN" if st.diff.empty else "DIRTY",
                "stale": st.stale,
                "writer_lock": {"held": held, "holder": holder},
                "changes": diff_records_json(st.diff),
            }
        )
        return
    where = f"at {short(st.base)}" if st.base else "(no commits yet)"
    click.echo(f"On branch {st.branch} {where}")
    click.echo("Writer lock: " + (f"held by {_holder_text(holder)}" if held else "free"))
    if st.stale:
        click.echo(
            f"warning: branch {st.branch!r} moved to {short(st.head)} after these changes "
            f"were staged on {short(st.base)}; committing them will fail"
        )
    if st.diff.empty:
        click.echo("Nothing staged.")
        return
    click.echo("Changes staged for commit:")
    click.echo('  (use "git hangar commit -m MSG" to commit, "git hangar reset" to discard)')
    for line in diff_records_lines(st.diff, indent="    "):
        click.echo(line)


@main.command()
@click.argument("arrayset")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "-b",
    "--branch",
    metavar="BRANCH",
    help="Stage on this branch (the staging area moves to it, as with checkout).",
)
@click.option("-r", "--recursive", is_flag=True, help="Also import from subfolders.")
@click.option(
    "--variable-shape",
    is_flag=True,
    help="When creating the arrayset, make it variable-shape (max shape = the "
    "largest input) instead of requiring one shape.",
)
def add(
    arrayset: str, paths: tuple[str, ...], branch: str | None, recursive: bool, variable_shape: bool
) -> None:
    """Stage arrays from .npy/.npz/HDF5 files into ARRAYSET.

    PATH is a .npy file (key: the file stem), an .npz archive (keys: member
    names), an HDF5 file (keys: dataset paths, '/' as '.'), or a folder of
    such files. The arrayset is created from the first array when it does
    not exist. Every file is checked before anything is staged.
    """
    from .io_formats import import_arrays, scan_paths
    from .naming import check_arrayset_name

    check_arrayset_name(arrayset)
    repo = open_repo()
    if branch is not None:
        _check_branch_exists(repo, branch)
    scan = scan_paths(paths, recursive=recursive)
    if scan.skipped:
        files = [p for p in scan.skipped if not p.is_dir()]
        dirs = [p for p in scan.skipped if p.is_dir()]
        if files:
            warn(
                f"passed over {len(files)} file(s) that are not .npy/.npz/HDF5 files "
                f"(e.g. {files[0]})"
            )
        if dirs:
            warn(f"passed over {len(dirs)} subfolder(s) (e.g. {dirs[0]}); use -r to enter them")
    n = len(scan.sources)
    with writer(repo, branch) as co:
        on = co.branch_name
        with progress(n, f"Staging into {arrayset}") as update:
            res = import_arrays(
                co, arrayset, scan.sources, variable_shape=variable_shape, progress=update
            )
    new = " (new arrayset)" if res.created else ""
    info(
        f"Staged {res.total} array{'s' if res.total != 1 else ''} into {arrayset!r}{new} "
        f"on branch {on}: {res.added} added, {res.replaced} replaced"
        + (f", {res.unchanged} unchanged" if res.unchanged else "")
    )


@main.command()
@click.option(
    "-m",
    "--message",
    "messages",
    multiple=True,
    required=True,
    metavar="MSG",
    help="Commit message (several -m make paragraphs).",
)
def commit(messages: tuple[str, ...]) -> None:
    """Commit the staged changes.

    The commit goes on the staging area's branch.
    """
    message = "\n\n".join(m.strip() for m in messages if m.strip())
    if not message:
        raise CLIError("empty commit message: give one with -m")
    repo = open_repo()
    with writer(repo) as co:
        if co.diff.status() == "CLEAN":
            raise CLIError("nothing to commit: no changes staged")
        stats = co.diff.staged()
        sha = co.commit(message)
        branch = co.branch_name
    info(f"[{branch} {short(sha)}] {message.splitlines()[0]}")
    if not _quiet():
        for line in diff_records_lines(stats, indent=" "):
            click.echo(line)


@main.command()
@click.argument("branch")
def checkout(branch: str) -> None:
    """Move the staging area to BRANCH.

    The write checkout's branch becomes BRANCH. Refused while changes are
    staged on another branch: commit or reset them first.
    """
    repo = open_repo()
    _check_branch_exists(repo, branch)
    before = writer_branch(repo)
    with writer(repo, branch):
        pass
    if before == branch:
        info(f"Already on {branch!r}")
    else:
        info(f"Switched to branch {branch!r}")


@main.command()
def reset() -> None:
    """Discard all staged changes.

    The staging area returns to the head of its branch.
    """
    repo = open_repo()
    with writer(repo) as co:
        if co.diff.status() == "CLEAN" and not co._journal.has_entries:
            info("Nothing staged.")
            return
        base = co.reset_staging_area()
    info(f"Staging area reset to {short(base) if base else 'an empty branch'}")


# ---- history: log / summary / diff / show / export ------------------------------------
@main.command()
@click.argument("startpoint", required=False)
@click.option("--time", "show_time", is_flag=True, help="Show commit times.")
@click.option("--user", "show_user", is_flag=True, help="Show commit authors.")
@json_option
def log(startpoint: str | None, show_time: bool, show_user: bool, as_json: bool) -> None:
    """Show the commit graph.

    Starts at STARTPOINT (default: the staging area's branch head). Drawn
    like `git log --graph --oneline`, with branch names.
    """
    from .history import branch_labels, log_contents, render_log

    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    git = repo._git_repo()
    contents = log_contents(git, sp.commit)
    if as_json:
        labels = branch_labels(git)
        contents["branches"] = {h: sorted(labels[h]) for h in contents["order"] if h in labels}
        emit_json(contents)
        return
    click.echo(render_log(git, contents, show_time=show_time, show_user=show_user))


@main.command()
@click.argument("startpoint", required=False)
@json_option
def summary(startpoint: str | None, as_json: bool) -> None:
    """Show what a commit holds.

    Arraysets, sample counts, schemas and metadata at STARTPOINT (default:
    the staging area's branch head).
    """
    from .history import render_summary, summary_contents

    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    contents = summary_contents(repo, sp.commit)
    if as_json:
        emit_json(contents)
        return
    click.echo(render_summary(contents))


def _parse_show_spec(spec: str) -> tuple[str | None, str, str]:
    parts = spec.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise click.BadParameter(
            f"{spec!r}: expected STARTPOINT:ARRAYSET:KEY (e.g. master:images:0001)",
            param_hint="'SPEC'",
        )
    return parts[0] or None, parts[1], parts[2]


def _lookup_key(aset: Any, text: str) -> Any:
    """The sample key ``text`` names: ``s:x``/``i:5`` explicitly, else str, else int."""
    if text[:2] in ("s:", "i:"):
        from .naming import decode_key

        try:
            return decode_key(text)
        except (ValueError, Exception):
            raise CLIError(f"invalid key {text!r}") from None
    if text in aset:
        return text
    if text.isdigit() and int(text) in aset:
        return int(text)
    raise CLIError(f"arrayset {aset.name!r} has no sample {text!r}")


@dataclass
class _Writer:
    """A file-like object with only ``write``, which writes all it is given.

    numpy writes to it in chunks (not with ``tofile``). ``stream`` may be an
    unbuffered binary stdout (``PYTHONUNBUFFERED``), whose ``write`` can write
    only part of the bytes: the rest is written after, so a reader that went
    away is seen as EPIPE, never as a silently short file.
    """

    stream: Any

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        while view:
            n = self.stream.write(view)
            if n is None:  # a non-blocking stream that is full
                raise BlockingIOError(errno.EAGAIN, "standard output is not ready")
            view = view[n:]
        return len(data)


@main.command()
@click.argument("spec", metavar="STARTPOINT:ARRAYSET:KEY")
@click.option("--full", is_flag=True, help="Print every element (no '...' summarising).")
@click.option(
    "--npy",
    "as_npy",
    is_flag=True,
    help="Write the array as .npy bytes to stdout (redirect it to a file).",
)
def show(spec: str, full: bool, as_npy: bool) -> None:
    """Print one sample array.

    KEY may be written s:NAME or i:NUMBER to pick the key type. An empty
    STARTPOINT (':ARRAYSET:KEY') means the staging area's branch head.
    """
    import numpy as np

    sp_text, aset_name, key_text = _parse_show_spec(spec)
    repo = open_repo()
    sp = resolve_startpoint(repo, sp_text)
    with reader(repo, sp.commit) as co:
        if aset_name not in co.arraysets:
            raise CLIError(f"no arrayset named {aset_name!r} at {sp.label}")
        aset = co.arraysets[aset_name]
        key = _lookup_key(aset, key_text)
        if key not in aset:
            raise CLIError(f"arrayset {aset_name!r} has no sample {key!r} at {sp.label}")
        arr = aset[key]
    if as_npy:
        out = sys.stdout.buffer
        if _isatty(out):
            raise CLIError("refusing to write binary .npy data to a terminal; redirect stdout")
        # through a plain writer, not numpy's tofile(): a reader that stops early
        # (`| head -c`) then ends the command quietly (EPIPE) instead of with an
        # error that names no cause
        sink = _Writer(out)
        np.lib.format.write_array(sink, np.asarray(arr, order="C"), allow_pickle=False)
        out.flush()
        return
    info(f"{aset_name}[{key!r}] at {sp.label}: shape {arr.shape}, dtype {arr.dtype}")
    opts: dict[str, Any] = {"threshold": sys.maxsize} if full else {}
    with np.printoptions(**opts):
        click.echo(np.array2string(arr, separator=", ") if arr.ndim else repr(arr.item()))


@main.command()
@click.argument("arrayset")
@click.argument("startpoint", required=False)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Folder to write into (created if needed).",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["npy", "npz", "hdf5"]),
    default="npy",
    show_default=True,
    help="npy: one <key>.npy per sample; npz: <arrayset>.npz; hdf5: <arrayset>.h5.",
)
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
def export(arrayset: str, startpoint: str | None, out_dir: str, fmt: str, overwrite: bool) -> None:
    """Export an arrayset to .npy/.npz/HDF5 files.

    Writes the samples of ARRAYSET at STARTPOINT (default: the staging
    area's branch head).
    """
    from .io_formats import export_arrays

    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    with reader(repo, sp.commit) as co:
        if arrayset not in co.arraysets:
            raise CLIError(f"no arrayset named {arrayset!r} at {sp.label}")
        aset = co.arraysets[arrayset]
        n = len(aset)
        with progress(n, f"Exporting {arrayset}") as update:
            try:
                files = export_arrays(aset, out_dir, fmt, overwrite=overwrite, progress=update)
            except FileExistsError as exc:
                raise CLIError(
                    f"{exc.filename} exists: pass --overwrite to replace existing files"
                ) from None
    where = out_dir if fmt == "npy" else str(files[0])
    info(f"Exported {n} sample{'s' if n != 1 else ''} of {arrayset!r} at {sp.label} to {where}")


# ---- branches ------------------------------------------------------------------------------
@main.group(cls=HangarGroup)
def branch() -> None:
    """Create, list and delete branches."""


@branch.command("create")
@click.argument("name")
@click.argument("startpoint", required=False)
def branch_create(name: str, startpoint: str | None) -> None:
    """Create a branch.

    Creates NAME at STARTPOINT (default: the staging area's branch head).
    """
    repo = open_repo()
    sp = resolve_startpoint(repo, startpoint)
    repo.create_branch(name, base_commit=sp.commit)
    info(f"Created branch {name!r} at {short(sp.commit)}")


@branch.command("list")
@click.option("-v", "--verbose", is_flag=True, help="Show each head commit and its message.")
@json_option
def branch_list(verbose: bool, as_json: bool) -> None:
    """List branches.

    The staging area's branch is marked '*'; remote branches follow.
    """
    from .gitutil import branch_head, list_branches
    from .history import commit_spec

    repo = open_repo()
    git = repo._git_repo()
    current = writer_branch(repo)
    local = repo.list_branches()
    remotes = [b for b in list_branches(git, remotes=True) if b not in set(local)]
    rows: list[dict[str, Any]] = []
    for name, remote in [(b, False) for b in local] + [(b, True) for b in remotes]:
        if remote:
            ref = git.references.get("refs/hangar/remotes/" + name)
            head = str(ref.target) if ref is not None else None
        else:
            head = branch_head(git, name)
        rows.append(
            {
                "name": name,
                "commit": head,
                "remote": remote,
                "current": (not remote and name == current),
            }
        )
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        mark = "*" if r["current"] else " "
        label = f"remotes/{r['name']}" if r["remote"] else r["name"]
        line = f"{mark} {label}"
        if verbose:
            msg = ""
            if r["commit"]:
                text = commit_spec(git.get(r["commit"]))["commit_message"]  # type: ignore[arg-type]
                msg = (text.splitlines() or [""])[0]
            line = f"{mark} {label:<20} {short(r['commit'])} {msg}".rstrip()
        click.echo(line)


@branch.command("delete")
@click.argument("name")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Delete even if its commits are on no other branch (they are lost to hangar).",
)
def branch_delete(name: str, force: bool) -> None:
    """Delete a branch.

    Refused when NAME holds commits no other branch has, unless --force.
    """
    repo = open_repo()
    head = repo.remove_branch(name, force=force)
    info(f"Deleted branch {name!r} (was {short(head)})")


# ---- merge and diff between commits -------------------------------------------------------
@main.command()
@click.argument("a", required=False, metavar="[A]")
@click.argument("b", required=False, metavar="[B]")
@click.option("--stat", is_flag=True, help="A table of change counts per arrayset.")
@click.option("--name-only", is_flag=True, help="List the changed keys (A/D/M, one per line).")
@json_option
def diff(a: str | None, b: str | None, stat: bool, name_only: bool, as_json: bool) -> None:
    """Show staged changes, or changes between commits.

    No argument: the staged changes. With one STARTPOINT A: from the
    staging area's branch head to A. With two: from A to B. Conflicts that
    a merge of the two would meet are listed too.
    """
    repo = open_repo()
    if a is None:
        st = staged_state(repo)
        if as_json:
            out = diff_records_json(st.diff, names=name_only)
            out.update({"from": st.base, "to": "staged", "branch": st.branch})
            emit_json(out)
            return
        lines = diff_records_lines(st.diff, stat=stat, names=name_only)
        for line in lines:
            click.echo(line)
        return
    _diff_commits(repo, a, b, stat=stat, names=name_only, as_json=as_json)


def _diff_commits(
    repo: Repository, a: str, b: str | None, *, stat: bool, names: bool, as_json: bool
) -> None:
    if b is None:
        left, right = resolve_startpoint(repo, None), resolve_startpoint(repo, a)
    else:
        left, right = resolve_startpoint(repo, a), resolve_startpoint(repo, b)
    with reader(repo, left.commit) as co:
        changes, conflicts = co.diff.commit(right.commit)
    base = changes.base
    if as_json:
        emit_json(
            {
                "from": left.commit,
                "to": right.commit,
                "merge_base": base,
                "from_side": diff_records_json(changes.master, names=names),
                "to_side": diff_records_json(changes.dev, names=names),
                "incoming": diff_records_json(changes.incoming, names=names),
                "conflicts": conflicts_json(conflicts),
            }
        )
        return
    sections: list[tuple[str, DiffRecords]] = []
    if base == left.commit:
        sections.append((f"From {left.label} to {right.label}:", changes.dev))
    elif changes.master.empty and base is not None:
        sections.append(
            (
                f"On {right.label} since the merge base {short(base)} "
                f"({left.label} has no changes of its own):",
                changes.dev,
            )
        )
    else:
        where = f"the merge base {short(base)}" if base else "nothing (no common history)"
        sections.append((f"On {left.label} since {where}:", changes.master))
        sections.append((f"On {right.label} since {where}:", changes.dev))
    for title, records in sections:
        click.echo(title)
        lines = diff_records_lines(records, stat=stat, names=names, indent="  ")
        for line in lines or ["  no changes"]:
            click.echo(line)
    conflict_lines = _conflict_lines(conflicts, limit=None)
    if conflict_lines:
        click.echo(f"Conflicts a merge would meet ({len(conflict_lines)}):")
        for line in conflict_lines:
            click.echo(line)


def conflicts_json(conflicts: Any) -> dict[str, Any]:
    """JSON form of a conflicts dict (``{'aset', 'meta', 'sample', 'conflict_found'}``)."""

    def rec(r: Any) -> dict[str, list[Any]]:
        return {k: list(getattr(r, k, ()) or ()) for k in _CONFLICT_KINDS}

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


@main.command()
@click.argument("dev_branch")
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
def merge(dev_branch: str, message: str | None, strategy: str | None) -> None:
    """Merge a branch into the staging area's branch.

    Merges DEV_BRANCH. A fast-forward when the history is linear, else a merge commit with both
    parents. A merge with conflicts changes nothing and lists them.
    """
    from .errors import MergeConflictError
    from .gitutil import branch_head
    from .merge import branch_commit

    repo = open_repo()
    target = writer_branch(repo)
    git = repo._git_repo()
    dev_head = branch_commit(git, dev_branch)
    before = branch_head(git, target)
    msg = message or f"Merge branch '{dev_branch}' into '{target}'"
    try:
        sha = repo.merge(msg, target, dev_branch, strategy=strategy)
    except MergeConflictError as exc:
        lines = _conflict_lines(exc.conflicts, limit=50)
        n = len(_conflict_lines(exc.conflicts, limit=None))
        if strategy is None:
            hint = "resolve them, or merge with --strategy ours|theirs"
        else:
            hint = (
                f"--strategy {strategy} resolves sample and metadata conflicts, never "
                "arrayset (schema) conflicts"
            )
        raise CLIError(
            f"merge of {dev_branch!r} into {target!r} aborted, nothing changed: {n} "
            f"conflict{'s' if n != 1 else ''} ({hint})",
            lines,
        ) from None
    if sha == before:
        info(f"Already up to date: {target!r} contains {dev_branch!r}")
    elif sha == dev_head:
        info(f"Fast-forward {target!r}: {short(before)}..{short(sha)}")
    else:
        info(f"Merged {dev_branch!r} into {target!r}: {short(sha)}")


# ---- maintenance ------------------------------------------------------------------------
@main.group(cls=HangarGroup)
def lock() -> None:
    """Inspect or release the writer lock."""


@lock.command("release")
@click.option(
    "-f", "--force", is_flag=True, help="Break the lock even though a live process holds it."
)
def lock_release(force: bool) -> None:
    """Release the writer lock.

    A writer process that dies releases the lock by itself. A lock held by a
    live process is only broken with --force: do that only when that process
    will never write again.
    """
    repo = open_repo()
    if not repo.writer_lock_held:
        info("The writer lock is free.")
        return
    holder = _lock_holder(repo)
    if not force:
        raise CLIError(
            f"the writer lock is held by {_holder_text(holder)}; pass --force to break it "
            "(only if that process will never write again)"
        )
    if (
        holder is not None
        and holder.get("host") == socket.gethostname()
        and _pid_alive(int(holder["pid"]))
    ):
        warn(f"breaking the lock of live process {holder['pid']}")
    repo.force_release_writer_lock()
    info("Writer lock released.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


@main.command("help")
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
@click.pass_context
def help_(
    ctx: click.Context, command: tuple[str, ...], man: bool, install_man: bool, man_dir: str | None
) -> None:
    """Show the help of a command.

    `git hangar --help` is answered by git, which shows the manual page
    git-hangar(1): a pip install puts it in <prefix>/share/man/man1, where
    man finds it when <prefix>/bin is on PATH. When man cannot find it
    (editable installs, pyenv shims), write it with --install-man [--to DIR]
    and make DIR/.. part of MANPATH if needed.
    """
    root = ctx.find_root()
    if man:
        click.echo(render_manpage(), nl=False)
        return
    if install_man:
        target = Path(man_dir) if man_dir else Path(sys.prefix) / "share" / "man" / "man1"
        target.mkdir(parents=True, exist_ok=True)
        page = target / "git-hangar.1"
        tmp = target / f".git-hangar.1.tmp-{os.getpid()}"
        tmp.write_text(render_manpage())
        os.replace(tmp, page)
        if _man_finds(page):
            info(f"Wrote {page}; `git hangar --help` shows it")
        else:
            info(
                f"Wrote {page}, where man does not look: for `git hangar --help` to find "
                f"it, add {target.parent.resolve()} to MANPATH (export "
                f'MANPATH="{target.parent.resolve()}:$MANPATH")'
            )
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


def render_manpage() -> str:
    """Roff source of the manual page git-hangar(1), generated from the commands.

    ``git hangar --help`` is answered by git with ``man git-hangar``; this
    page (installed as ``share/man/man1/git-hangar.1``) makes it show the
    same help as ``git hangar -h``.
    """
    root_ctx = click.Context(
        main,
        info_name=PROG,
        terminal_width=72,
        max_content_width=72,
        help_option_names=CONTEXT_SETTINGS["help_option_names"],
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
    for cmd, ctx in _walk(main, root_ctx):
        if cmd is not main:
            parts.append(f".SS {_roff(ctx.command_path)}")
        parts += [".nf", _roff(cmd.get_help(ctx)), ".fi"]
    parts += [
        ".SH SEE ALSO",
        "git(1)",
        "",
    ]
    return "\n".join(parts)


# commands that live in their own modules
from . import cli_maint, cli_remote  # noqa: E402

cli_remote.register(main)
cli_maint.register(main)

__all__ = [
    "CLIError",
    "HangarGroup",
    "Startpoint",
    "main",
    "open_repo",
    "render_manpage",
    "resolve_startpoint",
]


if __name__ == "__main__":  # pragma: no cover
    main()
