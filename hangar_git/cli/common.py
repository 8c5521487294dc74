"""Shared helpers of the ``git hangar`` commands: errors, groups, output, the repository.

Every command module imports what it needs from here (and from
:mod:`hangar_git.cli.render`); nothing here imports a command module.

- errors: :class:`CLIError` and :func:`translate`, which turns any exception
  of the library into the one line a user sees (``error: ...``);
- the command classes: :class:`HangarGroup` (``-q`` on every command, help in
  sections) and :class:`RootGroup` (errors and warnings as one line, exit codes);
- output: :func:`info`, :func:`warn`, :func:`emit_json`, :func:`progress`;
- the repository: :func:`open_repo` (once per invocation),
  :func:`resolve_startpoint`, and the :func:`writer` and :func:`reader` checkouts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import click

from .render import PROG, conflict_headline, conflict_lines, plural

if TYPE_CHECKING:
    from ..checkout import ReaderCheckout, WriterCheckout
    from ..refs import Startpoint
    from ..repository import Repository

QUIET_KEY = "hangar_git.quiet"
REPO_KEY = "hangar_git.repo"
DEBUG_ENV = "HANGAR_GIT_DEBUG"
SHORT = 8  # digits of a commit hash shown in messages
REDRAW_SECONDS = 0.1  # a progress bar is redrawn at most this often
COMPLETE_VAR = "_GIT_HANGAR_COMPLETE"  # click's shell completion (docs/reference/cli.md)

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: where commands are listed in the help (commands not named here go under "Other")
SECTIONS: dict[str, tuple[str, ...]] = {
    "Start a repository": ("init", "clone"),
    "Stage and commit": ("status", "add", "rm", "meta", "commit", "reset", "checkout"),
    "History and data": ("log", "summary", "diff", "ls", "show", "export"),
    "Branch and merge": ("branch", "tag", "merge", "cherry-pick", "revert"),
    "Rewrite": ("schema", "purge"),
    "Collaborate": ("remote", "push", "fetch", "pull", "fetch-data"),
    "Maintenance": ("lock", "fsck", "gc", "help"),
}


# ---- errors --------------------------------------------------------------------
class CLIError(click.ClickException):
    """An error reported as ``error: <message>`` (plus optional detail lines).

    Parameters
    ----------
    message : str
        The error, on one line (line breaks are joined).
    details : list of str, optional
        Lines printed after it, as they are.
    """

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []

    def show(self, file: Any = None) -> None:
        """Print the error and its details on stderr."""
        click.echo(f"error: {one_line(self.format_message())}", err=True)
        for line in self.details:
            click.echo(line, err=True)


def one_line(text: str) -> str:
    """``text`` with its lines stripped and joined by spaces."""
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    return one_line(text) or type(exc).__name__


def translate(exc: Exception) -> CLIError:
    """The one-line error a user sees for an exception raised by the library.

    Parameters
    ----------
    exc : Exception
        Raised while a command ran.

    Returns
    -------
    CLIError
        Merge conflicts with their list, the writer lock with its holder,
        errors of the library with their message, anything else as an
        internal error.
    """
    from ..errors import HangarError, MergeConflictError, NotInitializedError, WriterLockError

    if isinstance(exc, MergeConflictError):
        return CLIError(_conflict_headline(exc), conflict_lines(exc.conflicts))
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
    return conflict_headline("merge", getattr(exc, "conflicts", None), retry="merge with")


def holder_text(holder: dict[str, Any] | None) -> str:
    """``pid P on HOST (user U, since T)`` for a writer lock holder, or ``another process``."""
    if holder is None:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
    return f"pid {holder['pid']} on {holder['host']} (user {holder['user']}, since {since})"


def _lock_message(exc: Exception) -> str:
    holder = None
    repo = _current_repo()
    if repo is not None:
        holder = repo.writer_lock_holder()
    return (
        f"the writer lock is held by {holder_text(holder)}: a write checkout is open there. "
        "Close it; only if that process is gone for good, run `git hangar lock release --force`"
    )


# ---- the command classes ------------------------------------------------------------
def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[QUIET_KEY] = True


def quiet_option() -> click.Option:
    """A new ``-q/--quiet`` option (it sets the flag :func:`is_quiet` reads)."""
    return click.Option(
        ["-q", "--quiet"],
        is_flag=True,
        expose_value=False,
        callback=_set_quiet,
        help="No progress bars or informational messages.",
    )


def _ensure_quiet(cmd: click.Command) -> None:
    if not any("--quiet" in getattr(p, "opts", ()) for p in cmd.params):
        cmd.params.append(quiet_option())
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _ensure_quiet(sub)


class HangarGroup(click.Group):
    """A click group whose commands all take ``-q`` and list in sections."""

    group_class = type  # subgroups are HangarGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Add ``cmd`` (and its subcommands) with a ``-q`` option."""
        _ensure_quiet(cmd)
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands in the order they were added."""
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands of the help: in :data:`SECTIONS` for the root, else in one list."""
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
        """True for the root group's context (the one whose help has sections)."""
        return ctx.parent is None


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    click.echo(f"warning: {one_line(str(message))}", err=True)


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
        """Run a command line; standalone, exit with 0, 1 (error), 2 (usage) or 130."""
        prog_name = prog_name or PROG
        complete_var = complete_var or COMPLETE_VAR
        if os.environ.get(complete_var):  # click's shell completion: for the `git-hangar` word
            prog_name = "git-hangar"
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
            click.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
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
            err = translate(exc)
            err.show()
            code = err.exit_code
        sys.exit(code)


