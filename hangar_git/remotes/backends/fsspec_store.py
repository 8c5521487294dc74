"""A data remote's objects on any fsspec filesystem: ``s3://``, ``gs://``, ``memory://`` ...

Each verb is one fsspec call: a listing is ``ls``, a whole read a ranged
``cat_file`` of at most ``limit + 1`` bytes (never more than the caller
accepts), ranged reads ``cat_ranges`` (concurrent on async filesystems), a
write ``pipe_file`` (one PUT, applied whole by an object store), a
download a streamed ``open`` copied through
:func:`~hangar_git.remotes.bounded.copy_to_new_file`.

Local folders have their own backend (:mod:`.local`), which reads only
regular files and writes through a rename.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import bounded
from .base import RemoteStore


class FsspecStore(RemoteStore):
    """Objects on an fsspec filesystem (an object store, or one held in memory).

    See :class:`~hangar_git.remotes.backends.base.RemoteStore` for the verbs
    and the parameters.
    """

    # ---- reading -----------------------------------------------------------
    def list_dir(self, prefix: str) -> tuple[dict[str, int], set[str]]:
        """The objects directly under ``prefix`` (see :meth:`RemoteStore.list_dir`)."""
        path = self.path(prefix)
        self.count()
        try:
            self.fs.invalidate_cache(path)
            listing = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return {}, set()
        return bounded.sort_listing(listing, self.special_files, self.root)

    def get(self, name: str, limit: int) -> bytes:
        """Object ``name`` whole, at most ``limit`` bytes (see :meth:`RemoteStore.get`)."""
        path = self.path(name)
        self.count()
        data = self._read(path, limit)
        self.count(0, received=len(data))
        bounded.check_size(len(data), limit, path)
        return data

    def _read(self, path: str, limit: int) -> bytes:
        # one ranged read: never more than limit + 1 bytes
        return bytes(self.fs.cat_file(path, start=0, end=limit + 1))

    def get_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes | BaseException]:
        """Bytes of ``(name, start, end)`` ranges (see :meth:`RemoteStore.get_ranges`)."""
        if not ranges:
            return []
        paths = {name: self.path(name) for name in {r[0] for r in ranges}}
        self.count(len(ranges))
        out = self._read_ranges([(paths[n], s, e) for n, s, e in ranges])
        self.count(0, received=sum(len(d) for d in out if not isinstance(d, BaseException)))
        return out

    def _read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes | BaseException]:
        paths, starts, ends = (list(c) for c in zip(*ranges, strict=True))
        return list(self.fs.cat_ranges(paths, starts, ends, on_error="return"))

    def get_file(self, name: str, dst: Path, limit: int) -> int:
        """Copy object ``name`` into new file ``dst`` (see :meth:`RemoteStore.get_file`)."""
        path = self.path(name)
        self.count()
        with self.fs.open(path, "rb") as src:
            size = getattr(src, "size", None)
            done = bounded.copy_to_new_file(src, size, dst, limit, path)
        self.count(0, received=done)
        return done

    def exists(self, name: str) -> bool:
        """True when object ``name`` is there."""
        path = self.path(name)
        self.count()
        return bool(self.fs.exists(path))

    def reach(self) -> None:
        """Check that the bucket (the root's first part) exists, when the root has one.

        Raises
        ------
        FileNotFoundError
            If there is no such bucket.
        """
        bucket = self.root.split("/", 1)[0] if "/" in self.root else ""
        if bucket:
            self.count()
            if not self.fs.exists(bucket):
                raise FileNotFoundError(f"no bucket {bucket!r}")

    # ---- writing -----------------------------------------------------------
    def put(self, name: str, data: bytes) -> None:
        """Write object ``name`` in one request (see :meth:`RemoteStore.put`)."""
        path = self.path(name)
        self.count(sent=len(data))
        self.fs.pipe_file(path, data)

    def put_file(self, name: str, src: Path) -> None:
        """Stream local file ``src`` to object ``name`` (see :meth:`RemoteStore.put_file`)."""
        path = self.path(name)
        self.count(sent=src.stat().st_size)
        self.fs.put_file(str(src), path)

    def delete(self, names: Iterable[str]) -> None:
        """Remove objects, one request each (see :meth:`RemoteStore.delete`)."""
        paths = [self.path(n) for n in names]
        for path in paths:
            self.count()
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass
        for parent in {p.rpartition("/")[0] for p in paths}:
            self.fs.invalidate_cache(parent)


__all__ = ["FsspecStore"]
