"""An interrupted mirror (killed in the middle of a large blob) completes when run again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from e2e.support import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    Blob,
    ServerProcess,
    image_manifest,
    json_bytes,
    push_blob_monolithic,
    put_manifest,
    sha256_digest,
)

from .conftest import Mirror, mirror_argv
from .content import manifest_bytes

SIZE = 48 * 1024 * 1024


def _uploading(data_dir: Path) -> bool:
    """Whether the destination is in the middle of receiving a large upload."""
    root = data_dir / "uploads"
    return root.exists() and any(
        path.is_file() and path.stat().st_size > 1024 * 1024 for path in root.rglob("*")
    )


def test_a_killed_mirror_completes_on_the_next_run(
    ocigate_pair: tuple[ServerProcess, ServerProcess],
    http: httpx.Client,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    source, dest = ocigate_pair
    layer = Blob(OCI_LAYER_GZIP, os.urandom(SIZE))
    config = Blob(OCI_CONFIG, json_bytes({"architecture": "amd64", "os": "linux"}))
    manifest = image_manifest(config, [layer])
    for blob in (config, layer):
        push_blob_monolithic(http, source.url, "big", blob.data)
    put_manifest(http, source.url, "big", "v1", manifest)

    # A process of its own, killed while its blob upload is under way.
    process = subprocess.Popen(
        mirror_argv(source.url, dest.url, "--repo", "big"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _uploading(tmp_path / "two") and time.monotonic() < deadline:
            assert process.poll() is None, "the mirror ended before it was interrupted"
            time.sleep(0.01)
        assert _uploading(tmp_path / "two"), "no upload seen"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert manifest_bytes(http, dest.url, "big", "v1") is None

    again = mirror(source.url, dest.url, "--repo", "big")
    assert again.returncode == 0, again.stdout + again.stderr
    assert manifest_bytes(http, dest.url, "big", "v1") == manifest.data
    served = http.get(f"{dest.url}/v2/big/blobs/{layer.digest}")
    assert served.status_code == 200
    assert sha256_digest(served.content) == layer.digest
