"""Retries and resource bounds: Retry-After honoured for idempotent requests only, and blobs
streamed through the gateway in flat memory."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.support import (
    OCI_MANIFEST,
    ServerProcess,
    make_image,
    push_blob_monolithic,
    push_image,
    start_upload,
)
from spec.conftest import serve_app

from .support import gateway_process, serve_gateway


@dataclass
class Throttle:
    """An ASGI wrapper answering some requests with 429/503 + Retry-After, counting them."""

    inner: Any
    busy_gets: int = 0  # answer this many manifest GETs with 503 first
    throttle_patches: bool = False
    seen: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            key = f"{scope['method']} {'manifests' if '/manifests/' in scope['path'] else ''}"
            self.seen[key] = self.seen.get(key, 0) + 1
            status = 0
            if key == "GET manifests" and self.busy_gets > 0:
                self.busy_gets -= 1
                status = 503
            elif scope["method"] == "PATCH" and self.throttle_patches:
                status = 429
            if status:
                body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                headers = [(b"retry-after", b"1"), (b"content-length", b"%d" % len(body))]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.inner(scope, receive, send)


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[tuple[str, Throttle]]:
    from ocigate.assemble import create_app
    from ocigate.config import Settings

    throttle = Throttle(create_app(Settings(data_dir=tmp_path / "upstream")))
    with serve_app(throttle, "throttled") as url:
        yield url, throttle


def test_retry_after_is_honoured_for_idempotent_requests_only(
    throttled: tuple[str, Throttle], tmp_path: Path, http: httpx.Client
) -> None:
    upstream_url, throttle = throttled
    with serve_gateway(tmp_path / "gw", [{"url": upstream_url, "retries": 3}]) as url:
        image = make_image("retry")
        push_image(http, url, "retry/app", image, "v1")

        throttle.busy_gets = 2
        started = time.monotonic()
        response = http.get(f"{url}/v2/retry/app/manifests/v1")
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and response.content == image.manifest.data
        assert elapsed >= 2.0, "Retry-After: 1 twice means at least two seconds of waiting"

        throttle.throttle_patches = True
        location = start_upload(http, url, "retry/app")
        before = throttle.seen.get("PATCH ", 0)
        response = http.patch(location, content=b"chunk")
        assert response.status_code == 429
        assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert throttle.seen["PATCH "] == before + 1, "a PATCH must never be retried"

        throttle.busy_gets = 10  # more than the retries: the client finally sees the 503
        response = http.get(f"{url}/v2/retry/app/manifests/v1")
        assert response.status_code == 503
        assert upstream_url in response.json()["errors"][0]["message"]


def _peak_rss(pid: int) -> int:
    """Peak resident set (VmHWM, bytes) of the largest process in ``pid``'s process group."""
    peak = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pid:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)
    return peak


def _pieces(count: int) -> Iterator[bytes]:
    """``count`` distinct MiB pieces (each starts with its index), so a reordered or repeated
    piece changes the digest."""
    base = bytes(range(256)) * 4096
    for index in range(count):
        yield index.to_bytes(8, "big") + base[8:]


def _tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def test_4gib_blob_streams_through_in_flat_memory(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    """A 4 GiB blob is pushed and pulled through the gateway: byte-exact, no temp file on the
    gateway's disk, and the gateway's peak memory grows by far less than the blob."""
    count = 4096  # MiB
    data_dir = tmp_path / "gw"
    gateway = gateway_process([{"url": distribution.url}], data_dir, tmp_path / "gw.log", workers=1)
    gateway.start()
    try:
        push_image(http, gateway.url, "warm/up", make_image("warm"), "v1")  # imports, pools
        baseline, disk_before = _peak_rss(gateway.pid), _tree_size(data_dir)
        assert baseline > 0, "no process of the gateway's group found"
        hasher = hashlib.sha256()
        for piece in _pieces(count):
            hasher.update(piece)
        digest = f"sha256:{hasher.hexdigest()}"
        location = start_upload(http, gateway.url, "big/blob")
        response = http.put(
            f"{location}&digest={digest}" if "?" in location else f"{location}?digest={digest}",
            content=_pieces(count),
            timeout=600,
        )
        assert response.status_code == 201, response.text
        received = hashlib.sha256()
        size = 0
        with http.stream(
            "GET", f"{gateway.url}/v2/big/blob/blobs/{digest}", timeout=600
        ) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-length"] == str(count << 20)
            for chunk in streamed.iter_raw():
                received.update(chunk)
                size += len(chunk)
        assert size == count << 20 and f"sha256:{received.hexdigest()}" == digest
        growth = _peak_rss(gateway.pid) - baseline
        disk_growth = _tree_size(data_dir) - disk_before
    finally:
        gateway.stop()
    assert growth < 64 * 1024 * 1024, f"gateway memory grew by {growth >> 20} MiB"
    assert disk_growth < 1024 * 1024, f"the gateway wrote {disk_growth} bytes to its disk"


def _push_with_tags(http: httpx.Client, url: str, repo: str, seed: str) -> httpx.Response:
    image = make_image(seed)
    for blob in image.blobs:
        push_blob_monolithic(http, url, repo, blob.data)
    return http.put(
        f"{url}/v2/{repo}/manifests/{image.manifest.digest}",
        params=[("tag", "a"), ("tag", "b"), ("tag", "c")],
        content=image.manifest.data,
        headers={"Content-Type": OCI_MANIFEST},
    )


def test_tag_parameters_are_forwarded_and_supplied_where_missing(
    throttled: tuple[str, Throttle], distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    """Against an upstream with ``tag`` parameters one manifest PUT carries all tags; against
    distribution 2.8.2, which ignores them, the gateway pushes the tags itself."""
    upstream_url, counter = throttled
    upstreams = [{"url": upstream_url}, {"url": distribution.url, "prefix": "dist"}]
    with serve_gateway(tmp_path / "gw", upstreams) as url:
        for repo in ("tags/app", "dist/tags/app"):
            before = counter.seen.get("PUT manifests", 0)
            response = _push_with_tags(http, url, repo, repo)
            assert response.status_code == 201, response.text
            assert response.headers.get_list("oci-tag", split_commas=True) == ["a", "b", "c"]
            listed = http.get(f"{url}/v2/{repo}/tags/list").json()["tags"]
            assert listed == ["a", "b", "c"], repo
            if repo == "tags/app":
                assert counter.seen["PUT manifests"] - before == 1
        assert counter.seen["PUT manifests"] == 1, "distribution's tags went to the other upstream"
