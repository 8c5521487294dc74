"""Branches, tags, history listings and read-only views of a repository.

A layer of :class:`hangar_git.repository.Repository` over
:class:`~hangar_git.repository_core.RepositoryCore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pygit2

from .gitutil import (
    branch_head,
    branch_ref,
    list_branches,
    move_branch,
    ref_commit,
    resolve_commit,
)
from .naming import check_branch_name
from .refs import check_new_branch
from .repository_core import RepositoryCore

if TYPE_CHECKING:
    from .refs import BranchHead, Startpoint


class RepositoryRefs(RepositoryCore):
    """Branches, tags and listings of :class:`~hangar_git.repository.Repository`."""

    # ---- branches ----------------------------------------------------------------
    def list_branches(self) -> list[str]:
        """Names of the local hangar branches (``master`` exists from the start).

        Returns
        -------
        list of str
            Branch names, sorted; ``['master']`` before the first commit.
        """
        git = self._git_repo()
        names = list_branches(git)
        if not names:
            names = ["master"]
        return names

    def create_branch(self, name: str, base_commit: str | None = None) -> str:
        """Create branch ``name`` at ``base_commit`` (default: the writer's branch head).

        Parameters
        ----------
        name : str
            The new branch; parts separated by ``/`` are allowed.
        base_commit : str, optional
            Commit hash (or unique prefix) the branch starts at; default the
            head of the staging area's branch.

        Returns
        -------
        str
            ``name``.

        Raises
        ------
        ValueError
            Invalid name, a branch of that name exists, the name clashes with
            another branch (``feature`` beside ``feature/x``), or no such commit.
        RuntimeError
            If no commit exists yet (nothing to branch from).
        """
        git = self._git_repo()
        check_new_branch(git, name)  # valid, free, and no feature vs feature/x clash
        if base_commit is None:
            sha = branch_head(git, self._writer_branch())
            if sha is None:
                raise RuntimeError("no commit to branch from: make a first commit")
        else:
            sha = resolve_commit(git, base_commit)
        move_branch(git, name, sha, f"hangar branch: created from {sha}")
        return name

    def remove_branch(self, name: str, *, force: bool = False) -> str:
        """Delete branch ``name``; returns the commit it pointed at.

        Refuses to drop work that no other branch holds unless ``force``.

        Parameters
        ----------
        name : str
            The branch to delete.
        force : bool, optional
            Delete it even when its commits are on no other branch (local or
            remote-tracking).

        Returns
        -------
        str
            Hash of the commit the branch pointed at.

        Raises
        ------
        ValueError
            No such branch, it is the writer's branch, or it holds unmerged
            commits and ``force`` is False.
        """
        git = self._git_repo()
        ref = branch_ref(name)
        head = branch_head(git, name)
        if head is None:
            raise ValueError(f"no branch named {name!r}")
        if name == self._writer_branch():
            raise ValueError(
                f"branch {name!r} is the write checkout's branch; check out another first"
            )
        if not force:
            others = [branch_head(git, b) for b in list_branches(git, remotes=True) if b != name]
            target = pygit2.Oid(hex=head)
            held = any(
                o == head or git.descendant_of(pygit2.Oid(hex=o), target) for o in others if o
            )
            if not held:
                raise ValueError(
                    f"branch {name!r} holds commits no other branch contains; merge it or "
                    "pass force=True to delete it anyway"
                )
        git.references.delete(ref)
        return head

    # ---- tags ----------------------------------------------------------------------
    def create_tag(self, name: str, commit: str | None = None) -> str:
        """Tag ``commit`` (default: the current branch's head) as ``name``.

        A tag is a fixed name for a commit (``refs/hangar/tags/<name>``): a
        STARTPOINT everywhere a branch is, never moved by commits or merges,
        carried by push and fetch.

        Parameters
        ----------
        name : str
            The tag; parts separated by ``/`` are allowed (``release/v1``).
        commit : str, optional
            A STARTPOINT: branch, tag, ``remote/branch`` or commit hash prefix.

        Returns
        -------
        str
            The full hash of the tagged commit.

        Raises
        ------
        ValueError
            Invalid name, the tag exists (tags are not moved: remove it
            first), or no such commit.
        """
        from .refs import check_tag_name, create_tag

        check_tag_name(name)
        try:
            sha = self.resolve_startpoint(commit).commit
        except LookupError as exc:
            raise ValueError(str(exc)) from None
        create_tag(self._git_repo(), name, sha)
        return sha

    def list_tags(self) -> dict[str, str]:
        """Every tag and the commit it names.

        Returns
        -------
        dict of str to str
            ``{name: commit hash}``, sorted by name.
        """
        from .refs import list_tags

        return list_tags(self._git_repo())

    def remove_tag(self, name: str) -> str:
        """Delete tag ``name`` (its commits stay on their branches); returns its commit.

        Parameters
        ----------
        name : str
            The tag to delete.

        Returns
        -------
        str
            Hash of the commit the tag named.

        Raises
        ------
        ValueError
            Invalid name or no such tag.
        """
        from .refs import remove_tag

        return remove_tag(self._git_repo(), name)

    def _tag_or_commit(self, spec: str) -> str:
        """The commit of tag ``spec``, else of the commit hash (prefix) ``spec``;
        either, or a branch, with ancestry suffixes (``v1~2``, ``master^``)."""
        from .refs import TAGS, StartpointError, check_tag_name, resolve_startpoint

        git = self._git_repo()
        if isinstance(spec, str) and ("~" in spec or "^" in spec):  # not in tags or hashes
            try:
                return resolve_startpoint(git, spec).commit
            except StartpointError as e:
                raise ValueError(str(e)) from None
        try:
            sha = ref_commit(git, TAGS + check_tag_name(spec))
        except ValueError:  # not a tag name: a commit hash, or nothing
            sha = None
        return sha if sha is not None else resolve_commit(git, spec)

    # ---- history ---------------------------------------------------------------
    def log(
        self,
        branch: str | None = None,
        commit: str | None = None,
        *,
        return_contents: bool = False,
        show_time: bool = False,
        show_user: bool = False,
    ) -> dict | None:
        """Print the commit graph from a branch head or commit (like ``git log --graph``).

        Parameters
        ----------
        branch : str, optional
            Start at this branch's head (local or ``remote/branch``).
        commit : str, optional
            Start at this commit (hash or unique prefix); wins over ``branch``.
            With neither, the head of the staging area's branch.
        return_contents : bool, optional
            Return the graph instead of printing it.
        show_time, show_user : bool, optional
            Also print each commit's time, author.

        Returns
        -------
        dict or None
            With ``return_contents``: ``head``, ``order`` (newest first),
            ``ancestors`` (commit -> parents) and ``specs`` (commit -> time,
            user, email, message, code commit). Otherwise None (the graph is
            printed), and None when there is no commit to start from.

        Raises
        ------
        ValueError
            If no such branch or commit exists.
        """
        from .history import log_contents, render_log

        git = self._git_repo()
        start = self._startpoint(branch, commit)
        if start is None:
            return None
        contents = log_contents(git, start)
        if return_contents:
            return contents
        print(render_log(git, contents, show_time=show_time, show_user=show_user))
        return None

    def _startpoint(self, branch: str | None, commit: str | None) -> str | None:
        git = self._git_repo()
        if commit:
            return resolve_commit(git, commit)
        if branch:
            check_branch_name(branch)
            head = branch_head(git, branch)
            if head is None:
                remote = ref_commit(git, "refs/hangar/remotes/" + branch)
                if remote is not None:
                    return remote
                raise ValueError(f"no branch named {branch!r} with commits")
            return head
        return branch_head(git, self._writer_branch())

    def resolve_startpoint(self, spec: str | None = None) -> Startpoint:
        """The commit a STARTPOINT names: a branch, ``remote/branch`` or commit hash prefix.

        Parameters
        ----------
        spec : str, optional
            What the user typed; None for the head of the staging area's branch.

        Returns
        -------
        Startpoint
            ``commit``, and ``branch`` when a branch was named.

        Raises
        ------
        StartpointError
            (a LookupError) No such branch or commit, a commit without hangar
            data, or a branch with no commit yet.
        """
        from .refs import branch_startpoint, resolve_startpoint

        git = self._git_repo()
        if spec is None:
            return branch_startpoint(git, self._writer_branch())
        return resolve_startpoint(git, spec)

    def branch_heads(self, *, messages: bool = False) -> list[BranchHead]:
        """Every branch with its head commit: local ones, then remote-tracking ones.

        Parameters
        ----------
        messages : bool
            Also read each head commit's message.

        Returns
        -------
        list of BranchHead
        """
        from .refs import branch_heads

        return branch_heads(self._git_repo(), self.list_branches(), messages=messages)

    def branch_commit(self, name: str, *, required: bool = True) -> str | None:
        """Head commit of branch ``name`` (local, or remote-tracking ``remote/branch``).

        Parameters
        ----------
        name : str
            The branch.
        required : bool
            Raise ValueError when no such branch has a commit (default); else
            return None.

        Returns
        -------
        str or None
        """
        from .refs import branch_commit

        return branch_commit(self._git_repo(), name, required=required)

    def branch_labels(self) -> dict[str, list[str]]:
        """The branches (local and remote-tracking) at each commit that has any.

        Returns
        -------
        dict of str to list of str
            Commit hash -> names of the branches whose head it is.
        """
        from .history import branch_labels

        return branch_labels(self._git_repo())

    def log_text(self, commit: str, *, show_time: bool = False, show_user: bool = False) -> str:
        """The commit graph from ``commit``, drawn like ``git log --graph --oneline``.

        Parameters
        ----------
        commit : str
            Full hash of the newest commit to draw.
        show_time, show_user : bool
            Also show each commit's time, author.

        Returns
        -------
        str
            The lines of the graph, with branch names.
        """
        from .history import log_contents, render_log

        git = self._git_repo()
        return render_log(git, log_contents(git, commit), show_time=show_time, show_user=show_user)
