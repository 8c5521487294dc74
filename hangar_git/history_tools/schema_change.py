"""Schema evolution: an arrayset's schema changed, or the arrayset renamed, as a commit.

Raising the maximum shape of a variable-shape arrayset, making a fixed-shape
arrayset variable-shape (its shape becomes the maximum), and renaming change
records only: every sample keeps its payload, so the commit costs a few
trees, whatever the arrayset's size. A new dtype needs every sample cast, so
:func:`change_dtype` rewrites the arrayset through a write checkout (the
cost of its samples), refusing a cast that can lose values unless forced.

Older commits keep their own schema: they are not rewritten. A diff shows the
change as a mutation of the arrayset (its schema changed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pygit2

from ..commits import commit_on_branch
from ..gitutil import branch_head, read_raw, write_blob, write_tree
from ..merge import check_journal
from ..naming import check_arrayset_name
from ..records import changelog, trust
from ..records.changelog import CHANGES_NAME
from ..records.layout import MODE_BLOB, MODE_TREE, parse_tree, serialize_tree
from ..records.snapshot import TreeRecords, commit_tree
from ..schema import ArraysetSchema, check_dtype, check_shape

if TYPE_CHECKING:
    from ..records.staging import Journal
    from ..repository import Repository


def evolved_schema(
    old: ArraysetSchema, shape: object = None, variable_shape: bool | None = None
) -> ArraysetSchema:
    """``old`` with a new (maximum) ``shape`` and/or made variable-shape.

    Raises
    ------
    ValueError
        If some sample of ``old`` could not fit the new schema: a fixed shape
        changed, a variable-shape arrayset made fixed, a rank changed or a
        maximum lowered.
    """
    variable = old.variable_shape if variable_shape is None else variable_shape
    if not isinstance(variable, bool):
        raise ValueError(f"variable_shape must be a bool, not {variable!r}")
    new_shape = old.shape if shape is None else check_shape(shape)
    if old.variable_shape and not variable:
        raise ValueError("a variable-shape arrayset cannot be made fixed-shape")
    if not variable and new_shape != old.shape:
        raise ValueError(
            f"the shape {old.shape} of a fixed-shape arrayset cannot change: make it "
            "variable-shape (its shape becomes the maximum)"
        )
    if len(new_shape) != len(old.shape):
        raise ValueError(f"the rank of {old.shape} cannot change (to {new_shape})")
    if any(n < o for n, o in zip(new_shape, old.shape, strict=True)):
        raise ValueError(f"the maximum shape {old.shape} can only be raised, not to {new_shape}")
    return ArraysetSchema(old.dtype, new_shape, variable, old.named_samples)


def _new_root(
    git: pygit2.Repository, head: str, name: str, schema: ArraysetSchema, rename: str | None
) -> bytes:
    """Root tree of ``head`` with arrayset ``name``'s schema and name changed."""
    tree = commit_tree(git, head)
    assert tree is not None
    root = parse_tree(read_raw(git, tree))
    root.pop(CHANGES_NAME, None)
    asets = parse_tree(read_raw(git, root["arraysets"][1]))
    entry = parse_tree(read_raw(git, asets.pop(name)[1]))
    entry["schema"] = (MODE_BLOB, write_blob(git, schema.to_json().encode()))
    asets[rename or name] = (MODE_TREE, write_tree(git, serialize_tree(entry)))
    root["arraysets"] = (MODE_TREE, write_tree(git, serialize_tree(asets)))
    out = write_tree(git, serialize_tree(root))
    if trust.is_trusted(git, tree):  # the same records, checked, under a wider schema
        trust.remember(git, out)
        if trust.is_trusted(git, tree, trust.PAYLOADS):
            trust.remember(git, out, trust.PAYLOADS)
    return out


