"""``git hangar init|status|add|commit|checkout|reset``: a repository and its staging area.

Commands of :mod:`hangar_git.cli`; each works on the hangar repository
containing the current directory (``init`` creates it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import complete
from .common import (
    CLIError,
    check_branch_exists,
    emit_json,
    holder_text,
    identity_options,
    info,
    is_quiet,
    json_option,
    new_repo,
    one_line,
    open_repo,
    plural,
    progress,
    remote_or_default,
    repo_path,
    resolve_startpoint,
    short,
    warn,
    writer,
)
from .render import diff_records_json, diff_records_lines, result_json

if TYPE_CHECKING:
    from pathlib import Path

    from ..checkout import WriterCheckout
    from ..io_formats import ArraySource, ImportResult, ScanResult
    from ..repository import Repository
    from ..status import StagedState, Tracking


@click.command()
@identity_options
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete an existing hangar repository here (all its data and history) and start afresh.",
)
@json_option
def init(user_name: str | None, user_email: str | None, overwrite: bool, as_json: bool) -> None:
    """Create a hangar repository in this git repository.

    Creates the git repository first when the current directory is not in
    one. Your git HEAD, index and work tree are left alone.
    """
    repo = new_repo(repo_path())
    if repo.initialized and not overwrite:
        raise CLIError(
            f"a hangar repository already exists in {repo.path}; pass --overwrite to delete "
            "it and start afresh"
        )
    if repo.initialized and repo.writer_lock_held:
        raise CLIError(
            f"cannot overwrite: the writer lock is held by {holder_text(repo.writer_lock_holder())}"
        )
    had_git = repo.has_git
    try:
        hdir = repo.init(user_name=user_name, user_email=user_email, remove_old=overwrite)
    except ValueError as exc:
        if str(exc).startswith("no identity"):
            raise CLIError(
                "no identity for commits: pass --name and --email, or set "
                "`git config user.name` and `git config user.email`"
            ) from None
        raise
    git_dir = repo.git_repository().path
    if as_json:
        emit_json({"path": str(hdir), "git_dir": git_dir, "git_initialized": not had_git})
        return
    if not had_git:  # as `git init` would say it: the user did not ask for it by name
        info(f"Initialized empty Git repository in {git_dir} (no git here yet)")
    info(f"Initialized empty hangar repository in {hdir}")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show the branch, how it stands against its remote, staged changes and writer lock.

    The remote is origin (or the only remote); ahead/behind counts are as of
    the last fetch, pull or push. Staged changes are counted per arrayset. Reads without taking the
    writer lock, so it works while a write checkout is open elsewhere.
    """
    repo = open_repo()
    st = repo.staged_state()
    held = repo.writer_lock_held
    holder = repo.writer_lock_holder() if held else None
    tracking = _tracking(repo, st.branch)
    if as_json:
        emit_json(
            {
                "branch": st.branch,
                "base": st.base,
                "head": st.head,
                "status": "CLEAN" if st.diff.empty else "DIRTY",
                "stale": st.stale,
                "tracking": tracking.__dict__ if tracking is not None else None,
                "writer_lock": {"held": held, "holder": holder},
                "changes": diff_records_json(st.diff),
            }
        )
        return
    where = f"at {short(st.base)}" if st.base else "(no commits yet)"
    click.echo(f"On branch {st.branch} {where}")
    if tracking is not None:
        click.echo(_tracking_line(tracking))
    click.echo("Writer lock: " + (f"held by {holder_text(holder)}" if held else "free"))
    _print_staged(st)


def _tracking(repo: Repository, branch: str) -> Tracking | None:
    """The branch against ``REMOTE/branch`` of its upstream remote (as last fetched)."""
    from ..status import tracking_state

    git = repo.git_repository()
    if not any(git.remotes.names()):  # no git remote, no hangar one: the remotes stay unloaded
        return None
    remote = remote_or_default(repo, None, required=False)
    if remote is None:
        return None
    return tracking_state(git, branch, remote)


