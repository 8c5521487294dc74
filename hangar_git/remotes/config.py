"""Remotes in git config: an ordinary git remote plus the data URL beside it.

A hangar remote named ``origin`` is the git remote ``origin`` (its ``url``
carries the records) with two additions in the same config section::

    [remote "origin"]
        url = git@example.org:team/data.git
        fetch = +refs/heads/*:refs/remotes/origin/*
        fetch = +refs/hangar/heads/*:refs/hangar/remotes/origin/*
        hangar-data = s3://bucket/prefix

so a plain ``git fetch origin`` also brings the data history. Optional
fsspec storage options that are not secrets (an endpoint URL, a region ...)
may sit in ``hangar-data-options`` as JSON; credentials never do: they come
from the environment and each backend's own configuration, as for any other
tool.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import pygit2

from ..naming import check_remote_name

DATA_KEY = "hangar-data"
OPTIONS_KEY = "hangar-data-options"
CREATED_KEY = "hangar-created"
#: set when a remote's data URL changes while commits of it are known here:
#: its commits then say nothing of what the new data URL holds, so the next
#: push offers every payload they reference (see :func:`resend_pending`)
RESEND_KEY = "hangar-data-resend"

#: storage option names refused in git config: they would store secrets in plain text
_SECRET_RE = re.compile(r"key|secret|token|passw|credential|session|auth", re.I)


def hangar_refspec(name: str) -> str:
    """The fetch refspec that maps the remote's hangar branches to tracking refs."""
    return f"+refs/hangar/heads/*:refs/hangar/remotes/{name}/*"


class _RemoteInfoBase(NamedTuple):
    name: str
    address: str


class RemoteInfo(_RemoteInfoBase):
    """``(name, address)`` of a remote, as in the reference; ``data`` is its data URL.

    Unpacks as a two-tuple (``name, address = info``); the data URL is the
    extra attribute ``data`` (None when none is configured).
    """

    data: str | None

    def __new__(cls, name: str, address: str, data: str | None = None) -> RemoteInfo:
        self = super().__new__(cls, name, address)
        self.data = data
        return self

    def __repr__(self) -> str:
        return f"RemoteInfo(name={self.name!r}, address={self.address!r}, data={self.data!r})"


def _section(name: str) -> str:
    return f"remote.{name}."


def _get(cfg: pygit2.Config, key: str) -> str | None:
    try:
        return cfg[key]
    except KeyError:
        return None


def git_remote_url(git: pygit2.Repository, name: str) -> str | None:
    """URL of git remote ``name`` (None when there is no such remote)."""
    return _get(git.config, _section(name) + "url")


def is_hangar_remote(git: pygit2.Repository, name: str) -> bool:
    """True when git remote ``name`` was set up for hangar (refspec or data URL)."""
    cfg = git.config
    if _get(cfg, _section(name) + DATA_KEY) is not None:
        return True
    try:
        specs = list(cfg.get_multivar(_section(name) + "fetch"))
    except KeyError:
        specs = []
    return hangar_refspec(name) in specs


def data_url(git: pygit2.Repository, name: str) -> str | None:
    """The data URL configured for remote ``name``."""
    return _get(git.config, _section(name) + DATA_KEY)


def data_options(git: pygit2.Repository, name: str) -> dict[str, Any]:
    """fsspec storage options configured for remote ``name`` (never secrets)."""
    raw = _get(git.config, _section(name) + OPTIONS_KEY)
    if not raw:
        return {}
    try:
        out = json.loads(raw)
    except ValueError:
        raise ValueError(f"remote.{name}.{OPTIONS_KEY} in git config is not valid JSON")
    if not isinstance(out, dict):
        raise ValueError(f"remote.{name}.{OPTIONS_KEY} in git config must be a JSON object")
    return check_options(out)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate storage options: JSON-able and no credentials.

    Raises
    ------
    ValueError
        If an option name looks like a credential, or a value is not JSON data.
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"data options must be a mapping, not {type(options).__name__}")
    out = {}
    for k, v in options.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"invalid data option name {k!r}")
        _check_no_secret(k, v)
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            raise ValueError(f"data option {k!r} must be JSON data, not {v!r}") from None
        out[k] = v
    return out


