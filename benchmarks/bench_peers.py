"""hangar-git beside numpy and Icechunk, step by step, each step in a fresh process.

The figures of issue 18, measured the way users meet them: every step runs in
a new Python process (as a ``git hangar`` command or a new notebook kernel
does), its imports done before the clock starts, on data that earlier
processes wrote. The three tools store the same arrays:

- **numpy**: ``np.save`` of the stacked arrays (``fsync`` ed), ``np.load``
  (or a memmap for slices);
- **Icechunk** (``pip install icechunk``; its rows read ``n/a`` without it):
  zarr arrays in a local-filesystem repository, chunks of 1,000 samples for
  the MNIST set and 10,000 for the small samples, one chunk per large array;
- **hangar-git**: an arrayset per array, the bulk calls (``add_stacked``,
  ``get_batch``, ``read_into``) for the bulk rows and Hangar 0.2's per-key
  calls (``aset[k] = a`` inside ``with aset:``, ``aset[k]``) for the others.

Steps: the MNIST set (``-n`` images of 28x28 uint8 plus int64 labels) written
and committed in bulk and key by key; read all key by key (and again in a
later process, when hangar-git's first read has cached the parsed records on
the machine), in one bulk call, and 10,000 random image+label reads; a branch
with 200 changes committed; the diff of 300 changes between branches (both
tools' ``Repository.diff``: two commits, no checkout or session); ``--small``
small samples (4 float32 each) written and committed in bulk, then a commit of
10 changes and the diff of those 10 changes; 100 arrays of 512x512x3 float32
written (fsync), read back, and 100 corner slices. Icechunk's key-by-key reads
decompress a chunk per key and take minutes at 60,000 keys, so they run on the
first 2,000 keys and are scaled up (marked ``~``).

Prints one table, each row with the ratio to the peer the bar of issue 18
names, and the verdict on each bar. Not a test: figures vary with the
machine's load (printed); compare the ratios, which come from the same run.

Run::

    python benchmarks/bench_peers.py               # 60,000 MNIST, 300,000 small
    python benchmarks/bench_peers.py -n 10000 --small 50000 --repeat 1
    python benchmarks/bench_peers.py --only read --only slices   # some rows
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))

IDENT = {"user_name": "bench", "user_email": "bench@example.com"}
ICE_KEYS = 2000  # Icechunk's key-by-key reads: this many keys, scaled up
RANDOM_READS = 10_000
SMALL_SHAPE = (4,)
LARGE_N, LARGE_SHAPE = 100, (512, 512, 3)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 255, (n, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, (n, 1)).astype(np.int64),
    )


def _changes(n: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(n, count, replace=False)


# ---------------------------------------------------------------- numpy


def np_write(d: Path, n: int, small: int) -> Callable[[], object]:
    images, labels = _mnist(n)

    def run() -> None:
        np.save(d / "images.npy", images)
        np.save(d / "labels.npy", labels)
        _fsync_tree(d)

    return run


def np_read_keys(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        images, labels = np.load(d / "images.npy"), np.load(d / "labels.npy")
        for i in range(len(images)):
            images[i].copy()
            labels[i].copy()

    return run


def np_read_bulk(d: Path, n: int, small: int) -> Callable[[], object]:
    return lambda: (np.load(d / "images.npy"), np.load(d / "labels.npy"))


def np_read_random(d: Path, n: int, small: int) -> Callable[[], object]:
    keys = np.random.default_rng(1).integers(0, n, RANDOM_READS)

    def run() -> None:
        images, labels = np.load(d / "images.npy"), np.load(d / "labels.npy")
        for k in keys:
            images[k].copy()
            labels[k].copy()

    return run


def _large_arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.random(LARGE_SHAPE, dtype=np.float32) for _ in range(LARGE_N)]


def np_large_write(d: Path, n: int, small: int) -> Callable[[], object]:
    arrays = _large_arrays()
    (d / "large").mkdir(exist_ok=True)

    def run() -> None:
        for i, a in enumerate(arrays):
            np.save(d / "large" / f"{i}.npy", a)
        _fsync_tree(d / "large")

    return run


def np_large_read(d: Path, n: int, small: int) -> Callable[[], object]:
    return lambda: [np.load(d / "large" / f"{i}.npy") for i in range(LARGE_N)]


def np_large_slices(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        for i in range(LARGE_N):
            np.load(d / "large" / f"{i}.npy", mmap_mode="r")[:16, :16].copy()

    return run


# ---------------------------------------------------------------- Icechunk


def _ice_repo(d: Path, create: bool = False) -> Any:
    import icechunk

    storage = icechunk.local_filesystem_storage(str(d / "ice"))
    if create:
        return icechunk.Repository.create(storage)
    return icechunk.Repository.open(storage)


def _ice_group(d: Path, branch: str = "main") -> Any:
    import zarr

    session = _ice_repo(d).readonly_session(branch=branch)
    return zarr.open_group(session.store, mode="r")


def ice_write(d: Path, n: int, small: int) -> Callable[[], object]:
    import zarr

    images, labels = _mnist(n)

    def run() -> None:
        repo = _ice_repo(d, create=True)
        session = repo.writable_session("main")
        root = zarr.group(store=session.store)
        a = root.create_array("images", shape=images.shape, chunks=(1000, 28, 28), dtype="uint8")
        b = root.create_array("labels", shape=labels.shape, chunks=(1000, 1), dtype="int64")
        a[:] = images
        b[:] = labels
        session.commit("mnist")

    return run


def ice_write_synced(d: Path, n: int, small: int) -> Callable[[], object]:
    """The bulk write as Icechunk does it, in a repository of its own, then
    its files ``fsync`` ed (as hangar-git's are before its commit returns):
    context for the bulk bar, not a bar."""
    write = ice_write(d, n, small)

    def run() -> None:
        write()
        _fsync_tree(d / "ice")

    return run


def ice_read_keys(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        root = _ice_group(d)
        images, labels = root["images"], root["labels"]
        for i in range(min(n, ICE_KEYS)):
            images[i]
            labels[i]

    return run


def ice_read_bulk(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        root = _ice_group(d)
        root["images"][:], root["labels"][:]

    return run


def ice_read_random(d: Path, n: int, small: int) -> Callable[[], object]:
    keys = np.random.default_rng(1).integers(0, n, RANDOM_READS)[: ICE_KEYS // 2]

    def run() -> None:
        root = _ice_group(d)
        images, labels = root["images"], root["labels"]
        for k in keys:
            images[int(k)]
            labels[int(k)]

    return run


def _ice_branch_changes(
    d: Path, n: int, branch: str, count: int, seed: int
) -> Callable[[], object]:
    import zarr

    idx = _changes(n, count, seed)
    new = np.random.default_rng(seed).integers(0, 255, (count, 28, 28), dtype=np.uint8)

    def run() -> None:
        repo = _ice_repo(d)
        repo.create_branch(branch, snapshot_id=repo.lookup_branch("main"))
        session = repo.writable_session(branch)
        images = zarr.open_group(session.store)["images"]
        for k, a in zip(idx, new, strict=True):
            images[int(k)] = a
        session.commit(f"{count} changes")

    return run


def ice_commit_200(d: Path, n: int, small: int) -> Callable[[], object]:
    return _ice_branch_changes(d, n, "c200", 200, 3)


def ice_prepare_300(d: Path, n: int, small: int) -> Callable[[], object]:
    return _ice_branch_changes(d, n, "d300", 300, 4)


def ice_diff_300(d: Path, n: int, small: int) -> Callable[[], object]:
    return lambda: _ice_repo(d).diff(from_branch="main", to_branch="d300")


def ice_small_write(d: Path, n: int, small: int) -> Callable[[], object]:
    import zarr

    data = np.random.default_rng(5).random((small, *SMALL_SHAPE), dtype=np.float32)

    def run() -> None:
        repo = _ice_repo(d)
        session = repo.writable_session("main")
        root = zarr.open_group(session.store)
        arr = root.create_array(
            "small", shape=data.shape, chunks=(10_000, *SMALL_SHAPE), dtype="float32"
        )
        arr[:] = data
        session.commit("small")

    return run


def ice_small_commit10(d: Path, n: int, small: int) -> Callable[[], object]:
    import zarr

    idx = _changes(small, 10, 6)

    def run() -> None:
        repo = _ice_repo(d)
        repo.create_branch("s10", snapshot_id=repo.lookup_branch("main"))
        session = repo.writable_session("s10")
        arr = zarr.open_group(session.store)["small"]
        for k in idx:
            arr[int(k)] = np.full(SMALL_SHAPE, -1, np.float32)
        session.commit("10 changes")

    return run


def ice_small_diff10(d: Path, n: int, small: int) -> Callable[[], object]:
    return lambda: _ice_repo(d).diff(from_branch="main", to_branch="s10")


def ice_large_write(d: Path, n: int, small: int) -> Callable[[], object]:
    import zarr

    arrays = _large_arrays()

    def run() -> None:
        repo = _ice_repo(d)
        session = repo.writable_session("main")
        root = zarr.open_group(session.store)
        arr = root.create_array(
            "large", shape=(LARGE_N, *LARGE_SHAPE), chunks=(1, *LARGE_SHAPE), dtype="float32"
        )
        for i, a in enumerate(arrays):
            arr[i] = a
        session.commit("large")
        _fsync_tree(d / "ice")

    return run


def ice_large_read(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        arr = _ice_group(d)["large"]
        for i in range(LARGE_N):
            arr[i]

    return run


def ice_large_slices(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        arr = _ice_group(d)["large"]
        for i in range(LARGE_N):
            arr[i, :16, :16]

    return run


# ---------------------------------------------------------------- hangar-git


def _hg_repo(d: Path, exists: bool = True) -> Any:
    from hangar_git import Repository

    return Repository(str(d / "hg"), exists=exists)


def child(step: str, d: Path, n: int, small: int) -> None:
    """Run one step in this (fresh) process and print its seconds as JSON.

    The tool's package is imported first, outside the clock: ``import
    icechunk, zarr``, and hangar-git's public names (``from hangar_git import
    *``, which ``import hangar_git`` loads on first use) with its checkouts;
    what either imports later, on first use, is the step's own cost, as it is
    for a user."""
    if step.startswith("hg_"):
        import hangar_git
        import hangar_git.checkout

        for name in hangar_git.__all__:
            getattr(hangar_git, name)
    elif step.startswith("ice_"):
        import icechunk  # noqa: F401
        import zarr  # noqa: F401
    fn = globals()[step](d, n, small)  # inputs, untimed
    t0 = time.perf_counter()
    fn()
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def hg_write(d: Path, n: int, small: int) -> Callable[[], object]:
    images, labels = _mnist(n)
    (d / "hg").mkdir()

    def run() -> None:
        repo = _hg_repo(d, exists=False)
        repo.init(**IDENT)
        co = repo.checkout(write=True)
        a = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
        b = co.arraysets.init_arrayset("labels", prototype=labels[0])
        a.add_stacked(images, list(range(n)))
        b.add_stacked(labels, list(range(n)))
        co.commit("mnist")
        co.close()

    return run


def hg_write_keys(d: Path, n: int, small: int) -> Callable[[], object]:
    images, labels = _mnist(n)
    (d / "hg").mkdir()

    def run() -> None:
        repo = _hg_repo(d, exists=False)
        repo.init(**IDENT)
        co = repo.checkout(write=True)
        a = co.arraysets.init_arrayset("images", shape=(28, 28), dtype=np.uint8)
        b = co.arraysets.init_arrayset("labels", prototype=labels[0])
        with a, b:
            for i in range(n):
                a[i] = images[i]
                b[i] = labels[i]
        co.commit("mnist")
        co.close()

    return run


def hg_read_keys(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        co = _hg_repo(d).checkout()
        images, labels = co.arraysets["images"], co.arraysets["labels"]
        for i in range(n):
            images[i]
            labels[i]
        co.close()

    return run


def hg_read_bulk(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        co = _hg_repo(d).checkout()
        keys = range(n)
        for name in ("images", "labels"):
            aset = co.arraysets[name]
            read_into = getattr(aset, "read_into", None)
            if read_into is not None:
                out = np.empty((n, *aset.shape), aset.dtype)
                read_into(keys, out)
            else:
                np.stack(aset.get_batch(keys))
        co.close()

    return run


def hg_read_random(d: Path, n: int, small: int) -> Callable[[], object]:
    keys = np.random.default_rng(1).integers(0, n, RANDOM_READS).tolist()

    def run() -> None:
        co = _hg_repo(d).checkout()
        images, labels = co.arraysets["images"], co.arraysets["labels"]
        for k in keys:
            images[k]
            labels[k]
        co.close()

    return run


def _hg_branch_changes(d: Path, n: int, branch: str, count: int, seed: int) -> Callable[[], object]:
    idx = _changes(n, count, seed).tolist()
    new = np.random.default_rng(seed).integers(0, 255, (count, 28, 28), dtype=np.uint8)

    def run() -> None:
        repo = _hg_repo(d)
        repo.create_branch(branch)
        co = repo.checkout(write=True, branch=branch)
        images = co.arraysets["images"]
        with images:
            for k, a in zip(idx, new, strict=True):
                images[k] = a
        co.commit(f"{count} changes")
        co.close()

    return run


def hg_commit_200(d: Path, n: int, small: int) -> Callable[[], object]:
    return _hg_branch_changes(d, n, "c200", 200, 3)


def hg_prepare_300(d: Path, n: int, small: int) -> Callable[[], object]:
    return _hg_branch_changes(d, n, "d300", 300, 4)


def _hg_diff(d: Path, branch: str) -> Callable[[], object]:
    # the commit-to-commit diff a user calls, as Icechunk's Repository.diff:
    # no checkout, no session
    return lambda: _hg_repo(d).diff("master", branch)


def hg_diff_300(d: Path, n: int, small: int) -> Callable[[], object]:
    return _hg_diff(d, "d300")


def hg_small_write(d: Path, n: int, small: int) -> Callable[[], object]:
    data = np.random.default_rng(5).random((small, *SMALL_SHAPE), dtype=np.float32)

    def run() -> None:
        co = _hg_repo(d).checkout(write=True)
        arr = co.arraysets.init_arrayset("small", shape=SMALL_SHAPE, dtype=np.float32)
        arr.add_stacked(data, list(range(small)))
        co.commit("small")
        co.close()

    return run


def hg_small_commit10(d: Path, n: int, small: int) -> Callable[[], object]:
    idx = _changes(small, 10, 6).tolist()

    def run() -> None:
        repo = _hg_repo(d)
        repo.create_branch("s10")
        co = repo.checkout(write=True, branch="s10")
        arr = co.arraysets["small"]
        with arr:
            for k in idx:
                arr[k] = np.full(SMALL_SHAPE, -1, np.float32)
        co.commit("10 changes")
        co.close()

    return run


def hg_small_diff10(d: Path, n: int, small: int) -> Callable[[], object]:
    return _hg_diff(d, "s10")


def hg_large_write(d: Path, n: int, small: int) -> Callable[[], object]:
    arrays = _large_arrays()

    def run() -> None:
        co = _hg_repo(d).checkout(write=True, branch="master")
        arr = co.arraysets.init_arrayset("large", shape=LARGE_SHAPE, dtype=np.float32)
        with arr:
            for i, a in enumerate(arrays):
                arr[i] = a
        co.commit("large")
        co.close()

    return run


def hg_large_read(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        co = _hg_repo(d).checkout()
        arr = co.arraysets["large"]
        for i in range(LARGE_N):
            arr[i]
        co.close()

    return run


def hg_large_slices(d: Path, n: int, small: int) -> Callable[[], object]:
    def run() -> None:
        co = _hg_repo(d).checkout()
        arr = co.arraysets["large"]
        for i in range(LARGE_N):
            arr[(i, slice(0, 16), slice(0, 16))]
        co.close()

    return run


# ---------------------------------------------------------------- driver

#: (row, numpy step, icechunk step, hangar-git step, scale of icechunk's figure)
ROWS: list[tuple[str, str | None, str | None, str | None, str]] = [
    ("MNIST write + commit, bulk", "np_write", "ice_write", "hg_write", ""),
    ("same, key by key (with blocks)", None, None, "hg_write_keys", ""),
    # context: the peer made as durable as hangar-git (no bar of its own)
    ("same, Icechunk's files fsynced (context)", None, "ice_write_synced", None, ""),
    ("read all, key by key", "np_read_keys", "ice_read_keys", "hg_read_keys", "keys"),
    # the same in a later process: hangar-git's parse of the records (the
    # first read's) is then cached on the machine (.git/hangar/keys)
    ("read all, key by key, again (records cached)", "np_read_keys", None, "hg_read_keys", ""),
    ("read all, one bulk call", "np_read_bulk", "ice_read_bulk", "hg_read_bulk", ""),
    (
        "10,000 random image+label reads",
        "np_read_random",
        "ice_read_random",
        "hg_read_random",
        "random",
    ),
    ("branch, 200 changes, commit", None, "ice_commit_200", "hg_commit_200", ""),
    ("diff of 300 changes", None, "ice_diff_300", "hg_diff_300", ""),
    ("small samples: bulk write + commit", None, "ice_small_write", "hg_small_write", ""),
    ("small samples: commit of 10 changes", None, "ice_small_commit10", "hg_small_commit10", ""),
    ("small samples: diff of 10 changes", None, "ice_small_diff10", "hg_small_diff10", ""),
    ("100 x 512x512x3 float32: write", "np_large_write", "ice_large_write", "hg_large_write", ""),
    ("same: read all", "np_large_read", "ice_large_read", "hg_large_read", ""),
    ("same: 100 corner slices", "np_large_slices", "ice_large_slices", "hg_large_slices", ""),
]
#: rows whose data (or repository) other rows write (kept by ``--only``)
_LABELS = [r[0] for r in ROWS]
_SMALL, _LARGE = (
    _LABELS.index("small samples: bulk write + commit"),
    _LABELS.index("100 x 512x512x3 float32: write"),
)
NEEDS: dict[str, list[str]] = {
    **{r[0]: [ROWS[0][0]] for r in ROWS[1:]},
    "read all, key by key, again (records cached)": [ROWS[0][0], "read all, key by key"],
    ROWS[_SMALL + 1][0]: [ROWS[0][0], ROWS[_SMALL][0]],
    # the branch of the 10 changes
    ROWS[_SMALL + 2][0]: [ROWS[0][0], ROWS[_SMALL][0], ROWS[_SMALL + 1][0]],
    **{r[0]: [ROWS[0][0], ROWS[_LARGE][0]] for r in ROWS[_LARGE + 1 :]},
}
#: steps that prepare data for later ones, untimed in the table
PREPARE = {"ice_diff_300": "ice_prepare_300", "hg_diff_300": "hg_prepare_300"}
#: bars of issue 18: row -> (peer column, max ratio of hangar-git's time to it)
BARS: dict[str, tuple[str, float]] = {
    "MNIST write + commit, bulk": ("icechunk", 1.0),
    "read all, key by key": ("numpy", 1.0),
    "read all, key by key, again (records cached)": ("numpy", 1.0),
    "10,000 random image+label reads": ("numpy", 2.0),
    "read all, one bulk call": ("numpy", 2.0),
    "branch, 200 changes, commit": ("icechunk", 0.5),
    "diff of 300 changes": ("icechunk", 1.0),
    "small samples: bulk write + commit": ("icechunk", 10.0),
    "small samples: commit of 10 changes": ("icechunk", 1.0),
    "small samples: diff of 10 changes": ("icechunk", 1.0),
    "100 x 512x512x3 float32: write": ("numpy", 1 / 0.8),
    "same: read all": ("numpy", 1.0),
    "same: 100 corner slices": ("numpy", 2.0),
}
#: bars against a peer's figure in another row: row -> (that row, peer, max ratio)
CROSS_BARS: dict[str, tuple[str, str, float]] = {
    "same, key by key (with blocks)": ("MNIST write + commit, bulk", "icechunk", 2.0),
}
#: ratios without a bar: row -> (the row whose hangar-git figure is compared, peer)
CONTEXT: dict[str, tuple[str, str]] = {
    "same, Icechunk's files fsynced (context)": ("MNIST write + commit, bulk", "icechunk"),
}


#: the children's environment: bytecode cached as on a user's machine (a
#: ``PYTHONDONTWRITEBYTECODE`` here would make every fresh process compile
#: hangar-git's sources, which pip-installed peers never do)
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_packages() -> None:
    """Write the bytecode of hangar-git (an editable install has none until
    first imported), as ``pip install`` does for installed packages."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("hangar_git")
    for root in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(root, quiet=1)


