"""The pull-through cache (``cache: true`` on an upstream): content pulled once is served locally,
also when the upstream is gone; tags are revalidated after their TTL and served stale, with a
``Warning``, during an outage; one upstream download per blob however many pull it at once; a
lying upstream leaves nothing cached; pushes are refused or written through."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.support import (
    ServerProcess,
    closing_client,
    get_manifest,
    make_image,
    push_image,
    sha256_digest,
)
from ocigate.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from spec.conftest import serve_app

from .support import gateway_process, serve_gateway

REPO = "lib/app"


def cache_upstream(url: str, **extra: Any) -> list[dict[str, Any]]:
    # No retries and a short connect timeout: an outage must show at once.
    return [{"url": url, "cache": True, "retries": 0, "connect_timeout": 2.0, **extra}]


def cached_blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "cache").glob("*/blobs/*/*/*") if p.is_file()]


# --- a small upstream of our own: trickles, counts and (optionally) lies -------------------------


@dataclass
class FakeUpstream:
    """Serves blobs (``chunk`` bytes every ``delay`` seconds, GETs counted per digest; only in
    the repositories ``holders`` names for a digest there),
    manifests (by tag or digest, as they were when the request came; answered with
    ``manifest_status`` instead when it is set, after ``manifest_delay`` seconds; only with the
    ``Authorization`` header ``basic`` when that is set), the tag list and the ``referrers`` of
    a subject (as they were when the request came, after ``manifest_delay`` seconds), counting
    requests by method and kind ("GET manifests", "GET tags", "GET referrers")."""

    blobs: dict[str, bytes]
    manifests: dict[str, bytes] = field(default_factory=dict)
    manifest_status: int = 0
    manifest_delay: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # "GET manifests": n
    chunk: int = 256 * 1024
    delay: float = 0.0
    lie: bool = False  # serve other bytes of the right length
    chunked: bool = False  # blob GETs without Content-Length (the server chunks them)
    gets: dict[str, int] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)  # monotonic time the body ended
    basic: str = ""
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # subject: index
    holders: dict[str, set[str]] = field(default_factory=dict)  # digest: the only repos with it

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        found = re.fullmatch(r"/v2/.+/blobs/(sha256:[a-f0-9]{64})", scope["path"])
        manifest = re.fullmatch(r"/v2/.+/manifests/([^/]+)", scope["path"])
        if scope["path"] == "/v2/":
            await self._send(send, 200, b"{}")
        elif (
            manifest
            and self.basic
            and (b"authorization", self.basic.encode()) not in scope["headers"]
        ):
            headers = [(b"www-authenticate", b'Basic realm="fake"'), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        elif manifest:
            await self._manifest(scope["method"], manifest.group(1), send)
        elif tags := re.fullmatch(r"/v2/(.+)/tags/list", scope["path"]):
            names = sorted(name for name in self.manifests if ":" not in name)
            await self._listing("tags", {"name": tags.group(1), "tags": names}, send)
        elif (subject := scope["path"].rpartition("/referrers/")[2]) in self.referrers:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX}
            await self._listing("referrers", {**index, "manifests": self.referrers[subject]}, send)
        elif found and found.group(1) in self.blobs and self._holds(scope["path"], found.group(1)):
            await self._blob(scope["method"], found.group(1), send)
        else:
            await self._send(send, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}')

    def _holds(self, path: str, digest: str) -> bool:
        repo = path.removeprefix("/v2/").rpartition("/blobs/")[0]
        return digest not in self.holders or repo in self.holders[digest]

    async def _send(self, send: Any, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _listing(self, kind: str, document: dict[str, Any], send: Any) -> None:
        key = f"GET {kind}"
        self.requests[key] = self.requests.get(key, 0) + 1
        body = json.dumps(document).encode()  # as it was when the request came, then the delay
        await asyncio.sleep(self.manifest_delay)
        await self._send(send, 200, body)

    async def _manifest(self, method: str, reference: str, send: Any) -> None:
        key = f"{method} manifests"
        self.requests[key] = self.requests.get(key, 0) + 1
        data = self.manifests.get(reference)  # as it was when the request came, then the delay
        await asyncio.sleep(self.manifest_delay)
        if self.manifest_status:
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"busy"}]}'
            await self._send(send, self.manifest_status, body)
            return
        if data is None:
            await self._send(send, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}')
            return
        headers = [
            (b"content-type", OCI_MANIFEST.encode()),
            (b"content-length", b"%d" % len(data)),
            (b"docker-content-digest", sha256_digest(data).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})

    async def _blob(self, method: str, digest: str, send: Any) -> None:
        data = self.blobs[digest]
        if self.lie:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"docker-content-digest", digest.encode()),
        ]
        if method == "HEAD" or not self.chunked:
            headers.append((b"content-length", b"%d" % len(data)))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if method == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        self.gets[digest] = self.gets.get(digest, 0) + 1
        for offset in range(0, len(data), self.chunk):
            await asyncio.sleep(self.delay)
            piece = data[offset : offset + self.chunk]
            more = offset + self.chunk < len(data)
            await send({"type": "http.response.body", "body": piece, "more_body": more})
        self.finished[digest] = time.monotonic()


@pytest.fixture
def big_blob() -> bytes:
    return random.Random(7).randbytes(8 * 1024 * 1024)


@contextmanager
def fake_upstream(fake: FakeUpstream) -> Iterator[str]:
    with serve_app(fake, "fake-upstream") as url:
        yield url


# --- against distribution ------------------------------------------------------------------


def test_image_pulled_through_is_served_after_the_upstream_stops(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    image = make_image("cache-1", layer_sizes=(300_000, 50_000))
    push_image(http, distribution.url, REPO, image, "v1")
    with serve_gateway(tmp_path / "gw", cache_upstream(distribution.url)) as url:
        first = get_manifest(http, url, REPO, "v1")
        assert first.status_code == 200, first.text
        assert first.content == image.manifest.data
        assert first.headers["docker-content-digest"] == image.manifest.digest
        for blob in image.blobs:
            response = http.get(f"{url}/v2/{REPO}/blobs/{blob.digest}")
            assert response.status_code == 200, response.text
            assert response.content == blob.data
        assert len(cached_blob_files(tmp_path / "gw")) == len(image.blobs)

        distribution.stop()
        distribution.wait_port_closed()
        for ref in ("v1", image.manifest.digest):
            again = get_manifest(http, url, REPO, ref)
            assert again.status_code == 200, again.text
            assert again.content == image.manifest.data
            assert "warning" not in again.headers  # the tag is within its TTL
        for blob in image.blobs:
            response = http.get(f"{url}/v2/{REPO}/blobs/{blob.digest}")
            assert response.status_code == 200, response.text
            assert response.content == blob.data
            head = http.head(f"{url}/v2/{REPO}/blobs/{blob.digest}")
            assert head.status_code == 200
            assert int(head.headers["content-length"]) == blob.size
        ranged = http.get(
            f"{url}/v2/{REPO}/blobs/{image.layers[0].digest}", headers={"Range": "bytes=10-19"}
        )
        assert ranged.status_code == 206
        assert ranged.content == image.layers[0].data[10:20]


def test_outage_serves_stale_tags_with_a_warning_and_fails_what_is_not_cached(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    image = make_image("cache-2")
    newer = make_image("cache-2b")
    never = make_image("cache-2c")
    push_image(http, distribution.url, REPO, image, "v1")
    push_image(http, distribution.url, REPO, never, "v2")
    with serve_gateway(tmp_path / "gw", cache_upstream(distribution.url, cache_tag_ttl=0)) as url:
        assert get_manifest(http, url, REPO, "v1").content == image.manifest.data
        # TTL 0: every pull revalidates, so a moved tag is seen at once.
        push_image(http, distribution.url, REPO, newer, "v1")
        moved = get_manifest(http, url, REPO, "v1")
        assert moved.content == newer.manifest.data
        assert "warning" not in moved.headers
        layer = http.get(f"{url}/v2/{REPO}/blobs/{newer.layers[0].digest}")
        assert layer.content == newer.layers[0].data

        distribution.stop()
        distribution.wait_port_closed()
        stale = get_manifest(http, url, REPO, "v1")
        assert stale.status_code == 200, stale.text
        assert stale.content == newer.manifest.data
        warnings = stale.headers.get_list("warning")
        assert len(warnings) == 1 and re.fullmatch(r'299 - "[^"]*"', warnings[0]), warnings
        assert "served from cache" in warnings[0]
        by_digest = get_manifest(http, url, REPO, newer.manifest.digest)
        assert by_digest.status_code == 200 and "warning" not in by_digest.headers
        assert http.get(f"{url}/v2/{REPO}/blobs/{newer.layers[0].digest}").content == (
            newer.layers[0].data
        )

        started = time.monotonic()
        missing = http.get(f"{url}/v2/{REPO}/blobs/{image.layers[0].digest}")
        assert missing.status_code == 502, missing.text
        assert missing.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert time.monotonic() - started < 2.0  # within the connect timeout
        uncached = get_manifest(http, url, REPO, never.manifest.digest)
        assert uncached.status_code == 502, uncached.text
        assert get_manifest(http, url, REPO, "v2").status_code == 502


def test_pushes_are_refused_by_default(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    image = make_image("cache-3")
    with serve_gateway(tmp_path / "gw", cache_upstream(distribution.url)) as url:
        started = http.post(f"{url}/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 405, started.text
        assert started.json()["errors"][0]["code"] == "UNSUPPORTED"
        put = http.put(
            f"{url}/v2/{REPO}/manifests/v1",
            content=image.manifest.data,
            headers={"Content-Type": image.manifest.media_type},
        )
        assert put.status_code == 405, put.text
        deleted = http.delete(f"{url}/v2/{REPO}/manifests/{image.manifest.digest}")
        assert deleted.status_code == 405
    assert get_manifest(http, distribution.url, REPO, "v1").status_code == 404


def test_pushes_are_written_through_when_configured(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    first, second = make_image("cache-4"), make_image("cache-4b")
    upstreams = cache_upstream(distribution.url, cache_push="write-through")
    with serve_gateway(tmp_path / "gw", upstreams) as url:
        push_image(http, url, REPO, first, "v1")
        direct = get_manifest(http, distribution.url, REPO, "v1")
        assert direct.content == first.manifest.data
        assert get_manifest(http, url, REPO, "v1").content == first.manifest.data
        # Re-pushing the tag through the cache drops the cached tag despite its TTL.
        push_image(http, url, REPO, second, "v1")
        assert get_manifest(http, url, REPO, "v1").content == second.manifest.data
        for blob in second.blobs:
            assert http.get(f"{distribution.url}/v2/{REPO}/blobs/{blob.digest}").content == (
                blob.data
            )


def test_a_multi_worker_server_shares_one_cache(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    """``ocigate serve`` with two workers, the cache configured from the environment: each
    connection may land on either worker, and both read and fill the same cache directory."""
    image = make_image("cache-6", layer_sizes=(200_000,))
    push_image(http, distribution.url, REPO, image, "v1")
    gateway = gateway_process(cache_upstream(distribution.url), tmp_path / "gw", tmp_path / "l")
    gateway.start()
    try:
        with closing_client() as client:
            for _ in range(4):
                assert get_manifest(client, gateway.url, REPO, "v1").content == (
                    image.manifest.data
                )
                for blob in image.blobs:
                    got = client.get(f"{gateway.url}/v2/{REPO}/blobs/{blob.digest}")
                    assert got.content == blob.data
            distribution.stop()
            for _ in range(4):
                for blob in image.blobs:
                    got = client.get(f"{gateway.url}/v2/{REPO}/blobs/{blob.digest}")
                    assert got.status_code == 200, got.text
                    assert got.content == blob.data
    finally:
        gateway.stop()
    assert len(cached_blob_files(tmp_path / "gw")) == len(image.blobs)


# --- against upstreams of our own ------------------------------------------------------------


def test_concurrent_pulls_share_one_upstream_download(tmp_path: Path, big_blob: bytes) -> None:
    digest = sha256_digest(big_blob)
    fake = FakeUpstream({digest: big_blob}, delay=0.02)  # 32 pieces: about 0.7 s
    results: list[bytes] = []
    errors: list[BaseException] = []
    with fake_upstream(fake) as up, serve_gateway(tmp_path / "gw", cache_upstream(up)) as url:
        barrier = threading.Barrier(5)

        def pull() -> None:
            try:
                barrier.wait()
                with httpx.Client(timeout=30.0) as client:
                    results.append(client.get(f"{url}/v2/{REPO}/blobs/{digest}").content)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=pull) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(results) == 5
        assert all(hashlib.sha256(r).hexdigest() == digest.split(":")[1] for r in results)
        assert fake.gets == {digest: 1}
        with httpx.Client(timeout=30.0) as client:
            assert client.get(f"{url}/v2/{REPO}/blobs/{digest}").content == big_blob
        assert fake.gets == {digest: 1}


def test_first_bytes_arrive_before_the_upstream_has_finished(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(2 * 1024 * 1024)
    digest = sha256_digest(data)
    fake = FakeUpstream({digest: data}, chunk=64 * 1024, delay=0.05)  # 32 pieces: 1.6 s
    with fake_upstream(fake) as up, serve_gateway(tmp_path / "gw", cache_upstream(up)) as url:
        with httpx.Client(timeout=30.0) as client:
            started = time.monotonic()
            with client.stream("GET", f"{url}/v2/{REPO}/blobs/{digest}") as response:
                assert response.status_code == 200
                body = response.iter_raw()
                received = next(body)
                first_at = time.monotonic()
                for piece in body:
                    received += piece
        assert received == data
        assert first_at - started < 0.6
        assert fake.finished[digest] - first_at > 0.8
        assert len(cached_blob_files(tmp_path / "gw")) == 1


def test_an_aborted_first_read_still_leaves_a_complete_verified_copy(tmp_path: Path) -> None:
    data = random.Random(4).randbytes(1024 * 1024)
    digest = sha256_digest(data)
    fake = FakeUpstream({digest: data}, chunk=64 * 1024, delay=0.02)
    with fake_upstream(fake) as up, serve_gateway(tmp_path / "gw", cache_upstream(up)) as url:
        with httpx.Client(timeout=30.0) as client:
            with client.stream("GET", f"{url}/v2/{REPO}/blobs/{digest}") as response:
                next(response.iter_raw())  # then hang up
            deadline = time.monotonic() + 10
            while not cached_blob_files(tmp_path / "gw") and time.monotonic() < deadline:
                time.sleep(0.05)
            (path,) = cached_blob_files(tmp_path / "gw")
            assert path.read_bytes() == data
            assert client.get(f"{url}/v2/{REPO}/blobs/{digest}").content == data
        assert fake.gets == {digest: 1}


def test_a_lying_upstream_leaves_nothing_cached(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(512 * 1024)
    digest = sha256_digest(data)
    fake = FakeUpstream({digest: data}, lie=True)
    with fake_upstream(fake) as up, serve_gateway(tmp_path / "gw", cache_upstream(up)) as url:
        for attempt in (1, 2):
            received = b""
            with httpx.Client(timeout=30.0) as client:
                try:
                    with client.stream("GET", f"{url}/v2/{REPO}/blobs/{digest}") as response:
                        for piece in response.iter_raw():
                            received += piece
                except httpx.HTTPError:
                    pass  # the connection was cut: what a client should see
            assert len(received) < len(data)  # never a complete (wrong) body
            assert fake.gets == {digest: attempt}  # nothing cached: asked again
        assert cached_blob_files(tmp_path / "gw") == []
        assert list((tmp_path / "gw" / "cache").glob("*/tmp/*")) == []


@pytest.mark.parametrize(
    ("status", "delay", "why"),
    [(429, 0.0, "429 TOOMANYREQUESTS"), (503, 0.0, "503 UNAVAILABLE"), (0, 3.0, "504 UNAVAILABLE")],
)
def test_tags_are_revalidated_with_head_and_served_stale_when_the_upstream_fails(
    tmp_path: Path, status: int, delay: float, why: str
) -> None:
    first = make_image("cache-5").manifest.data
    second = make_image("cache-5b").manifest.data
    fake = FakeUpstream({}, manifests={"v1": first})
    upstreams = cache_upstream("", cache_tag_ttl=0.3, read_timeout=1.0)
    with fake_upstream(fake) as up:
        upstreams[0]["url"] = up
        with serve_gateway(tmp_path / "gw", upstreams) as url, httpx.Client() as client:
            assert get_manifest(client, url, REPO, "v1").content == first
            assert get_manifest(client, url, REPO, "v1").content == first  # within the TTL
            assert fake.requests == {"GET manifests": 1}
            time.sleep(0.4)
            assert get_manifest(client, url, REPO, "v1").content == first  # unchanged: a HEAD
            assert fake.requests == {"GET manifests": 1, "HEAD manifests": 1}
            fake.manifests["v1"] = second
            time.sleep(0.4)
            assert get_manifest(client, url, REPO, "v1").content == second  # moved: HEAD + GET
            assert fake.requests == {"GET manifests": 2, "HEAD manifests": 2}

            fake.manifest_status, fake.manifest_delay = status, delay
            time.sleep(0.4)
            stale = get_manifest(client, url, REPO, "v1")
            assert stale.status_code == 200, stale.text
            assert stale.content == second
            assert why in stale.headers["warning"], stale.headers["warning"]
            digest = sha256_digest(second)
            assert get_manifest(client, url, REPO, digest).content == second
            # Not cached: the upstream's own failure, not a stale answer.
            unknown = get_manifest(client, url, REPO, "v2")
            assert unknown.status_code == (status or 504), unknown.text


def test_beyond_its_size_limit_the_cache_evicts_the_least_recently_served(
    tmp_path: Path,
) -> None:
    mib = 1024 * 1024
    blobs = {name: random.Random(name).randbytes(mib) for name in "ABCD"}
    digest = {name: sha256_digest(data) for name, data in blobs.items()}
    fake = FakeUpstream({digest[name]: data for name, data in blobs.items()})
    with fake_upstream(fake) as up:
        upstreams = cache_upstream(up, cache_max_size=int(2.5 * mib))
        with serve_gateway(tmp_path / "gw", upstreams) as url, httpx.Client() as client:

            def pull(name: str) -> None:
                response = client.get(f"{url}/v2/{REPO}/blobs/{digest[name]}")
                assert response.status_code == 200 and response.content == blobs[name]
                time.sleep(0.01)  # distinct "last served" times

            def cached() -> set[str]:
                names = {p.name for p in cached_blob_files(tmp_path / "gw")}
                return {n for n, d in digest.items() if d.split(":")[1] in names}

            for name in "ABC":
                pull(name)
            assert cached() == {"B", "C"}  # A was served least recently
            pull("B")  # from the cache, and now more recent than C
            assert fake.gets[digest["B"]] == 1
            pull("D")
            assert cached() == {"B", "D"}
            pull("A")  # evicted before: fetched again
            assert fake.gets[digest["A"]] == 2
            assert cached() == {"D", "A"}
            assert fake.gets[digest["C"]] == 1


def test_blobs_streamed_without_a_length_are_relayed_whole(tmp_path: Path) -> None:
    """An upstream (or a proxy before it) that chunks blob bodies: the gateway learns the size
    from HEAD, relays the bytes with a Content-Length, and serves ranges cut from them."""
    data = random.Random(11).randbytes(3 * 1024 * 1024 + 17)
    digest = sha256_digest(data)
    fake = FakeUpstream({digest: data}, chunked=True)
    with (
        fake_upstream(fake) as up,
        serve_gateway(tmp_path / "gw", [{"url": up}]) as url,
        httpx.Client(timeout=30.0) as client,
    ):
        whole = client.get(f"{url}/v2/{REPO}/blobs/{digest}")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-length"] == str(len(data))
        part = client.get(f"{url}/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == data[1000:2000]


def test_concurrent_revalidations_of_a_tag_share_upstream_heads(tmp_path: Path) -> None:
    """When a tag's TTL has run out under many clients at once, the upstream is asked with
    two HEADs (one in flight, one for everyone who came meanwhile), not one per client."""
    data = make_image("cache-herd").manifest.data
    fake = FakeUpstream({}, manifests={"v1": data})
    upstreams = cache_upstream("", cache_tag_ttl=0.2)
    with fake_upstream(fake) as up:
        upstreams[0]["url"] = up
        with serve_gateway(tmp_path / "gw", upstreams) as url, httpx.Client() as client:
            assert get_manifest(client, url, REPO, "v1").content == data
            time.sleep(0.3)
            fake.manifest_delay = 1.0
            with ThreadPoolExecutor(12) as pool:
                got = list(pool.map(lambda _: get_manifest(client, url, REPO, "v1"), range(12)))
    assert {response.content for response in got} == {data}
    assert fake.requests == {"GET manifests": 1, "HEAD manifests": 2}


def test_cached_blobs_are_reused_for_another_repository_only_once_the_upstream_confirms_them(
    tmp_path: Path,
) -> None:
    image = make_image("reuse", layer_sizes=(100_000,))
    private = random.Random(12).randbytes(10_000)
    blobs = {blob.digest: blob.data for blob in image.blobs}
    fake = FakeUpstream({**blobs, sha256_digest(private): private})
    fake.manifests["v1"] = image.manifest.data
    fake.holders[sha256_digest(private)] = {"a/one"}
    with ExitStack() as upstream_running:
        up = upstream_running.enter_context(fake_upstream(fake))
        with serve_gateway(tmp_path / "gw", cache_upstream(up)) as url, httpx.Client() as client:

            def pull(repo: str, digest: str) -> httpx.Response:
                return client.get(f"{url}/v2/{repo}/blobs/{digest}")

            assert get_manifest(client, url, "a/one", "v1").content == image.manifest.data
            for digest, data in [*blobs.items(), (sha256_digest(private), private)]:
                assert pull("a/one", digest).content == data
            # Another repository: a HEAD there confirms it, the bytes are not fetched again.
            for digest, data in blobs.items():
                assert pull("c/three", digest).content == data
            # Where the upstream does not have it, the cached bytes are not served.
            refused = pull("d/four", sha256_digest(private))
            assert refused.status_code == 404, refused.text
            assert refused.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
            assert client.head(f"{url}/v2/d/four/blobs/{sha256_digest(private)}").status_code == (
                404
            )
            # A cached manifest of the repository vouches for its blobs: served even with the
            # upstream gone.
            assert get_manifest(client, url, "b/two", "v1").content == image.manifest.data
            upstream_running.close()
            for digest, data in blobs.items():
                assert client.head(f"{url}/v2/b/two/blobs/{digest}").status_code == 200
                got = pull("b/two", digest)
                assert got.status_code == 200, got.text
                assert got.content == data
            assert pull("e/five", image.layers[0].digest).status_code == 502  # unconfirmed
    assert set(fake.gets.values()) == {1}


def test_a_download_running_for_one_repository_is_shared_with_another_once_confirmed(
    tmp_path: Path, big_blob: bytes
) -> None:
    digest = sha256_digest(big_blob)
    fake = FakeUpstream({digest: big_blob}, delay=0.02)  # 32 pieces: about 0.7 s
    fake.holders[digest] = {"a/one", "b/two"}
    with fake_upstream(fake) as up, serve_gateway(tmp_path / "gw", cache_upstream(up)) as url:

        def pull(repo: str) -> httpx.Response:
            with httpx.Client(timeout=30.0) as client:
                return client.get(f"{url}/v2/{repo}/blobs/{digest}")

        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(pull, "a/one")
            time.sleep(0.2)  # the download for a/one is under way
            second, third = pool.submit(pull, "b/two"), pool.submit(pull, "c/three")
            assert first.result().content == big_blob
            assert second.result().content == big_blob
            refused = third.result()
        assert refused.status_code == 404, refused.text
        assert fake.gets == {digest: 1}