def _check_no_secret(path: str, value: Any) -> None:
    """Refuse an option whose name, or a name nested in its value, looks like a credential."""
    name = path.rsplit(".", 1)[-1]
    if _SECRET_RE.search(name):
        raise ValueError(
            f"data option {path!r} looks like a credential: hangar-git stores nothing "
            "secret in git config; give credentials through the environment or the "
            "storage backend's own configuration (e.g. AWS_ACCESS_KEY_ID, ~/.aws)"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_no_secret(f"{path}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_no_secret(path, v)


def check_no_credentials(url: str, what: str) -> None:
    """Refuse a URL that carries a password or a secret query parameter.

    Such a URL would be kept in plain text in git config; credentials come
    from git's credential helpers, the ssh agent, or the storage backend's
    own configuration instead.

    Raises
    ------
    ValueError
        If ``url`` embeds ``user:password@`` or a query parameter named like
        a credential (``token``, ``sig``, ``key`` ...).
    """
    if "://" not in url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return  # not a URL that fsspec or git would split either
    if password:
        raise ValueError(
            f"the {what} embeds a password: hangar-git stores nothing secret in git config. "
            "Give the URL without it (a user name alone is fine); git asks its credential "
            "helper (git config credential.helper) or your ssh agent, data remotes use the "
            "environment or the backend's own configuration (e.g. ~/.aws, ~/.ssh)"
        )
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_RE.search(key) or key.lower() in ("sig", "signature"):
            raise ValueError(
                f"the {what} carries the query parameter {key!r}, a credential: hangar-git "
                "stores nothing secret in git config; give credentials through the "
                "environment or the storage backend's own configuration"
            )


def normalize_data_url(url: object) -> str:
    """Check a data URL; local paths become absolute.

    Raises
    ------
    ValueError
        If it is not a non-empty one-line str, or names an unknown protocol.
    """
    if not isinstance(url, str) or not url.strip() or "\n" in url or "\r" in url:
        raise ValueError(f"data URL must be a non-empty one-line str, not {url!r}")
    url = url.strip()
    if "://" not in url:
        return str(Path(url).expanduser().resolve())
    check_no_credentials(url, "data URL")
    protocol = url.split("://", 1)[0]
    if protocol == "file":
        return "file://" + str(Path(url[len("file://") :]).expanduser().resolve())
    import fsspec  # only for URLs of other filesystems: it costs ~0.1 s

    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ValueError(f"unknown data URL protocol {protocol!r} in {url!r}") from None
    except ImportError:
        pass  # known protocol whose package is not installed: fine until used
    return url


def normalize_address(address: object) -> str:
    """Check a git address; an existing local directory becomes an absolute path."""
    if not isinstance(address, str) or not address.strip() or "\n" in address:
        raise ValueError(f"remote address must be a non-empty one-line str, not {address!r}")
    address = address.strip()
    if "://" not in address and ":" not in address.split("/", 1)[0]:
        p = Path(address).expanduser()
        if p.exists():
            return str(p.resolve())
    return address


def same_address(a: str, b: str) -> bool:
    """Whether two normalized git addresses name the same remote.

    Parameters
    ----------
    a, b : str
        Git addresses, as :func:`normalize_address` returns them.

    Returns
    -------
    bool
        True when the strings are equal, or both are existing paths to the
        same directory.
    """
    if a == b:
        return True
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def add_remote(
    git: pygit2.Repository,
    name: str,
    address: str | None,
    data: str | None,
    options: Mapping[str, Any] | None,
) -> RemoteInfo:
    """Configure hangar remote ``name``; reuses a git remote of that name."""
    check_remote_name(name)
    if data is not None:
        data = normalize_data_url(data)
    opts = check_options(options) if options else None
    existing = git_remote_url(git, name)
    if existing is not None and is_hangar_remote(git, name):
        return _reuse_hangar_remote(git, name, existing, address, data, opts)
    cfg = git.config
    if existing is None:
        if address is None:
            raise ValueError(f"no git remote named {name!r}: give its address")
        address = normalize_address(address)
        check_no_credentials(address, "git address")
        git.remotes.create(name, address)
        cfg[_section(name) + CREATED_KEY] = True
    else:
        if address is not None and not same_address(normalize_address(address), existing):
            raise ValueError(
                f"git remote {name!r} already exists with address {existing!r}; use another "
                "name, or give the same address to reuse it"
            )
        address = existing
    git.remotes.add_fetch(name, hangar_refspec(name))
    if data is not None:
        cfg[_section(name) + DATA_KEY] = data
        if _tracking_refs(git, name):  # added again: its old commits are known here
            cfg[_section(name) + RESEND_KEY] = True
    if opts:
        cfg[_section(name) + OPTIONS_KEY] = json.dumps(opts, sort_keys=True)
    return RemoteInfo(name, address, data)


def _reuse_hangar_remote(
    git: pygit2.Repository,
    name: str,
    existing: str,
    address: str | None,
    data: str | None,
    opts: dict[str, Any] | None,
) -> RemoteInfo:
    """``add`` of a hangar remote that exists: fill in a missing data URL, else refuse.

    A clone without ``--data`` leaves ``origin`` with no data URL; adding it
    again with ``--data`` sets it. Anything that would change what is set
    (another address, another data URL) is refused and nothing changes.
    """
    current = data_url(git, name)
    same = address is None or same_address(normalize_address(address), existing)
    if not same or data is None or (current is not None and current != data):
        raise ValueError(
            f"a remote named {name!r} already exists ({existing}, data "
            f"{current or '(none)'}): set its data URL with `git hangar remote set-data "
            f"{name} URL`, or remove it first to change its address"
        )
    return set_data(git, name, data, opts)


def set_data(
    git: pygit2.Repository,
    name: str,
    data: str,
    options: Mapping[str, Any] | None = None,
) -> RemoteInfo:
    """Set (or replace) the data URL, and the storage options when given, of remote ``name``.

    Raises
    ------
    ValueError
        No such hangar remote, or an invalid URL or option; then nothing changes.
    """
    check_remote_name(name)
    url = normalize_data_url(data)
    opts = check_options(options) if options else None
    address = git_remote_url(git, name)
    if address is None or not is_hangar_remote(git, name):
        raise ValueError(f"no remote named {name!r}")
    old = data_url(git, name)
    cfg = git.config
    cfg[_section(name) + DATA_KEY] = url
    if old is not None and old != url:
        cfg[_section(name) + RESEND_KEY] = True
    if opts:
        cfg[_section(name) + OPTIONS_KEY] = json.dumps(opts, sort_keys=True)
    return RemoteInfo(name, address, url)


def _tracking_refs(git: pygit2.Repository, name: str) -> list[str]:
    return [r for r in git.references if r.startswith(f"refs/hangar/remotes/{name}/")]


def resend_pending(git: pygit2.Repository, name: str) -> bool:
    """Whether remote ``name``'s data URL changed since its commits were known here.

    Parameters
    ----------
    git : pygit2.Repository
        The local repository.
    name : str
        The remote.

    Returns
    -------
    bool
        True until a push has offered the new data URL every payload of the
        remote's known commits (:func:`clear_resend`).
    """
    return _get(git.config, _section(name) + RESEND_KEY) in ("true", "1", "yes", "on")


def clear_resend(git: pygit2.Repository, name: str) -> None:
    """Forget the mark of :func:`resend_pending` once a push has resent all.

    Parameters
    ----------
    git : pygit2.Repository
        The local repository.
    name : str
        The remote.
    """
    try:
        del git.config[_section(name) + RESEND_KEY]
    except (KeyError, pygit2.GitError):
        pass


def remove_remote(git: pygit2.Repository, name: str) -> RemoteInfo:
    """Drop hangar remote ``name``; its remote-tracking branches stay.

    A git remote that existed before it was added for hangar keeps its URL
    and its own refspecs: only hangar's settings go.
    """
    check_remote_name(name)
    url = git_remote_url(git, name)
    if url is None or not is_hangar_remote(git, name):
        raise ValueError(f"no remote named {name!r}")
    info = RemoteInfo(name, url, data_url(git, name))
    cfg = git.config
    created = _get(cfg, _section(name) + CREATED_KEY) in ("true", "1", "yes", "on")
    if created:
        # libgit2 deletes a remote's tracking refs with it: keep hangar's
        tracking = {r: git.references[r].target for r in _tracking_refs(git, name)}
        git.remotes.delete(name)
        for ref, target in tracking.items():
            git.references.create(ref, target, force=True)
    else:
        try:
            cfg.delete_multivar(_section(name) + "fetch", r"^\+refs/hangar/")
        except (KeyError, pygit2.GitError):
            pass
        for key in (DATA_KEY, OPTIONS_KEY, RESEND_KEY):
            try:
                del cfg[_section(name) + key]
            except (KeyError, pygit2.GitError):
                pass
    return info


def list_remotes(git: pygit2.Repository) -> list[RemoteInfo]:
    """Every hangar remote, by name."""
    out = []
    for name in sorted(n for n in git.remotes.names() if n):
        if is_hangar_remote(git, name):
            out.append(RemoteInfo(name, git_remote_url(git, name) or "", data_url(git, name)))
    return out
