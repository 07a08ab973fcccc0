"""Storage quotas on a real ``ocigate serve``: refused pushes answer 403 DENIED naming the quota
and the usage, and store nothing past the limit; skopeo sees the message; ``ocigate quota``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ByteSize

from .support import (
    Blob,
    ServerProcess,
    free_port,
    image_manifest,
    location,
    make_image,
    ocigate_argv,
    push_blob_monolithic,
    push_blob_post_digest,
    push_image,
    put_manifest,
    sha256_digest,
    start_upload,
    with_query,
    write_oci_layout,
)

KiB = 1024
QUOTAS = [
    {"repos": "small/*", "max_bytes": "100KiB"},
    {"repos": "tags/*", "max_tags": 2},
    {"repos": "lib/**", "max_bytes": "200KiB", "max_tags": 5},
    {"repos": "tiny/*", "max_bytes": 300},
]
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quota")
    path = root / "ocigate.yaml"
    path.write_text(yaml.safe_dump({"store": {"data_dir": str(root / "data")}, "quotas": QUOTAS}))
    return path


@pytest.fixture(scope="module")
def server(config: Path) -> Iterator[ServerProcess]:
    port = free_port()
    argv = [*ocigate_argv(), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    process = ServerProcess("ocigate", argv, port, config.with_name("server.log")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def denied(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 403, (response.status_code, response.text)
    (error,) = response.json()["errors"]
    assert error["code"] == "DENIED"
    return dict(error)


def upload_offset(client: httpx.Client, upload: str) -> int:
    """Bytes an upload holds (more than 0: an empty one answers "0-0" as one byte would)."""
    response = client.get(upload)
    assert response.status_code == 204, response.text
    return int(response.headers["range"].rpartition("-")[2]) + 1


def test_a_blob_past_the_limit_is_refused_and_not_stored(
    server: ServerProcess, client: httpx.Client
) -> None:
    base = server.url
    push_blob_monolithic(client, base, "small/a", os.urandom(60 * KiB))
    extra = os.urandom(50 * KiB)
    upload = start_upload(client, base, "small/a")
    response = client.put(with_query(upload, digest=sha256_digest(extra)), content=extra)
    error = denied(response)
    assert error["message"] == (
        'quota exceeded for repository "small/a" (rule "small/*"):'
        " 60.0 KiB of 100.0 KiB used, this blob adds 50.0 KiB"
    )
    assert error["detail"] == {
        "repository": "small/a",
        "rule": "small/*",
        "used_bytes": 60 * KiB,
        "max_bytes": 100 * KiB,
        "adds_bytes": 50 * KiB,
    }
    assert client.head(f"{base}/v2/small/a/blobs/{sha256_digest(extra)}").status_code == 404
    # What fits still goes in.
    push_blob_monolithic(client, base, "small/a", os.urandom(40 * KiB))


def test_a_blob_the_repository_holds_counts_once(
    server: ServerProcess, client: httpx.Client
) -> None:
    base = server.url
    layer = os.urandom(70 * KiB)
    push_blob_monolithic(client, base, "small/b", layer)
    push_blob_monolithic(client, base, "small/b", layer)  # 70 KiB again would be 140 KiB
    push_blob_post_digest(client, base, "small/b", layer)  # one POST with the body
    mounted = client.post(
        f"{base}/v2/small/b/blobs/uploads/?mount={sha256_digest(layer)}&from=small/b"
    )
    assert mounted.status_code == 201, mounted.text
    # Another repository counts it for itself: 70 KiB there, and the mount of 70 more is refused.
    push_blob_monolithic(client, base, "small/c", os.urandom(70 * KiB))
    error = denied(
        client.post(f"{base}/v2/small/c/blobs/uploads/?mount={sha256_digest(layer)}&from=small/b")
    )
    assert "70.0 KiB of 100.0 KiB used, this blob adds 70.0 KiB" in error["message"]
    extra = os.urandom(40 * KiB)
    posted = client.post(
        f"{base}/v2/small/c/blobs/uploads/?digest={sha256_digest(extra)}", content=extra
    )
    assert "70.0 KiB of 100.0 KiB used, this blob adds 40.0 KiB" in denied(posted)["message"]


def test_a_chunked_upload_is_refused_at_the_crossing_chunk(
    server: ServerProcess, client: httpx.Client
) -> None:
    base = server.url
    upload = start_upload(client, base, "small/d")
    piece = 40 * KiB
    for offset in (0, piece):
        headers = OCTETS | {"Content-Range": f"{offset}-{offset + piece - 1}"}
        response = client.patch(upload, content=os.urandom(piece), headers=headers)
        assert response.status_code == 202, response.text
        upload = location(base, response)
    headers = OCTETS | {"Content-Range": f"{2 * piece}-{3 * piece - 1}"}
    error = denied(client.patch(upload, content=os.urandom(piece), headers=headers))
    assert "0 B of 100.0 KiB used, this blob adds 120.0 KiB" in error["message"]
    assert upload_offset(client, upload) == 2 * piece  # the refused chunk left nothing


def test_a_streamed_body_without_length_is_stopped_at_the_limit(
    server: ServerProcess, client: httpx.Client
) -> None:
    base = server.url
    sent = 0

    def body() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        nonlocal sent
        for _ in range(64):
            sent += 16 * KiB
            yield os.urandom(16 * KiB)

    upload = start_upload(client, base, "small/e")
    response = client.patch(upload, content=body(), headers=OCTETS)
    error = denied(response)
    assert error["message"].startswith('quota exceeded for repository "small/e"')
    # The server answered once the limit was crossed (the first piece past 100 KiB).
    assert error["detail"]["adds_bytes"] == 112 * KiB
    # Nothing of the refused body stayed: the upload goes on from offset 0.
    headers = OCTETS | {"Content-Range": "0-9"}
    response = client.patch(upload, content=b"0123456789", headers=headers)
    assert response.status_code == 202, response.text
    assert response.headers["range"] == "0-9"


def test_tags_past_max_tags_are_refused_and_moving_one_is_not(
    server: ServerProcess, client: httpx.Client
) -> None:
    base = server.url
    first, second = make_image("tag-one"), make_image("tag-two")
    push_image(client, base, "tags/a", first, "v1")
    push_image(client, base, "tags/a", second, "v2")
    response = client.put(
        f"{base}/v2/tags/a/manifests/v3",
        content=first.manifest.data,
        headers={"Content-Type": first.manifest.media_type},
    )
    error = denied(response)
    assert error["message"] == (
        'quota exceeded for repository "tags/a" (rule "tags/*"):'
        " 2 of 2 tags used, this manifest adds 1"
    )
    assert client.get(f"{base}/v2/tags/a/tags/list").json()["tags"] == ["v1", "v2"]
    put_manifest(client, base, "tags/a", "v1", second.manifest)  # a move adds no tag
    put_manifest(client, base, "tags/a", first.manifest.digest, first.manifest)  # untagged


def test_a_manifest_past_the_limit_is_refused(server: ServerProcess, client: httpx.Client) -> None:
    base = server.url
    config_blob = Blob("application/vnd.oci.empty.v1+json", b"{}")
    layer = Blob("application/octet-stream", os.urandom(100))
    for blob in (config_blob, layer):
        push_blob_monolithic(client, base, "tiny/a", blob.data)
    manifest = image_manifest(config_blob, [layer])
    assert 102 + len(manifest.data) > 300
    response = client.put(
        f"{base}/v2/tiny/a/manifests/v1",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )
    error = denied(response)
    assert error["message"] == (
        'quota exceeded for repository "tiny/a" (rule "tiny/*"):'
        f" 102 B of 300 B used, this manifest adds {len(manifest.data)} B"
    )
    assert client.head(f"{base}/v2/tiny/a/manifests/{manifest.digest}").status_code == 404


def test_skopeo_is_refused_with_the_message(server: ServerProcess, tmp_path: Path) -> None:
    image = make_image("too-big", layer_sizes=(150 * KiB, 150 * KiB))
    write_oci_layout(tmp_path / "layout", (*image.blobs, image.manifest), {"v1": image.manifest})
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--retry-times=0",
            f"oci:{tmp_path / 'layout'}:v1",
            f"docker://{server.host}/lib/big:v1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    message = result.stderr.replace('\\"', '"')  # skopeo logs the message quoted
    assert 'denied: quota exceeded for repository "lib/big" (rule "lib/**")' in message
    assert "of 200.0 KiB used, this blob adds" in message


def test_the_quota_command_shows_usage_against_limits(
    server: ServerProcess, client: httpx.Client, config: Path
) -> None:
    base = server.url
    config_blob = Blob("application/vnd.oci.empty.v1+json", b"{}")
    layer = Blob("application/octet-stream", os.urandom(100 * KiB))
    for blob in (config_blob, layer):
        push_blob_monolithic(client, base, "lib/cli", blob.data)
    manifest = image_manifest(config_blob, [layer])
    put_manifest(client, base, "lib/cli", "v1", manifest)
    push_blob_monolithic(client, base, "free", b"x" * 10)
    result = subprocess.run(
        [*ocigate_argv(), "quota", "--config", str(config), "lib/**"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line.split("  ") for line in result.stdout.splitlines()]
    header, *rows = [[cell.strip() for cell in line if cell.strip()] for line in lines]
    assert header == ["REPOSITORY", "BYTES USED / LIMIT", "TAGS / LIMIT", "USE", "RULE"]
    used = 2 + 100 * KiB + len(manifest.data)  # the manifest's bytes count too
    percent = f"{100 * used / (200 * KiB):.0f}%"
    size = f"{used / KiB:.1f} KiB"
    assert ["lib/cli", f"{size} / 200.0 KiB", "1 / 5", percent, "lib/**"] in rows
    assert all(row[0].startswith("lib/") for row in rows)
    everything = subprocess.run(
        [*ocigate_argv(), "quota", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert any(
        line.split()[:2] == ["free", "10"] and line.endswith("-")
        for line in everything.splitlines()
    )


def test_the_config_names_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"quotas": [{"repos": "a/*", "max_bytes": "lots"}]}))
    result = subprocess.run(
        [*ocigate_argv(), "config", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "quotas.0.max_bytes" in result.stderr
    gateway = {"store": {"kind": "gateway", "upstreams": [{"url": "http://127.0.0.1:9"}]}}
    path.write_text(yaml.safe_dump(gateway | {"quotas": [{"repos": "**", "max_tags": 1}]}))
    result = subprocess.run(
        [*ocigate_argv(), "config", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "quotas: the store is kind gateway" in result.stderr


def test_the_web_ui_shows_a_repositorys_usage_against_its_quota(
    server: ServerProcess, client: httpx.Client
) -> None:
    image = make_image("ui-usage", layer_sizes=(10_000,))
    push_image(client, server.url, "lib/ui", image, "v1")
    held = sum(len(blob.data) for blob in image.blobs) + len(image.manifest.data)
    page = client.get(f"{server.url}/ui/r/lib/ui")
    assert page.status_code == 200, page.text
    used = ByteSize(held).human_readable(separator=" ")
    share = f"{100 * max(held / (200 * KiB), 1 / 5):.0f}%"
    assert (
        f"Storage used: {used} / 200.0 KiB; tags: 1 / 5; {share} of quota <code>lib/**</code>."
        in page.text
    )
