"""Issue 16, `--json` on the rest of the commands that print state or what they did.

``cherry-pick``, ``revert``, ``schema``, ``purge``, ``show`` and ``lock``
print the fields of the Python results as JSON; merge, cherry-pick and revert
print their conflicts as JSON too (and still fail); an arrayset-only merge
conflict does not suggest a ``--strategy``; ``show X:A/i:5`` reads the key
``i:5``. Run through the installed ``git hangar`` in real git repositories
(the isolated git config of tests/conftest.py), with the ``branched`` fixture
of test_history_cli.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hangar_git.history_tools.purge import PurgeReport

try:
    from .test_cli import assert_one_line_error, hangar, open_repo
    from .test_history_cli import branched
except ImportError:  # run as a top-level module
    from test_cli import assert_one_line_error, hangar, open_repo  # type: ignore[no-redef]
    from test_history_cli import branched  # type: ignore[no-redef]

__all__ = ["branched"]  # the fixture, used here


def jsonout(cwd: Path, *args: str) -> dict:
    return json.loads(hangar(cwd, *args, "--json").stdout)


def test_cherry_pick_and_revert_print_json(branched):
    path = Path(branched.path)
    first, second = branched.dev_commits
    repo = open_repo(path)
    before = repo.branch_commit("master")
    out = jsonout(path, "cherry-pick", second[:10])
    head = repo.branch_commit("master")
    assert head != before
    assert out == {
        "branch": "master",
        "commit": second,
        "before": before,
        "head": head,  # what Repository.cherry_pick returns
        "result": "applied",
    }
    again = jsonout(path, "cherry-pick", second)
    assert again["result"] == "up to date" and again["head"] == again["before"] == head
    # a conflict: the JSON on stdout, the error on stderr, exit status 1, nothing changed
    res = hangar(path, "cherry-pick", first, "--json", ok=False)
    assert res.returncode == 1 and res.stderr.startswith(f"error: cherry-pick of {first[:8]}")
    bad = json.loads(res.stdout)
    assert bad["result"] == "conflict" and bad["head"] == bad["before"] == head
    assert bad["conflicts"]["conflict_found"] is True
    assert bad["conflicts"]["samples"]["imgs"]["t3"] == ["k0"]
    assert repo.branch_commit("master") == head
    rev = jsonout(path, "revert", second)
    assert rev["result"] == "reverted" and rev["commit"] == second and rev["before"] == head
    assert rev["head"] == repo.branch_commit("master") != head


def test_schema_prints_json(branched):
    path = Path(branched.path)
    repo = open_repo(path)
    before = repo.branch_commit("master")
    out = jsonout(path, "schema", "imgs", "--variable-shape", "--max-shape", "8")
    head = repo.branch_commit("master")
    assert out == {
        "branch": "master",
        "arrayset": "imgs",
        "name": "imgs",
        "before": before,
        "head": head,  # what Repository.change_arrayset returns
    }
    renamed = jsonout(path, "schema", "imgs", "--rename", "pictures")
    assert renamed["name"] == "pictures" and renamed["before"] == head
    assert renamed["head"] == repo.branch_commit("master")


def test_purge_prints_every_field_of_the_report(branched):
    path = Path(branched.path)
    repo = open_repo(path)
    heads = {b: repo.branch_commit(b) for b in ("master", "dev")}
    fields = {f.name for f in dataclasses.fields(PurgeReport)}
    dry = jsonout(path, "purge", "imgs", "d1", "--dry-run")
    assert set(dry) == fields | {"push_commands"}
    assert dry["dry_run"] is True and dry["keys"] == ["s:d1"] and dry["arrayset"] == "imgs"
    assert dry["refs"]["refs/hangar/heads/dev"][0] == heads["dev"]
    assert heads["dev"] in dry["commits"]
    assert len(dry["payloads"]) == 1 and bytes.fromhex(dry["payloads"][0])  # a hex digest
    assert {b: repo.branch_commit(b) for b in heads} == heads  # nothing changed
    # the same fields and values as the Python result (a dry run again)
    py = repo.purge("imgs", ["d1"], dry_run=True)
    assert dry["keys"] == py.keys and dry["commits"] == py.commits
    assert dry["payloads"] == sorted(d.hex() for d in py.payloads)
    done = jsonout(path, "purge", "imgs", "d1")
    new_dev = repo.branch_commit("dev")
    assert done["dry_run"] is False and done["refs"]["refs/hangar/heads/dev"] == [
        heads["dev"],
        new_dev,
    ]
    assert done["gc"]["dry_run"] is False and "payloads_removed" in done["gc"]
    assert done["push_commands"] == [
        "git push <remote> +refs/hangar/heads/dev:refs/hangar/heads/dev"
    ]
    nothing = jsonout(path, "purge", "imgs", "d1")
    assert nothing["commits"] == {} and nothing["refs"] == {} and nothing["push_commands"] == []


def test_merge_conflicts_as_json_and_an_arrayset_conflict_needs_no_strategy(branched):
    path = Path(branched.path)
    repo = open_repo(path)
    hangar(path, "branch", "wide")
    hangar(path, "checkout", "wide")
    hangar(path, "schema", "imgs", "--variable-shape", "--max-shape", "8")
    hangar(path, "checkout", "master")
    hangar(path, "schema", "imgs", "--dtype", "int32")
    head = repo.branch_commit("master")
    res = hangar(path, "merge", "wide", ok=False)
    line = res.stderr.splitlines()[0]
    assert "no --strategy resolves arrayset (schema) conflicts" in line, res.stderr
    assert "--strategy ours|theirs" not in line
    assert "  arrayset 'imgs': changed on both sides to different values (t3)" in res.stderr
    res = hangar(path, "merge", "wide", "--strategy", "ours", ok=False)
    assert "never arrayset (schema) conflicts" in res.stderr.splitlines()[0]
    res = hangar(path, "merge", "wide", "--json", ok=False)
    assert res.returncode == 1 and res.stderr.startswith("error: merge of 'wide'")
    out = json.loads(res.stdout)
    assert out["result"] == "conflict" and out["head"] == out["before"] == head
    assert out["conflicts"]["arraysets"]["t3"] == ["imgs"] and out["conflicts"]["samples"] == {}
    assert repo.branch_commit("master") == head
    # sample conflicts still suggest a strategy
    res = hangar(path, "merge", "dev", ok=False)
    assert "resolve them, or merge with --strategy ours|theirs" in res.stderr.splitlines()[0]


def test_show_prints_json_and_reads_an_int_key_after_a_slash(repo):
    path = Path(repo.path)
    co = repo.checkout(write=True)
    big = co.arraysets.init_arrayset("big", shape=(40, 40), dtype=np.float32)
    big[5] = np.arange(1600, dtype=np.float32).reshape(40, 40)
    big["5"] = np.zeros((40, 40), np.float32)
    small = co.arraysets.init_arrayset("small", shape=(2, 3), dtype=np.int64)
    small[5] = np.arange(6, dtype=np.int64).reshape(2, 3)
    cplx = co.arraysets.init_arrayset("cplx", shape=2, dtype=np.complex64)
    cplx["z"] = np.array([1 + 2j, 3 - 1j], np.complex64)
    co.commit("base")
    co.close()
    head = repo.branch_commit("master")
    # b:big/i:5 is the int key 5 of 'big', as b:big:i:5 is
    for spec in ("master:big/i:5", "master:big:i:5"):
        text = hangar(path, "show", spec).stdout
        assert text.startswith("big[5] at master: shape (40, 40), dtype float32"), (spec, text)
        assert "1.599e+03" in text
    assert "big['5'] at master" in hangar(path, "show", "master:big/s:5").stdout
    out = jsonout(path, "show", "master:small/i:5")
    assert out == {
        "startpoint": "master",
        "commit": head,
        "arrayset": "small",
        "key": 5,
        "dtype": "int64",
        "shape": [2, 3],
        "size": 6,
        "truncated": False,
        "data": [[0, 1, 2], [3, 4, 5]],
    }
    assert jsonout(path, "show", ":cplx:z")["data"] == [[1.0, 2.0], [3.0, -1.0]]  # [re, im]
    # an array the text summarises: no data unless --full, and a warning says so
    res = hangar(path, "show", "master:big/i:5", "--json")
    out = json.loads(res.stdout)
    assert out["truncated"] is True and out["data"] is None and out["size"] == 1600
    assert "--full" in res.stderr
    full = jsonout(path, "show", "master:big/i:5", "--full")
    assert np.array_equal(np.array(full["data"], np.float32), np.arange(1600).reshape(40, 40))
    assert hangar(path, "show", "master:big/i:5", "--json", "--npy", ok=False).returncode == 2
    for bad in ("master:big/", "master:/5", "master:big", "big/5"):
        assert hangar(path, "show", bad, ok=False).returncode == 2, bad


def test_show_json_is_strict_json_with_nan_and_infinities(repo):
    path = Path(repo.path)
    co = repo.checkout(write=True)
    f = co.arraysets.init_arrayset("f", shape=(2, 2), dtype=np.float16)
    f["x"] = np.array([[np.nan, 1.5], [np.inf, -np.inf]], np.float16)
    z = co.arraysets.init_arrayset("z", shape=1, dtype=np.complex128)
    z["x"] = np.array([complex(np.nan, -np.inf)])
    co.commit("non-finite")
    co.close()

    def strict(text: str) -> dict:  # json.loads would accept NaN; JSON does not
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))

    out = strict(hangar(path, "show", "master:f/x", "--json").stdout)
    assert out["data"] == [["NaN", 1.5], ["Infinity", "-Infinity"]]
    out = strict(hangar(path, "show", "master:z/x", "--json").stdout)
    assert out["data"] == [["NaN", "-Infinity"]]  # [re, im]


def test_lock_status_and_release_print_json(repo):
    path = Path(repo.path)
    assert jsonout(path, "lock", "status") == {"held": False, "holder": None}
    assert "Writer lock: free" in hangar(path, "lock", "status").stdout
    free = jsonout(path, "lock", "release")
    assert free == {"held": False, "holder": None, "released": False}
    co = repo.checkout(write=True)
    try:
        status = jsonout(path, "lock", "status")
        assert status["held"] is True and status["holder"]["pid"] == os.getpid()
        assert status["holder"] == repo.writer_lock_holder()
        assert f"held by pid {os.getpid()}" in hangar(path, "lock", "status").stdout
        assert_one_line_error(hangar(path, "lock", "release", "--json", ok=False), 1, "--force")
        out = jsonout(path, "lock", "release", "--force")
        assert out["released"] is True and out["held"] is True
        assert out["holder"]["pid"] == os.getpid()
        assert not repo.writer_lock_held
    finally:
        co.close()
