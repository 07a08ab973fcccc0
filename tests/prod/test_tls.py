"""HTTPS: real skopeo and podman over TLS, refused bad certificates, plain HTTP answered,
certificate rotation without restart on all three servers, mutual TLS."""

from __future__ import annotations

import random
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from e2e.support import (
    distribution_server,
    free_port,
    make_image,
    push_blob_monolithic,
    skopeo,
    write_oci_layout,
)

from .pki import Ca
from .support import ProdServer, prod_server


def _tls_flags(pki: Path, client_ca: bool = False) -> list[str]:
    flags = ["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")]
    return flags + (["--tls-client-ca", str(pki / "ca.crt")] if client_ca else [])


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    authority = Ca()
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "ca.crt").write_bytes(authority.pem)
    authority.issue("localhost").write(pki / "server.crt", pki / "server.key")
    return authority


@pytest.fixture
def https(tmp_path: Path, ca: Ca) -> Iterator[ProdServer]:
    server = prod_server(
        tmp_path, "", 2, tmp_path / "pki" / "ca.crt", *_tls_flags(tmp_path / "pki")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _peer_serial(
    port: int, cafile: Path, alpn: str = "http/1.1", client: tuple[Path, Path] | None = None
) -> int:
    """The serial number of the certificate a new connection is served; ``alpn``: the protocol
    the server picks when offered h2 and HTTP/1.1; ``client``: a client certificate and key."""
    context = ssl.create_default_context(cafile=str(cafile))
    if client is not None:
        context.load_cert_chain(*client)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == alpn
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_skopeo_and_podman_push_and_pull_over_https(https: ProdServer, tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes((tmp_path / "pki" / "ca.crt").read_bytes())
    image = make_image("tls")
    write_oci_layout(tmp_path / "layout", (*image.blobs, image.manifest), {"v1": image.manifest})
    dest = f"docker://localhost:{https.port}/prod/tls:v1"
    verify = ["--dest-tls-verify=true", "--dest-cert-dir", str(cert_dir)]
    skopeo("copy", "--quiet", "--preserve-digests", *verify, f"oci:{tmp_path / 'layout'}:v1", dest)
    out = tmp_path / "out"
    src = ["--src-tls-verify=true", "--src-cert-dir", str(cert_dir)]
    skopeo("copy", "--quiet", "--preserve-digests", *src, dest, f"oci:{out}:v1")
    assert (out / "blobs" / "sha256" / image.manifest.digest.split(":")[1]).exists()

    ref = f"localhost:{https.port}/prod/tls:v1"
    podman = ["podman", "--tls-verify=true", "--cert-dir", str(cert_dir)]
    for argv in (
        ["podman", "pull", "--tls-verify=true", "--cert-dir", str(cert_dir), ref],
        [
            "podman",
            "push",
            "--tls-verify=true",
            "--cert-dir",
            str(cert_dir),
            ref,
            f"localhost:{https.port}/prod/tls-podman:v1",
        ],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, (argv, done.stderr)
    del podman
    with https.client() as client:
        pushed = client.head(f"{https.url}/v2/prod/tls-podman/manifests/v1")
    assert pushed.status_code == 200
    subprocess.run(["podman", "rmi", "-f", ref], capture_output=True, check=False)


@pytest.mark.parametrize("problem", ["wrong-host", "expired"])
def test_bad_certificate_is_refused_by_skopeo(tmp_path: Path, ca: Ca, problem: str) -> None:
    pki = tmp_path / "pki"
    if problem == "wrong-host":
        ca.issue("other.example", hosts=("other.example",)).write(
            pki / "server.crt", pki / "server.key"
        )
    else:
        ca.issue("localhost", expired=True).write(pki / "server.crt", pki / "server.key")
    server = prod_server(tmp_path, "", 1, None, *_tls_flags(pki))
    server.ca = pki / "ca.crt"
    server.proc = subprocess.Popen(
        server.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_listening(server.port)
        cert_dir = tmp_path / "certs"
        cert_dir.mkdir()
        (cert_dir / "ca.crt").write_bytes(ca.pem)
        done = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=true",
                "--cert-dir",
                str(cert_dir),
                f"docker://localhost:{server.port}/prod/none:v1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0
        expected = (
            "valid for other.example, not localhost" if problem == "wrong-host" else "expired"
        )
        assert expected in done.stderr, done.stderr
    finally:
        server.stop()


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("server did not listen")


def test_plain_http_to_the_https_port_gets_a_clear_400(https: ProdServer) -> None:
    started = time.monotonic()
    answer = httpx.get(f"http://127.0.0.1:{https.port}/v2/", timeout=5)
    assert time.monotonic() - started < 2
    assert answer.status_code == 400
    assert "plain HTTP request was sent to HTTPS port" in answer.json()["errors"][0]["message"]


def _get_on(tls: ssl.SSLSocket) -> bytes:
    """One keep-alive GET /healthz on an open connection: the status line."""
    tls.sendall(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(65536)
        assert chunk, "the connection was closed"
        head += chunk
    length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += tls.recv(65536)
    return head.split(b"\r\n", 1)[0]


# Seconds from a rotation until every new connection sees the new certificate: the files are
# looked at every 2 s (per worker, or by granian's main process, which then respawns its two
# workers one after the other, 3.5 s apart).
ROTATION_BOUND = {"builtin": 10.0, "uvicorn": 10.0, "granian": 20.0}
ALPN = {"builtin": "http/1.1", "uvicorn": "http/1.1", "granian": "h2"}  # granian serves h2 too


@pytest.mark.parametrize("kind", ["builtin", "uvicorn", "granian"])
def test_rotated_certificate_is_served_to_new_connections(
    tmp_path: Path, ca: Ca, kind: str
) -> None:
    pki = tmp_path / "pki"
    server = prod_server(tmp_path, f"server: {kind}\n", 2, pki / "ca.crt", *_tls_flags(pki))
    server.start()
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    try:
        before = _peer_serial(server.port, pki / "ca.crt", ALPN[kind])
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as established,
        ):
            assert _get_on(established) == b"HTTP/1.1 200 OK"
            renewed = ca.issue("localhost")
            renewed.write(pki / "server.crt", pki / "server.key")
            expected = x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
            assert expected != before
            deadline = time.monotonic() + ROTATION_BOUND[kind]
            serials: set[int] = set()
            while time.monotonic() < deadline:
                serials = {_peer_serial(server.port, pki / "ca.crt", ALPN[kind]) for _ in range(6)}
                if serials == {expected}:
                    break
                time.sleep(0.25)
            assert serials == {expected}
            if kind != "granian":  # granian's respawned workers closed their idle connections
                assert _get_on(established) == b"HTTP/1.1 200 OK"
        with server.client() as client:
            assert client.get(f"{server.url}/v2/").status_code == 200
    finally:
        server.stop()


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, ca: Ca) -> None:
    pki = tmp_path / "pki"
    ca.issue("ci-runner", hosts=(), client=True).write(pki / "client.crt", pki / "client.key")
    server = prod_server(tmp_path, "", 2, pki / "ca.crt", *_tls_flags(pki, client_ca=True))
    server.client_cert = (pki / "client.crt", pki / "client.key")
    server.start()
    try:
        with server.client() as client:
            assert client.get(f"{server.url}/v2/").status_code == 200
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with httpx.Client(verify=anonymous, timeout=5) as client:
            refused = client.get(f"{server.url}/v2/")
        assert refused.status_code == 403
        assert "client certificate is required" in refused.json()["errors"][0]["message"]
        # A certificate the client CA did not sign fails the handshake itself.
        stranger = Ca("stranger")
        stranger.issue("intruder", hosts=(), client=True).write(
            pki / "intruder.crt", pki / "intruder.key"
        )
        anonymous.load_cert_chain(pki / "intruder.crt", pki / "intruder.key")
        _handshake_fails(server.url, anonymous)
    finally:
        server.stop()


def _handshake_fails(url: str, context: ssl.SSLContext) -> None:
    """A request with ``context`` gets no answer: the server refused its (missing) certificate."""
    with (
        pytest.raises((ssl.SSLError, ConnectionError, httpx.HTTPError)),
        httpx.Client(verify=context, timeout=5) as client,
    ):
        client.get(f"{url}/v2/")


@pytest.mark.parametrize("kind", ["granian", "uvicorn"])
def test_alternative_servers_serve_https_from_the_same_settings(
    tmp_path: Path, ca: Ca, kind: str
) -> None:
    pki = tmp_path / "pki"
    server = prod_server(tmp_path, f"server: {kind}\n", 1, pki / "ca.crt", *_tls_flags(pki))
    server.start()
    try:
        with server.client() as client:
            assert client.get(f"{server.url}/v2/").status_code == 200
        with pytest.raises(httpx.HTTPError):  # the CA is required: nothing else trusts it
            httpx.get(f"{server.url}/v2/", timeout=5)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["uvicorn", "granian"])
def test_alternative_servers_keep_mutual_tls_across_a_rotation(
    tmp_path: Path, ca: Ca, kind: str
) -> None:
    """The reloaded context still asks for a client certificate and checks it against the
    client CA; without one the handshake fails (only the built-in server answers 403)."""
    pki = tmp_path / "pki"
    client = (pki / "client.crt", pki / "client.key")
    ca.issue("ci-runner", hosts=(), client=True).write(*client)
    flags = _tls_flags(pki, client_ca=True)
    server = prod_server(tmp_path, f"server: {kind}\n", 1, pki / "ca.crt", *flags)
    server.client_cert = client
    server.start()
    try:
        renewed = ca.issue("localhost")
        renewed.write(pki / "server.crt", pki / "server.key")
        expected = x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
        deadline = time.monotonic() + ROTATION_BOUND[kind]
        serials: set[int] = set()
        # Six handshakes in a row: while granian respawns, the old worker still accepts some.
        while time.monotonic() < deadline:
            serials = {
                _peer_serial(server.port, pki / "ca.crt", ALPN[kind], client) for _ in range(6)
            }
            if serials == {expected}:
                break
            time.sleep(0.25)
        assert serials == {expected}
        with server.client() as client_with_certificate:
            assert client_with_certificate.get(f"{server.url}/v2/").status_code == 200
        _handshake_fails(server.url, ssl.create_default_context(cafile=str(pki / "ca.crt")))
    finally:
        server.stop()


def test_skopeo_pushes_with_a_client_certificate_under_mutual_tls(tmp_path: Path, ca: Ca) -> None:
    pki = tmp_path / "pki"
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(ca.pem)
    ca.issue("ci-runner", hosts=(), client=True).write(
        cert_dir / "client.cert", cert_dir / "client.key"
    )
    server = prod_server(tmp_path, "", 2, pki / "ca.crt", *_tls_flags(pki, client_ca=True))
    server.client_cert = (cert_dir / "client.cert", cert_dir / "client.key")
    server.start()
    image = make_image("mtls")
    write_oci_layout(tmp_path / "layout", (*image.blobs, image.manifest), {"v1": image.manifest})
    dest = f"docker://localhost:{server.port}/prod/mtls:v1"
    try:
        skopeo(
            "copy",
            "--quiet",
            "--dest-tls-verify=true",
            "--dest-cert-dir",
            str(cert_dir),
            f"oci:{tmp_path / 'layout'}:v1",
            dest,
        )
        (cert_dir / "client.cert").unlink()
        (cert_dir / "client.key").unlink()
        refused = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=true", "--cert-dir", str(cert_dir), dest],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode != 0
        assert "403" in refused.stderr, refused.stderr
    finally:
        server.stop()


def test_blobs_stream_through_tls_from_files_and_from_an_upstream(tmp_path: Path, ca: Ca) -> None:
    """Zero-copy cannot encrypt: a stored blob (a file) and a relayed one (the upstream's
    socket) both go through the TLS layer, byte for byte."""
    pki = tmp_path / "pki"
    port = free_port()
    upstream = distribution_server(tmp_path / "upstream", tmp_path / "upstream.log", port=port)
    upstream.start()
    (tmp_path / "embedded").mkdir()
    (tmp_path / "gateway").mkdir()
    flags = _tls_flags(pki)
    embedded = prod_server(tmp_path / "embedded", "", 2, pki / "ca.crt", *flags)
    config = f"upstreams:\n  - url: http://127.0.0.1:{port}\n"
    gateway = prod_server(tmp_path / "gateway", config, 2, pki / "ca.crt", *flags)
    data = random.Random(15).randbytes(12 * 1024 * 1024 + 7)
    try:
        embedded.start()
        gateway.start()
        for server in (embedded, gateway):
            with server.client(timeout=60) as client:
                digest = push_blob_monolithic(client, server.url, "prod/big", data)
                pulled = client.get(f"{server.url}/v2/prod/big/blobs/{digest}")
                assert pulled.status_code == 200
                assert pulled.content == data
                ranged = client.get(
                    f"{server.url}/v2/prod/big/blobs/{digest}", headers={"range": "bytes=5-9"}
                )
                assert ranged.status_code == 206 and ranged.content == data[5:10]
    finally:
        embedded.stop()
        gateway.stop()
        upstream.stop()
