"""The staging area of the write checkout: an append-only journal.

The journal's first line names the branch and the base commit; every later
line is one change (arrayset created or removed, sample set or removed,
metadata set or removed; ``B`` sets many samples of one arrayset, ``Y``
the distinct ones of a bulk add, in columns: see :func:`.journal_lines.y_line`),
tab-separated and closed by its CRC-32. Replaying
the journal rebuilds the staged state. A line is durable once ``sync()`` has
written it; a line cut short by a killed process fails its CRC and is dropped
on the next open, so a change is either wholly staged or not at all. A batch
(the changes of one ``with`` block, synced together) is preceded by a
``T <count>`` line and replayed only when all of its lines are intact.

Durability and failures: a line is written whole and synced (``fsync``)
before the call that logged it returns. A write or sync that fails (a full
disk, an I/O error) cuts the file back to its last good length and puts the
staged state back to what the file holds, then raises the :class:`OSError`:
the failed call staged nothing, and later lines never run onto a torn one.
A journal damaged in the middle (what a power cut can leave) keeps every
intact line and batch (a copy of the file is set aside and a warning says
how many lines were lost); one whose header is unreadable, or an empty one,
is set aside as ``journal.unreadable-<time>`` and the staging area restarts
from the branch head, with a warning naming the file.

A commit appends ``C <hash>`` once the commit object exists and before the
branch ref moves; on the next open, a journal ending in ``C`` is rolled
forward (ref already moved: the journal is reset onto the new commit) or back
(ref not moved: the marker is dropped).
"""

from __future__ import annotations

import errno
import json
import os
import time
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

from ..store.digest_run import Digests
from ..store.durable import FILE_MODE, fsync_dir, fsync_fd, truncate_to, write_all
from .journal_lines import b_line, y_line, y_run
from .keynames import KeyNames


class UnreadableJournal(RuntimeError):
    """A journal without an intact header line (empty, or damaged at its start)."""

    def __init__(self, message: str, intact: int = 0) -> None:
        super().__init__(message)
        #: intact change lines after the damaged header
        self.intact = intact


#: samples per ``B`` line written by :meth:`Journal.record_samples`
B_LINE_SAMPLES = 1 << 16


class StagedAset:
    """Staged changes of one arrayset.

    ``samples`` maps each staged key to its digest (None: removed). Runs of
    a bulk add (:meth:`add_run`) are kept as they came, an array of names
    and a list of digests, and merged into ``samples`` (in order, later
    wins) only when something reads it: a commit of bulk adds lays their
    records out from the runs (:meth:`as_run`) without a str or a dict
    entry per key.
    """

    __slots__ = ("_runs", "_samples", "created", "removed", "schema")

    def __init__(
        self,
        created: bool = False,
        removed: bool = False,
        schema: str | None = None,
        samples: dict[str, bytes | None] | None = None,
    ) -> None:
        self.created = created  # (re)created in staging: base samples do not count
        self.removed = removed
        self.schema = schema
        self._samples: dict[str, bytes | None] = {} if samples is None else samples
        self._runs: list[tuple[KeyNames, Sequence[bytes]]] = []

    @property
    def samples(self) -> dict[str, bytes | None]:
        """Encoded key -> digest (None: removed) of every staged sample."""
        if self._runs:
            runs, self._runs = self._runs, []
            for names, digests in runs:
                self._samples.update(zip(names.tolist(), digests, strict=True))
        return self._samples

    def add_run(self, names: KeyNames, digests: Sequence[bytes]) -> None:
        """Stage samples ``names[i]`` -> ``digests[i]`` (distinct names), after
        the samples staged so far."""
        self._runs.append((names, digests))

    def as_run(self) -> tuple[KeyNames, Sequence[bytes]] | None:
        """Every staged sample as one run of distinct names (what a commit
        lays out from arrays), when bulk adds staged them: their runs and
        any samples set before them (none removed, no key set twice);
        None otherwise."""
        runs, before = self._runs, self._samples
        if not runs:
            return None
        if len(runs) == 1 and not before:
            return runs[0]
        if None in before.values():
            return None
        import numpy as np  # not at the top: ``git hangar status`` reads journals without it

        # samples in the dict were all set before the runs (setting one merges them)
        parts = [KeyNames(np.array([e.encode() for e in before]))] if before else []
        parts += [names for names, _ in runs]
        merged = np.concatenate([p.names for p in parts])
        ints = [p.ints for p in parts if p.ints is not None]
        both = np.concatenate(ints) if len(ints) == len(parts) else None
        ordered = np.sort(both if both is not None else merged)  # ints: one name each
        if (ordered[1:] == ordered[:-1]).any():
            return None
        if not before and all(isinstance(ds, Digests) for _, ds in runs):  # no list of them
            joined = b"".join([ds.joined for _, ds in runs])  # type: ignore[attr-defined]
            return KeyNames(merged, both), Digests(joined)
        digests = list(before.values()) + [d for _, ds in runs for d in ds]
        return KeyNames(merged, both), digests  # type: ignore[return-value]


