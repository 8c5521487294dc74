"""gitutil: identity is read from the config files git itself would read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2
import pytest

from hangar_git.gitutil import config_identity, config_identity_outside_repo


def _git_config(path: Path, name: str, email: str) -> None:
    subprocess.run(["git", "config", "-f", str(path), "user.name", name], check=True)
    subprocess.run(["git", "config", "-f", str(path), "user.email", email], check=True)


def test_identity_set_only_in_git_config_global_is_found(tmp_path, monkeypatch):
    # libgit2 does not read GIT_CONFIG_GLOBAL; git does, and so must we
    glob = tmp_path / "elsewhere.gitconfig"
    _git_config(glob, "Ada", "ada@example.org")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    assert config_identity_outside_repo() == ("Ada", "ada@example.org")
    repo = pygit2.init_repository(str(tmp_path / "r"))
    assert config_identity(repo) == ("Ada", "ada@example.org")
    _git_config(Path(repo.path) / "config", "Local", "local@example.org")
    assert config_identity(repo) == ("Local", "local@example.org")  # local wins, as in git


def test_a_home_gitconfig_that_git_config_global_replaces_is_not_read(
    tmp_path, monkeypatch, isolated_git
):
    home_cfg = tmp_path / "home.gitconfig"
    _git_config(home_cfg, "Home", "home@example.org")
    # the search path is restored by the isolated_git fixture
    pygit2.settings.search_path[pygit2.enums.ConfigLevel.GLOBAL] = str(tmp_path)
    (tmp_path / ".gitconfig").write_text(home_cfg.read_text())
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    repo = pygit2.init_repository(str(tmp_path / "r"))
    assert config_identity(repo) == (None, None)
    assert config_identity_outside_repo() == (None, None)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    assert config_identity_outside_repo() == ("Home", "home@example.org")


@pytest.mark.parametrize("where", ["global", "local"])
def test_git_hangar_init_takes_the_identity_git_commit_takes(tmp_path, monkeypatch, where):
    glob = tmp_path / "g.gitconfig"
    glob.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    work = tmp_path / "w"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    target = glob if where == "global" else work / ".git" / "config"
    _git_config(target, "Grace", "grace@example.org")
    monkeypatch.delenv("GIT_AUTHOR_NAME")  # as git commit would see it: config only
    monkeypatch.delenv("GIT_AUTHOR_EMAIL")
    out = subprocess.run(
        ["git", "hangar", "init"], cwd=work, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    import hangar_git

    assert hangar_git.Repository(work).identity() == ("Grace", "grace@example.org")


def test_a_tests_monkeypatch_undo_keeps_the_git_isolation(monkeypatch, isolated_git):
    # tests drop their own patches with monkeypatch.undo(); git must stay isolated
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/elsewhere")
    monkeypatch.undo()
    assert os.environ["GIT_CONFIG_GLOBAL"] == str(isolated_git / ".gitconfig")
    assert os.environ["HOME"] == str(isolated_git) and os.environ["GIT_CONFIG_NOSYSTEM"] == "1"
