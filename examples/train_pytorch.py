"""Train a small PyTorch model on data read from a hangar-git checkout.

Run it from anywhere (it needs torch: ``pip install -e ".[torch]"``)::

    python examples/train_pytorch.py [DIRECTORY]

Without a directory it works in a temporary one and removes it at the end;
give one to keep the repository. It commits a small
synthetic image-classification dataset (2,000 images of 16x16 pixels, four
classes: in which quadrant a bright square sits), then trains a small
convolutional network on the first 1,600 samples of that commit through a
``torch.utils.data.DataLoader`` with two worker processes, evaluates it on
the last 400, and saves the model together with the data commit it was
trained on.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hangar_git import Repository, make_torch_dataset

N, SIDE, CLASSES = 2_000, 16, 4
N_TRAIN = 1_600


# --8<-- [start:data]
def make_dataset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images with a bright square in one quadrant; label = the quadrant."""
    labels = rng.integers(0, CLASSES, size=N)
    images = rng.normal(0.0, 0.5, size=(N, 1, SIDE, SIDE)).astype(np.float32)
    half = SIDE // 2
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        r0 = row * half + rng.integers(0, half - 3)
        c0 = col * half + rng.integers(0, half - 3)
        images[i, 0, r0 : r0 + 3, c0 : c0 + 3] += 0.8
    return images, labels.astype(np.int64)


def commit_dataset(repo: Repository, images: np.ndarray, labels: np.ndarray) -> str:
    """Write images and labels under keys 0..N-1 and commit them."""
    with repo.checkout(write=True) as co:
        aset_img = co.arraysets.init_arrayset("images", prototype=images[0])
        aset_lab = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
        with aset_img, aset_lab:
            for i in range(N):
                aset_img[i] = images[i]
                aset_lab[i] = np.asarray(labels[i])  # a 0-d array
        co.metadata["task"] = "quadrant of the bright square (4 classes)"
        return co.commit(f"{N} synthetic 16x16 images with quadrant labels")


# --8<-- [end:data]


# --8<-- [start:model]
def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, CLASSES),
    )


# --8<-- [end:model]


def main(directory: str) -> float:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    repo = Repository(root, exists=False)
    repo.init(user_name="Example User", user_email="example@example.org", remove_old=True)
    images, labels = make_dataset(rng)
    data_commit = commit_dataset(repo, images, labels)
    print(f"committed the dataset: {data_commit[:12]}")

    # --8<-- [start:loaders]
    # A read checkout pins the exact data: training reads commit `data_commit`
    # whatever happens to the branch meanwhile.
    co = repo.checkout(commit=data_commit)
    asets = [co.arraysets["images"], co.arraysets["labels"]]
    train_set = make_torch_dataset(asets, index_range=slice(0, N_TRAIN))
    test_set = make_torch_dataset(asets, index_range=slice(N_TRAIN, N))
    train_loader = DataLoader(
        train_set, batch_size=64, shuffle=True, num_workers=2, persistent_workers=True
    )
    test_loader = DataLoader(test_set, batch_size=200)
    # --8<-- [end:loaders]

    # --8<-- [start:train]
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for epoch in range(5):
        model.train()
        total = 0.0
        for batch in train_loader:  # a namedtuple: (images, labels)
            optimizer.zero_grad()
            loss = loss_fn(model(batch.images), batch.labels)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch.labels)
        print(f"epoch {epoch}: mean loss {total / len(train_set):.3f}")

    model.eval()
    correct = 0
    with torch.no_grad():
        for batch_images, batch_labels in test_loader:
            correct += int((model(batch_images).argmax(dim=1) == batch_labels).sum())
    accuracy = correct / len(test_set)
    print(
        f"test accuracy {accuracy:.3f} on {len(test_set)} held-out samples "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    # --8<-- [end:train]

    # --8<-- [start:save]
    # Keep the data commit with the weights: the model can always be traced
    # back to, and retrained on, exactly the data it saw.
    torch.save(
        {"model": model.state_dict(), "data_commit": data_commit, "train_keys": (0, N_TRAIN)},
        root / "model.pt",
    )
    # --8<-- [end:save]
    train_set.close()
    test_set.close()
    co.close()

    assert accuracy > 0.9, f"the model did not learn: accuracy {accuracy:.3f}"
    saved = torch.load(root / "model.pt")
    assert saved["data_commit"] == data_commit
    print(f"saved {root / 'model.pt'} (trained on data commit {data_commit[:12]})")
    return accuracy


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a temporary repository, removed when the example ends
        with tempfile.TemporaryDirectory(prefix="hangar-torch-") as tmp:
            main(tmp)
