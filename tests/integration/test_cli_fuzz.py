"""Hostile command lines: every ``git hangar`` command with random arguments.

Each run must end with exit status 0, 1 (an error: one line ``error: ...``),
2 (a usage error) or 130 (aborted at a prompt), never a traceback; and the
repository stays sound (``fsck`` clean) after all of them. Commands that would
reach the network (clone, push, fetch, fetch-data, remote ping) or write
outside the repository (export -o, help --install-man) are left out.
"""

from __future__ import annotations

import os

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangar_git.cli import CONTEXT_SETTINGS, RootGroup, main, maint

EXCLUDED = {"clone", "push", "fetch", "fetch-data", "remote ping"}
EXCLUDED_OPTS = {"-o", "--output", "--install-man", "--to"}
SETTINGS = settings(
    max_examples=int(os.environ.get("HANGAR_CLI_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def build_group() -> click.Group:
    grp = RootGroup(
        name="git hangar",
        commands=dict(main.commands),
        context_settings=CONTEXT_SETTINGS,
        params=list(main.params),
    )
    if "fsck" not in grp.commands:
        maint.register(grp)
    return grp


GROUP = build_group()


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple]:
    out = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        if " ".join(path) in EXCLUDED:
            continue
        if isinstance(cmd, click.Group):
            out.append((path, cmd))
            out.extend(command_paths(cmd, path))
        else:
            out.append((path, cmd))
    return out


COMMANDS = command_paths(GROUP)
VALUES = [
    "",
    ".",
    "..",
    "/",
    "a/b",
    "\x01",
    "x" * 300,
    "ü",
    "数据",
    ".git",
    "-",
    "--",
    "-x",
    "--bogus",
    "master",
    "dev",
    "nope",
    "0",
    "-1",
    "1e99",
    "deadbeef",
    "0" * 40,
    "HEAD",
    "s:1",
    "a..b",
    "x.lock",
    "origin",
    "/nonexistent/file.npy",
    "data.npy",
    "arr",
    "ours",
    "theirs",
    "npy",
    "h5",
    "--json",
    "-q",
    "-h",
    "a b",
    "\n",
    "%s",
]


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    path, cmd = draw(st.sampled_from(COMMANDS))
    opts = [
        o
        for p in cmd.params
        if isinstance(p, click.Option)
        for o in p.opts
        if o not in EXCLUDED_OPTS
    ]
    tokens = st.one_of(
        st.sampled_from(VALUES),
        st.sampled_from(opts or ["-q"]),
        st.text(max_size=12).filter(lambda s: "\x00" not in s),
    )
    args = draw(st.lists(tokens, max_size=5))
    if any(a in EXCLUDED_OPTS for a in args):
        args = [a for a in args if a not in EXCLUDED_OPTS]
    return [*path, *args]


@pytest.fixture
def cli_repo(repo, monkeypatch):
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("arr", shape=(4,), dtype=np.float32)
    for i in range(5):
        a[i] = np.full(4, i, np.float32)
    co.commit("base")
    co.close()
    repo.create_branch("dev")
    np.save(os.path.join(repo.path, "data.npy"), np.zeros(4, np.float32))
    monkeypatch.chdir(repo.path)
    return repo


@SETTINGS
@given(args=argv())
def test_random_command_lines(cli_repo, args):
    runner = CliRunner()
    res = runner.invoke(GROUP, args, catch_exceptions=True)
    shown = f"git hangar {' '.join(map(repr, args))} -> {res.exit_code}\n{res.output}"
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), (
        f"{shown}\n{res.exception!r}"
    )
    assert res.exit_code in (0, 1, 2, 130), shown
    assert "Traceback" not in res.output, shown
    if res.exit_code == 1:
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, shown


def test_repository_sound_after_fuzzing(cli_repo):
    """A separate pass: many commands in a row, then fsck (through the CLI too)."""
    import random

    rng = random.Random(3)
    runner = CliRunner()
    for _ in range(150):
        path, cmd = rng.choice(COMMANDS)
        opts = [
            o
            for p in cmd.params
            if isinstance(p, click.Option)
            for o in p.opts
            if o not in EXCLUDED_OPTS
        ]
        args = [rng.choice(VALUES + opts) for _ in range(rng.randrange(4))]
        res = runner.invoke(GROUP, [*path, *args])
        assert res.exit_code in (0, 1, 2, 130), res.output
        assert "Traceback" not in res.output
    rep = cli_repo.verify(full=True)
    assert rep.ok, rep.summary()
    res = runner.invoke(GROUP, ["fsck", "--full"])
    assert res.exit_code == 0, res.output
