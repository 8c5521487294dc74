"""``git hangar``: the command line of hangar-git, built with click.

Every command works on the hangar repository of the git repository that
contains the current directory (or ``$GIT_DIR`` when git sets it). Errors are
one line on stderr (``error: ...``) with exit status 1, usage errors exit
with 2; no traceback is shown (set ``HANGAR_GIT_DEBUG=1`` to see one).

The package is a set of thin command modules over the public API:

- :mod:`~hangar_git.cli.common`: errors, the group classes, output, opening
  the repository; :mod:`~hangar_git.cli.render`: text and JSON forms of diffs
  and conflicts, the manual page. The command modules import only these two
  (and the library), never each other;
- :mod:`~hangar_git.cli.staging` (init, status, add, commit, checkout, reset),
  :mod:`~hangar_git.cli.history` (log, summary, diff, merge),
  :mod:`~hangar_git.cli.branches` (branch, tag),
  :mod:`~hangar_git.cli.data` (show, export),
  :mod:`~hangar_git.cli.samples` (ls, rm, meta),
  :mod:`~hangar_git.cli.remotes` (remote, push, fetch, fetch-data,
  clone), :mod:`~hangar_git.cli.sync` (pull),
  :mod:`~hangar_git.cli.maint` (lock, help, fsck, gc),
  :mod:`~hangar_git.cli.rewrite` (cherry-pick, revert, purge, schema);
- this module builds :data:`main` and names their commands in
  :data:`COMMANDS_AT`; :mod:`~hangar_git.cli.lazy` imports a command's module
  only when the command is looked up, so ``git hangar --version`` imports none
  and ``git hangar status`` one (and the library only where a command uses
  it). Any command added with ``main.add_command(...)`` (or a module's
  ``register(group)``) gets ``-q/--quiet`` and the error handling for free.

``git hangar --help`` is answered by git itself: git turns it into ``git help
hangar``, which shows the manual page ``git-hangar(1)``. That page is
generated from these commands (``git hangar help --man``) and shipped in
``man/man1/git-hangar.1``; ``git hangar -h`` and ``git hangar help
[COMMAND]`` always print the help directly.
"""

from __future__ import annotations

import click

from .._version import __version__
from .common import (
    CONTEXT_SETTINGS,
    SECTIONS,
    CLIError,
    HangarGroup,
    RootGroup,
    open_repo,
    quiet_option,
    resolve_startpoint,
)
from .lazy import LazyCommands
from .render import PROG, manpage

#: command -> ``module:attribute`` of its click command in this package, in the
#: order of the manual page (and of "Other commands" in `git hangar -h`; the
#: sections are in SECTIONS). A module is imported when one of its commands is
#: looked up: `git hangar status` never imports the modules of the others.
COMMANDS_AT: dict[str, str] = {
    "init": "staging:init",
    "status": "staging:status",
    "add": "staging:add",
    "commit": "staging:commit",
    "checkout": "staging:checkout",
    "reset": "staging:reset",
    "log": "history:log",
    "summary": "history:summary",
    "show": "data:show",
    "export": "data:export",
    "ls": "samples:ls",
    "rm": "samples:rm",
    "meta": "samples:meta",
    "branch": "branches:branch",
    "tag": "branches:tag",
    "diff": "history:diff",
    "merge": "history:merge",
    "lock": "maint:lock",
    "help": "maint:help_",
    "remote": "remotes:remote",
    "push": "remotes:push",
    "fetch": "remotes:fetch",
    "fetch-data": "remotes:fetch_data",
    "clone": "remotes:clone",
    "pull": "sync:pull",
    "fsck": "maint:fsck",
    "gc": "maint:gc",
    "cherry-pick": "rewrite:cherry_pick",
    "revert": "rewrite:revert",
    "purge": "rewrite:purge",
    "schema": "rewrite:schema",
}


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"{PROG} version {__version__}")
    ctx.exit(0)


@click.group(
    cls=RootGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog=(
        "STARTPOINT is a branch, a tag, REMOTE/BRANCH or a commit hash (a unique prefix "
        "is enough). "
        "Run `git hangar COMMAND -h` for the options of a command. "
        "`git hangar --help` is routed by git to the manual page git-hangar(1); "
        "`git hangar -h` and `git hangar help` print this help directly."
    ),
)
@click.option(
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


main.params.append(quiet_option())

main.commands = LazyCommands(__name__, COMMANDS_AT, main.add_command)


def render_manpage() -> str:
    """Roff source of the manual page git-hangar(1), generated from the commands.

    ``git hangar --help`` is answered by git with ``man git-hangar``; this
    page (installed as ``share/man/man1/git-hangar.1``) makes it show the
    same help as ``git hangar -h``.

    Returns
    -------
    str
        The page, as shipped in ``man/man1/git-hangar.1``.
    """
    return manpage(main, CONTEXT_SETTINGS["help_option_names"])


__all__ = [
    "CONTEXT_SETTINGS",
    "CLIError",
    "COMMANDS_AT",
    "HangarGroup",
    "PROG",
    "RootGroup",
    "SECTIONS",
    "main",
    "open_repo",
    "render_manpage",
    "resolve_startpoint",
]