# ---- output ----------------------------------------------------------------------------
def is_quiet() -> bool:
    """True when ``-q/--quiet`` was given."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(QUIET_KEY))


def info(message: str) -> None:
    """Print an informational line on stdout unless ``--quiet``."""
    if not is_quiet():
        click.echo(message)


def warn(message: str) -> None:
    """Print ``warning: ...`` on stderr unless ``--quiet``."""
    if not is_quiet():
        click.echo(f"warning: {message}", err=True)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (tuples and sets as lists, numpy scalars as numbers)."""
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--json`` option (as ``as_json``) of a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def identity_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--name`` and ``--email`` options (as ``user_name``, ``user_email``)
    of a command that makes commits in a new repository."""
    f = click.option(
        "--email",
        "user_email",
        metavar="EMAIL",
        help="Author email for commits (default: git config user.email).",
    )(f)
    return click.option(
        "--name",
        "user_name",
        metavar="NAME",
        help="Author name for commits (default: git config user.name).",
    )(f)


@contextlib.contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], Any]]:
    """A progress bar on stderr when it is a terminal; silent when piped or ``--quiet``.

    Parameters
    ----------
    length : int
        Steps to the end.
    label : str
        Shown before the bar.

    Yields
    ------
    callable
        ``update(n)``: ``n`` more steps done.
    """
    if is_quiet() or length <= 0 or not isatty(sys.stderr):
        yield _no_progress
        return
    with click.progressbar(
        length=length, label=label, file=sys.stderr, show_pos=True, show_eta=True, width=30
    ) as bar:
        pending = [0, time.monotonic()]

        def update(n: int = 1) -> None:
            # redrawn at most 10 times a second, not once per item
            pending[0] += n
            if time.monotonic() - pending[1] >= REDRAW_SECONDS:
                bar.update(int(pending[0]))
                pending[:] = [0, time.monotonic()]

        yield update
        if pending[0]:
            bar.update(int(pending[0]))


def _no_progress(n: int = 1) -> None:
    """Progress callback that shows nothing."""


def isatty(stream: Any) -> bool:
    """True when ``stream`` is a terminal (False for anything without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def short(sha: str | None) -> str:
    """The first digits of a commit hash, or ``(none)``."""
    return sha[:SHORT] if sha else "(none)"


_PHASES = {"records": "records", "payloads": "payloads (bytes)"}


class ProgressBars:
    """A progress callback ``(phase, done, total)`` of a transfer: one bar per phase
    (see :func:`progress`), used as a context manager around the transfer."""

    def __init__(self, verb: str) -> None:
        self._verb = verb
        self._stack = contextlib.ExitStack()
        self._bars: dict[str, tuple[Callable[[int], Any], list[int]]] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            label = f"{self._verb} {_PHASES.get(phase, phase)}"
            update = self._stack.enter_context(progress(total, label))
            bar = self._bars[phase] = (update, [0])
        update, last = bar
        if done > last[0]:
            update(done - last[0])
            last[0] = done

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


# ---- the repository ------------------------------------------------------------------------
_OPENED: list[Repository] = []  # the repository this invocation opened (for error messages)


def _current_repo() -> Repository | None:
    return _OPENED[-1] if _OPENED else None


def repo_path() -> str:
    """Where the repository is looked for: ``$GIT_DIR``, else the current directory."""
    return os.environ.get("GIT_DIR") or os.getcwd()


def new_repo(path: str | os.PathLike[str]) -> Repository:
    """The (maybe not yet initialised) repository at ``path``, without a warning."""
    from ..repository import Repository

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def open_repo() -> Repository:
    """The hangar repository containing the current directory (cached per invocation).

    Returns
    -------
    Repository

    Raises
    ------
    CLIError
        If there is no git repository, or no hangar repository in it.
    """
    ctx = click.get_current_context()
    repo = ctx.meta.get(REPO_KEY)
    if repo is not None:
        return repo
    path = repo_path()
    repo = new_repo(path)
    if not repo.has_git:
        raise CLIError(
            f"not a git repository (nor any parent of {path}): run `git hangar init` to "
            "create one with hangar data"
        )
    if not repo.initialized:
        raise CLIError(
            f"not a hangar repository: {repo.path} has no hangar data; run `git hangar init`"
        )
    ctx.meta[REPO_KEY] = repo
    _OPENED[:] = [repo]
    return repo


def check_branch_exists(repo: Repository, name: str) -> None:
    """Raise unless ``name`` is a valid name of a local branch.

    Raises
    ------
    ValueError
        An invalid branch name.
    CLIError
        No branch of that name.
    """
    from ..naming import check_branch_name

    check_branch_name(name)
    if name not in repo.list_branches():
        raise CLIError(f"no branch named {name!r} (see `git hangar branch`)")


def remote_or_default(repo: Repository, given: str | None, *, required: bool = True) -> str | None:
    """REMOTE as given, else origin, else the only one (else None, or a CLIError saying why)."""
    names = [r.name for r in repo.remote.list_all()] if given is None else [given]
    name = "origin" if "origin" in names else (names[0] if len(names) == 1 else None)
    if name is None and required:
        plain = sorted(n for n in repo.git_repository().remotes.names() if n)
        if names:
            why = f"several remotes ({', '.join(names)}) and none is origin: name one"
        elif plain:  # a `git clone` (or `git remote add`) that hangar does not use yet
            one = "origin" if "origin" in plain else plain[0]
            why = f"git remote {one!r} is not set up for data: `git hangar remote add {one}"
            why += " --data URL` does it"
        else:
            why = "no remote yet: add one with `git hangar remote add NAME GIT_URL --data URL`"
        raise CLIError(why)
    return name


def report_tags(remotes: Any, where: str) -> None:
    """Report the tags the last transfer created, and those it left alone."""
    rep = remotes.last_tags
    if rep is None:
        return
    if rep.added:
        info(f"{plural(len(rep.added), 'tag')} {where}: {', '.join(rep.added)}")
    for name, commit in sorted(rep.kept.items()):
        warn(f"tag {name!r} left as it is: the other side has it at {short(commit)}")


def resolve_startpoint(repo: Repository, spec: str | None) -> Startpoint:
    """Resolve a STARTPOINT: a branch, a tag, ``remote/branch`` or a commit hash prefix.

    Parameters
    ----------
    repo : Repository
        The repository.
    spec : str or None
        What the user typed; None for the head of the staging area's branch.

    Returns
    -------
    Startpoint
        ``commit``, ``branch`` (when one was named) and ``label``.

    Raises
    ------
    CLIError
        Unknown branch or commit, a commit that holds no hangar data, or no
        commit yet.
    """
    from ..refs import StartpointError, UnknownStartpointError

    try:
        return repo.resolve_startpoint(spec)
    except UnknownStartpointError as exc:
        raise CLIError(f"{exc} (see `git hangar branch` and `git hangar tag`)") from None
    except StartpointError as exc:
        raise CLIError(str(exc)) from None


@contextlib.contextmanager
def writer(repo: Repository, branch: str | None = None) -> Iterator[WriterCheckout]:
    """The write checkout on ``branch`` (default: the staging area's branch), closed after."""
    co = cast("WriterCheckout", repo.checkout(write=True, branch=branch or repo.writer_branch))
    try:
        yield co
    finally:
        co.close()


@contextlib.contextmanager
def reader(repo: Repository, commit: str) -> Iterator[ReaderCheckout]:
    """A read checkout of ``commit``, closed after."""
    co = cast("ReaderCheckout", repo.checkout(commit=commit))
    try:
        yield co
    finally:
        co.close()


__all__ = [
    "COMPLETE_VAR",
    "CONTEXT_SETTINGS",
    "CLIError",
    "HangarGroup",
    "RootGroup",
    "SECTIONS",
    "check_branch_exists",
    "emit_json",
    "holder_text",
    "identity_options",
    "info",
    "is_quiet",
    "isatty",
    "json_option",
    "new_repo",
    "one_line",
    "plural",
    "open_repo",
    "progress",
    "ProgressBars",
    "remote_or_default",
    "report_tags",
    "quiet_option",
    "reader",
    "repo_path",
    "resolve_startpoint",
    "short",
    "translate",
    "warn",
    "writer",
]
