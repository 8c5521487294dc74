"""Branching and merging, with a conflict and its resolution.

Run it from anywhere::

    python examples/branching_and_conflicts.py [DIRECTORY]

Without a directory it works in a temporary one and removes it at the end;
give one to keep the repository. Two annotators,
Alice and Bob, each work on a branch of a small labelled dataset. Alice's
branch merges into master as a fast-forward; Bob's then conflicts with it
(both changed the same label, and both set the same metadata key to
different values). The script looks at the conflicts, resolves one by hand
on Bob's branch and the other with a merge strategy, and checks the result.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from hangar_git import MergeConflictError, MetadataRecordKey, RawDataRecordKey, Repository


def label(value: int) -> np.ndarray:
    """A label sample: a 0-d int64 array."""
    return np.array(value, dtype=np.int64)


def main(directory: str) -> None:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    # --8<-- [start:setup]
    repo = Repository(root, exists=False)
    repo.init(user_name="Example User", user_email="example@example.org", remove_old=True)

    with repo.checkout(write=True) as co:
        images = co.arraysets.init_arrayset("images", shape=(8, 8), dtype=np.uint8)
        labels = co.arraysets.init_arrayset("labels", shape=(), dtype=np.int64)
        with images, labels:
            for i in range(100):
                images[i] = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
                labels[i] = label(i % 10)
        co.metadata["labelling-guide"] = "v1"
        first = co.commit("100 images with first-pass labels")

    repo.create_branch("alice")  # both branches start at the same commit
    repo.create_branch("bob")
    # --8<-- [end:setup]

    # --8<-- [start:alice]
    with repo.checkout(write=True, branch="alice") as co:
        co.arraysets["labels"][7] = label(1)  # relabels sample 7
        co.arraysets["labels"][42] = label(4)  # and sample 42
        co.metadata["reviewed-by"] = "alice"
        co.commit("Alice: fix labels 7 and 42")
    # --8<-- [end:alice]

    # --8<-- [start:bob]
    with repo.checkout(write=True, branch="bob") as co:
        co.arraysets["labels"][7] = label(2)  # disagrees with Alice on 7
        del co.arraysets["labels"][13]  # drops a bad sample ...
        del co.arraysets["images"][13]
        with co.arraysets["images"], co.arraysets["labels"]:
            for i in range(100, 105):  # ... and adds five new ones
                co.arraysets["images"][i] = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
                co.arraysets["labels"][i] = label(i % 10)
        co.metadata["reviewed-by"] = "bob"
        co.commit("Bob: fix label 7, replace sample 13 with five new samples")
    # --8<-- [end:bob]

    # --8<-- [start:fast-forward]
    # master has not moved since alice branched off: a fast-forward
    head = repo.merge("merge alice", "master", "alice")
    assert head == repo.log(branch="alice", return_contents=True)["head"]
    print("master fast-forwarded to alice:", head[:12])
    # --8<-- [end:fast-forward]

    # --8<-- [start:diff]
    with repo.checkout(branch="master") as co:
        changes, conflicts = co.diff.branch("bob")
        bob = changes["samples"]["dev"]["labels"]  # ancestor -> bob, per arrayset
        print("labels bob changed:", [k.data_name for k in bob["mutations"]])
        print("labels bob left alone:", len(bob["unchanged"]))  # computed when read
        print("conflicts found:", conflicts["conflict_found"])
        print("  labels:", conflicts["sample"]["labels"])
        print("  metadata:", conflicts["meta"])
        ours, theirs = co.diff.conflict_samples("bob", "labels", 7)
        print(f"label 7: master has {int(ours)}, bob has {int(theirs)}")
    # --8<-- [end:diff]
    assert conflicts["conflict_found"]
    assert conflicts["sample"]["labels"].t3 == (RawDataRecordKey("labels", 7),)
    assert conflicts["meta"].t1 == (MetadataRecordKey("reviewed-by"),)

    # --8<-- [start:refused]
    before = repo.log(branch="master", return_contents=True)["head"]
    try:
        repo.merge("merge bob", "master", "bob")
    except MergeConflictError as err:  # also a ValueError
        print("merge refused:", err)
    after = repo.log(branch="master", return_contents=True)["head"]
    assert after == before  # nothing moved
    # --8<-- [end:refused]

    # --8<-- [start:resolve]
    # 1. By hand: the team agrees that sample 7 is a 1. Bob records that on
    #    his branch; identical changes on both sides are not a conflict.
    with repo.checkout(write=True, branch="bob") as co:
        co.arraysets["labels"][7] = label(1)
        co.commit("Bob: agree with Alice on label 7")

    # 2. By strategy: for what still conflicts (the 'reviewed-by' metadata),
    #    keep master's value ('ours'); 'theirs' would keep bob's.
    merged = repo.merge("merge bob", "master", "bob", strategy="ours")
    # --8<-- [end:resolve]

    # --8<-- [start:check]
    repo.log(branch="master")
    with repo.checkout(branch="master") as co:
        labels, images = co.arraysets["labels"], co.arraysets["images"]
        assert co.commit_hash == merged
        assert int(labels[7]) == 1 and int(labels[42]) == 4  # agreed and Alice's
        assert 13 not in labels and 13 not in images  # Bob's removal
        assert all(i in labels for i in range(100, 105))  # Bob's additions
        assert co.metadata["reviewed-by"] == "alice"  # 'ours'
        assert len(labels) == len(images) == 104
    parents = repo.log(branch="master", return_contents=True)["ancestors"][merged]
    assert len(parents) == 2  # a real merge commit

    with repo.checkout(commit=first) as co:  # history is untouched
        assert int(co.arraysets["labels"][7]) == 7 and 13 in co.arraysets["labels"]

    # both branches are merged: deleting them loses nothing
    repo.remove_branch("alice")
    repo.remove_branch("bob")
    print("branches left:", repo.list_branches())
    # --8<-- [end:check]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a temporary repository, removed when the example ends
        with tempfile.TemporaryDirectory(prefix="hangar-branching-") as tmp:
            main(tmp)
