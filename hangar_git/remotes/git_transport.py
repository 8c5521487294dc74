"""Records through git: push and fetch of ``refs/hangar/*`` with pygit2.

Any git remote carries the data history: a bare repository by path, ``git://``,
ssh or https hosts. Pushes use explicit refspecs (libgit2 refuses globs on
push); fetches map ``refs/hangar/heads/*`` of the remote to
``refs/hangar/remotes/<remote>/*`` here. Tags (``refs/hangar/tags/*``) keep
their names on both sides and are never moved by a transfer: a tag that
exists with another commit on the receiving side stays as it is and is
reported (as git does without ``--force``).

A remote that is a local repository (a path, or ``file://``) is pushed to
in-process (:mod:`.git_local`: no ``git`` process, no hooks; libgit2's own
push deltifies and compresses each object again, three to four times
slower on a data set's record trees). It refuses what ``git push`` would
refuse.

Authentication comes from the usual places and nothing is stored by us:
ssh keys through the ssh agent (then the default key files in ``~/.ssh``),
https passwords and tokens through git's credential helpers
(``git credential fill``), or a username/password given for one call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pygit2
from pygit2.enums import CredentialType

from ..errors import HangarError

HEADS = "refs/hangar/heads/"
TAGS = "refs/hangar/tags/"

#: (phase, done, total) progress callback
Progress = Callable[[str, int, int], None]


class PushRejectedError(HangarError, RuntimeError):
    """The remote refused the update of a branch (it holds commits we lack)."""


def remote_tracking_ref(remote: str, branch: str) -> str:
    return f"refs/hangar/remotes/{remote}/{branch}"


# --------------------------------------------------------------------------
# credentials
# --------------------------------------------------------------------------
def _git_credential(action: str, fields: dict[str, str], cwd: str | None) -> dict[str, str]:
    """Run ``git credential <action>`` (fill, approve, reject)."""
    git = shutil.which("git")
    if git is None:
        return {}
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    data = "".join(f"{k}={v}\n" for k, v in fields.items() if v) + "\n"
    try:
        res = subprocess.run(
            [git, "credential", action],
            input=data,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if res.returncode != 0:
        return {}
    out = {}
    for line in res.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def _url_fields(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return {
        "protocol": parts.scheme,
        "host": host,
        "path": parts.path.lstrip("/"),
        "username": parts.username or "",
    }


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials from the usual places, progress reports, push results."""

    MAX_ATTEMPTS = 6

    def __init__(
        self,
        cwd: str | None = None,
        *,
        username: str = "",
        password: str = "",
        progress: Progress | None = None,
    ) -> None:
        super().__init__()
        self._cwd = cwd
        self._username = username
        self._password = password
        self._progress = progress
        self._attempts = 0
        self._ssh_tried: list[str] = []
        self._helper_creds: dict[str, str] | None = None
        self.rejected: dict[str, str] = {}
        self.accepted: list[str] = []

    # ---- credentials ----------------------------------------------------
    def credentials(  # type: ignore[override]
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        self._attempts += 1
        if self._attempts > self.MAX_ATTEMPTS:
            raise pygit2.GitError(f"authentication to {url} failed")
        user = username_from_url or self._username or ""
        if allowed_types & CredentialType.USERPASS_PLAINTEXT:
            if self._password and self._attempts == 1:
                return pygit2.UserPass(self._username or user, self._password)
            if self._helper_creds is None or self._attempts > 1:
                if self._helper_creds:
                    _git_credential("reject", self._helper_creds, self._cwd)
                fields = _url_fields(url)
                if user:
                    fields["username"] = user
                creds = _git_credential("fill", fields, self._cwd)
                if not creds.get("password"):
                    raise pygit2.GitError(
                        f"{url} asks for a password: configure a git credential helper "
                        "(git config credential.helper ...) or pass username/password"
                    )
                self._helper_creds = {**fields, **creds}
            c = self._helper_creds
            return pygit2.UserPass(c.get("username", user), c["password"])
        if allowed_types & CredentialType.SSH_KEY:
            user = user or "git"
            if "agent" not in self._ssh_tried and os.environ.get("SSH_AUTH_SOCK"):
                self._ssh_tried.append("agent")
                return pygit2.KeypairFromAgent(user)
            for key in _default_ssh_keys():
                if str(key) not in self._ssh_tried:
                    self._ssh_tried.append(str(key))
                    pub = key.with_name(key.name + ".pub")
                    return pygit2.Keypair(user, str(pub) if pub.exists() else None, str(key), "")
            raise pygit2.GitError(
                f"ssh authentication to {url} failed: no key accepted (tried "
                f"{', '.join(self._ssh_tried) or 'nothing'}); load your key into ssh-agent"
            )
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(user or "git")
        raise pygit2.GitError(f"no usable credentials for {url}")

    def approve(self) -> None:
        """Tell git's credential helper the credentials it gave worked."""
        if self._helper_creds:
            _git_credential("approve", self._helper_creds, self._cwd)

    # ---- progress and results ---------------------------------------------
    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        if self._progress is not None and stats.total_objects:
            self._progress("records", stats.received_objects, stats.total_objects)

    def push_transfer_progress(
        self, objects_pushed: int, total_objects: int, bytes_pushed: int
    ) -> None:
        if self._progress is not None and total_objects:
            self._progress("records", objects_pushed, total_objects)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message
        else:
            self.accepted.append(refname)


def _default_ssh_keys() -> list[Path]:
    home = Path(os.path.expanduser("~")) / ".ssh"
    return [home / n for n in ("id_ed25519", "id_ecdsa", "id_rsa") if (home / n).exists()]


# --------------------------------------------------------------------------
# operations
# --------------------------------------------------------------------------
def _remote(git: pygit2.Repository, name: str) -> pygit2.Remote:
    try:
        return git.remotes[name]
    except (KeyError, ValueError, pygit2.GitError):
        raise ValueError(f"no git remote named {name!r}") from None


def _connection_error(name: str, url: str | None, exc: Exception) -> ConnectionError:
    return ConnectionError(f"cannot reach git remote {name!r} ({url}): {exc}")


def _advertised(
    remote: pygit2.Remote, name: str, callbacks: Callbacks
) -> list[pygit2.remotes.RemoteHead]:
    """The refs ``remote`` advertises (one round trip); ConnectionError when unreachable."""
    try:
        return list(remote.list_heads(callbacks=callbacks))
    except pygit2.GitError as exc:
        raise _connection_error(name, remote.url, exc) from None


def list_heads(git: pygit2.Repository, name: str, callbacks: Callbacks) -> dict[str, str]:
    """``{ref name: commit hash}`` of the hangar branches the remote advertises."""
    return _hangar_heads(_advertised(_remote(git, name), name, callbacks))


def _hangar_heads(heads: list[pygit2.remotes.RemoteHead]) -> dict[str, str]:
    out = {}
    for h in heads:
        if h.name and h.name.startswith(HEADS):
            out[h.name] = str(h.oid)
    return out


def _hangar_tags(heads: list[pygit2.remotes.RemoteHead]) -> dict[str, str]:
    """The valid tag names among advertised refs (a remote's names are untrusted)."""
    from ..naming import check_tag_name

    out = {}
    for h in heads:
        if h.name and h.name.startswith(TAGS):
            tag = h.name[len(TAGS) :]
            try:
                check_tag_name(tag)
            except ValueError:
                continue
            out[tag] = str(h.oid)
    return out


@dataclass
class TagReport:
    """What a transfer did with tags.

    Attributes
    ----------
    added : list of str
        Tags created on the receiving side.
    kept : dict
        ``{tag: their commit}`` of tags left as they were because the
        receiving side has that tag at another commit.
    """

    added: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)


