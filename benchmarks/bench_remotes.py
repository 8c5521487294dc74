"""Remotes benchmark: push and fetch-data of an MNIST-shaped set.

Commits 60,000 random 784-byte images plus 60,000 int64 labels (10 distinct
values), then for each data remote -- a local directory, and an S3 endpoint
(SeaweedFS ``weed mini`` started on 127.0.0.1 by this script) -- measures:

- ``push`` to a bare git repository by path (payloads, then records),
- ``fetch-data`` of the whole head into a fresh records-only clone,
- ``fetch-data`` of one arrayset (the labels) under a 100 kB budget,

with seconds, MB/s of payload bytes (uncompressed) and request counts: the
count hangar-git reports, and for S3 the HTTP requests aiobotocore actually
sent. The baseline, measured in the same run on the same remote, is one
object of the same raw size written and read whole (the transport's best
case): the ratio to it is the figure to compare across machines.

Run::

    python benchmarks/bench_remotes.py            # 60,000 samples, both remotes
    python benchmarks/bench_remotes.py -n 10000   # quicker
    python benchmarks/bench_remotes.py --no-s3    # the local directory only

Not a test: figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from hangar_git import Repository  # noqa: E402


def make_repo(path: Path, n: int) -> Repository:
    path.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Bench", user_email="bench@example.org")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n, 1), dtype=np.int64)
    co = repo.checkout(write=True)
    img = co.arraysets.init_arrayset("images", prototype=images[0])
    lab = co.arraysets.init_arrayset("labels", prototype=labels[0])
    with img, lab:
        for i in range(n):
            img[i] = images[i]
            lab[i] = labels[i]
    co.commit("mnist-shaped")
    co.close()
    return repo


def clone(path: Path, bare: Path, data: str) -> Repository:
    path.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.clone("Bench", "bench@example.org", str(bare), data=data)
    return repo


class HttpCount:
    """Counts the HTTP requests aiobotocore sends (S3 only)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        try:
            from aiobotocore.endpoint import AioEndpoint
        except ImportError:
            return
        real = AioEndpoint._send
        counts = self.counts

        async def counting(self_: Any, request: Any) -> Any:
            counts[request.method] += 1
            return await real(self_, request)

        AioEndpoint._send = counting  # type: ignore[method-assign]

    def take(self) -> int:
        n = sum(self.counts.values())
        self.counts.clear()
        return n


def baseline(url: str, nbytes: int) -> tuple[float, float]:
    """Seconds to write, then read, one object of ``nbytes`` at ``url``."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    path = f"{root.rstrip('/')}/baseline.bin"
    if fs.protocol in ("file", "local") or "file" in fs.protocol:
        fs.makedirs(root, exist_ok=True)
    blob = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    t0 = time.perf_counter()
    fs.pipe_file(path, blob)
    t1 = time.perf_counter()
    back = fs.cat_file(path)
    t2 = time.perf_counter()
    assert len(back) == nbytes
    fs.rm_file(path)
    return t1 - t0, t2 - t1


def run_remote(
    label: str, work: Path, repo: Repository, bare: Path, url: str, http: HttpCount | None
) -> None:
    raw = None
    repo.remote.add(label, str(bare), data=url)
    if http:
        http.take()
    t0 = time.perf_counter()
    repo.remote.push(label, "master")
    push_s = time.perf_counter() - t0
    rep = repo.remote.last_report
    raw = rep.raw_bytes
    push_http = http.take() if http else None

    # records-only clone, then the whole head's data
    cl = clone(work / f"clone-{label}", bare, url)
    if http:
        http.take()
    t0 = time.perf_counter()
    cl.remote.fetch_data("origin", "master")
    fetch_s = time.perf_counter() - t0
    frep = cl.remote.last_report
    fetch_http = http.take() if http else None

    # a partial clone: one arrayset under a budget
    cl2 = clone(work / f"clone2-{label}", bare, url)
    if http:
        http.take()
    t0 = time.perf_counter()
    cl2.remote.fetch_data("origin", "master", arrayset_names=["labels"], max_num_bytes=100_000)
    part_s = time.perf_counter() - t0
    prep = cl2.remote.last_report
    part_http = http.take() if http else None

    wb, rb = baseline(url, raw)
    mb = raw / 1e6

    def http_txt(n: int | None) -> str:
        return f", {n} HTTP requests" if n is not None else ""

    print(f"\n[{label}] {url}")
    print(
        f"  push        : {rep.payloads} payloads, {mb:.1f} MB raw in {push_s:.2f} s = "
        f"{mb / push_s:.1f} MB/s (payloads {rep.seconds:.2f} s = "
        f"{mb / rep.seconds:.1f} MB/s, the rest is git); {rep.packs} packs, "
        f"{rep.requests} requests{http_txt(push_http)}; sent {rep.bytes_sent / 1e6:.1f} MB"
    )
    print(
        f"  fetch-data  : {frep.payloads} payloads in {fetch_s:.2f} s = "
        f"{frep.raw_bytes / 1e6 / fetch_s:.1f} MB/s; {frep.requests} requests"
        f"{http_txt(fetch_http)}; received {frep.bytes_received / 1e6:.1f} MB"
    )
    print(
        f"  partial     : labels under 100 kB: {prep.payloads} payloads "
        f"({prep.raw_bytes} B) in {part_s:.3f} s; {prep.requests} requests"
        f"{http_txt(part_http)}; received {prep.bytes_received / 1e6:.2f} MB"
    )
    print(
        f"  baseline    : one {mb:.1f} MB object: write {wb:.2f} s "
        f"({mb / wb:.0f} MB/s), read {rb:.2f} s ({mb / rb:.0f} MB/s)"
    )
    print(
        f"  ratios      : push / baseline write = {push_s / wb:.1f}x, "
        f"fetch-data / baseline read = {fetch_s / rb:.1f}x"
    )
    for r in (cl, cl2):
        shutil.rmtree(r.path, ignore_errors=True)
    # the next remote starts from an empty git remote too
    repo.remote.remove(label)
    subprocess.run(
        ["git", "--git-dir", str(bare), "update-ref", "-d", "refs/hangar/heads/master"], check=True
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=60_000, help="number of samples")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 endpoint")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hangar-bench-remotes-"))
    server = None
    try:
        t0 = time.perf_counter()
        repo = make_repo(work / "src", args.n)
        print(
            f"{args.n} samples (784 B image + 8 B label) committed in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        bare = work / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        run_remote("local", work, repo, bare, str(work / "data"), None)
        if not args.no_s3:
            from s3_fixture import start_weed, stop_weed

            server = start_weed(work / "weed")
            os.environ.update(server.env())
            http = HttpCount()
            run_remote("s3", work, repo, bare, server.fresh_url(), http)
            stop_weed(server)
            server = None
    finally:
        if server is not None:
            from s3_fixture import stop_weed

            stop_weed(server)
        if args.keep:
            print(f"\nwork directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