def _tracking_line(t: Tracking) -> str:
    """``Your branch is ahead of 'origin/master' by 2 commits.``, as git says it."""
    up = repr(t.upstream)
    if t.ahead and t.behind:
        return (
            f"Your branch and {up} have diverged: {plural(t.ahead, 'commit')} here, "
            f"{t.behind} there (git hangar pull merges them)."
        )
    if t.ahead:
        return f"Your branch is ahead of {up} by {plural(t.ahead, 'commit')} (git hangar push)."
    if t.behind:
        return f"Your branch is behind {up} by {plural(t.behind, 'commit')} (git hangar pull)."
    return f"Your branch is up to date with {up}."


def _print_staged(st: StagedState) -> None:
    """The staged changes part of ``status`` (with a warning when they are stale)."""
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


@click.command()
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
@click.option(
    "--int-keys",
    is_flag=True,
    help="Names that are whole numbers (5.npy) become int keys, as `export` names "
    "int keys. The default when ARRAYSET exists and all its keys are ints.",
)
@json_option
def add(
    arrayset: str,
    paths: tuple[str, ...],
    branch: str | None,
    recursive: bool,
    variable_shape: bool,
    int_keys: bool,
    as_json: bool,
) -> None:
    """Stage arrays from .npy/.npz/HDF5 files into ARRAYSET.

    PATH is a .npy file (key: the file stem), an .npz archive (keys: member
    names), an HDF5 file (keys: dataset paths, '/' as '.'), or a folder of
    such files. The arrayset is created from the first array when it does
    not exist. Every file is checked before anything is staged, and every
    bad one is listed. Keys are str, except with --int-keys (or into an
    arrayset of int keys), so that `export` then `add` keeps int keys ints.
    """
    from ..naming import check_arrayset_name

    check_arrayset_name(arrayset)
    repo = open_repo()
    if branch is not None:
        check_branch_exists(repo, branch)
    scan = _scan(paths, recursive)
    _warn_skipped(scan.skipped)
    previous = repo.writer_branch
    try:
        with writer(repo, branch) as co:
            on = co.branch_name
            res = _import(co, arrayset, scan.sources, int_keys, variable_shape)
    except BaseException:
        if branch is not None and branch != previous and repo.staged_state().diff.empty:
            repo.checkout(write=True, branch=previous).close()  # nothing staged: move back
        raise
    if as_json:
        emit_json({**result_json(res), "total": res.total, "branch": on})
        return
    if on != previous:  # -b moved the staging area: say so, as checkout does
        info(f"Switched to branch {on!r}")
    new = " (new arrayset)" if res.created else ""
    info(
        f"Staged {plural(res.total, 'array')} into {arrayset!r}{new} "
        f"on branch {on}: {res.added} added, {res.replaced} replaced"
        + (f", {res.unchanged} unchanged" if res.unchanged else "")
    )


def _import(
    co: WriterCheckout,
    arrayset: str,
    sources: list[ArraySource],
    int_keys: bool,
    variable_shape: bool,
) -> ImportResult:
    """Stage ``sources`` into ``arrayset`` (int keys where asked or where the
    arrayset has only int keys), with a progress bar; misfits all listed first."""
    from ..io_formats import import_arrays

    if arrayset in co.arraysets:
        keys = list(co.arraysets[arrayset].keys())
        int_keys = int_keys or (bool(keys) and all(isinstance(k, int) for k in keys))
    if int_keys:
        sources = [_int_key(src) for src in sources]
    _refuse_misfits(co, arrayset, sources, variable_shape)
    with progress(len(sources), f"Staging into {arrayset}") as update:
        return import_arrays(co, arrayset, sources, variable_shape=variable_shape, progress=update)


