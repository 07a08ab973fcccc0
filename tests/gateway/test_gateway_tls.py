"""TLS to the upstream: verified by default, against a custom CA file, or off when asked."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.support import ServerProcess, distribution_config, free_port, push_blob_monolithic

from .support import gateway_process, serve_gateway


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _TlsDistribution(ServerProcess):
    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def wait_ready(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/v2/", timeout=1.0, verify=False)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"TLS distribution not ready\n{self.log_tail()}")


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    config = tmp_path / "tls.yml"
    config.write_text(
        distribution_config(tmp_path / "data", port)
        + f"  tls:\n    certificate: {cert}\n    key: {key}\n"
    )
    argv = ["docker-registry", "serve", str(config)]
    server = _TlsDistribution("distribution-tls", argv, port, tmp_path / "tls.log").start()
    try:
        yield server, cert
    finally:
        server.stop()


def test_tls_verification_modes(
    tls_upstream: tuple[ServerProcess, Path], tmp_path: Path, http: httpx.Client
) -> None:
    server, cert = tls_upstream
    plain = {"url": server.url, "retries": 0}
    with serve_gateway(tmp_path / "gw1", [plain]) as url:
        response = http.post(f"{url}/v2/tls/repo/blobs/uploads/")
    assert response.status_code == 502, response.text
    assert server.url in response.json()["errors"][0]["message"]

    with serve_gateway(tmp_path / "gw2", [{**plain, "ca_file": str(cert)}]) as url:
        push_blob_monolithic(http, url, "tls/repo", b"verified against the CA file")

    with serve_gateway(tmp_path / "gw3", [{**plain, "tls_verify": False}]) as url:
        push_blob_monolithic(http, url, "tls/repo", b"unverified when asked")


def test_large_blobs_over_tls_are_relayed_decrypted(
    tls_upstream: tuple[ServerProcess, Path], tmp_path: Path, http: httpx.Client
) -> None:
    """Under ``ocigate serve`` (the built-in server) blobs from a plain upstream are spliced
    socket to socket; from a TLS upstream that would relay ciphertext, so they must not be."""
    server, cert = tls_upstream
    upstream = {"url": server.url, "ca_file": str(cert)}
    gateway = gateway_process([upstream], tmp_path / "gw", tmp_path / "gw.log", workers=1)
    gateway.start()
    try:
        large = os.urandom(1024 * 1024 + 3)
        digest = push_blob_monolithic(http, gateway.url, "tls/repo", large)
        pulled = http.get(f"{gateway.url}/v2/tls/repo/blobs/{digest}")
        assert pulled.status_code == 200 and pulled.content == large
    finally:
        gateway.stop()
