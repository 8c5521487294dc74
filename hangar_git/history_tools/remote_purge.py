"""Purged payloads removed from a data remote: its packs rewritten without them.

Remote packs are immutable and named by content, so a pack holding a purged
payload is replaced: the payloads it keeps are read from the remote (each
block once, each payload checked against its digest), written to a new pack,
uploaded and checked to have landed; only then are the old pack and its
index deleted. A process stopped in between leaves both packs (the kept
payloads twice), never one missing. A large payload (an object of its own)
is deleted. Only payloads that no commit of this repository needs any more
are given here (see :func:`hangar_git.history_tools.drop_purged`): branches
on the remote that were never fetched here are not looked at.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import IntegrityError
from ..remotes import bounded
from ..remotes.data_transport import PACK_TARGET
from ..remotes.fetchplan import block_raw_bound
from ..remotes.layout import index_object, kind_nbytes, large_object, pack_object
from ..remotes.packbuilder import PackBuilder
from ..remotes.packformat import BLOCK_HEADER_SIZE, decode_block
from ..store.digest import digest_bytes
from ..wording import plural

if TYPE_CHECKING:
    from ..remotes.data_remote import DataRemote
    from ..remotes.packformat import PackIndex
    from ..repository import Repository


@dataclass
class RemotePurge:
    """What a purge of a data remote did (or, with ``dry_run``, would do).

    Attributes
    ----------
    remote : str
    dry_run : bool
    packs : dict of str to str or None
        Old pack id -> the pack that replaced it (None when nothing in it was kept).
    removed : int
        Payloads removed from the remote (in packs and as large objects).
    """

    remote: str
    dry_run: bool
    packs: dict[str, str | None] = field(default_factory=dict)
    removed: int = 0

    def summary(self) -> str:
        """One line for people."""
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"data remote {self.remote!r}: {verb} {plural(self.removed, 'payload')} "
            f"({plural(len(self.packs), 'pack')} rewritten)"
        )


def _repack(remote: DataRemote, idx: PackIndex, gone: Collection[bytes]) -> str | None:
    """Upload ``idx``'s pack without ``gone``; the new pack's id (None if empty).

    The sizes the remote's index states are checked before anything is read:
    a kept payload over :data:`~hangar_git.remotes.bounded.MAX_PAYLOAD_BYTES`,
    a block longer than its payloads can need, or more to read than a pack
    holds is an :class:`IntegrityError`, and nothing is removed from the pack.
    """
    keep = [(d, e) for d, e in idx.entries.items() if d not in gone]
    if not keep:
        return None
    biggest: dict[tuple[int, int], int] = {}
    for d, e in keep:
        if e.ilen > bounded.MAX_PAYLOAD_BYTES:
            raise IntegrityError(
                f"remote pack {idx.pack_id}: payload {d.hex()} states {e.ilen} bytes; "
                "nothing was removed from it"
            )
        biggest[(e.boff, e.blen)] = max(biggest.get((e.boff, e.blen), 0), e.ilen)
    blocks = sorted(biggest)
    for b, n in blocks:
        if n > BLOCK_HEADER_SIZE + block_raw_bound(biggest[(b, n)]):
            raise IntegrityError(
                f"remote pack {idx.pack_id}: the block at {b} states {n} bytes, more than "
                "its payloads can need; nothing was removed from it"
            )
    if sum(n for _, n in blocks) > 2 * PACK_TARGET + bounded.MAX_BLOCK_RAW:
        raise IntegrityError(
            f"remote pack {idx.pack_id} is larger than any pack this tool writes; "
            "nothing was removed from it"
        )
    raws = remote.read_ranges([(idx.pack_id, b, b + n) for b, n in blocks])
    raw_of = {
        b: decode_block(raw, f"remote pack {idx.pack_id}", block_raw_bound(biggest[(b, n)]))
        for (b, n), raw in zip(blocks, raws, strict=True)
    }
    builder = PackBuilder()
    for d, e in keep:
        data = raw_of[e.boff][e.ioff : e.ioff + e.ilen]
        if len(data) != e.ilen or kind_nbytes(e.kind) not in (None, e.ilen):
            raise IntegrityError(f"remote pack {idx.pack_id}: payload {d.hex()} is cut short")
        if digest_bytes(e.kind, data) != d:
            raise IntegrityError(
                f"remote pack {idx.pack_id}: payload {d.hex()} does not match its digest; "
                "nothing was removed from it"
            )
        builder.add(d, e.kind, data)
    pack = builder.seal()
    remote.upload(pack)
    bad = remote.verify_uploaded([pack])
    if bad:
        raise IntegrityError(f"the new pack did not land whole ({bad}); the old one is kept")
    return pack.pack_id


def purge_data_remote(
    repo: Repository, name: str, digests: Collection[bytes], *, dry_run: bool = False
) -> RemotePurge:
    """Remove the payloads ``digests`` from the data remote of remote ``name``.

    Parameters
    ----------
    repo : Repository
    name : str
        A remote with a data URL.
    digests : collection of bytes
        The payloads to remove (those no commit of this repository needs).
    dry_run : bool
        Only find the packs that hold them.

    Returns
    -------
    RemotePurge

    Raises
    ------
    ValueError
        If there is no such remote, or it has no data URL.
    IntegrityError
        If a kept payload cannot be read whole from the remote (that pack
        is left as it was).
    """
    remote = repo.remote.fetcher(name).remote
    gone = set(digests)
    report = RemotePurge(name, dry_run)
    indexes = dict(remote.refresh())
    found: set[bytes] = set()
    for pid, idx in sorted(indexes.items()):
        hit = gone.intersection(idx.digests)
        if not hit:
            continue
        found |= hit
        report.packs[pid] = None
        if dry_run:
            continue
        report.packs[pid] = _repack(remote, idx, gone)
        remote.remove_objects([index_object(pid), pack_object(pid)])  # the index first
    large = [d for d in gone if d in remote.large]
    report.removed = len(found | set(large))
    if large and not dry_run:
        remote.remove_objects([large_object(d) for d in large])
    return report


__all__ = ["RemotePurge", "purge_data_remote"]
