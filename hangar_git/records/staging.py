"""The staging area of the write checkout: an append-only journal.

The journal's first line names the branch and the base commit; every later
line is one change (arrayset created or removed, sample set or removed,
metadata set or removed), tab-separated and closed by its CRC-32. Replaying
the journal rebuilds the staged state. A line is durable once ``sync()`` has
written it; a line cut short by a killed process fails its CRC and is dropped
on the next open, so a change is either wholly staged or not at all.

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
from dataclasses import dataclass, field
from pathlib import Path


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

    def _replay(self) -> None:
        data = self.path.read_bytes().decode("utf-8", "replace")
        lines = data.split("\n")
        complete = lines[:-1]  # the last piece has no newline: cut short
        good = 0
        for i, line in enumerate(complete):
            body, _, crc = line.rpartition("\t")
            if not body or f"{zlib.crc32(body.encode()):08x}" != crc:
                break
            fields = body.split("\t")
            if i == 0:
                if fields[0] != "H":
                    break
                hdr = json.loads(fields[1])
                self.branch, self.base = hdr["branch"], hdr["base"]
            else:
                self._apply(fields)
            good = i + 1
        if good == 0:
            raise RuntimeError(f"staging journal {self.path} is unreadable")
        if good < len(complete):
            keep = self.path.with_name(f"journal.damaged-{int(time.time())}")
            os.replace(self.path, keep)
            warnings.warn(
                f"staging journal damaged after {good} entries; kept a copy at {keep} "
                "and continued from the intact part",
                RuntimeWarning,
                stacklevel=3,
            )
            self._rewrite()
        elif lines[-1]:
            # drop the torn tail so later appends start on a fresh line
            self._rewrite()

    def _apply(self, f: list[str]) -> None:
        op = f[0]
        if op == "A":
            self._aset(f[1]).samples[f[2]] = bytes.fromhex(f[3])
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
    def _line(fields: tuple[str, ...]) -> str:
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
        self.branch, self.base = branch, base
        self.asets, self.meta, self.pending_commit = {}, {}, None
        self._rewrite()

    def record(self, *fields: str) -> None:
        """Apply and log one change; durable at the next :meth:`sync`."""
        self._apply(list(fields))
        self._buf.append(self._line(fields))
        if not self.batching:
            self.sync()

    def sync(self) -> None:
        if not self._buf:
            return
        data = "".join(self._buf).encode()
        self._buf.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def discard_unsynced(self) -> None:
        """Forget logged changes not yet synced (used when a batch fails)."""
        if self._buf:
            self._buf.clear()
            self.asets, self.meta, self.pending_commit = {}, {}, None
            self._replay()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    @property
    def has_entries(self) -> bool:
        return bool(self.asets or self.meta)
