"""Corruption: damage packs and the payload index at random, then every read of an
affected sample must raise IntegrityError, every other sample must read back
exactly, and fsck must name exactly the affected samples.

One repository is built (several commits on two branches, small payloads that
share blocks, large ones in blocks of their own, payloads shared between
commits); each trial copies it, applies one seeded corruption, and checks:

- every sample of every commit reads back bit for bit or raises IntegrityError
  (never wrong bytes, never another exception), singly and in batches;
- the samples that fail are exactly those the corruption touched (computed from
  where each payload sits), when that can be known in advance;
- ``fsck`` reports exactly the samples that fail.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hangar_git import IntegrityError, Repository
from hangar_git.fsck import verify
from hangar_git.store.digest import array_digest
from hangar_git.store.packs import ENTRY, entry_digests

SEED = int(os.environ.get("HANGAR_CORRUPTION_SEED", "7"))
TRIALS = int(os.environ.get("HANGAR_CORRUPTION_TRIALS", "88"))

Key = tuple[str, str, Any]  # (commit, arrayset, key)


def small(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 1000, 40).astype(np.int64)


def big(i: int) -> np.ndarray:
    return np.random.default_rng(10_000 + i).random(9000)  # 72 KB: a block of its own


def build(path: Path) -> list[str]:
    path.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name="Corrupt", user_email="c@example.org")
    co = repo.checkout(write=True)
    s = co.arraysets.init_arrayset("s", shape=(40,), dtype=np.int64)
    b = co.arraysets.init_arrayset("b", shape=(9000,), dtype=np.float64)
    commits = []
    for step in range(3):
        with s, b:
            for i in range(step * 25, step * 25 + 30):  # overlaps: shared payloads
                s[i] = small(i)
            for i in range(step * 2, step * 2 + 3):
                b[i] = big(i)
            if step:
                del s[step]
        commits.append(co.commit(f"step {step}"))
    co.close()
    repo.create_branch("dev", commits[0])
    co = repo.checkout(write=True, branch="dev")
    with co.arraysets["s"] as s:
        for i in range(200, 220):
            s[i] = small(i)
        s[205] = small(3)  # the same payload under another key
    commits.append(co.commit("dev"))
    co.close()
    repo.checkout(write=True).close()
    return commits


class Layout:
    """Where every sample of every commit sits, read from the intact repository."""

    def __init__(self, path: Path, commits: list[str]) -> None:
        repo = Repository(path)
        r = repo._store.reader()
        self.samples: dict[Key, bytes] = {}
        self.locs: dict[bytes, Any] = {}
        for sha in commits:
            co = repo.checkout(commit=sha)
            for a in co.arraysets:
                for enc, d in co.view.iter_items(a):
                    k = int(enc[2:]) if enc[0] == "i" else enc[2:]
                    self.samples[(sha, a, k)] = d
            co.close()
        self.locs = r.locate_many(set(self.samples.values()))
        r.close()
        con = sqlite3.connect(repo._store.index_path)
        self.segments = {
            sid: set(entry_digests(np.frombuffer(blob, ENTRY)))
            for sid, blob in con.execute("SELECT id, entries FROM segments")
        }
        self.blocks = {
            (p, o): bid for bid, p, o in con.execute("SELECT id, pack, boff FROM blocks")
        }
        con.close()
        self.arrays = {
            d: arr
            for d, arr in (
                (array_digest(a), a)
                for a in [small(i) for i in range(300)] + [big(i) for i in range(10)]
            )
        }

    def where(self, digests: set[bytes]) -> set[Key]:
        return {k for k, d in self.samples.items() if d in digests}

    def in_block_range(self, pack: int, lo: int, hi: int) -> set[bytes]:
        """Digests whose block overlaps bytes [lo, hi) of ``pack``."""
        return {
            d
            for d, loc in self.locs.items()
            if loc.pack == pack and loc.boff < hi and lo < loc.boff + loc.blen
        }


# ---- corruptions: each returns (description, expected affected digests or None) -----
def flip_pack_byte(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    store = path / ".git" / "hangar" / "store" / "packs"
    packs = sorted(store.glob("*.pack"))
    pack = rng.choice(packs)
    size = pack.stat().st_size
    off = rng.randrange(size)
    with open(pack, "r+b") as fh:
        fh.seek(off)
        b = fh.read(1)[0]
        fh.seek(off)
        fh.write(bytes([b ^ (1 << rng.randrange(8))]))
    n = int(pack.stem)
    hit = lay.in_block_range(n, off, off + 1)
    if hit:
        boff = lay.locs[next(iter(hit))].boff
        if boff + 5 <= off < boff + 8:  # header padding: checked by nothing, used by nothing
            return f"flip padding byte {off} of {pack.name}", set()
        assert off >= boff
    return f"flip byte {off} of {pack.name}", hit


def truncate_pack(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    pack = rng.choice(sorted((path / ".git/hangar/store/packs").glob("*.pack")))
    cut = rng.randrange(pack.stat().st_size)
    os.truncate(pack, cut)
    return f"truncate {pack.name} at {cut}", lay.in_block_range(int(pack.stem), cut, 1 << 62)


def delete_pack(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    pack = rng.choice(sorted((path / ".git/hangar/store/packs").glob("*.pack")))
    pack.unlink()
    n = int(pack.stem)
    return f"delete {pack.name}", {d for d, loc in lay.locs.items() if loc.pack == n}


def remove_entries(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    gone = set(rng.sample(sorted(lay.locs), rng.randint(1, 6)))
    repo = Repository(path)
    w = repo._store.writer()
    assert w.remove(gone) == len(gone)
    w.close()
    return f"remove {len(gone)} index entries", gone


def damage_block_row(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    (pack, boff) = rng.choice(sorted({(loc.pack, loc.boff) for loc in lay.locs.values()}))
    bid = lay.blocks[(pack, boff)]
    col, delta = rng.choice(
        [("boff", rng.choice([-20, 1, 8, 4096])), ("blen", 1), ("pack", 1), ("chk", 1)]
    )
    con = sqlite3.connect(path / ".git/hangar/store/index.sqlite")
    con.execute(f"UPDATE blocks SET {col} = {col} + ? WHERE id=?", (delta, bid))
    con.commit()
    con.close()
    return (
        f"block row {bid}: {col} += {delta}",
        {d for d, loc in lay.locs.items() if (loc.pack, loc.boff) == (pack, boff)},
    )


def damage_segment(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    sid = rng.choice(sorted(lay.segments))
    con = sqlite3.connect(path / ".git/hangar/store/index.sqlite")
    (blob,) = con.execute("SELECT entries FROM segments WHERE id=?", (sid,)).fetchone()
    blob = bytearray(blob)
    blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
    con.execute("UPDATE segments SET entries=? WHERE id=?", (bytes(blob), sid))
    con.commit()
    con.close()
    return f"flip a bit of index segment {sid}", lay.segments[sid] & set(lay.locs)


def damage_kind_row(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    """Change a kind header to another valid one (a digit of its shape)."""
    kid = rng.choice(sorted({loc.kind for loc in lay.locs.values()}))
    con = sqlite3.connect(path / ".git/hangar/store/index.sqlite")
    (text,) = con.execute("SELECT kind FROM kinds WHERE id=?", (kid,)).fetchone()
    dtype, _, shape = text.rpartition("|")
    new = f"{dtype}|{int(shape.split(',')[0]) - 1}"
    con.execute("UPDATE kinds SET kind=? WHERE id=?", (new, kid))
    con.commit()
    con.close()
    return f"kind {kid}: {text} -> {new}", {d for d, loc in lay.locs.items() if loc.kind == kid}


def damage_index_file(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    f = path / ".git/hangar/store/index.sqlite"
    data = bytearray(f.read_bytes())
    for _ in range(rng.randint(1, 4)):
        off = rng.randrange(len(data))
        data[off] ^= 1 << rng.randrange(8)
    f.write_bytes(bytes(data))
    return "flip bits of index.sqlite", None  # SQLite decides what it still finds


def delete_index_file(rng: random.Random, path: Path, lay: Layout) -> tuple[str, set | None]:
    (path / ".git/hangar/store/index.sqlite").unlink()
    return "delete index.sqlite", set(lay.locs)


CORRUPTIONS = [
    flip_pack_byte,
    flip_pack_byte,
    flip_pack_byte,
    truncate_pack,
    delete_pack,
    remove_entries,
    damage_block_row,
    damage_segment,
    damage_kind_row,
    damage_index_file,
    delete_index_file,
]


def read_all(path: Path, lay: Layout) -> tuple[set[Key], bool]:
    """Samples whose reads raise IntegrityError; asserts every other read is exact.

    Returns (failing samples, whether the repository could be opened for reading).
    """
    repo = Repository(path)
    failing: set[Key] = set()
    commits = sorted({k[0] for k in lay.samples})
    for sha in commits:
        try:
            co = repo.checkout(commit=sha)
        except IntegrityError:
            failing |= {k for k in lay.samples if k[0] == sha}
            continue
        try:
            for a in co.arraysets:
                keys = [k for (c, aa, k) in lay.samples if c == sha and aa == a]
                bad = set()
                for k in keys:
                    want = lay.arrays[lay.samples[(sha, a, k)]]
                    try:
                        got = co.arraysets[a][k]
                    except IntegrityError as exc:
                        assert f"sample {a}[{k!r}]" in str(exc)
                        bad.add(k)
                        continue
                    assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (
                        f"wrong bytes for {a}[{k!r}] of {sha}"
                    )
                try:
                    got = co.arraysets[a].get_batch(keys)
                except IntegrityError:
                    assert bad, f"a batch read of {a} failed but no single read did"
                else:
                    assert not bad, f"a batch read of {a} succeeded over damaged samples"
                    for k, g in zip(keys, got, strict=True):
                        assert g.tobytes() == lay.arrays[lay.samples[(sha, a, k)]].tobytes()
                failing |= {(sha, a, k) for k in bad}
        finally:
            co.close()
    return failing, True


@pytest.mark.slow
def test_random_corruptions(tmp_path):
    pristine = tmp_path / "pristine"
    commits = build(pristine)
    lay = Layout(pristine, commits)
    assert verify(Repository(pristine), full=True).ok
    rng = random.Random(SEED)
    stats: dict[str, list[int]] = {}
    for trial in range(TRIALS):
        work = tmp_path / f"t{trial}"
        shutil.copytree(pristine, work)
        corrupt = CORRUPTIONS[trial % len(CORRUPTIONS)]
        what, expect = corrupt(rng, work, lay)
        where = f"trial {trial} (seed {SEED}): {what}"
        failing, _ = read_all(work, lay)
        if expect is not None:
            assert failing == lay.where(expect), (
                f"{where}: reads failed for {sorted(failing)[:5]}..., expected "
                f"{sorted(lay.where(expect))[:5]}..."
            )
        try:
            rep = verify(Repository(work))
        except IntegrityError as exc:  # the index cannot even be opened
            assert "index" in str(exc), where
            assert failing == set(lay.samples), where
            reported = failing
        else:
            reported = {(s.commit, s.arrayset, s.key) for s in rep.damaged}
            assert not rep.records and not rep.git, f"{where}: {rep.summary()}"
            assert rep.ok == (not failing), where
        assert reported == failing, (
            f"{where}: fsck reported {sorted(reported ^ failing)[:5]} wrongly"
        )
        s = stats.setdefault(corrupt.__name__, [0, 0, 0])
        s[0] += 1
        s[1] += bool(failing)
        s[2] += bool(failing) and reported == failing
        shutil.rmtree(work)
    print("\ncorruption                injected  hit-data  detected-exactly")
    for name, (n, hit, det) in sorted(stats.items()):
        print(f"  {name:22s} {n:8d}  {hit:8d}  {det:8d}")
    total = [sum(v[i] for v in stats.values()) for i in range(3)]
    print(f"  {'total':22s} {total[0]:8d}  {total[1]:8d}  {total[2]:8d}")
    assert total[1] == total[2]
