"""The reference tutorial, part 1 (creating a repository, working with data)
and the branching half of part 2 (checkouts, branches, a fast-forward merge),
step by step, with the reprs checked for the fields the reference shows."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hangar_git import Repository
from hangar_git.arrayset import ArraysetDataWriter

HEX40 = re.compile(r"[0-9a-f]{40}")


def repr_fields(text: str) -> dict[str, str]:
    """``'Name : value'`` lines of a repr as a dict (whitespace-insensitive)."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            out[" ".join(k.split())] = v.strip()
    return out


def log_lines(repo: Repository, capsys, *args, **kwargs) -> list[str]:
    capsys.readouterr()
    assert repo.log(*args, **kwargs) is None
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def mnist():
    rng = np.random.default_rng(42)
    n = 600
    images = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    return images, labels


def test_part1_creating_a_repository_and_working_with_data(tmp_path, mnist, capsys):
    trimgs, trlabels = mnist
    path = tmp_path / "mnist"
    path.mkdir()

    # a Repository on a path with no repository tells the user to init()
    with pytest.warns(UserWarning, match="init"):
        repo = Repository(path=path)
    hdir = repo.init(user_name="Rick Izzo", user_email="rick@tensorwerk.com")
    assert isinstance(hdir, str) and hdir.startswith(str(path))

    co = repo.checkout(write=True)
    f = repr_fields(repr(co))
    assert "Hangar WriterCheckout" in repr(co)
    assert f["Writer"] == "True"
    assert f["Base Branch"] == "master"
    assert f["Num Arraysets"] == "0"
    assert f["Num Metadata"] == "0"

    r = repr(co.arraysets)
    assert "Hangar Arraysets" in r
    assert repr_fields(r)["Writeable"] == "True"
    assert "Arrayset Names / Partial Remote References" in r
    r = repr(co.metadata)
    assert "Hangar Metadata" in r
    assert repr_fields(r)["Writeable"] == "True"
    assert repr_fields(r)["Number of Keys"] == "0"

    aset = co.arraysets.init_arrayset(name="mnist_training_images", prototype=trimgs[0])
    assert isinstance(aset, ArraysetDataWriter)
    f = repr_fields(repr(aset))
    assert "Hangar ArraysetDataWriter" in repr(aset)
    assert f["Arrayset Name"] == "mnist_training_images"
    assert re.fullmatch(r"[0-9a-f]{12}", f["Schema Hash"])
    assert f["Variable Shape"] == "False"
    assert f["(max) Shape"] == "(784,)"
    assert f["Datatype"] == "<class 'numpy.uint8'>"
    assert f["Named Samples"] == "True"
    assert f["Access Mode"] == "a"
    assert f["Number of Samples"] == "0"
    assert f["Partial Remote Data Refs"] == "False"
    assert repr_fields(repr(co.arraysets["mnist_training_images"])) == f

    train_aset = co.arraysets["mnist_training_images"]
    train_aset["0"] = trimgs[0]
    train_aset.add(data=trimgs[1], name="1")
    train_aset["51"] = trimgs[51]
    assert len(train_aset) == 3
    assert ("hi" in train_aset) is False
    assert ("0" in train_aset) is True
    np.testing.assert_array_equal(train_aset["1"], trimgs[1])
    assert repr_fields(repr(train_aset))["Number of Samples"] == "3"
    assert sorted(train_aset) == ["0", "1", "51"]
    assert sorted(train_aset.keys()) == ["0", "1", "51"]
    my_dict = dict(train_aset.items())
    for k in ("0", "1", "51"):
        np.testing.assert_array_equal(my_dict[k], trimgs[int(k)])
    assert len(list(train_aset.values())) == 3
    assert "mnist_training_images / False" in repr(co.arraysets)

    # the "naked" (non-context manager) form, then a hard reset
    sample_trimg, sample_trlabel = trimgs[0], np.array([trlabels[0]])
    aset_trimgs = co.arraysets.init_arrayset(name="train_images", prototype=sample_trimg)
    aset_trlabels = co.arraysets.init_arrayset(name="train_labels", prototype=sample_trlabel)
    for idx, img in enumerate(trimgs[:100]):
        aset_trimgs.add(data=img, name=str(idx))
        aset_trlabels.add(data=np.array([trlabels[idx]]), name=str(idx))
    assert len(aset_trimgs) == 100
    assert co.reset_staging_area() == ""  # no commit yet
    co.close()  # already closed by the reset: a no-op

    # the context manager form
    co = repo.checkout(write=True)
    assert len(co.arraysets) == 0  # the reset dropped everything staged
    train_aset = co.arraysets.init_arrayset(name="mnist_training_images", prototype=trimgs[0])
    for k in ("0", "1", "51"):
        train_aset[k] = trimgs[int(k)]
    aset_trimgs = co.arraysets.init_arrayset(name="train_images", prototype=sample_trimg)
    aset_trlabels = co.arraysets.init_arrayset(name="train_labels", prototype=sample_trlabel)
    with aset_trimgs, aset_trlabels:
        for idx, img in enumerate(trimgs):
            aset_trimgs.add(data=img, name=str(idx))
            aset_trlabels.add(data=np.array([trlabels[idx]]), name=str(idx))
    assert repr_fields(repr(co))["Num Arraysets"] == "3"

    first = co.commit("hello world, this is my first hangar commit")
    assert HEX40.fullmatch(first)
    co.close()

    # a forgotten writer blocks the next one until the lock is released
    forgotten = repo.checkout(write=True)
    with pytest.raises(PermissionError):
        repo.checkout(write=True)
    assert repo.force_release_writer_lock() is True
    co = repo.checkout(write=True)
    assert forgotten is not co
    co.close()

    contents = repo.summary(return_contents=True)
    assert contents["commit"] == first
    assert contents["arraysets"]["train_images"]["num_samples"] == len(trimgs)
    assert contents["arraysets"]["train_labels"]["num_samples"] == len(trimgs)
    assert contents["arraysets"]["mnist_training_images"]["num_samples"] == 3
    capsys.readouterr()
    repo.summary()
    out = capsys.readouterr().out
    for needle in (
        "Summary of Contents Contained in Data Repository",
        "Repository Info",
        f"Base Directory: {path}",
        "Disk Usage:",
        "Commit Details",
        f"Commit: {first}",
        "By: Rick Izzo",
        "Email: rick@tensorwerk.com",
        "Message: hello world, this is my first hangar commit",
        "Number of Named Arraysets: 3",
        "Arrayset Name: train_images",
        f"Num Arrays: {len(trimgs)}",
        "schema_max_shape: (784,)",
        "schema_max_shape: (1,)",
        "schema_is_var: False",
        "schema_is_named: True",
        "Number of Keys: 0",
    ):
        assert needle in out, needle
    assert log_lines(repo, capsys) == [
        f"* {first} (master) : hello world, this is my first hangar commit"
    ]

    # everything reads back
    rc = repo.checkout()
    imgs = rc.arraysets["train_images"]
    labels = rc.arraysets["train_labels"]
    for idx in (0, 1, 299, len(trimgs) - 1):
        np.testing.assert_array_equal(imgs[str(idx)], trimgs[idx])
        assert labels[str(idx)].tolist() == [trlabels[idx]]
    batch = imgs.get_batch([str(i) for i in range(len(trimgs))])
    np.testing.assert_array_equal(np.stack(batch), trimgs)
    assert repr_fields(repr(imgs))["Access Mode"] == "r"
    rc.close()