def _refuse_misfits(
    co: WriterCheckout, arrayset: str, sources: list[ArraySource], variable_shape: bool
) -> None:
    """Every array that does not fit ARRAYSET (or, for a new one, the first array),
    listed in one error when there are several (one is import_arrays' own error)."""
    from ..io_formats import ImportConflictError, check_fits, plan_schema

    asets = co.arraysets  # (its get raises KeyError, as [] does)
    a = asets[arrayset] if arrayset in asets else None  # noqa: SIM401
    schema = (a.dtype, tuple(a.shape), a.variable_shape) if a is not None else None
    problems: list[str] = []
    for src in sources:
        try:
            if schema is not None:
                check_fits([src], arrayset, *schema)
            else:
                plan_schema([sources[0], src], variable_shape=variable_shape)
        except ImportConflictError as exc:
            problems.append(one_line(str(exc)))
    if len(problems) > 1:
        raise CLIError(
            f"{plural(len(problems), 'array')} do not fit (listed below); nothing staged",
            [f"  {p}" for p in problems],
        )


def _int_key(src: ArraySource) -> ArraySource:
    """``src`` under the int key its name spells (``'5'`` -> 5; ``'05'`` stays a str)."""
    import dataclasses

    key = src.key
    if isinstance(key, str) and key.isdigit() and str(int(key)) == key:
        return dataclasses.replace(src, key=int(key))  # type: ignore[arg-type]
    return src


def _scan(paths: tuple[str, ...], recursive: bool) -> ScanResult:
    """The arrays of ``paths``; when some inputs are bad, every bad one in one error."""
    from ..io_formats import NotAnArrayError, scan_paths

    try:
        return scan_paths(paths, recursive=recursive)
    except NotAnArrayError:
        problems = _bad_inputs(paths, recursive)
        if len(problems) <= 1:
            raise
        raise CLIError(
            f"{plural(len(problems), 'input')} cannot be imported (listed below); nothing staged",
            [f"  {p}" for p in problems],
        ) from None


