"""Concurrency: one process writes, commits and runs gc in a loop while four reader
processes open checkouts at random commits and check every array they read
against the digest its record names. Zero errors, zero mismatches.

The writer also stages and drops samples before committing (payloads gc then
reclaims) and runs gc with compaction, so readers meet payloads moving to new
packs under their feet. Samples of ``l`` are over the writer's large-payload
threshold: each is a chunked file of its own (``store/large/``), placed and
indexed while readers read, and deleted by gc once dropped. The run lasts
``HANGAR_CONCURRENCY_SECONDS`` (30 s).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hangar_git.store import chunked

SECONDS = float(os.environ.get("HANGAR_CONCURRENCY_SECONDS", "30"))
READERS = 4
#: the writer stores payloads of this many bytes and more as large files
LARGE_THRESHOLD = 256 * 1024
LARGE_SHAPE = (300, 300)  # float32: 360 KB


def gen(n: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(n).random(shape, dtype=np.float32)


def writer(path: str, deadline: float, out: str) -> None:
    warnings.simplefilter("ignore")
    from hangar_git import Repository
    from hangar_git.gc import gc
    from hangar_git.store import chunked

    chunked.THRESHOLD = LARGE_THRESHOLD
    stats = {"commits": 0, "gc": 0, "moved": 0, "removed": 0, "large_deleted": 0, "error": None}
    try:
        repo = Repository(path)
        rng = random.Random(1)
        co = repo.checkout(write=True)
        n = 10_000
        rounds = 0
        while time.time() < deadline:
            s, b, lg = co.arraysets["s"], co.arraysets["b"], co.arraysets["l"]
            with s, b, lg:
                for _ in range(rng.randint(5, 30)):
                    n += 1
                    s[f"k{rng.randrange(400)}"] = gen(n, (64,))
                if rng.random() < 0.5:
                    n += 1
                    b[f"b{rng.randrange(20)}"] = gen(n, (130, 130))
                if rng.random() < 0.3:
                    n += 1
                    lg[f"l{rng.randrange(8)}"] = gen(n, LARGE_SHAPE)
                keys = list(s.keys())
                for k in rng.sample(keys, min(len(keys), rng.randint(0, 5))):
                    del s[k]
            # staged then dropped before the commit: garbage for gc
            n += 1
            s["tmp"] = gen(n, (64,))
            del s["tmp"]
            if rng.random() < 0.1:
                n += 1
                lg["tmp"] = gen(n, LARGE_SHAPE)
                del lg["tmp"]
            co.commit(f"round {rounds}")
            stats["commits"] += 1
            rounds += 1
            if rounds % 15 == 0:
                co.close()
                rep = gc(repo, threshold=0.0, git_objects=rounds % 45 == 0)
                stats["gc"] += 1
                stats["moved"] += rep.payloads_moved
                stats["removed"] += rep.payloads_removed
                stats["large_deleted"] += rep.large_files_deleted
                co = repo.checkout(write=True)
        co.close()
    except BaseException:
        stats["error"] = traceback.format_exc()
    Path(out).write_text(json.dumps(stats))


def reader(path: str, deadline: float, seed: int, out: str) -> None:
    warnings.simplefilter("ignore")
    import pygit2

    from hangar_git import Repository
    from hangar_git.store.digest import array_digest

    stats: dict[str, Any] = {
        "checks": 0,
        "checkouts": 0,
        "mismatches": 0,
        "errors": 0,
        "messages": [],
    }
    rng = random.Random(seed)
    repo = Repository(path)
    git = repo._git_repo()
    while time.time() < deadline:
        try:
            head = git.references["refs/hangar/heads/master"].target
            history = [str(c.id) for c in git.walk(head, pygit2.enums.SortMode.NONE)]
            sha = rng.choice(history)
            co = repo.checkout(commit=sha)
            stats["checkouts"] += 1
            if rng.random() < 0.5:
                # locate every payload up front (as a loader building its index
                # would), then read later: gc may move them in between
                for name in co.arraysets:
                    keys = list(co.arraysets[name].keys())
                    co.payloads.reader.lookup([co.view.get(name, f"s:{k}") for k in keys])
                time.sleep(rng.uniform(0.0, 0.5))
            hold = time.time() + rng.uniform(0.05, 1.0)
            try:
                while time.time() < min(hold, deadline):
                    for name in co.arraysets:
                        pairs = list(co.view.iter_items(name))
                        if not pairs:
                            continue
                        pick = rng.sample(pairs, min(len(pairs), rng.randint(1, 12)))
                        keys = [enc[2:] for enc, _ in pick]
                        arrs = [co.arraysets[name][k] for k in keys]
                        arrs += co.arraysets[name].get_batch(keys)
                        for (_, d), a in zip(pick + pick, arrs, strict=True):
                            stats["checks"] += 1
                            if array_digest(a) != d:
                                stats["mismatches"] += 1
            finally:
                co.close()
        except Exception:
            stats["errors"] += 1
            if len(stats["messages"]) < 5:
                stats["messages"].append(traceback.format_exc())
    Path(out).write_text(json.dumps(stats))


@pytest.mark.slow
def test_readers_while_writing_and_gc(repo, tmp_path):
    co = repo.checkout(write=True)
    s = co.arraysets.init_arrayset("s", shape=(64,), dtype=np.float32)
    b = co.arraysets.init_arrayset("b", shape=(130, 130), dtype=np.float32)
    lg = co.arraysets.init_arrayset("l", shape=LARGE_SHAPE, dtype=np.float32)
    with s, b:
        for i in range(200):
            s[f"k{i}"] = gen(i, (64,))
        b["b0"] = gen(999, (130, 130))
    lg["l0"] = gen(998, LARGE_SHAPE)  # in a pack here; later ones are large files
    co.commit("start")
    co.close()
    ctx = mp.get_context("spawn")
    start = time.time() + 8  # spawned interpreters import hangar-git first
    deadline = start + SECONDS
    procs = [ctx.Process(target=writer, args=(repo.path, deadline, str(tmp_path / "w.json")))]
    procs += [
        ctx.Process(target=reader, args=(repo.path, deadline, i, str(tmp_path / f"r{i}.json")))
        for i in range(READERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=SECONDS + 120)
        assert p.exitcode == 0
    w = json.loads((tmp_path / "w.json").read_text())
    assert w["error"] is None, w["error"]
    rs = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(READERS)]
    checks = sum(r["checks"] for r in rs)
    print(
        f"\n{SECONDS:.0f} s: writer {w['commits']} commits, {w['gc']} gc runs "
        f"({w['moved']} payloads moved, {w['removed']} reclaimed, "
        f"{w['large_deleted']} large files deleted); "
        f"{READERS} readers: {sum(r['checkouts'] for r in rs)} checkouts, {checks} reads "
        f"checked, {sum(r['errors'] for r in rs)} errors, "
        f"{sum(r['mismatches'] for r in rs)} mismatches"
    )
    for r in rs:
        assert r["errors"] == 0, r["messages"]
        assert r["mismatches"] == 0
    assert checks > 1000 and w["commits"] > 10 and w["gc"] >= 1
    assert chunked.LargeFiles(repo._store.large_dir).numbers(), "no large payload was written"
    rep = repo.verify(full=True)
    assert rep.ok, rep.summary()
