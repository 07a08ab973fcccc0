"""Helpers shared by the end-to-end tests: real server processes, OCI layouts, raw HTTP pushes.

Everything here talks to registries over loopback HTTP only, and starts processes in their own
session so a whole server (master and workers) can be signalled as one process group.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1 (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# server processes


def ocigate_argv() -> list[str]:
    """How to invoke the ocigate CLI: the venv console script, else ``python -m ocigate``."""
    script = Path(sys.executable).with_name("ocigate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ocigate"]


class ServerFailed(RuntimeError):
    pass


@dataclass
class ServerProcess:
    """A registry running as a child process in its own process group."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: io.BufferedWriter | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self, ready_timeout: float = READY_TIMEOUT) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        self.wait_ready(ready_timeout)
        return self

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return "<no log>"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with {self.proc.returncode} before becoming ready\n"
                    f"{self.log_tail()}"
                )
            try:
                response = httpx.get(f"{self.url}/v2/", timeout=1.0)
                if response.status_code in (200, 401):  # 401: up, with authentication on
                    return
                last_error = f"GET /v2/ -> {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        self.kill()
        raise ServerFailed(
            f"{self.name} not ready within {timeout}s ({last_error})\n{self.log_tail()}"
        )

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (master and every worker) and reap the leader."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._close_log()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        # stragglers (workers that outlived the master) die with the group
        self._signal_group(signal.SIGKILL)
        self._close_log()
        return self.proc.returncode

    def wait_port_closed(self, timeout: float = 5.0) -> None:
        """Wait until nothing accepts connections on the port any more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def ocigate_server(
    data_dir: Path,
    log_path: Path,
    workers: int = 2,
    port: int | None = None,
    *,
    config: Path | None = None,
) -> ServerProcess:
    """``ocigate serve`` (not started) on a free loopback port, with ``config`` when given."""
    port = port or free_port()
    argv = [
        *ocigate_argv(),
        "serve",
        *(["--config", str(config)] if config is not None else []),
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
        "--workers",
        str(workers),
    ]
    return ServerProcess("ocigate", argv, port, log_path)


def distribution_config(root: Path, port: int) -> str:
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: error\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "  filesystem:\n"
        f"    rootdirectory: {root}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )


def distribution_server(data_dir: Path, log_path: Path, port: int | None = None) -> ServerProcess:
    """Debian's CNCF distribution (``docker-registry``), for validating the harness itself."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir.parent / f"{data_dir.name}-config.yml"
    config.write_text(distribution_config(data_dir, port))
    return ServerProcess("distribution", ["docker-registry", "serve", str(config)], port, log_path)


def run_fsck(data_dir: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ocigate_argv(), "fsck", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# OCI content


@dataclass(frozen=True)
class Blob:
    """A piece of content-addressed data plus the media type it is referenced with."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode() + b"\n"


def tar_gz(files: dict[str, bytes], seed: int = 0) -> bytes:
    """A deterministic gzip'd tar holding ``files`` (regular files, mode 0644, fixed mtime)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 1_700_000_000 + seed
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


@dataclass(frozen=True)
class Image:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


def make_image(
    seed: str, arch: str = "amd64", os_name: str = "linux", layer_sizes: Sequence[int] = (40_000,)
) -> Image:
    """An image with real gzip'd tar layers whose content is seeded pseudo-random bytes."""
    rng = random.Random(f"{seed}/{os_name}/{arch}")
    layers = []
    for index, size in enumerate(layer_sizes):
        files = {
            f"data/{seed}-{index}.bin": rng.randbytes(size),
            f"etc/{seed}-{index}.txt": f"layer {index} of {seed} for {os_name}/{arch}\n".encode(),
        }
        layers.append(Blob(OCI_LAYER_GZIP, tar_gz(files, seed=index)))
    diff_ids = [sha256_digest(gzip.decompress(layer.data)) for layer in layers]
    config = Blob(
        OCI_CONFIG,
        json_bytes(
            {
                "created": "2024-01-01T00:00:00Z",
                "architecture": arch,
                "os": os_name,
                "config": {"Env": [f"SEED={seed}"], "Cmd": ["/bin/true"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": f"ocigate e2e {seed}"} for _ in layers],
            }
        ),
    )
    annotations = {"org.opencontainers.image.description": f"e2e image {seed}"}
    return Image(image_manifest(config, layers, annotations), config, tuple(layers))


def image_manifest(
    config: Blob, layers: Sequence[Blob], annotations: dict[str, str] | None = None
) -> Blob:
    """An OCI image manifest over ``config`` and ``layers``."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    return Blob(OCI_MANIFEST, json_bytes(doc))


def make_index(images: Sequence[Image]) -> Blob:
    entries = []
    for image in images:
        config = json.loads(image.config.data)
        entries.append(
            image.manifest.descriptor(
                platform={"architecture": config["architecture"], "os": config["os"]}
            )
        )
    return Blob(
        OCI_INDEX, json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    )


EMPTY_CONFIG = Blob(OCI_EMPTY, b"{}")  # an OCI 1.1 artifact's config


def artifact_manifest(artifact_type: str, payload: Blob, subject: Blob | None = None) -> Blob:
    """An OCI 1.1 artifact of ``artifact_type``: the empty config, ``payload`` its one layer,
    about ``subject`` (the manifest it refers to) when given."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_CONFIG.descriptor(),
        "layers": [payload.descriptor()],
    }
    if subject is not None:
        doc["subject"] = subject.descriptor()
    return Blob(OCI_MANIFEST, json_bytes(doc))


def write_oci_layout(root: Path, blobs: Iterable[Blob], refs: dict[str, Blob]) -> None:
    """Write an OCI image layout: ``oci-layout``, ``index.json`` (one entry per tag), blobs."""
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    for blob in [*blobs, *refs.values()]:
        (blob_dir / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            target.descriptor(annotations={REF_NAME: tag}) for tag, target in refs.items()
        ],
    }
    (root / "index.json").write_bytes(json_bytes(index))


@dataclass
class Layout:
    """Read side of an OCI image layout written by skopeo."""

    root: Path

    def index(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "index.json").read_bytes()))

    def resolve(self, tag: str) -> dict[str, Any]:
        matches = [
            entry
            for entry in self.index()["manifests"]
            if entry.get("annotations", {}).get(REF_NAME) == tag
        ]
        assert len(matches) == 1, f"tag {tag!r} in {self.index()}"
        return dict(matches[0])

    def blob(self, digest: str) -> bytes:
        algorithm, hex_part = digest.split(":", 1)
        data = (self.root / "blobs" / algorithm / hex_part).read_bytes()
        assert sha256_digest(data) == digest, f"layout blob {digest} is corrupt"
        return data


