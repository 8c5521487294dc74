"""The digests of a bulk add held joined (:class:`.digest_run.Digests`): a
sequence of ``bytes`` that gives its joined bytes without a copy."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from hangar_git.store.digest import stacked_digests
from hangar_git.store.digest_run import Digests, joined_digests


def _ds(n: int) -> list[bytes]:
    return [hashlib.blake2b(b"%d" % i, digest_size=20).digest() for i in range(n)]


def test_digests_are_a_sequence_of_their_bytes():
    want = _ds(7)
    got = Digests(b"".join(want))
    assert len(got) == 7
    assert list(got) == want
    assert got.tolist() == want
    assert [got[i] for i in range(7)] == want
    assert got[-1] == want[-1] and got[-7] == want[0]
    for bad in (7, -8):
        with pytest.raises(IndexError):
            got[bad]
    assert got[2:5] == want[2:5] and isinstance(got[2:5], Digests)
    assert got[5:2].joined == b""
    assert got[::2] == want[::2] and got[::-1] == want[::-1]
    assert got == Digests(b"".join(want)) and got == want
    assert got != want[:-1] and got != want[::-1] and got != Digests(b"")
    assert got.index(want[3]) == 3 and want[4] in got
    assert dict(zip(got, range(7), strict=True)) == dict(zip(want, range(7), strict=True))


def test_digests_refuse_a_cut_digest():
    with pytest.raises(ValueError, match="20 bytes"):
        Digests(b"x" * 21)


def test_joined_digests_copy_nothing_of_a_digests():
    want = _ds(5)
    run = Digests(b"".join(want))
    assert joined_digests(run) is run.joined
    assert joined_digests(want) == run.joined
    assert joined_digests(tuple(want)) == run.joined


@pytest.mark.parametrize("shape", [(3000, 4), (3000,), (50, 4096), (3, 70_000)])
def test_stacked_digests_are_held_joined(shape):
    """Every way stacked_digests hashes rows (small ones, repeated labels,
    views, big rows on threads) gives the digests joined, row by row."""
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 5 if len(shape) == 1 else 256, shape).astype(np.uint8)
    got = stacked_digests(rows)
    assert isinstance(got, Digests)
    kind = b"|u1|" + ",".join(map(str, shape[1:])).encode() + b"\x00"
    want = [hashlib.blake2b(kind + r.tobytes(), digest_size=20).digest() for r in rows]
    assert got.joined == b"".join(want)


def test_the_module_imports_without_numpy():
    """The staging journal (``git hangar status``) imports it without numpy."""
    code = (
        "import sys; import hangar_git.store.digest_run as m; "
        "assert 'numpy' not in sys.modules, 'numpy imported'; "
        "d = m.Digests(b'a' * 40); assert len(d) == 2 and d[1] == b'a' * 20"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
