"""Sharing a dataset through a remote, and working from a partial clone.

Run it from anywhere::

    python examples/remote_and_partial_clone.py [DIRECTORY]

Without a directory it works in a temporary one and removes it at the end;
give one to keep the repository. Everything stays on
this machine: the "remote" is a bare git repository (for the records) and a
plain directory (for the payloads), both under DIRECTORY. With a real team
the git remote would be a git host or an ssh path, and the data remote an
object store (``s3://bucket/prefix``, ``gs://...``) or a network share.

Alice publishes a dataset. Bob clones the records only, fetches the labels
and part of the images within a byte budget, reads one more image on
demand, then adds data on a branch and pushes it. Alice fetches his branch,
merges it and fetches its data.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pygit2

from hangar_git import MissingPayloadError, Repository

N = 1_000


def main(directory: str) -> None:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    # --8<-- [start:publish]
    # The shared places: a bare git repository and a directory for payloads.
    shared_git = root / "shared.git"
    shared_data = root / "shared-data"
    pygit2.init_repository(str(shared_git), bare=True)

    # Alice's repository, with 1,000 images and their labels.
    (root / "alice").mkdir()
    alice = Repository(root / "alice", exists=False)
    alice.init(user_name="Alice", user_email="alice@example.org")
    with alice.checkout(write=True) as co:
        images = co.arraysets.init_arrayset("images", shape=(32, 32), dtype=np.uint8)
        labels = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
        with images, labels:
            for i in range(N):
                images[i] = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
                labels[i] = np.array(i % 10)
        co.commit(f"{N} images and labels")

    # One remote, two addresses: git for records, the data URL for payloads.
    alice.remote.add("origin", str(shared_git), data=str(shared_data))
    alice.remote.push("origin", "master")
    report = alice.remote.last_report
    # 1,000 images but only 10 distinct labels: identical arrays travel once
    print(f"pushed {report.payloads} payloads in {report.packs} pack(s)")
    # --8<-- [end:publish]
    assert report.payloads == N + 10

    # --8<-- [start:clone]
    (root / "bob").mkdir()
    bob = Repository(root / "bob", exists=False)
    bob.clone("Bob", "bob@example.org", str(shared_git), data=str(shared_data))

    with bob.checkout() as co:  # the full history, but no payloads yet
        images, labels = co.arraysets["images"], co.arraysets["labels"]
        print(
            len(images),
            "images;",
            len(images.remote_reference_sample_keys),
            "of them are remote references",
        )
        try:
            images[0]
        except MissingPayloadError as err:  # also a FileNotFoundError
            print("reading a remote reference:", err)
        # --8<-- [end:clone]
        assert len(images.remote_reference_sample_keys) == N

    # --8<-- [start:fetch-data]
    # All the labels, and the images within a budget of 256 KiB.
    bob.remote.fetch_data("origin", branch="master", arrayset_names=["labels"])
    bob.remote.fetch_data(
        "origin", branch="master", arrayset_names=["images"], max_num_bytes=256 * 1024
    )
    with bob.checkout() as co:
        images, labels = co.arraysets["images"], co.arraysets["labels"]
        missing = set(images.remote_reference_sample_keys)
        print(
            f"labels local: {not labels.contains_remote_references}; "
            f"images local: {N - len(missing)} of {N}"
        )
        # --8<-- [end:fetch-data]
        assert not labels.contains_remote_references
        assert 0 < len(missing) < N and N - len(missing) <= 256 * 1024 // (32 * 32)

    # --8<-- [start:lazy]
    # A checkout opened with fetch_missing=True fetches what it reads.
    key = min(missing)
    with bob.checkout(fetch_missing=True) as co:
        image = co.arraysets["images"][key]
        print(f"image {key} fetched on demand: {image.shape}")
    with bob.checkout() as co:
        assert key not in co.arraysets["images"].remote_reference_sample_keys
    # --8<-- [end:lazy]

    # --8<-- [start:bob-pushes]
    bob.create_branch("more-images")
    with bob.checkout(write=True, branch="more-images") as co:
        images, labels = co.arraysets["images"], co.arraysets["labels"]
        with images, labels:
            for i in range(N, N + 50):
                images[i] = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
                labels[i] = np.array(i % 10)
        co.commit("50 more images")
    bob.remote.push("origin", "more-images")  # only the 50 new images travel
    print("bob pushed", bob.remote.last_report.payloads, "payloads")
    # --8<-- [end:bob-pushes]
    assert bob.remote.last_report.payloads == 50

    # --8<-- [start:alice-merges]
    tracking = alice.remote.fetch("origin", "more-images")  # 'origin/more-images'
    alice.merge("merge Bob's images", "master", tracking)  # a fast-forward
    alice.remote.fetch_data("origin", branch="master")
    with alice.checkout() as co:
        assert len(co.arraysets["images"]) == N + 50
        assert not co.arraysets["images"].contains_remote_references
    alice.remote.push("origin", "master")
    print("alice's master:", alice.log(return_contents=True)["head"][:12])
    # --8<-- [end:alice-merges]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a temporary repository, removed when the example ends
        with tempfile.TemporaryDirectory(prefix="hangar-remote-") as tmp:
            main(tmp)