def fetch_tags(
    git: pygit2.Repository, name: str, callbacks: Callbacks, *, all_tags: bool
) -> TagReport:
    """Create here the remote's tags that are missing, after a fetch of its branches.

    With ``all_tags`` every tag of the remote comes, with the commits it
    needs; else only tags at commits already here (those on fetched
    branches), as ``git fetch`` follows tags. A local tag is never moved.
    """
    remote = _remote(git, name)
    theirs = _hangar_tags(_advertised(remote, name, callbacks))
    report = TagReport()
    want = {}
    for tag, oid in theirs.items():
        ref = git.references.get(TAGS + tag)
        if ref is not None:
            if str(ref.target) != oid:
                report.kept[tag] = oid
            continue
        want[tag] = oid
    missing = [t for t, oid in want.items() if git.get(oid) is None]
    if all_tags and missing:
        try:
            remote.fetch([TAGS + t for t in missing], callbacks=callbacks)
        except pygit2.GitError as exc:
            raise _connection_error(name, remote.url, exc) from None
    for tag, oid in sorted(want.items()):
        obj = git.get(oid)
        if obj is None or obj.type != pygit2.enums.ObjectType.COMMIT:
            continue
        try:
            git.references.create(TAGS + tag, pygit2.Oid(hex=oid))
        except (ValueError, pygit2.GitError):  # clashes with a tag here (v1 beside v1/rc)
            report.kept[tag] = oid
            continue
        report.added.append(tag)
    return report


