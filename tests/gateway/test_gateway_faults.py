"""Retries and resource bounds: Retry-After honoured for idempotent requests only, and blobs
streamed through the gateway in flat memory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.support import ServerProcess, make_image, push_image, start_upload
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
    from ocigate.api.app import create_app
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


def test_large_blob_streams_through_in_flat_memory(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    size, piece = 256 * 1024 * 1024, bytes(range(256)) * 4096  # 256 MiB of 1 MiB pieces
    gateway = gateway_process(
        [{"url": distribution.url}], tmp_path / "gw", tmp_path / "gw.log", workers=1
    )
    gateway.start()
    try:
        push_image(http, gateway.url, "warm/up", make_image("warm"), "v1")  # imports, pools
        baseline = _peak_rss(gateway.pid)
        assert baseline > 0, "no process of the gateway's group found"

        def body() -> Iterator[bytes]:
            for _ in range(size // len(piece)):
                yield piece

        digest = "sha256:" + _sha256_of_repeated(piece, size // len(piece))
        location = start_upload(http, gateway.url, "big/blob")
        response = http.put(
            f"{location}&digest={digest}" if "?" in location else f"{location}?digest={digest}",
            content=body(),
        )
        assert response.status_code == 201, response.text
        received = 0
        with http.stream("GET", f"{gateway.url}/v2/big/blob/blobs/{digest}") as streamed:
            assert streamed.status_code == 200
            for chunk in streamed.iter_raw():
                received += len(chunk)
        assert received == size
        growth = _peak_rss(gateway.pid) - baseline
    finally:
        gateway.stop()
    assert growth < 64 * 1024 * 1024, f"gateway memory grew by {growth >> 20} MiB"


def _sha256_of_repeated(piece: bytes, count: int) -> str:
    import hashlib

    hasher = hashlib.sha256()
    for _ in range(count):
        hasher.update(piece)
    return hasher.hexdigest()
