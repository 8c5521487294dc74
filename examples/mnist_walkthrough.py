"""MNIST-sized walkthrough: write, commit, branch, merge and read back.

Run it from anywhere::

    python examples/mnist_walkthrough.py [DIRECTORY]

Without a directory it works in a temporary one and removes it at the end;
give one to keep the repository. It makes a synthetic
dataset shaped like MNIST (60,000 images of 28x28 uint8 and their labels),
commits it, adds a relabelled subset on a branch, merges the branch back and
checks every array it reads against what it wrote.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hangar_git import Repository

N = 60_000


def main(directory: str) -> None:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(N, 1), dtype=np.int64)

    repo = Repository(root, exists=False)
    repo.init(user_name="Example User", user_email="example@example.org", remove_old=True)

    # 1. write and commit the dataset --------------------------------------
    t0 = time.perf_counter()
    co = repo.checkout(write=True)
    aset_img = co.arraysets.init_arrayset("images", prototype=images[0])
    aset_lab = co.arraysets.init_arrayset("labels", prototype=labels[0])
    with aset_img, aset_lab:  # batched: durable when the block exits
        for i in range(N):
            aset_img[i] = images[i]
            aset_lab[i] = labels[i]
    co.metadata["source"] = "synthetic MNIST-shaped data"
    first = co.commit("add 60,000 images and labels")
    co.close()
    print(f"wrote and committed {N} samples in {time.perf_counter() - t0:.2f} s: {first[:12]}")

    # 2. a branch that relabels a few samples ------------------------------
    repo.create_branch("relabel")
    co = repo.checkout(write=True, branch="relabel")
    fixed = {7: 3, 42: 9, 1234: 0}
    for key, value in fixed.items():
        co.arraysets["labels"][key] = np.array([value], dtype=np.int64)
    co.commit("fix three labels")
    co.close()

    # 3. merge it back into master (a fast-forward here) ---------------------
    head = repo.merge("merge relabel", "master", "relabel")
    print(f"merged 'relabel' into master: {head[:12]}")
    repo.log()

    # 4. read everything back and check it ---------------------------------
    t0 = time.perf_counter()
    co = repo.checkout(branch="master")
    img, lab = co.arraysets["images"], co.arraysets["labels"]
    assert len(img) == len(lab) == N
    keys = list(range(N))
    got_images = np.stack(img.get_batch(keys))
    got_labels = np.stack(lab.get_batch(keys))
    expected = labels.copy()
    for key, value in fixed.items():
        expected[key] = value
    assert np.array_equal(got_images, images)
    assert np.array_equal(got_labels, expected)
    assert co.metadata["source"] == "synthetic MNIST-shaped data"
    co.close()
    print(f"read back and verified {2 * N} arrays in {time.perf_counter() - t0:.2f} s")

    # the first commit still holds the original labels
    old = repo.checkout(commit=first)
    assert old.arraysets["labels"][7][0] == labels[7][0]
    old.close()
    repo.summary()
    print(f"repository: {repo.path}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a temporary repository, removed when the example ends
        with tempfile.TemporaryDirectory(prefix="hangar-mnist-") as tmp:
            main(tmp)
        print("(a temporary directory, now removed: pass a DIRECTORY to keep it)")
