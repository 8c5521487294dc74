"""The staging area of the write checkout: an append-only journal.

The journal's first line names the branch and the base commit; every later
line is one change (arrayset created or removed, sample set or removed,
metadata set or removed; ``B`` sets many samples of one arrayset),
tab-separated and closed by its CRC-32. Replaying
the journal rebuilds the staged state. A line is durable once ``sync()`` has
written it; a line cut short by a killed process fails its CRC and is dropped
on the next open, so a change is either wholly staged or not at all. A batch
(the changes of one ``with`` block, synced together) is preceded by a
``T <count>`` line and replayed only when all of its lines are intact.

A commit appends ``C <hash>`` once the commit object exists and before the
branch ref moves; on the next open, a journal ending in ``C`` is rolled
forward (ref already moved: the journal is reset onto the new commit) or back
(ref not moved: the marker is dropped).
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: samples per ``B`` line written by :meth:`Journal.record_samples`
B_LINE_SAMPLES = 1 << 16


@dataclass
class StagedAset:
    """Staged changes of one arrayset."""

    created: bool = False  # (re)created in staging: base samples do not count
    removed: bool = False
    schema: str | None = None
    samples: dict[str, bytes | None] = field(default_factory=dict)


class Journal:
    """Replayable log of staged changes; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.branch = "master"
        self.base: str | None = None
        self.asets: dict[str, StagedAset] = {}
        self.meta: dict[str, str | None] = {}
        self.pending_commit: str | None = None
        self._buf: list[str] = []
        self._samples_buf: list[tuple[str, str, bytes]] = []
        self._fd = -1
        self.batching = 0

    # ---- opening -----------------------------------------------------
    @classmethod
    def open(cls, path: Path, branch: str, base: str | None) -> Journal:
        j = cls(path)
        if path.exists():
            j._replay()
        else:
            j.reset(branch, base)
        j._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return j

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
        data = self.path.read_bytes().decode("utf-8", "replace")
        lines = data.split("\n")
        complete = lines[:-1]  # the last piece has no newline: cut short
        records: list[list[str]] = []
        for line in complete:
            body, _, crc = line.rpartition("\t")
            if not body or f"{zlib.crc32(body.encode()):08x}" != crc:
                break
            records.append(body.split("\t"))
        if not records or records[0][0] != "H":
            raise RuntimeError(f"staging journal {self.path} is unreadable")
        hdr = json.loads(records[0][1])
        self.branch, self.base = hdr["branch"], hdr["base"]
        good = 1
        while good < len(records):
            fields = records[good]
            if fields[0] == "T":  # a batch: all of its lines, or none
                n = int(fields[1])
                if good + 1 + n > len(records):
                    break
                for f in records[good + 1 : good + 1 + n]:
                    self._apply(f)
                good += 1 + n
            else:
                self._apply(fields)
                good += 1
        if not repair:
            return
        if len(records) < len(complete):
            keep = self.path.with_name(f"journal.damaged-{int(time.time())}")
            os.replace(self.path, keep)
            warnings.warn(
                f"staging journal damaged after {good} entries; kept a copy at {keep} "
                "and continued from the intact part",
                RuntimeWarning,
                stacklevel=3,
            )
            self._rewrite()
        elif lines[-1] or good < len(records):
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
        """Atomically replace the file with the current state."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(self._lines_for_state()))
            fh.flush()
        os.replace(tmp, self.path)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def reset(self, branch: str, base: str | None) -> None:
        """Empty the staging area onto ``base`` of ``branch`` (atomic)."""
        self._buf.clear()
        self._samples_buf.clear()
        self.branch, self.base = branch, base
        self.asets, self.meta, self.pending_commit = {}, {}, None
        self._rewrite()

    def record(self, *fields: str) -> None:
        """Apply and log one change; durable at the next :meth:`sync`."""
        if self._samples_buf:
            self._drain_samples()
        self._apply(list(fields))
        self._buf.append(self._line(fields))
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
        self._samples_buf.append((aset, enc, digest))
        if not self.batching:
            self.sync()

    def record_samples(self, aset: str, encs: Sequence[str], digests: Sequence[bytes]) -> None:
        """Many :meth:`record_sample` calls of one arrayset at once (the bulk path).

        Logged as ``B`` lines of up to :data:`B_LINE_SAMPLES` samples each,
        formatted from the whole run at once; several lines are one batch
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
        st.samples.update(zip(encs, digests, strict=True))
        hexed = b"".join(digests).hex()
        step = B_LINE_SAMPLES
        for i in range(0, len(encs), step):
            part = encs[i : i + step]
            fields: list[str] = [""] * (2 * len(part))
            fields[::2] = part
            fields[1::2] = [hexed[j : j + 40] for j in range(40 * i, 40 * (i + len(part)), 40)]
            body = f"B\t{aset}\t" + "\t".join(fields)
            self._buf.append(f"{body}\t{zlib.crc32(body.encode()):08x}\n")
        if not self.batching:
            self.sync()

    def _drain_samples(self) -> None:
        """Log the samples held back by :meth:`record_sample`: one ``B`` line per
        arrayset (samples of different arraysets are independent, so only the
        order within an arrayset is kept, and it is)."""
        per_aset: dict[str, list[str]] = {}
        for a, e, d in self._samples_buf:
            fields = per_aset.get(a)
            if fields is None:
                fields = per_aset[a] = ["B", a]
            fields.append(e)
            fields.append(d.hex())
        self._samples_buf.clear()
        self._buf.extend([self._line(fields) for fields in per_aset.values()])

    def sync(self) -> None:
        if self._samples_buf:
            self._drain_samples()
        if not self._buf:
            return
        if len(self._buf) > 1:  # a batch is replayed whole or not at all
            self._buf.insert(0, self._line(("T", str(len(self._buf)))))
        data = "".join(self._buf).encode()
        self._buf.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    @property
    def has_entries(self) -> bool:
        return bool(self.asets or self.meta)