# --------------------------------------------------------------------------------------------
# raw registry HTTP


def location(base: str, response: httpx.Response) -> str:
    loc: str | None = response.headers.get("location")
    assert loc, f"{response.request.method} {response.request.url}: no Location header"
    return urljoin(base + "/", loc)


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def start_upload(client: httpx.Client, base: str, repo: str) -> str:
    response = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, (response.status_code, response.text)
    return location(base, response)


def push_blob_monolithic(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    """POST to open an upload, then a single PUT carrying the whole body and the digest."""
    digest = sha256_digest(data)
    upload = start_upload(client, base, repo)
    response = client.put(
        with_query(upload, digest=digest),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, (response.status_code, response.text)
    return digest


def push_blob_post_digest(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    """Single-request monolithic upload: ``POST ...?digest=`` with the body.

    A registry may decline that by opening an ordinary session (202); the spec then has the
    client PUT the body to the returned location, as done here.
    """
    digest = sha256_digest(data)
    response = client.post(
        f"{base}/v2/{repo}/blobs/uploads/?digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if response.status_code == 202:
        response = client.put(
            with_query(location(base, response), digest=digest),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert response.status_code == 201, (response.status_code, response.text)
    return digest


def chunks(data: bytes, size: int) -> Iterator[tuple[int, bytes]]:
    for offset in range(0, len(data), size):
        yield offset, data[offset : offset + size]


def closing_client(timeout: float = 30.0) -> httpx.Client:
    """A client that sends ``Connection: close``: every request travels on a new connection."""
    return httpx.Client(timeout=timeout, headers={"Connection": "close"})


def push_blob_chunked(
    client: httpx.Client, base: str, repo: str, data: bytes, chunk_size: int
) -> str:
    """POST, one PATCH per chunk (with Content-Range), then PUT with the digest.

    With a :func:`closing_client` every request goes over a brand-new TCP connection so that a
    multi-worker server sees the pieces of one upload arrive at different workers.
    """
    digest = sha256_digest(data)
    upload = start_upload(client, base, repo)
    for offset, piece in chunks(data, chunk_size):
        response = client.patch(
            upload,
            content=piece,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            },
        )
        assert response.status_code == 202, (response.status_code, response.text)
        assert response.headers.get("range") == f"0-{offset + len(piece) - 1}", response.headers
        upload = location(base, response)
    response = client.put(with_query(upload, digest=digest))
    assert response.status_code == 201, (response.status_code, response.text)
    assert location(base, response).endswith(f"/v2/{repo}/blobs/{digest}")
    return digest


def put_manifest(client: httpx.Client, base: str, repo: str, ref: str, manifest: Blob) -> str:
    response = client.put(
        f"{base}/v2/{repo}/manifests/{ref}",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )
    assert response.status_code == 201, (response.status_code, response.text)
    digest = response.headers.get("docker-content-digest")
    assert digest in (None, manifest.digest), digest
    return manifest.digest


def push_image(client: httpx.Client, base: str, repo: str, image: Image, tag: str) -> str:
    for blob in image.blobs:
        push_blob_monolithic(client, base, repo, blob.data)
    return put_manifest(client, base, repo, tag, image.manifest)


def get_manifest(client: httpx.Client, base: str, repo: str, ref: str) -> httpx.Response:
    return client.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})


# --------------------------------------------------------------------------------------------
# skopeo


def skopeo(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run skopeo and fail with its output if it does not succeed."""
    result = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"skopeo {' '.join(args)} -> {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