def _bad_inputs(paths: tuple[str, ...], recursive: bool) -> list[str]:
    """What is wrong with each input that :func:`scan_paths` would refuse, all of them."""
    from pathlib import Path

    from ..io_formats import SUFFIXES, NotAnArrayError, scan_file

    problems: list[str] = []

    def walk(d: Path) -> int:
        found = 0
        for entry in sorted(d.iterdir(), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                found += walk(entry) if recursive else 0
            elif entry.suffix.lower() in SUFFIXES and entry.is_file():
                found += check(entry)
        return found

    def check(f: Path) -> int:
        try:
            return len(scan_file(f))
        except (NotAnArrayError, OSError) as exc:
            problems.append(one_line(str(exc)))
            return 1

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if not walk(p):
                problems.append(f"{p} holds no array files (.npy, .npz, .h5, .hdf5)")
        else:
            check(p)
    return problems


def _warn_skipped(skipped: list[Path]) -> None:
    """Warn about the files and subfolders ``add`` passed over."""
    if not skipped:
        return
    files = [p for p in skipped if not p.is_dir()]
    dirs = [p for p in skipped if p.is_dir()]
    if files:
        warn(
            f"passed over {plural(len(files), 'file')} not in .npy/.npz/HDF5 format "
            f"(e.g. {files[0]})"
        )
    if dirs:
        warn(f"passed over {plural(len(dirs), 'subfolder')} (e.g. {dirs[0]}); use -r to enter them")


@click.command()
@click.option(
    "-m",
    "--message",
    "messages",
    multiple=True,
    required=True,
    metavar="MSG",
    help="Commit message (several -m make paragraphs).",
)
@json_option
def commit(messages: tuple[str, ...], as_json: bool) -> None:
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
    if as_json:
        emit_json(
            {
                "commit": sha,
                "branch": branch,
                "message": message,
                "changes": diff_records_json(stats.records, names=True),
            }
        )
        return
    info(f"[{branch} {short(sha)}] {message.splitlines()[0]}")
    if not is_quiet():
        for line in diff_records_lines(stats, indent=" "):
            click.echo(line)


@click.command()
@click.argument("branch", metavar="NAME", shell_complete=complete.branches)
@click.argument("startpoint", required=False, shell_complete=complete.startpoints)
@click.option(
    "-b",
    "new_branch",
    is_flag=True,
    help="Create branch NAME (at STARTPOINT, default: the current head) and switch to it.",
)
@json_option
def checkout(branch: str, startpoint: str | None, new_branch: bool, as_json: bool) -> None:
    """Switch the current branch (the staging area's) to NAME.

    With -b, NAME is created first at STARTPOINT (a branch, tag,
    REMOTE/BRANCH or commit). Without -b, a NAME that is no local branch
    but the branch of exactly one remote (origin/NAME) is created from it,
    as git does. Refused while changes are staged on another branch: commit
    or reset them first; then nothing is created.
    """
    repo = open_repo()
    before = repo.writer_branch
    base = None
    if new_branch:
        _check_new_branch(repo, branch)
        base = resolve_startpoint(repo, startpoint).commit
    elif startpoint is not None:
        raise click.UsageError("STARTPOINT is for `checkout -b NAME STARTPOINT`")
    elif branch not in repo.list_branches():
        base = _from_remote(repo, branch)
    st = repo.staged_state()
    if not st.diff.empty and st.branch != branch:
        raise CLIError(
            f"the staging area holds uncommitted changes on branch {st.branch!r}: commit "
            f"or reset them before switching to {branch!r}"
        )
    if base is not None:
        repo.create_branch(branch, base_commit=base)
    elif branch not in repo.list_branches() and branch in repo.list_tags():
        raise CLIError(
            f"{branch!r} is a tag, and the staging area works on branches: "
            f"`git hangar checkout -b NEW-BRANCH {branch}` starts one there"
        )
    check_branch_exists(repo, branch)
    with writer(repo, branch):
        pass
    if as_json:
        emit_json({"branch": branch, "previous": before, "created": base is not None})
    elif before == branch:
        info(f"Already on {branch!r}")
    elif base is not None:
        info(f"Switched to a new branch {branch!r} at {short(base)}")
    else:
        info(f"Switched to branch {branch!r}")


def _from_remote(repo: Repository, name: str) -> str | None:
    """The head of the one remote-tracking branch ``REMOTE/name``, when exactly one exists."""
    from ..naming import check_branch_name

    check_branch_name(name)
    found = [h for h in repo.branch_heads() if h.remote and h.name.split("/", 1)[1] == name]
    if len(found) == 1 and found[0].commit is not None:
        info(f"Branch {name!r} set up from {found[0].name!r}")
        return found[0].commit
    return None


@click.command()
@json_option
def reset(as_json: bool) -> None:
    """Discard all staged changes.

    The staging area returns to the head of its branch.
    """
    repo = open_repo()
    with writer(repo) as co:
        clean = co.diff.status() == "CLEAN"
        branch = co.branch_name
        base = co.commit_hash if clean else co.reset_staging_area()
    if as_json:
        emit_json({"branch": branch, "base": base or None, "discarded": not clean})
    elif clean:
        info("Nothing staged.")
    else:
        info(f"Staging area reset to {short(base) if base else 'an empty branch'}")


def _check_new_branch(repo: Repository, name: str) -> None:
    """Raise (ValueError) unless branch ``name`` can be created in ``repo``."""
    from ..refs import check_new_branch

    check_new_branch(repo.git_repository(), name)


#: the commands of this module, in the order ``git hangar -h`` lists them
COMMANDS: tuple[click.Command, ...] = (init, status, add, commit, checkout, reset)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for cmd in COMMANDS:
        group.add_command(cmd)


__all__ = ["COMMANDS", "add", "checkout", "commit", "init", "register", "reset", "status"]