def tags_at_or_before(git: pygit2.Repository, tags: dict[str, str], head: str) -> dict[str, str]:
    """The ``tags`` (``{tag: commit}``) at ``head`` or its ancestors: those a push of it carries."""
    target = pygit2.Oid(hex=head)
    return {
        t: c for t, c in tags.items() if c == head or git.descendant_of(target, pygit2.Oid(hex=c))
    }


def push_tags(
    git: pygit2.Repository, name: str, tags: dict[str, str], callbacks: Callbacks
) -> TagReport:
    """Send the ``tags`` (``{tag: commit}``) the remote lacks; never move one it has."""
    remote = _remote(git, name)
    theirs = _hangar_tags(_advertised(remote, name, callbacks))
    report = TagReport()
    send = []
    for tag, oid in sorted(tags.items()):
        if tag not in theirs:
            send.append(tag)
        elif theirs[tag] != oid:
            report.kept[tag] = theirs[tag]
    if not send:
        return report
    specs = [f"{TAGS}{t}:{TAGS}{t}" for t in send]
    rejected = _push_local(git, remote, name, specs)
    if rejected is None:
        try:
            remote.push(specs, callbacks=callbacks)
        except pygit2.GitError as exc:
            raise _connection_error(name, remote.url, exc) from None
        rejected = callbacks.rejected
    for t in send:
        if TAGS + t in rejected:
            report.kept[t] = tags[t]
        else:
            report.added.append(t)
    callbacks.approve()
    return report


def list_heads_url(url: str, git: pygit2.Repository, callbacks: Callbacks) -> dict[str, str]:
    """Like :func:`list_heads` for an address that is not a configured remote."""
    remote = git.remotes.create_anonymous(url)
    try:
        heads = remote.list_heads(callbacks=callbacks)
    except pygit2.GitError as exc:
        raise _connection_error("(new)", url, exc) from None
    return _hangar_heads(heads)


def ping(git: pygit2.Repository, name: str, callbacks: Callbacks) -> float:
    """Seconds to connect to the git remote and list its refs."""
    t0 = time.perf_counter()
    list_heads(git, name, callbacks)
    return time.perf_counter() - t0


