"""Epoch throughput of the dataloaders against a folder of ``.npy`` files.

The data set is shaped like MNIST: 60,000 samples of a 784-byte uint8 image
(sparse strokes, about a fifth of the pixels set, so it compresses like the
real thing) and an int64 label. It is stored twice:

* in a hangar-git repository: arraysets ``images`` (784,) uint8 and
  ``labels`` () int64, one commit;
* as one ``.npy`` file per sample holding its image (``np.load`` per file),
  with the labels in a single ``labels.npy`` loaded once -- the baseline
  reads one file per sample and nothing else.

Each row is the best of ``--repeat`` epochs after one warm-up epoch (the
page cache holds both copies), in samples/s, at the same batch size:

* numpy: ``make_numpy_loader`` vs a loop of ``np.load`` + ``np.stack``;
* torch, 0 and 2 workers: ``DataLoader(make_torch_dataset(...))`` vs
  ``DataLoader`` over a Dataset that ``np.load``\\ s one file per item, both
  with the default collate;
* shuffled variants of the numpy rows (random order every epoch).

Then issue 18's torch bars, each row in a fresh Python process (as a
training script is), timed from after the imports, the rows interleaved
``--repeat`` times and the best kept: an in-memory ``TensorDataset`` of the
same samples (loaded from one stacked ``.npy`` per arrayset) with 0 and
with 2 workers (what torch's own worker machinery costs on this machine),
and ``DataLoader(make_torch_dataset(...), batch_size=...)`` with 0 and with
2 workers (the default start method, workers not persistent), and the same
with ``shuffle=True`` (information rows, no bar). The bars are
on the first epoch (worker start-up included): 0 workers at least half the
``TensorDataset``'s samples/s, 2 workers at least as fast as 0.

The machine is shared and noisy: compare the ratio columns (from the same
run), not absolute figures. With ``--check`` the script exits 1 if a
hangar-git epoch is slower than the files epoch it is set against, or a
torch bar is missed.

Run::

    python benchmarks/bench_loaders.py [--n 60000] [--batch-size 64]
                                       [--repeat 3] [--dir DIR] [--check]
                                       [--torch-only] [--compare DIR]
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
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from hangar_git import Repository, make_numpy_loader

SHAPE = (784,)


def make_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like images: 28x28, a few thick random strokes, the rest zeros."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28), np.uint8)
    for _ in range(6):  # six stroke segments per image, drawn for all images at once
        r0, c0 = rng.integers(4, 22, (2, n))
        dr, dc = rng.integers(-1, 2, (2, n))
        for step in range(10):
            r = np.clip(r0 + dr * step, 0, 26)
            c = np.clip(c0 + dc * step, 0, 26)
            val = rng.integers(128, 256, n).astype(np.uint8)
            for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)):
                imgs[np.arange(n), r + a, c + b] = val
    labels = rng.integers(0, 10, n).astype(np.int64)
    return imgs.reshape(n, *SHAPE), labels


def build(root: Path, n: int) -> None:
    """Write the hangar-git repository and the .npy folder under ``root``."""
    images, labels = make_images(n)
    repo_dir = root / "repo"
    repo_dir.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(repo_dir, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    t0 = time.perf_counter()
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("images", shape=SHAPE, dtype=np.uint8)
    lab = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
    with img, lab:
        for i in range(n):
            img[i] = images[i]
            lab[i] = labels[i : i + 1].reshape(())
    co.commit("MNIST-shaped data")
    co.close()
    t1 = time.perf_counter()
    files = root / "npy"
    files.mkdir()
    for i in range(n):
        np.save(files / f"{i}.npy", images[i])
    np.save(root / "labels.npy", labels)
    t2 = time.perf_counter()
    print(f"built {n} samples: hangar-git {t1 - t0:.1f} s, .npy files {t2 - t1:.1f} s")


def best_epoch(run: Callable[[], int], repeat: int, n: int) -> float:
    """Samples/s of the best of ``repeat`` epochs, after one warm-up epoch."""
    assert run() == n, "warm-up epoch read the wrong number of samples"
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = run()
        best = min(best, time.perf_counter() - t0)
        assert got == n
    return n / best


def len_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def count(batches: Iterable[object]) -> int:
    total = 0
    for batch in batches:
        total += len(batch[0])  # type: ignore[index]
    return total


class FilesEpoch:
    """The baseline: one np.load per sample file, stacked per batch."""

    def __init__(self, root: Path, n: int, batch_size: int, shuffle: bool) -> None:
        self.paths = [str(root / "npy" / f"{i}.npy") for i in range(n)]
        self.labels = np.load(root / "labels.npy")
        self.batch_size = batch_size
        self.rng = np.random.default_rng(0) if shuffle else None

    def __iter__(self):
        n = len(self.paths)
        order = self.rng.permutation(n) if self.rng is not None else np.arange(n)
        for lo in range(0, n, self.batch_size):
            idx = order[lo : lo + self.batch_size]
            yield np.stack([np.load(self.paths[i]) for i in idx]), self.labels[idx]


def torch_rows(root: Path, co, n: int, args) -> list[tuple[str, float, float]]:
    try:
        import torch
        from torch.utils.data import DataLoader, Dataset
    except ImportError:
        print("torch is not installed: skipping the torch rows (pip install torch==2.13.0)")
        return []
    from hangar_git import make_torch_dataset

    torch.set_num_threads(1)

    class NpyFiles(Dataset):
        def __init__(self) -> None:
            self.paths = [str(root / "npy" / f"{i}.npy") for i in range(n)]
            self.labels = np.load(root / "labels.npy")

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int):
            return np.load(self.paths[i]), self.labels[i]

    hangar_ds = make_torch_dataset([co.arraysets["images"], co.arraysets["labels"]])
    files_ds = NpyFiles()
    rows = []
    for workers in (0, 2):
        kw = {"num_workers": workers, "batch_size": args.batch_size}
        if workers:
            kw.update(persistent_workers=True, multiprocessing_context="fork")
        h_loader, f_loader = DataLoader(hangar_ds, **kw), DataLoader(files_ds, **kw)
        h = best_epoch(lambda loader=h_loader: count(loader), args.repeat, n)
        f = best_epoch(lambda loader=f_loader: count(loader), args.repeat, n)
        rows.append((f"torch DataLoader, {workers} workers", h, f))
        del h_loader, f_loader
    hangar_ds.close()
    return rows


# ---- issue 18's torch bars: each row in a fresh process ------------------------------
#: row name -> (dataset, num_workers); "tensor" is the in-memory TensorDataset
#: baseline, "floor" the least any dataset's batches cost through torch's
#: workers (:class:`SlicedArrays`), "ours" make_torch_dataset
TORCH_ROWS = {
    "tensor": ("tensor", 0),
    "tensor-2": ("tensor", 2),
    "floor-2": ("floor", 2),
    "ours-0": ("ours", 0),
    "ours-2": ("ours", 2),
    # information rows (no bar): the same with shuffle=True, as training runs
    "ours-0-shuffled": ("ours-shuffled", 0),
    "ours-2-shuffled": ("ours-shuffled", 2),
}


class SlicedArrays:
    """The floor of a batch sent through torch's workers: a map-style dataset
    whose ``__getitems__`` returns the batch's rows of in-memory arrays, as
    numpy arrays (collated as they are: they travel through the worker's pipe
    as bytes, torch's cheapest way), doing no other work."""

    def __init__(self, *arrays: np.ndarray) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        return tuple(a[i] for a in self.arrays)

    def __getitems__(self, rows: list[int]) -> tuple[np.ndarray, ...]:
        return tuple(a[rows[0] : rows[-1] + 1] for a in self.arrays)  # the samplers' runs


def as_is(batch: object) -> object:
    """A collate function returning the batch unchanged."""
    return batch


def torch_row(root: Path, row: str, batch_size: int) -> dict[str, float]:
    """One row of the torch bars, in this (fresh) process, imports excluded.

    ``setup``: the dataset made (our checkout opened and the samples
    selected; for the baselines, the stacked ``.npy`` files loaded).
    The floor row's dataset is :class:`SlicedArrays`. ``epoch1``: the first
    epoch, worker start-up included (the workers are not persistent);
    ``epoch2``: a second epoch, with new workers.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hangar_git import make_torch_dataset

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    co = None
    kind, workers = TORCH_ROWS[row]
    if kind == "tensor":
        images, labels = np.load(root / "images.npy"), np.load(root / "labels.npy")
        dataset: object = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    elif kind == "floor":
        dataset = SlicedArrays(np.load(root / "images.npy"), np.load(root / "labels.npy"))
    else:
        co = Repository(root / "repo").checkout()
        dataset = make_torch_dataset([co.arraysets["images"], co.arraysets["labels"]])
    t1 = time.perf_counter()
    kw: dict[str, object] = {"collate_fn": as_is} if kind == "floor" else {}
    if kind == "ours-shuffled":
        kw["shuffle"] = True
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, **kw)
    n = len(dataset)  # type: ignore[arg-type]
    out = {"setup": t1 - t0}
    for name in ("epoch1", "epoch2"):
        t = time.perf_counter()
        assert count(loader) == n
        out[name] = time.perf_counter() - t
    if co is not None:
        co.close()
    return out


def torch_bars(
    root: Path, n: int, batch_size: int, repeat: int, compare: Path | None = None
) -> bool:
    """issue 18's torch bars: TensorDataset, ours with 0 and 2 workers, each row
    in a fresh process, the rows interleaved ``repeat`` times (best kept);
    with ``compare``, the hangar-git rows of the sources there too, in the
    same rounds. Returns whether both bars are met (by these sources)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: skipping the torch bars (pip install torch==2.13.0)")
        return True
    if not (root / "images.npy").exists():
        images = np.stack([np.load(root / "npy" / f"{i}.npy") for i in range(n)])
        np.save(root / "images.npy", images)
    sides: dict[str, str | None] = {"this": None}
    if compare is not None:
        sides[compare.name or str(compare)] = str(compare.resolve())
    best: dict[tuple[str, str], dict[str, float]] = {}
    for _ in range(repeat):
        for row in TORCH_ROWS:
            for side, code in sides.items():
                if code is not None and not TORCH_ROWS[row][0].startswith("ours"):
                    continue  # the baseline runs no hangar-git code
                env = dict(os.environ)
                if code is not None:
                    env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")])
                cmd = [sys.executable, __file__, "--dir", str(root), "--n", str(n)]
                cmd += ["--batch-size", str(batch_size), "--torch-row", row]
                out = subprocess.run(cmd, check=True, capture_output=True, env=env).stdout
                got = json.loads(out)
                mine = best.setdefault((side, row), got)
                for k, v in got.items():
                    mine[k] = min(mine[k], v)
    print(f"\ntorch DataLoader(batch_size={batch_size}), {n} MNIST-shaped samples, each row in")
    print(f"a fresh process (imports excluded), best of {repeat}, rows interleaved;")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    head = f"{'':36} {'setup':>8} {'epoch 1':>9} {'samples/s':>10} {'epoch 2':>9} {'samples/s':>10}"
    print(head)
    for (side, row), r in best.items():
        kind, workers = TORCH_ROWS[row]
        if kind == "tensor":
            label = f"in-memory TensorDataset, {workers} workers"
        elif kind == "floor":
            label = f"floor (arrays sliced, piped), {workers} w"
        elif kind == "ours":
            label = f"hangar-git ({side}), {workers} workers"
        else:
            label = f"  same, shuffled ({side}), {workers} w"
        print(
            f"{label:36} {r['setup']:7.3f}s {r['epoch1']:8.3f}s {n / r['epoch1']:10,.0f}"
            f" {r['epoch2']:8.3f}s {n / r['epoch2']:10,.0f}"
        )
    t0, t2 = best["this", "tensor"]["epoch1"], best["this", "tensor-2"]["epoch1"]
    print(
        f"  [info] what torch's own worker machinery costs here: the in-memory "
        f"TensorDataset with 2 workers runs at {t0 / t2:.2f}x its 0-worker speed"
    )
    floor = best["this", "floor-2"]["epoch1"]
    print(
        f"  [info] the floor: batches that cost nothing to make, through 2 workers, "
        f"take {floor:.3f}s an epoch ({len_batches(n, batch_size)} batches)"
    )
    met = True
    for side in sides:
        base = best["this", "tensor"]["epoch1"]
        zero, two = best[side, "ours-0"]["epoch1"], best[side, "ours-2"]["epoch1"]
        ok0, ok2 = base / zero >= 0.5, zero / two >= 1.0
        verdict = {True: "ok", False: "FAIL"} if side == "this" else {True: "--", False: "--"}
        print(
            f"  [{verdict[ok0]}] torch 0 workers ({side}) at least half the in-memory "
            f"TensorDataset's samples/s (first epoch): {base / zero:.2f}x"
        )
        print(
            f"  [{verdict[ok2]}] torch 2 workers ({side}) at least as fast as 0 workers "
            f"(first epoch, worker start-up included): {zero / two:.2f}x"
        )
        if side == "this":
            met = ok0 and ok2
    return met


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=60_000, help="samples (default 60000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3, help="timed epochs per row (best kept)")
    p.add_argument("--dir", type=Path, help="keep the data here (reused when present)")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a hangar-git epoch is slower than the files epoch",
    )
    p.add_argument("--torch-row", choices=list(TORCH_ROWS), help=argparse.SUPPRESS)
    p.add_argument("--torch-only", action="store_true", help="only issue 18's torch bars")
    p.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="torch bars: also run the hangar-git rows with the sources in DIR (interleaved)",
    )
    args = p.parse_args(argv)
    if args.torch_row:  # a child of torch_bars: one row, figures as JSON
        print(json.dumps(torch_row(args.dir, args.torch_row, args.batch_size)))
        return 0

    load_before = os.getloadavg()
    root = args.dir or Path(tempfile.mkdtemp(prefix="hangar-bench-loaders-"))
    try:
        marker = root / f"built-{args.n}"
        if not marker.exists():
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            build(root, args.n)
            marker.touch()
        n, bs = args.n, args.batch_size
        rows: list[tuple[str, float, float]] = []
        if not args.torch_only:
            co = Repository(root / "repo").checkout()
            asets = [co.arraysets["images"], co.arraysets["labels"]]
            for shuffle in (False, True):
                loader = make_numpy_loader(asets, batch_size=bs, shuffle=shuffle, seed=0)
                files = FilesEpoch(root, n, bs, shuffle)
                h = best_epoch(lambda loader=loader: count(loader), args.repeat, n)
                f = best_epoch(lambda files=files: count(files), args.repeat, n)
                rows.append((f"numpy loader{', shuffled' if shuffle else ''}", h, f))
                loader.close()
            rows.extend(torch_rows(root, co, n, args))
            co.close()
        bars_met = torch_bars(root, n, bs, args.repeat, args.compare)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    load_after = os.getloadavg()
    print(f"\nepoch of {n} MNIST-shaped samples, batch size {bs}, best of {args.repeat}")
    before, after = ("/".join(f"{x:.2f}" for x in la) for la in (load_before, load_after))
    print(f"load average (1/5/15 min): {before} before, {after} after, {os.cpu_count()} CPUs")
    print(f"{'':34} {'hangar-git':>12} {'.npy files':>12} {'ratio':>7}")
    slow = False
    for name, h, f in rows:
        print(f"{name:34} {h:10,.0f}/s {f:10,.0f}/s {h / f:6.2f}x")
        slow |= h < f
    for name, h, f in rows:
        print(f"  [{'ok' if h >= f else 'FAIL'}] {name}: at least as fast as the .npy files")
    if args.check and (slow or not bars_met):
        print("FAIL: a hangar-git epoch is slower than the .npy files epoch, or a torch bar missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