def change_schema(
    git: pygit2.Repository,
    identity: tuple[str, str],
    journal: Journal,
    arrayset: str,
    *,
    shape: object = None,
    variable_shape: bool | None = None,
    rename: str | None = None,
    message: str | None = None,
) -> str:
    """Commit, on the staging area's branch, arrayset ``arrayset`` with a raised
    maximum ``shape``, made variable-shape, and/or renamed to ``rename``.

    Returns
    -------
    str
        The new head.

    Raises
    ------
    KeyError
        If the branch head has no such arrayset.
    ValueError
        A schema some sample could not fit (see :func:`evolved_schema`), a
        bad or taken new name, nothing to change, or staged changes.
    """
    branch = journal.branch
    head = branch_head(git, branch)
    check_journal(git, journal, branch, head)
    if head is None:
        raise ValueError(f"branch {branch!r} has no commits yet")
    records = TreeRecords(git, commit_tree(git, head))
    if arrayset not in records.aset_entries:
        raise KeyError(f"no arrayset named {arrayset!r} on {branch!r}")
    old = ArraysetSchema.from_json(records.schema_text(arrayset))
    new = evolved_schema(old, shape, variable_shape)
    if rename is not None:
        check_arrayset_name(rename)
        if rename in records.aset_entries:
            raise ValueError(f"an arrayset named {rename!r} exists already")
    if new == old and rename in (None, arrayset):
        raise ValueError("nothing to change: give a new shape, variable_shape or name")
    if message is None:
        what = [f"schema {new.to_json()}"] if new != old else []
        what += [f"renamed to {rename!r}"] if rename not in (None, arrayset) else []
        message = f"Arrayset {arrayset!r}: " + ", ".join(what)

    def build_tree() -> bytes:
        tree = _new_root(git, head, arrayset, new, rename)
        log = changelog.from_trees(git, head, commit_tree(git, head), tree)
        return changelog.attach(git, tree, log) if log is not None else tree

    sha = commit_on_branch(
        git, branch, head, build_tree, message, (), identity, reflog=f"schema {arrayset}"
    )
    journal.reset(branch, sha)
    return sha


def change_dtype(
    repo: Repository,
    arrayset: str,
    dtype: object,
    *,
    branch: str | None = None,
    force: bool = False,
    message: str | None = None,
) -> str:
    """Commit arrayset ``arrayset`` with every sample cast to ``dtype``.

    The arrayset is made again with the new dtype (its shape and flags
    kept) and every sample written cast, through a write checkout, read in
    batches from the branch head (memory holds a batch, not the arrayset).

    Parameters
    ----------
    force : bool
        Allow a cast that can lose values (``numpy.can_cast(old, new,
        'safe')`` is False: narrowing, float to int, ...).

    Returns
    -------
    str
        The new head.

    Raises
    ------
    ValueError
        A lossy cast without ``force``, an unsupported dtype, the same dtype,
        or staged changes.
    """
    from ..checkout import WriterCheckout

    new = check_dtype(dtype)
    co = repo.checkout(write=True, branch=branch or repo.writer_branch)
    assert isinstance(co, WriterCheckout)
    staged = False
    try:
        if co.diff.status() != "CLEAN":
            raise ValueError("the staging area has uncommitted changes: commit or reset them first")
        aset = co.arraysets[arrayset]
        old = aset.dtype
        if new == old:
            raise ValueError(f"arrayset {arrayset!r} has dtype {old} already")
        if not force and not np.can_cast(old, new, "safe"):
            raise ValueError(
                f"casting {old} to {new} can lose values: force it to do it anyway "
                "(force=True; git hangar schema --force)"
            )
        shape, variable, named = aset.shape, aset.variable_shape, aset.named_samples
        # read from the head commit while the arrayset is made again: a batch
        # of samples in memory at a time, not the arrayset
        with repo.checkout(commit=co.commit_hash) as head:
            source = head.arraysets[arrayset]
            staged = True
            co.arraysets.remove_aset(arrayset)
            made = co.arraysets.init_arrayset(
                arrayset, shape, new, named_samples=named, variable_shape=variable
            )
            with made:
                for k, v in source.items():
                    made[k] = v.astype(new)
        return co.commit(message or f"Arrayset {arrayset!r}: dtype {old} -> {new}")
    except BaseException:
        if staged:  # nothing half-done stays staged
            co.reset_staging_area()
        raise
    finally:
        co.close()


__all__ = ["change_dtype", "change_schema", "evolved_schema"]