def fetch(
    git: pygit2.Repository, name: str, branches: list[str] | None, callbacks: Callbacks
) -> dict[str, str]:
    """Fetch hangar branches (all when ``branches`` is None) into tracking refs.

    Returns ``{branch: commit hash}`` of the branches the remote has.
    """
    remote = _remote(git, name)
    if branches is None:
        specs = [f"+{HEADS}*:refs/hangar/remotes/{name}/*"]
    else:
        specs = [f"+{HEADS}{b}:{remote_tracking_ref(name, b)}" for b in branches]
    try:
        remote.fetch(specs, callbacks=callbacks, message=f"hangar: fetch {name}")
        heads = remote.list_heads(connect=False)
    except pygit2.GitError as exc:
        raise _connection_error(name, remote.url, exc) from None
    callbacks.approve()
    return {name[len(HEADS) :]: oid for name, oid in _hangar_heads(heads).items()}


#: words of libgit2's errors for a push the remote refused (not a connection failure)
_REFUSALS = ("fast-forward", "fastforward", "not present locally", "rejected")


def local_repository_path(url: str | None) -> str | None:
    """The directory of a git remote addressed as a local path or ``file://`` URL.

    Parameters
    ----------
    url : str or None
        The remote's (push) URL.

    Returns
    -------
    str or None
        The directory, when it exists; None for any other address (``ssh``,
        ``https``, ``git://``, scp-like ``host:path``).
    """
    if not url:
        return None
    if url.startswith("file://"):
        path = urlsplit(url).path
    elif "://" in url or (":" in url and "/" not in url.split(":", 1)[0]):
        return None  # a URL, or scp-like ssh (git reads "host:path" so)
    else:
        path = url
    # absolute: a directory named like an option ("--upload-pack=...") stays a path
    return os.path.abspath(path) if os.path.isdir(path) else None


def _push_local(
    git: pygit2.Repository, remote: pygit2.Remote, name: str, specs: list[str]
) -> dict[str, str] | None:
    """Push ``specs`` in-process when ``remote`` is a repository on this
    machine (:func:`.git_local.push_refs`); ``{remote ref: why}`` of the refs
    it refused, or None when it is not local (then libgit2 pushes).

    Raises
    ------
    ConnectionError
        If the whole push fails (not a repository, unwritable, an object
        missing here ...).
    """
    path = local_repository_path(remote.push_url or remote.url)
    if path is None:
        return None
    from . import git_local  # (here: only a push to this machine writes packs)

    try:
        return git_local.push_refs(git, path, specs)
    except (pygit2.GitError, OSError, KeyError, ValueError) as exc:
        raise ConnectionError(f"cannot reach git remote {name!r} ({path}): {exc}") from None


def push(git: pygit2.Repository, name: str, branch: str, callbacks: Callbacks) -> None:
    """Push ``refs/hangar/heads/<branch>`` (fast-forward only).

    Raises
    ------
    PushRejectedError
        If the remote holds commits on the branch that are not here.
    ConnectionError
        If the remote cannot be reached.
    """
    remote = _remote(git, name)
    ref = HEADS + branch
    rejected = _push_local(git, remote, name, [f"{ref}:{ref}"])
    if rejected is None:
        try:
            remote.push([f"{ref}:{ref}"], callbacks=callbacks)
        except pygit2.GitError as exc:
            msg = str(exc)
            if any(w in msg for w in _REFUSALS):
                raise PushRejectedError(rejected_message(name, branch, msg)) from None
            raise _connection_error(name, remote.url, exc) from None
        rejected = callbacks.rejected
    if rejected:
        raise PushRejectedError(rejected_message(name, branch, "; ".join(rejected.values())))
    callbacks.approve()


def rejected_message(remote: str, branch: str, detail: str) -> str:
    """The message of a :class:`PushRejectedError`: what was refused and what to do.

    Parameters
    ----------
    remote, branch : str
        The remote and the branch whose push was refused.
    detail : str
        Why (git's words, or ``'non-fast-forward'``).

    Returns
    -------
    str
    """
    return (
        f"push of branch {branch!r} to {remote!r} was rejected ({detail}): the remote has "
        f"commits you do not have. Fetch them (git hangar fetch {remote} {branch}), merge "
        f"{remote}/{branch} into {branch}, then push again"
    )
