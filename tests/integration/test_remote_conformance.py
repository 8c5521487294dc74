"""Every data remote backend passes :class:`DataRemoteTests`: a local folder,
an fsspec ``memory://`` filesystem, and S3 (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from hangar_git.remotes import bounded
from hangar_git.remotes.backends import FsspecStore, LocalStore
from hangar_git.remotes.data_remote import DataRemote

try:
    from .remote_conformance import DataRemoteTests, SpecialFileTests, fresh_memory_url
    from .s3_fixture import S3Server, s3_env, s3_server
except ImportError:
    from remote_conformance import (  # type: ignore[no-redef]
        DataRemoteTests,
        SpecialFileTests,
        fresh_memory_url,
    )
    from s3_fixture import S3Server, s3_env, s3_server  # type: ignore[no-redef]

__all__ = ["s3_env", "s3_server"]  # fixtures used by name


class TestLocalDirectory(DataRemoteTests, SpecialFileTests):
    backend = LocalStore

    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return str(tmp_path / "data")


class TestMemory(DataRemoteTests):
    backend = FsspecStore

    @pytest.fixture
    def url(self) -> Iterator[str]:
        url = fresh_memory_url()
        yield url
        fs, root = fsspec.core.url_to_fs(url)
        if fs.exists(root):
            fs.rm(root, recursive=True)


class TestS3(DataRemoteTests):
    backend = FsspecStore

    @pytest.fixture
    def url(self, s3_env: S3Server) -> str:
        return s3_env.fresh_url()

    def test_reads_have_timeouts(self, url: str) -> None:
        remote = DataRemote(url)
        assert remote.fs.config_kwargs["read_timeout"] == bounded.READ_TIMEOUT
        assert remote.fs.config_kwargs["connect_timeout"] == bounded.CONNECT_TIMEOUT


@pytest.mark.parametrize("case", [TestLocalDirectory, TestMemory, TestS3])
def test_backends_with_special_files_run_their_tests(case: type) -> None:
    """A backend that can hold pipes and symlinks is tested for them."""
    assert issubclass(case, SpecialFileTests) == case.backend.special_files
