"""Shared fixtures: every test runs in temporary directories, with git config
that cannot see the developer's own (global and system config are ignored)."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

_ISOLATED_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point git and pygit2 at an empty home: no user config leaks in.

    With a MonkeyPatch of its own, not the test's ``monkeypatch``: a test that
    calls ``monkeypatch.undo()`` to drop its own patches keeps this isolation.
    """
    home = tmp_path_factory.mktemp("home")
    gcfg = home / ".gitconfig"
    gcfg.write_text("")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gcfg))
    for k, v in _ISOLATED_ENV.items():
        monkeypatch.setenv(k, v)
    saved = {
        level: pygit2.settings.search_path[level]
        for level in (
            pygit2.enums.ConfigLevel.GLOBAL,
            pygit2.enums.ConfigLevel.XDG,
            pygit2.enums.ConfigLevel.SYSTEM,
        )
    }
    for level in saved:
        pygit2.settings.search_path[level] = str(home / "nonexistent")
    try:
        yield home
    finally:
        for level, value in saved.items():
            pygit2.settings.search_path[level] = value
        monkeypatch.undo()


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    d = tmp_path / "repo"
    d.mkdir()
    return d


@pytest.fixture
def repo(repo_path: Path):
    """An initialised hangar repository with an identity."""
    from hangar_git import Repository

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = Repository(repo_path, exists=False)
    r.init(user_name="Test User", user_email="test@example.org")
    yield r
    # close any writer a test left open, so its lock never leaks across tests
    from hangar_git.live_writers import LIVE_WRITERS

    for co in list(LIVE_WRITERS):
        co.close()


@pytest.fixture
def other_repo(tmp_path: Path):
    """A second initialised repository (``tmp_path / "other"``), e.g. the
    receiving side of a push or fetch."""
    from hangar_git import Repository

    (tmp_path / "other").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = Repository(tmp_path / "other", exists=False)
    other.init(user_name="T", user_email="t@example.org")
    return other


@pytest.fixture
def written_repo(repo):
    """A repository with one commit on master: arrayset 'aset' of 10 samples."""
    import numpy as np

    co = repo.checkout(write=True)
    aset = co.arraysets.init_arrayset("aset", shape=(5, 7), dtype=np.float32)
    with aset:
        for i in range(10):
            aset[str(i)] = np.full((5, 7), i, dtype=np.float32)
    co.metadata["about"] = "fixture"
    co.commit("initial")
    co.close()
    return repo


@pytest.fixture
def mine_and_dev(repo):
    """The user's repository of the hostile-records tests: master with arraysets
    'nums' (int64, (2,), int keys 0..4) and 'floats' (float32, (4,), key 0) and
    metadata 'about'; a branch 'dev' at that commit (where the tests plant
    hostile records); then master's own new sample 100."""
    import numpy as np

    co = repo.checkout(write=True)
    nums = co.arraysets.init_arrayset("nums", shape=(2,), dtype=np.int64)
    floats = co.arraysets.init_arrayset("floats", shape=(4,), dtype=np.float32)
    for i in range(5):
        nums[i] = np.array([i, i], np.int64)
    floats[0] = np.ones(4, np.float32)
    co.metadata["about"] = "mine"
    co.commit("base")
    repo.create_branch("dev")
    nums[100] = np.array([100, 100], np.int64)
    co.commit("my own work")
    co.close()
    return repo


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HYPOTHESIS_PROFILE", "default")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    """A test that fails on ``subprocess.run(..., check=True)`` shows what the
    command printed: ``CalledProcessError`` alone says only its exit status."""
    report: pytest.TestReport = yield
    err = call.excinfo.value if call.excinfo is not None else None
    if isinstance(err, subprocess.CalledProcessError):
        for name, text in (("stdout", err.stdout), ("stderr", err.stderr)):
            if isinstance(text, bytes):
                text = text.decode(errors="replace")
            if text:
                report.sections.append((f"output of the failed command ({name})", text))
    return report


@pytest.fixture
def records_only_copy():
    """Make a repository holding another's records but only some payloads."""

    def records_only_copy(src, path, local):
        """Another repository with all of ``src``'s records (git fetch of the hangar
        refs) but only the payloads of ``local`` ({arrayset: {key: array}}): every
        other sample there is a remote reference."""
        from hangar_git import Repository

        path.mkdir()
        dst = Repository(path, exists=False)
        dst.init(user_name="Test User", user_email="test@example.org")
        subprocess.run(
            ["git", "fetch", "-q", src.path, "+refs/hangar/heads/*:refs/hangar/heads/*"],
            cwd=dst.path,
            check=True,
            capture_output=True,
        )
        co = dst.checkout(write=True)  # store those payloads, then drop the staged records
        for name, samples in local.items():
            aset = co.arraysets[name]
            with aset:
                for key, arr in samples.items():
                    aset[key] = arr
        co.reset_staging_area()
        return dst

    return records_only_copy
