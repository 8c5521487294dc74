"""Helpers shared by the remote tests: datasets, bare repositories, git daemon,
and an fsspec filesystem wrapper that counts the requests made through it."""

from __future__ import annotations

import socket
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import numpy as np
import pytest

from hangar_git import Repository
from hangar_git.remotes.backends import local as local_backend
from hangar_git.remotes.backends.local import LocalFiles


def make_repo(path: Path, n: int = 200, seed: int = 0, name: str = "Ada") -> Repository:
    """A repository with one commit: ``images`` (n x 8x8 uint8), ``labels`` (n x int64)."""
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repo = Repository(path, exists=False)
    repo.init(user_name=name, user_email=f"{name.lower()}@example.org")
    rng = np.random.default_rng(seed)
    co = repo.checkout(write=True)
    imgs = co.arraysets.init_arrayset("images", shape=(8, 8), dtype=np.uint8)
    labs = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    with imgs, labs:
        for i in range(n):
            imgs[i] = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            labs[i] = np.array([i], dtype=np.int64)
    co.metadata["source"] = "test"
    co.commit("initial data")
    co.close()
    return repo


def open_repo(path: Path) -> Repository:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Repository(path, exists=False)


def empty_clone_target(path: Path) -> Repository:
    path.mkdir(parents=True, exist_ok=True)
    return open_repo(path)


def bare_repo(path: Path) -> Path:
    """An empty bare git repository at ``path``."""
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def all_arrays(repo: Repository, commit: str | None = None) -> dict[str, dict[Any, np.ndarray]]:
    co = repo.checkout(commit=commit) if commit else repo.checkout()
    try:
        return {name: dict(aset.items()) for name, aset in co.arraysets.items()}
    finally:
        co.close()


def assert_same_data(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for k in a[name]:
            np.testing.assert_array_equal(a[name][k], b[name][k])
            assert a[name][k].dtype == b[name][k].dtype


def remote_heads(bare: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            "git",
            "--git-dir",
            str(bare),
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/hangar/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def bomb_index(raw_columns: int) -> bytes:
    """A pack index with a well-formed header for one entry, whose column
    stream (a zlib bomb) inflates to ``raw_columns`` bytes."""
    import struct
    import zlib

    from hangar_git.remotes.packformat import INDEX_MAGIC

    bomb = zlib.compress(bytes(raw_columns), 9)
    head = struct.pack("<4sB3xIIQ20s", INDEX_MAGIC, 1, 1, 1, 100, b"\0" * 20)
    kind = b"|u1|8,8"
    return head + struct.pack("<H", len(kind)) + kind + b"\x01" * 20 + bomb


def store_files(repo: Repository) -> dict[str, int]:
    """``{path: size}`` of the files of a repository's payload store (not the
    sqlite side files nor locks)."""
    root = repo._store.root
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm", ".lock"))
    }


def fetch_tmp_left(repo: Repository) -> list[Path]:
    """Temporary files a fetch of large payloads left in the store (none expected)."""
    tmp = repo._store.large_dir / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


# ---- git daemon ------------------------------------------------------------------
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """``git daemon`` on 127.0.0.1 with push enabled; yields (base dir, git:// base URL)."""
    base = tmp_path_factory.mktemp("daemon")
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--enable=receive-pack",
            "--export-all",
            "--reuseaddr",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)
        yield base, f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- request counting -----------------------------------------------------------------
#: filesystem methods that send requests, and how many each costs
_COUNTED = {
    "ls",
    "info",
    "exists",
    "cat",
    "cat_file",
    "pipe_file",
    "pipe",
    "mv",
    "rm_file",
    "rm",
    "makedirs",
    "mkdir",
    "open",
    "put_file",
    "get_file",
    "find",
}


class CountingFS:
    """Wraps an fsspec filesystem and counts the requests made through it."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def cat_ranges(self, paths: list, starts: list, ends: list, **kw: Any) -> Any:
        self.calls["cat_ranges"] += len(paths)
        return self._fs.cat_ranges(paths, starts, ends, **kw)

    def cat(self, path: Any, **kw: Any) -> Any:
        self.calls["cat"] += len(path) if isinstance(path, list) else 1
        return self._fs.cat(path, **kw)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fs, name)
        if name in _COUNTED and callable(attr):

            def counted(*a: Any, **kw: Any) -> Any:
                self.calls[name] += 1
                return attr(*a, **kw)

            return counted
        return attr


@pytest.fixture
def count_requests(monkeypatch: pytest.MonkeyPatch) -> list[CountingFS]:
    """Every filesystem a data remote opens is wrapped (fsspec's, and the
    plain file operations of a local folder); the wrappers are listed here."""
    made: list[CountingFS] = []
    real = fsspec.core.url_to_fs

    def wrapped(url: str, **kw: Any) -> tuple[Any, str]:
        fs, path = real(url, **kw)
        c = CountingFS(fs)
        made.append(c)
        return c, path

    def local_files() -> CountingFS:
        c = CountingFS(LocalFiles())
        made.append(c)
        return c

    monkeypatch.setattr(fsspec.core, "url_to_fs", wrapped)
    monkeypatch.setattr(local_backend, "LocalFiles", local_files)
    return made


# ---- a smart-HTTP git server with Basic authentication ------------------------------------
def _make_handler(root: Path, user: str, password: str) -> type:
    import base64
    import http.server
    import os

    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        attempts: ClassVar[Counter[str]] = Counter()

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            body = self._body() if self.command == "POST" else b""
            auth = self.headers.get("Authorization")
            Handler.attempts["auth" if auth else "anonymous"] += 1
            if auth != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="hangar-test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ.get("PATH", ""),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": user,
                "REMOTE_ADDR": "127.0.0.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GIT_CONFIG_NOSYSTEM": "1",
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            res = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = res.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return Handler


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[tuple[Path, str, Any]]:
    """A smart-HTTP git server on 127.0.0.1 requiring Basic auth (alice / s3cret).

    Yields (project root, base URL, handler class with its ``attempts`` counter).
    """
    import http.server
    import threading

    root = tmp_path / "http-root"
    root.mkdir()
    handler = _make_handler(root, "alice", "s3cret")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
