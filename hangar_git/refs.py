"""Names to commits: STARTPOINTs, branch heads, and tags.

A STARTPOINT is what a user types to name a commit: a local branch, a tag,
a remote-tracking branch ``remote/branch``, or a commit hash (a unique prefix
is enough), looked up in that order, optionally followed by git's ancestry
suffixes (``master~2``, ``v1^``, ``dev^2``). Branch and tag names may have parts
(``feature/x``). Tags are ``refs/hangar/tags/<name>``: a fixed name for a
commit, never moved by a commit or merge. The functions here take the pygit2
repository; the public way in is through :class:`hangar_git.Repository`
(:meth:`~hangar_git.Repository.resolve_startpoint`,
:meth:`~hangar_git.Repository.branch_heads`,
:meth:`~hangar_git.Repository.branch_commit`, the tag methods). Only the tag
functions write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

from .errors import HangarError
from .gitutil import HEADS, REMOTES, branch_head, list_branches, ref_commit, resolve_commit
from .naming import check_branch_name, check_remote_name, check_tag_name

if TYPE_CHECKING:
    import pygit2

SHORT = 8  # digits of a commit hash in labels and messages
TAGS = "refs/hangar/tags/"
#: a STARTPOINT's ancestry suffixes (``~N`` first parent N times, ``^N`` the
#: Nth parent; no digits means 1): branch and tag names never hold ``~`` or ``^``
_ANCESTRY = re.compile(r"(?P<base>[^~^]+)(?P<steps>(?:[~^][0-9]{0,6})+)")
_STEP = re.compile(r"([~^])([0-9]*)")


class StartpointError(HangarError, LookupError):
    """A STARTPOINT that names no commit to read."""


class NoCommitsError(StartpointError):
    """The branch exists (or is the staging area's) but has no commit yet."""


class UnknownStartpointError(StartpointError):
    """Neither a branch (local or remote-tracking) nor a commit of this repository."""


class NotDataCommitError(StartpointError):
    """A git commit that holds no hangar data (no ``hangar.json`` in its tree)."""


@dataclass(frozen=True)
class Startpoint:
    """A resolved STARTPOINT: the commit, and the branch name when one was given.

    Attributes
    ----------
    commit : str
        Full hash of the commit.
    branch : str or None
        The branch (``name`` or ``remote/name``) the commit was reached by,
        None when it was named by its hash.
    """

    commit: str
    branch: str | None

    @property
    def label(self) -> str:
        """The branch name, or the short hash when a commit was named directly."""
        return self.branch if self.branch else self.commit[:SHORT]


@dataclass(frozen=True)
class BranchHead:
    """A branch and the commit at its head.

    Attributes
    ----------
    name : str
        ``name`` for a local branch, ``remote/name`` for a remote-tracking one.
    commit : str or None
        Head commit; None for a branch with no commit yet (``master`` before
        the first commit).
    remote : bool
        True for a remote-tracking branch.
    message : str or None
        The head commit's message when asked for (see :func:`branch_heads`).
    """

    name: str
    commit: str | None
    remote: bool
    message: str | None = None


def branch_startpoint(git: pygit2.Repository, branch: str) -> Startpoint:
    """The head of local ``branch`` as a STARTPOINT.

    Raises
    ------
    NoCommitsError
        If the branch has no commit yet.
    CorruptRecordError
        If the branch ref is damaged.
    """
    head = branch_head(git, branch)
    if head is None:
        raise NoCommitsError(f"branch {branch!r} has no commits yet")
    return Startpoint(head, branch)


def resolve_startpoint(git: pygit2.Repository, spec: str) -> Startpoint:
    """Resolve a branch name (local), a tag, ``remote/branch`` or a commit hash prefix,
    then its ancestry suffixes, if any: ``~N`` (the first parent, N times) and
    ``^N`` (the Nth parent; ``^0`` the commit itself), N being 1 when left out.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the hangar refs.
    spec : str
        What the user typed.

    Returns
    -------
    Startpoint
        The commit, with the branch name when ``spec`` named a branch (no
        suffix).

    Raises
    ------
    UnknownStartpointError
        If ``spec`` is no branch and no commit of this repository, or a
        suffix asks for a parent that is not there.
    NotDataCommitError
        If ``spec`` names a commit that holds no hangar data.
    """
    m = _ANCESTRY.fullmatch(spec) if isinstance(spec, str) else None
    if m is not None:
        try:
            base = resolve_startpoint(git, m["base"]).commit
        except UnknownStartpointError:
            raise UnknownStartpointError(f"unknown branch, tag or commit {spec!r}") from None
        sha = _ancestor(git, base, m["steps"], spec)
        return Startpoint(_data_commit(git, sha), None)
    for prefix in (HEADS, TAGS, REMOTES):
        try:
            ref = git.references.get(prefix + spec)
        except Exception:  # invalid reference names
            ref = None
        if ref is not None:
            return Startpoint(str(ref.target), spec)
    try:
        sha = resolve_commit(git, spec)
    except ValueError:
        raise UnknownStartpointError(f"unknown branch, tag or commit {spec!r}") from None
    return Startpoint(_data_commit(git, sha), None)


def _data_commit(git: pygit2.Repository, sha: str) -> str:
    """``sha``, if it names a commit holding hangar data (else NotDataCommitError)."""
    commit = git.get(sha)
    if commit is None or "hangar.json" not in commit.tree:
        raise NotDataCommitError(f"commit {sha[:SHORT]} is not a hangar data commit")
    return sha


def _ancestor(git: pygit2.Repository, sha: str, steps: str, spec: str) -> str:
    """The commit ``steps`` (``~2^``...) away from ``sha``, as ``git rev-parse`` walks."""
    import pygit2  # loaded already: ``git`` is one of its repositories

    for kind, digits in _STEP.findall(steps):
        n = int(digits) if digits else 1
        for _ in range(n if kind == "~" else 1):
            commit = git.get(sha)
            if not isinstance(commit, pygit2.Commit):
                raise UnknownStartpointError(f"{spec!r}: {sha[:SHORT]} is not a commit")
            parents = commit.parent_ids
            pick = 1 if kind == "~" else n
            if pick == 0:  # ``^0``: the commit itself
                break
            if len(parents) < pick:
                raise UnknownStartpointError(
                    f"unknown branch, tag or commit {spec!r}: commit {sha[:SHORT]} "
                    f"has {len(parents)} parent{'s' if len(parents) != 1 else ''}"
                )
            sha = str(parents[pick - 1])
    return sha


def branch_heads(
    git: pygit2.Repository, local: list[str], *, messages: bool = False
) -> list[BranchHead]:
    """The ``local`` branches with their heads, then every remote-tracking branch.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the hangar refs.
    local : list of str
        Names of the local branches, in the order to list them.
    messages : bool
        Also read each head commit's message (without its code trailer).

    Returns
    -------
    list of BranchHead
        Local branches first, in the given order; then remote-tracking ones, sorted.

    Raises
    ------
    CorruptRecordError
        If a local branch ref is damaged.
    """
    from .history import commit_spec

    remotes = [b for b in list_branches(git, remotes=True) if b not in set(local)]
    out: list[BranchHead] = []
    for name, remote in [(b, False) for b in local] + [(b, True) for b in remotes]:
        if remote:
            ref = git.references.get(REMOTES + name)
            head = str(ref.target) if ref is not None else None
        else:
            head = branch_head(git, name)
        message = None
        if messages and head:
            message = commit_spec(git.get(head))["commit_message"]  # type: ignore[arg-type]
        out.append(BranchHead(name, head, remote, message))
    return out


@overload
def branch_commit(git: pygit2.Repository, name: str, *, required: Literal[True] = ...) -> str: ...
@overload
def branch_commit(git: pygit2.Repository, name: str, *, required: bool) -> str | None: ...
def branch_commit(git: pygit2.Repository, name: str, *, required: bool = True) -> str | None:
    """Head commit of local branch ``name``, or of remote-tracking ``remote/branch``.

    Parameters
    ----------
    git : pygit2.Repository
        The repository holding the hangar refs.
    name : str
        ``branch`` (which may have parts, ``feature/x``) or ``remote/branch``;
        a local branch of that name comes first.
    required : bool
        Raise when no such branch has a commit (default); else return None.

    Returns
    -------
    str or None
        The head commit; None (only when not ``required``) for no such branch
        or no commit on it.

    Raises
    ------
    ValueError
        If the name is invalid, or (``required``) names no branch with commits.
    CorruptRecordError
        If the ref is damaged.
    """
    if not isinstance(name, str):
        raise ValueError(f"branch name must be str, not {type(name).__name__}: {name!r}")
    check_branch_name(name)
    sha = branch_head(git, name)
    missing = f"no branch named {name!r} with commits"
    if sha is None and "/" in name and git.references.get(HEADS + name) is None:
        # not a local branch (they come first, as in git): a remote-tracking one
        check_remote_name(name.partition("/")[0])
        sha = ref_commit(git, REMOTES + name)
        missing = f"no branch or remote-tracking branch named {name!r}"
    if sha is None and required:
        raise ValueError(missing)
    return sha


# ---- tags ------------------------------------------------------------------------------
def tag_ref(name: str) -> str:
    """``refs/hangar/tags/<name>`` for a valid tag name (ValueError otherwise)."""
    return TAGS + check_tag_name(name)


def ref_name_clash(git: pygit2.Repository, prefix: str, name: str) -> str | None:
    """The existing ref under ``prefix`` that ``name`` cannot sit beside, if any.

    git keeps refs as paths: ``feature`` and ``feature/x`` cannot both exist.

    Returns
    -------
    str or None
        The clashing name (without ``prefix``), or None.
    """
    for ref in git.references:
        if not ref.startswith(prefix):
            continue
        other = ref[len(prefix) :]
        if other.startswith(name + "/") or name.startswith(other + "/"):
            return other
    return None


def check_new_branch(git: pygit2.Repository, name: str) -> None:
    """Raise unless branch ``name`` can be created: a valid name, free, and no clash.

    Raises
    ------
    ValueError
        An invalid name, a branch of that name exists, or it clashes with
        another branch (git keeps ``feature`` and ``feature/x`` as paths:
        not both).
    """
    check_branch_name(name)
    if git.references.get(HEADS + name) is not None:
        raise ValueError(f"a branch named {name!r} already exists")
    clash = ref_name_clash(git, HEADS, name)
    if clash is not None:
        raise ValueError(f"branch name {name!r} clashes with the branch {clash!r}")


def list_tags(git: pygit2.Repository) -> dict[str, str]:
    """``{tag: commit}`` of every tag, sorted by name.

    Raises
    ------
    CorruptRecordError
        If a tag ref is damaged (symbolic, or not on a commit).
    """
    names = sorted(r[len(TAGS) :] for r in git.references if r.startswith(TAGS))
    out = {}
    for name in names:
        sha = ref_commit(git, TAGS + name)
        if sha is not None:
            out[name] = sha
    return out


def create_tag(git: pygit2.Repository, name: str, commit: str) -> None:
    """Create tag ``name`` at ``commit`` (a full hash of a hangar data commit).

    Raises
    ------
    ValueError
        Invalid name, a tag of that name exists, or the name clashes with
        another tag (``v1`` beside ``v1/rc``).
    """
    import pygit2

    ref = tag_ref(name)
    if git.references.get(ref) is not None:
        raise ValueError(f"a tag named {name!r} already exists (at {ref_commit(git, ref)})")
    clash = ref_name_clash(git, TAGS, name)
    if clash is not None:
        raise ValueError(f"tag name {name!r} clashes with the tag {clash!r}")
    git.references.create(ref, pygit2.Oid(hex=commit))


def remove_tag(git: pygit2.Repository, name: str) -> str:
    """Delete tag ``name``; returns the commit it named.

    Raises
    ------
    ValueError
        Invalid name or no such tag.
    """
    ref = tag_ref(name)
    if git.references.get(ref) is None:
        raise ValueError(f"no tag named {name!r}")
    try:
        sha = ref_commit(git, ref) or ""
    except HangarError:
        sha = ""  # a damaged tag can still be deleted
    git.references.delete(ref)
    return sha


__all__ = [
    "TAGS",
    "BranchHead",
    "NoCommitsError",
    "NotDataCommitError",
    "Startpoint",
    "StartpointError",
    "UnknownStartpointError",
    "branch_commit",
    "branch_heads",
    "branch_startpoint",
    "check_new_branch",
    "create_tag",
    "list_tags",
    "ref_name_clash",
    "remove_tag",
    "resolve_startpoint",
    "tag_ref",
]