def test_part2_checkouts_branching_and_fast_forward_merge(tmp_path, capsys):
    path = tmp_path / "foo" / "pth"
    path.mkdir(parents=True)
    with pytest.warns(UserWarning):
        repo = Repository(path=path)
    repo_pth = repo.init(user_name="Test User", user_email="test@foo.com")
    assert repo_pth

    # no history yet: log returns None, prints nothing; master exists
    assert log_lines(repo, capsys) == []
    assert repo.list_branches() == ["master"]

    co = repo.checkout(write=True)
    assert len(co.metadata) == 0
    assert len(co.arraysets) == 0
    dummy = co.arraysets.init_arrayset(name="dummy_arrayset", shape=(10,), dtype=np.uint16)
    dummy["0"] = np.arange(10, dtype=np.uint16)
    msg1 = "first commit with a single sample added to a dummy arrayset"
    initial = co.commit(msg1)
    co.close()
    assert log_lines(repo, capsys) == [f"* {initial} (master) : {msg1}"]

    branch_1 = repo.create_branch(name="testbranch")
    assert branch_1 == "testbranch"
    assert repo.list_branches() == ["master", "testbranch"]
    assert log_lines(repo, capsys) == [f"* {initial} (master) (testbranch) : {msg1}"]

    branch_2 = repo.create_branch(name="new", base_commit=initial)
    assert branch_2 == "new"
    assert log_lines(repo, capsys) == [f"* {initial} (master) (new) (testbranch) : {msg1}"]

    # changes on "new"
    co = repo.checkout(write=True, branch="new")
    r = repr(co.arraysets)
    assert repr_fields(r)["Writeable"] == "True"
    assert "- dummy_arrayset / False" in r
    f = repr_fields(repr(co.arraysets["dummy_arrayset"]))
    schema_hash = f["Schema Hash"]
    assert f["Arrayset Name"] == "dummy_arrayset"
    assert f["(max) Shape"] == "(10,)"
    assert f["Datatype"] == "<class 'numpy.uint16'>"
    assert f["Number of Samples"] == "1"
    got = co.arraysets["dummy_arrayset"]["0"]
    assert got.dtype == np.uint16 and got.tolist() == list(range(10))
    arr = np.arange(10, dtype=np.uint16)
    arr += 1
    co.arraysets["dummy_arrayset"]["1"] = arr
    assert len(co.arraysets["dummy_arrayset"]) == 2
    msg2 = "commit on `new` branch adding a sample to dummy_arrayset"
    on_new = co.commit(msg2)
    co.close()
    assert log_lines(repo, capsys) == [
        f"* {on_new} (new) : {msg2}",
        f"* {initial} (master) (testbranch) : {msg1}",
    ]

    # fast-forward merge of "new" into master
    co = repo.checkout(write=True, branch="master")
    merged = co.merge(message="message for commit (not used for FF merge)", dev_branch="new")
    assert merged == on_new
    assert log_lines(repo, capsys) == [
        f"* {on_new} (master) (new) : {msg2}",
        f"* {initial} (testbranch) : {msg1}",
    ]
    assert co.branch_name == "master"
    assert co.commit_hash == on_new
    f = repr_fields(repr(co.arraysets["dummy_arrayset"]))
    assert f["Number of Samples"] == "2" and f["Schema Hash"] == schema_hash
    assert co.diff.status() == "CLEAN"
    co.close()
    contents = repo.log(branch="master", return_contents=True)
    assert contents["order"] == [on_new, initial]  # no merge commit was made

    # diverging history on testbranch (the three-way merge is tested elsewhere)
    co = repo.checkout(write=True, branch="testbranch")
    assert "- dummy_arrayset / False" in repr(co.arraysets)
    assert repr_fields(repr(co.arraysets["dummy_arrayset"]))["Number of Samples"] == "1"
    dummy_aset = co.arraysets["dummy_arrayset"]
    old_arr = dummy_aset["0"]
    new_arr = old_arr + 50
    assert new_arr.tolist() == list(range(50, 60))
    dummy_aset["0"] = new_arr
    msg3 = "mutated sample `0` of `dummy_arrayset` to new value"
    mutated = co.commit(msg3)
    assert log_lines(repo, capsys) == [
        f"* {mutated} (testbranch) : {msg3}",
        f"* {initial} : {msg1}",
    ]
    co.metadata["hello"] = "world"
    msg4 = "added hellow world metadata"
    with_meta = co.commit(msg4)
    co.close()
    assert log_lines(repo, capsys) == [
        f"* {with_meta} (testbranch) : {msg4}",
        f"* {mutated} : {msg3}",
        f"* {initial} : {msg1}",
    ]
    assert log_lines(repo, capsys, "master") == [
        f"* {on_new} (master) (new) : {msg2}",
        f"* {initial} : {msg1}",
    ]

    # each branch head reads as committed
    rc = repo.checkout(branch="master")
    assert rc.arraysets["dummy_arrayset"]["0"].tolist() == list(range(10))
    assert rc.arraysets["dummy_arrayset"]["1"].tolist() == list(range(1, 11))
    assert len(rc.metadata) == 0
    rc.close()
    rc = repo.checkout(branch="testbranch")
    assert rc.arraysets["dummy_arrayset"]["0"].tolist() == list(range(50, 60))
    assert "1" not in rc.arraysets["dummy_arrayset"]
    assert rc.metadata["hello"] == "world"
    rc.close()
    rc = repo.checkout(commit=initial)
    assert list(rc.arraysets["dummy_arrayset"].keys()) == ["0"]
    rc.close()
