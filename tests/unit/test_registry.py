"""The protocol's own types: blob bodies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocigate.oci.digest import Digest
from ocigate.registry import FileRange

pytestmark = pytest.mark.anyio


async def test_a_file_range_closes_its_descriptor_once(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    body = FileRange(Digest.of(b"abc"), 3, 0, 3, os.open(path, os.O_RDONLY))
    await body.close()
    reused = os.open(path, os.O_RDONLY)  # the lowest free number: the one just closed
    try:
        await body.close()
        assert os.pread(reused, 3, 0) == b"abc"  # the second close left it open
    finally:
        os.close(reused)
