"""Cold start stays cheap: what ``import hangar_git`` and a short ``git hangar``
command import, read in fresh processes, so that a
heavy import moved back to the top of a module fails here rather than only
slowing every ``git hangar`` down (issue 18: ``--version`` and ``status``
under 0.25 s; ``benchmarks/bench_cold.py`` times them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: optional or heavy libraries no short command needs
OPTIONAL = {"blosc2", "h5py", "fsspec", "torch", "tensorflow"}
HEAVY = {"numpy", "pygit2", "filelock", *OPTIONAL}


#: runs the script ``argv[2]`` with the arguments after it, then writes the
#: names of every module imported by then to the file ``argv[1]``
PROBE = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write('\\n'.join(sys.modules)))\n"
    "del sys.argv[0]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


#: stands in for the package ``hangar_git.store`` without running its
#: ``__init__`` (which imports every backend, numpy with them): its modules
#: still import, each on its own
def imported(
    tmp_path: Path, script: Path, *args: str, cwd: Path | None = None, prelude: str = ""
) -> set[str]:
    """The modules a fresh interpreter running ``script ARGS`` (after the code
    ``prelude``) imported; it must succeed. Read from ``sys.modules`` at exit:
    ``-X importtime`` misses what ``importlib.import_module`` imports."""
    out = tmp_path / "modules.txt"
    subprocess.run(
        [sys.executable, "-c", prelude + PROBE, str(out), str(script), *args],
        cwd=cwd,
        capture_output=True,
        check=True,
    )
    return set(out.read_text().split())


def snippet(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "snippet.py"
    path.write_text(code)
    return path


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_import_reader_sees_imports(tmp_path):
    code = "import importlib; importlib.import_module('json')"
    mods = imported(tmp_path, snippet(tmp_path, code))
    assert {"json", "json.decoder"} <= mods and "hangar_git" not in mods


def test_import_hangar_git_imports_no_library(tmp_path):
    mods = imported(tmp_path, snippet(tmp_path, "import hangar_git"))
    assert "hangar_git" in mods
    assert not top_level(mods) & HEAVY, top_level(mods) & HEAVY
    assert not {m for m in mods if m.startswith("hangar_git.")} - {
        "hangar_git._version",
        "hangar_git.errors",
    }


def test_every_public_name_is_there_on_first_use():
    code = (
        "import hangar_git\n"
        "from hangar_git import *\n"
        "from hangar_git import Repository, make_torch_dataset, ConflictRecords\n"
        "from hangar_git.repository import Repository as R\n"
        "assert Repository is R and hangar_git.Repository is R\n"
        "assert set(hangar_git.__all__) <= set(dir(hangar_git))\n"
        "missing = [n for n in hangar_git.__all__ if n not in globals()]\n"
        "assert not missing, missing\n"
        "try:\n"
        "    hangar_git.no_such_name\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_name' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_imports_no_command_and_no_library(tmp_path):
    mods = imported(tmp_path, ROOT / "git-hangar", "--version")
    assert "hangar_git.cli" in mods
    assert not top_level(mods) & HEAVY, top_level(mods) & HEAVY
    commands = {"staging", "history", "data", "samples", "branches", "maint", "remotes", "sync"}
    assert not {f"hangar_git.cli.{m}" for m in commands | {"rewrite"}} & mods


def test_status_imports_only_its_command_and_no_optional_library(repo, tmp_path):
    mods = imported(tmp_path, ROOT / "git-hangar", "status", cwd=repo.path)
    assert "hangar_git.cli.staging" in mods and "hangar_git.status" in mods
    assert not top_level(mods) & OPTIONAL, top_level(mods) & OPTIONAL
    never = {
        "hangar_git.cli.history",
        "hangar_git.cli.remotes",
        "hangar_git.checkout",  # (arrays, payloads)
        "hangar_git.remotes",
        "hangar_git.dataloaders",
        "hangar_git.io_formats",
    }
    assert not never & mods, never & mods


def test_status_imports_no_numpy_and_no_store_backend(repo, tmp_path):
    """The staging journal imports ``store.durable``; the store package's
    ``__init__`` loads its names on first use, so that import brings neither
    numpy nor a backend to ``git hangar status``."""
    mods = imported(tmp_path, ROOT / "git-hangar", "status", cwd=repo.path)
    assert "hangar_git.store.durable" in mods
    assert "numpy" not in mods
    assert not {"hangar_git.store.packs", "hangar_git.store.writer"} & mods
    assert imported(tmp_path, snippet(tmp_path, "import hangar_git.schema")).isdisjoint({"numpy"})


def test_a_diff_of_two_commits_imports_no_lock_store_or_key_cache(repo, tmp_path):
    # ``git hangar diff A B`` reads record trees only: no writer lock, payload
    # store, numpy or key cache with its checksum threads (issue 18)
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", prototype=np.zeros(2, np.int64))
    with x:
        for i in range(5):
            x[i] = np.full(2, i, np.int64)
    co.commit("base")
    co.close()
    repo.create_branch("dev")
    co = repo.checkout(write=True, branch="dev")
    co.arraysets["x"][1] = np.full(2, 9, np.int64)
    co.commit("change")
    co.close()
    mods = imported(tmp_path, ROOT / "git-hangar", "diff", "master", "dev", cwd=repo.path)
    assert "hangar_git.diffref" in mods  # the diff ran, from its change log
    never = {
        "filelock",
        "numpy",
        "concurrent.futures",
        "hangar_git.records.key_cache",
        "hangar_git.store.checksum",
        "hangar_git.store.packs",
        "hangar_git.checkout",
    }
    assert not never & mods, never & mods


def test_the_store_package_names_load_on_first_use():
    import hangar_git.store as store

    for name in store.__all__:
        assert getattr(store, name).__name__ == name
    with pytest.raises(AttributeError):
        store.NoSuchThing  # noqa: B018


def test_the_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "hangar_git.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("git hangar version ")


def test_every_command_loads_under_its_name():
    from hangar_git.cli import COMMANDS_AT, main

    assert list(main.commands) == list(COMMANDS_AT)  # listed in order, before any import
    for name in COMMANDS_AT:
        cmd = main.commands[name]
        assert cmd.name == name
        assert any("--quiet" in p.opts for p in cmd.params if isinstance(p, click.Option))


def test_lazy_commands_import_on_lookup_only():
    from hangar_git.cli.lazy import LazyCommands

    prepared: list[str] = []
    group = click.Group("g")
    cmds = LazyCommands(
        "hangar_git.cli",
        {"status": "staging:status", "bogus": "render:PROG"},
        lambda c: prepared.append(c.name or ""),
    )
    group.commands = cmds
    assert list(cmds) == ["status", "bogus"] and "status" in cmds and len(cmds) == 2
    assert cmds.imported() == [] and prepared == []
    assert group.get_command(click.Context(group), "status") is cmds["status"]
    assert prepared == ["status"] and cmds.imported() == ["status"]
    with pytest.raises(TypeError, match="not the click command 'bogus'"):
        cmds["bogus"]
    with pytest.raises(KeyError):
        cmds["nope"]
    extra = click.Command("extra")
    cmds["extra"] = extra
    assert list(cmds) == ["status", "bogus", "extra"] and cmds["extra"] is extra
    del cmds["bogus"]
    assert list(cmds) == ["status", "extra"]


def _push_then_fetch(repo, tmp_path: Path, payloads: int) -> tuple[set[str], set[str]]:
    """The modules a fresh process imports to push ``repo``'s master to a
    bare repository and a folder data remote, and those another imports to
    clone it and fetch-data all ``payloads`` payloads."""
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    data = tmp_path / "data"
    repo.remote.add("origin", str(tmp_path / "origin.git"), data=str(data))
    push = "from hangar_git import Repository\nRepository(%r).remote.push('origin', 'master')\n"
    pushed = imported(tmp_path, snippet(tmp_path, push % repo.path))
    assert any(data.joinpath("packs").iterdir())  # the payloads went
    (tmp_path / "clone").mkdir()
    fetch = (
        "import warnings\n"
        "from hangar_git import Repository\n"
        "warnings.simplefilter('ignore')\n"
        "r = Repository(%r, exists=False)\n"
        "r.clone('C', 'c@example.org', %r, data=%r)\n"
        "r.remote.fetch_data('origin', 'master')\n"
        "assert r.remote.last_report.payloads == %d\n"
    )
    code = fetch % (str(tmp_path / "clone"), str(tmp_path / "origin.git"), str(data), payloads)
    return pushed, imported(tmp_path, snippet(tmp_path, code))


def test_a_push_and_fetch_data_with_a_local_folder_import_no_fsspec(repo, tmp_path):
    """A folder data remote is reached with plain ``os`` calls: neither a push
    to it nor a fetch-data from it pays for importing fsspec (issue 18), and
    fsspec is still imported for a remote that needs it."""
    co = repo.checkout(write=True)
    x = co.arraysets.init_arrayset("x", prototype=np.zeros(3, np.int64))
    x.add_stacked(np.arange(30, dtype=np.int64).reshape(10, 3), list(range(10)))
    co.commit("ten")
    co.close()
    pushed, fetched = _push_then_fetch(repo, tmp_path, 10)
    assert "hangar_git.remotes.transfer" in pushed and "fsspec" not in pushed
    assert "hangar_git.remotes.fetchplan" in fetched and "fsspec" not in fetched
    other = "from hangar_git.remotes.data_remote import DataRemote\nDataRemote('memory://x')\n"
    assert "fsspec" in imported(tmp_path, snippet(tmp_path, other))


def test_a_push_and_fetch_data_of_images_and_labels_import_no_numpy_ma(repo, tmp_path):
    """numpy.ma costs 15-40 ms to import in a fresh process (a plain
    ``np.unique`` or ``np.isin`` imports it) and neither a push nor a
    fetch-data needs it (issue 18): MNIST-like data, images and repeating
    labels, each written in its own commit (two runs of the local index)."""
    rng = np.random.default_rng(0)
    n = 3000
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
    a.add_stacked(rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), list(range(n)))
    co.commit("images")
    b = co.arraysets.init_arrayset("labels", prototype=np.zeros(1, np.int64))
    b.add_stacked(rng.integers(0, 10, (n, 1)).astype(np.int64), list(range(n)))
    co.commit("labels")
    co.close()
    pushed, fetched = _push_then_fetch(repo, tmp_path, n + 10)
    assert "hangar_git.remotes.packsend" in pushed and "numpy.ma" not in pushed
    assert "hangar_git.remotes.fetchplan" in fetched and "numpy.ma" not in fetched