#: a journal line to write: its bytes, or them in parts
_Line = bytes | tuple[bytes | memoryview, ...]


def _write_lines(fd: int, lines: list[_Line]) -> int:
    """Write ``lines`` (see :data:`_Line`) one after the other, part by part
    (no joined copy; an ``OSError`` leaves part of them written, as from
    :func:`.durable.write_all`); returns the bytes written."""
    total = 0
    for line in lines:
        for part in line if isinstance(line, tuple) else (line,):
            write_all(fd, part)
            total += len(part)
    return total


class Journal:
    """Replayable log of staged changes; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.branch = "master"
        self.base: str | None = None
        self.asets: dict[str, StagedAset] = {}
        self.meta: dict[str, str | None] = {}
        self.pending_commit: str | None = None
        self._buf: list[_Line] = []  # lines logged, not yet written
        #: arrayset -> (keys, digests) logged by record_sample, not yet formatted
        self._samples_buf: dict[str, tuple[list[str], list[bytes]]] = {}
        self._fd = -1
        self._size = 0  # length of the file as this journal wrote it
        self._torn = False  # the file may be longer: cut it before writing
        self.batching = 0
        #: the file an unreadable journal was set aside as, when it was
        self.set_aside: Path | None = None

    # ---- opening -----------------------------------------------------
    @classmethod
    def open(cls, path: Path, branch: str, base: str | None) -> Journal:
        j = cls(path)
        if path.exists():
            try:
                j._replay()
            except UnreadableJournal as exc:
                j._set_aside(branch, base, exc.intact)
        else:
            j.reset(branch, base)
        j._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        j._size = os.fstat(j._fd).st_size
        return j

    def _set_aside(self, branch: str, base: str | None, intact: int) -> None:
        """Move an unreadable journal out of the way and restart the staging
        area from ``base`` of ``branch`` (committed work is in git: untouched)."""
        keep = self.path.with_name(f"journal.unreadable-{time.time_ns()}")
        os.replace(self.path, keep)
        self.set_aside = keep
        self.reset(branch, base)
        warnings.warn(
            f"staging journal {self.path} was unreadable (empty, or its header is "
            f"damaged: {intact} intact change lines after it cannot be replayed without it); "
            f"it was set aside as {keep} and the staging area restarted from the head of "
            f"branch {branch!r}: changes staged and not committed were lost, nothing "
            "committed was",
            RuntimeWarning,
            stacklevel=3,
        )

    @classmethod
    def peek(cls, path: Path) -> Journal | None:
        """Read the staged state without writing anything (None if no journal).

        Safe while a writer appends: a torn or damaged tail is ignored, not
        repaired, and no file handle is kept.
        """
        if not path.exists():
            return None
        j = cls(path)
        j._replay(repair=False)
        return j

    def _replay(self, repair: bool = True) -> None:
        self._replay_bytes(self.path.read_bytes(), repair)

    def _replay_bytes(self, raw: bytes, repair: bool = False) -> None:
        """Replay journal bytes ``raw``; with ``repair``, set damage aside and
        drop a torn tail (see the module docstring).

        Raises
        ------
        UnreadableJournal
            If ``raw`` holds no intact header line.
        """
        data = raw.decode("utf-8", "replace")
        lines = data.split("\n")
        complete = lines[:-1]  # the last piece has no newline: cut short
        # one per complete line: its fields, or None when it fails its CRC
        records: list[list[str] | None] = []
        for line in complete:
            body, _, crc = line.rpartition("\t")
            ok = bool(body) and f"{zlib.crc32(body.encode()):08x}" == crc
            records.append(body.split("\t") if ok else None)
        head = records[0] if records else None
        try:
            if head is None or head[0] != "H":
                raise ValueError("no header")
            hdr = json.loads(head[1])
            branch, base = hdr["branch"], hdr["base"]
            if not isinstance(branch, str) or not (base is None or isinstance(base, str)):
                raise ValueError("malformed header")
        except (ValueError, IndexError, KeyError, TypeError):
            intact = sum(r is not None for r in records[1:])
            raise UnreadableJournal(
                f"staging journal {self.path} is unreadable; a write checkout "
                "(`git hangar reset`, or checkout(write=True)) sets it aside and "
                "restarts the staging area from the branch head",
                intact,
            ) from None
        self.branch, self.base = branch, base
        damaged = sum(r is None for r in records)  # lines lost (a power cut, bit rot)
        dropped = 0  # intact lines of batches cut short or damaged
        i = 1
        while i < len(records):
            fields = records[i]
            if fields is None:
                i += 1
            elif fields[0] == "T":  # a batch: all of its lines, or none
                n = int(fields[1])
                batch = records[i + 1 : i + 1 + n]
                if len(batch) == n and all(f is not None and f[0] != "T" for f in batch):
                    for f in batch:
                        self._apply(f)  # type: ignore[arg-type]
                else:  # cut short or damaged: dropped whole (its header too), up to
                    # a later batch, which may start right after the header
                    n = next(
                        (k for k, f in enumerate(batch) if f is not None and f[0] == "T"),
                        len(batch),
                    )
                    dropped += 1 + sum(f is not None for f in batch[:n])
                i += 1 + n
            else:
                self._apply(fields)
                i += 1
        if not repair:
            return
        if damaged:
            keep = self.path.with_name(f"journal.damaged-{time.time_ns()}")
            os.replace(self.path, keep)
            warnings.warn(
                f"staging journal {self.path} held {damaged} damaged lines (and {dropped} "
                f"lines of batches they cut); kept a copy at {keep} and continued with "
                "every intact line: the changes of the damaged ones are not staged",
                RuntimeWarning,
                stacklevel=3,
            )
            self._rewrite()
        elif lines[-1] or dropped:
            # drop the torn tail (a cut line, or a batch cut short) so later
            # appends start on a fresh line
            self._rewrite()

    def _apply(self, f: list[str]) -> None:
        op = f[0]
        if op == "A":
            self._aset(f[1]).samples[f[2]] = bytes.fromhex(f[3])
        elif op == "B":  # many "A" of one arrayset: B <aset> <key> <digest> <key> ...
            if len(f) % 2:
                raise RuntimeError("malformed staging journal entry 'B'")
            samples = self._aset(f[1]).samples
            fromhex = bytes.fromhex
            for i in range(2, len(f), 2):
                samples[f[i]] = fromhex(f[i + 1])
        elif op == "Y":  # a bulk add's distinct samples, in columns (see y_line)
            if len(f) != 4:
                raise RuntimeError("malformed staging journal entry 'Y'")
            self._aset(f[1]).add_run(*y_run(f[2], f[3]))
        elif op == "D":
            self._aset(f[1]).samples[f[2]] = None
        elif op == "S":
            self.asets[f[1]] = StagedAset(created=True, schema=f[2])
        elif op == "R":
            self.asets[f[1]] = StagedAset(removed=True)
        elif op == "M":
            self.meta[f[1]] = bytes.fromhex(f[2]).decode("ascii")
        elif op == "X":
            self.meta[f[1]] = None
        elif op == "C":
            self.pending_commit = f[1]
        else:
            raise RuntimeError(f"unknown staging journal entry {op!r}")

    def _aset(self, name: str) -> StagedAset:
        st = self.asets.get(name)
        if st is None:
            st = self.asets[name] = StagedAset()
        return st

    # ---- writing -----------------------------------------------------
    @staticmethod
    def _line(fields: tuple[str, ...] | list[str]) -> str:
        body = "\t".join(fields)
        return f"{body}\t{zlib.crc32(body.encode()):08x}\n"

    def _lines_for_state(self) -> list[str]:
        out = [self._line(("H", json.dumps({"branch": self.branch, "base": self.base})))]
        for name, st in self.asets.items():
            if st.removed:
                out.append(self._line(("R", name)))
            if st.created:
                out.append(self._line(("S", name, st.schema or "")))
            for enc, d in st.samples.items():
                out.append(
                    self._line(("A", name, enc, d.hex()) if d is not None else ("D", name, enc))
                )
        for enc, v in self.meta.items():
            out.append(
                self._line(("M", enc, v.encode("ascii").hex()) if v is not None else ("X", enc))
            )
        if self.pending_commit:
            out.append(self._line(("C", self.pending_commit)))
        return out

    def _rewrite(self) -> None:
        """Atomically and durably replace the file with the current state
        (the new file synced before the rename, its directory after)."""
        tmp = self.path.with_suffix(".tmp")
        data = "".join(self._lines_for_state()).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            write_all(fd, data)
            fsync_fd(fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)

    def reset(self, branch: str, base: str | None) -> None:
        """Empty the staging area onto ``base`` of ``branch`` (atomic)."""
        self._buf.clear()
        self._samples_buf.clear()
        self.branch, self.base = branch, base
        self.asets, self.meta, self.pending_commit = {}, {}, None
        self._rewrite()

    def drop_pending_commit(self) -> None:
        """Forget a ``C`` marker whose commit never became the branch head (atomic)."""
        self.pending_commit = None
        self._rewrite()

    def rebase(self, base: str | None) -> None:
        """Keep the staged changes, now on top of ``base`` (atomic).

        Used when the branch's head was lost and moved back (``git hangar
        fsck --repair``): the changes are deltas, so they apply to any base.
        """
        self.base = base
        self.pending_commit = None
        self._rewrite()

    def record(self, *fields: str) -> None:
        """Apply and log one change; durable at the next :meth:`sync`."""
        if self._samples_buf:
            self._drain_samples()
        self._apply(list(fields))
        self._buf.append(self._line(fields).encode())
        if not self.batching:
            self.sync()

    def record_sample(self, aset: str, enc: str, digest: bytes) -> None:
        """``record("A", aset, enc, digest.hex())`` without the detours (hot path).

        The line is formatted when it is written (:meth:`sync`), with the
        other sample lines of the batch.
        """
        st = self.asets.get(aset)
        if st is None:
            st = self._aset(aset)
        st.samples[enc] = digest
        buf = self._samples_buf.get(aset)
        if buf is None:
            buf = self._samples_buf[aset] = ([], [])
        buf[0].append(enc)
        buf[1].append(digest)
        if not self.batching:
            self.sync()

    def record_samples(self, aset: str, encs: Sequence[str], digests: Sequence[bytes]) -> None:
        """Many :meth:`record_sample` calls of one arrayset at once (the bulk path).

        Names given as :class:`.KeyNames` (distinct ones) are kept as an
        array (see :meth:`StagedAset.add_run`) and logged from it.

        Logged as ``Y`` lines (names as a :class:`.KeyNames`) or ``B`` lines of up
        to :data:`B_LINE_SAMPLES` samples each; several lines are one batch
        (replayed whole or not at all), like the lines of a ``with`` block.
        """
        if len(encs) != len(digests):
            raise ValueError(f"{len(encs)} keys for {len(digests)} digests")
        if not encs:
            return
        if self._samples_buf:
            self._drain_samples()  # keep the order of earlier samples
        st = self.asets.get(aset)
        if st is None:
            st = self._aset(aset)
        if isinstance(encs, KeyNames):  # kept as arrays until read
            st.add_run(encs, digests)
            for i in range(0, len(encs), B_LINE_SAMPLES):
                j = i + B_LINE_SAMPLES
                self._buf.append(y_line(aset, encs[i:j], digests[i:j]))
        else:
            st.samples.update(zip(encs, digests, strict=True))
            for i in range(0, len(encs), B_LINE_SAMPLES):
                j = i + B_LINE_SAMPLES
                self._buf.append(b_line(aset, encs[i:j], digests[i:j]).encode())
        if not self.batching:
            self.sync()

    def _drain_samples(self) -> None:
        """Log the samples held back by :meth:`record_sample`: one ``B`` line per
        arrayset (samples of different arraysets are independent, so only the
        order within an arrayset is kept, and it is)."""
        lines = [
            b_line(a, encs, digests).encode() for a, (encs, digests) in self._samples_buf.items()
        ]
        self._samples_buf.clear()
        self._buf.extend(lines)

    def sync(self) -> None:
        if self._samples_buf:
            self._drain_samples()
        if not self._buf:
            return
        if len(self._buf) > 1:  # a batch is replayed whole or not at all
            self._buf.insert(0, self._line(("T", str(len(self._buf)))).encode())
        lines, self._buf = self._buf, []
        try:
            if self._torn and truncate_to(self._fd, self._size) != self._size:
                raise OSError(
                    errno.EIO, f"staging journal {self.path} cannot be cut back to its end"
                )
            self._torn = False
            written = _write_lines(self._fd, lines)
            fsync_fd(self._fd)
        except BaseException:
            # a cut that fails is tried again before the next line is written
            self._torn = truncate_to(self._fd, self._size) != self._size
            self._restore()
            raise
        self._size += written

    def discard(self) -> None:
        """Drop the changes logged since the last :meth:`sync` (a batch whose
        payloads could not be stored): the staged state is again what the
        file holds."""
        self._buf.clear()
        self._samples_buf.clear()
        self._restore()

    def _restore(self) -> None:
        """Put the staged state back to what the file holds (its first
        ``_size`` bytes) after a failed write."""
        self._buf.clear()
        self._samples_buf.clear()
        fresh = Journal(self.path)
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(self._size)
            fresh._replay_bytes(data)
        except (OSError, UnreadableJournal):
            return  # the next open replays the file
        self.branch, self.base = fresh.branch, fresh.base
        self.asets, self.meta = fresh.asets, fresh.meta
        self.pending_commit = fresh.pending_commit

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    @property
    def has_entries(self) -> bool:
        return bool(self.asets or self.meta)