def run_step(step: str, d: Path, n: int, small: int) -> float:
    sizes = ("-n", str(n), "--small", str(small))
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", step, "--dir", str(d), *sizes],
        capture_output=True,
        text=True,
        env=CHILD_ENV,
    )
    if out.returncode:
        raise SystemExit(f"step {step} failed:\n{out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def has_icechunk() -> bool:
    try:
        import icechunk  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


def select(only: list[str] | None) -> list[tuple[str, str | None, str | None, str | None, str]]:
    """The rows whose label holds one of ``only`` (any case), with the rows
    that write their data; every row without ``only``."""
    if not only:
        return ROWS
    keep = {r[0] for r in ROWS if any(o.lower() in r[0].lower() for o in only)}
    keep |= {need for k in keep for need in NEEDS.get(k, [])}
    return [r for r in ROWS if r[0] in keep]


def measure(
    n: int, small: int, root: Path, rows: list[tuple[str, str | None, str | None, str | None, str]]
) -> dict[str, dict[str, float]]:
    """Seconds per row and tool: the MNIST set, then small and large arrays
    in the same repositories (each tool its own directory)."""
    tools = {"numpy": 1, "icechunk": 2, "hangar-git": 3}
    if not has_icechunk():
        del tools["icechunk"]
    dirs = {t: root / t for t in tools}
    for p in dirs.values():
        p.mkdir()
    figures: dict[str, dict[str, float]] = {}
    for row in rows:
        label, scale = row[0], row[4]
        figures[label] = {}
        for tool, col in tools.items():
            step = row[col]
            if step is None:
                continue
            if step in ("hg_write_keys", "ice_write_synced"):  # a repository of its own
                d = root / step
                d.mkdir()
            else:
                d = dirs[tool]
            if step in PREPARE:
                run_step(PREPARE[step], d, n, small)
            secs = run_step(step, d, n, small)
            if tool == "icechunk" and scale == "keys":
                secs *= n / min(n, ICE_KEYS)
            elif tool == "icechunk" and scale == "random":
                secs *= RANDOM_READS / (ICE_KEYS // 2)
            figures[label][tool] = secs
    return figures


def report(runs: list[dict[str, dict[str, float]]]) -> None:
    tools = ("numpy", "icechunk", "hangar-git")
    print(f"load average: {os.getloadavg()[0]:.2f}; best of {len(runs)} run(s), seconds")
    head = f"{'step':<40}" + "".join(f"{t:>12}" for t in tools)
    head += f"{'ratio':>10}{'bar':>8}  verdict"
    print(head)
    print("-" * len(head))
    for row in ROWS:
        label = row[0]
        if label not in runs[0]:
            continue
        best = {t: min(r[label][t] for r in runs) for t in tools if t in runs[0][label]}
        cells = ""
        for t in tools:
            v = best.get(t)
            mark = "~" if t == "icechunk" and row[4] and v is not None else " "
            cells += f"{mark + f'{v:.3f}' if v is not None else 'n/a':>12}"
        ratio = bar = ""
        verdict = ""
        if label in BARS and BARS[label][0] in best and "hangar-git" in best:
            peer, limit = BARS[label]
            r = best["hangar-git"] / best[peer]
            ratio, bar = f"{r:.2f}x", f"{limit:.2f}"
            verdict = f"{'ok' if r <= limit else 'MISSED'} (vs {peer})"
        elif label in CROSS_BARS and "hangar-git" in best:
            other, peer, limit = CROSS_BARS[label]
            if other in runs[0] and peer in runs[0][other]:
                r = best["hangar-git"] / min(run[other][peer] for run in runs)
                ratio, bar = f"{r:.2f}x", f"{limit:.2f}"
                verdict = f"{'ok' if r <= limit else 'MISSED'} (vs {peer}'s bulk write)"
        elif label in CONTEXT:
            other, peer = CONTEXT[label]
            if other in runs[0] and "hangar-git" in runs[0][other] and peer in best:
                r = min(run[other]["hangar-git"] for run in runs) / best[peer]
                ratio, verdict = f"{r:.2f}x", "context: hangar-git's bulk write to this"
        print(f"{label:<40}{cells}{ratio:>10}{bar:>8}  {verdict}")
    print("~: Icechunk key-by-key reads measured on a subset and scaled up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="MNIST samples")
    ap.add_argument("--small", type=int, default=300_000, help="small samples")
    ap.add_argument("--repeat", type=int, default=2, help="runs; the best is shown")
    ap.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="only the rows whose label holds TEXT (and those writing their data); repeatable",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.dir), args.n, args.small)
        return
    compile_packages()
    runs = []
    for _ in range(args.repeat):
        root = Path(tempfile.mkdtemp(prefix="bench-peers-"))
        try:
            runs.append(measure(args.n, args.small, root, select(args.only)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    report(runs)


if __name__ == "__main__":
    main()
