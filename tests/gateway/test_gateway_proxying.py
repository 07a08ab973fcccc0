"""Gateway features for proxying clients and object-store upstreams: the spec's ``ns`` query
parameter, blob redirects handed to the client, and emulated referrers indexes kept whole when
referrers of one subject arrive at different worker processes at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from e2e.support import (
    OCI_EMPTY,
    OCI_MANIFEST,
    Blob,
    ServerProcess,
    closing_client,
    json_bytes,
    location,
    make_image,
    ocigate_server,
    push_blob_monolithic,
    push_image,
    sha256_digest,
    with_query,
)
from spec.conftest import serve_app

from .support import gateway_process, serve_gateway

ROUNDS = 3  # referrers of a new subject each round


def test_ns_routes_to_the_named_upstream_and_is_echoed(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    embedded = ocigate_server(tmp_path / "emb", tmp_path / "emb.log", workers=1).start()
    try:
        upstreams = [{"url": embedded.url}, {"url": distribution.url, "prefix": "dist"}]
        on_dist, on_embedded = make_image("ns-dist"), make_image("ns-embedded")
        push_image(http, distribution.url, "team/app", on_dist, "v1")
        ns = distribution.url.removeprefix("http://")
        with serve_gateway(tmp_path / "gw", upstreams) as url:
            push_image(http, url, "team/app", on_embedded, "v2")

            # ns names distribution: it answers for team/app, although no prefix was given.
            tags = http.get(f"{url}/v2/team/app/tags/list", params={"ns": ns})
            assert tags.json()["tags"] == ["v1"]
            assert tags.headers["oci-namespace"] == ns
            manifest = http.get(
                f"{url}/v2/team/app/manifests/v1",
                params={"ns": ns},
                headers={"Accept": OCI_MANIFEST},
            )
            assert manifest.status_code == 200 and manifest.content == on_dist.manifest.data
            assert manifest.headers["oci-namespace"] == ns
            layer = on_dist.layers[0]
            blob = http.get(f"{url}/v2/team/app/blobs/{layer.digest}", params={"ns": ns})
            assert blob.content == layer.data and blob.headers["oci-namespace"] == ns
            missing = http.get(f"{url}/v2/team/app/manifests/v2", params={"ns": ns})
            assert missing.status_code == 404 and missing.headers["oci-namespace"] == ns

            # A push with ns: the upload location keeps ns, so the session stays on that upstream.
            started = http.post(f"{url}/v2/team/app/blobs/uploads/", params={"ns": ns})
            assert started.status_code == 202 and started.headers["oci-namespace"] == ns
            session = location(url, started)
            assert f"ns={ns}" in session
            pushed = b"pushed with ns"
            digest = sha256_digest(pushed)
            done = http.put(with_query(session, digest=digest), content=pushed)
            assert done.status_code == 201, done.text
            assert http.get(f"{distribution.url}/v2/team/app/blobs/{digest}").content == pushed

            # Without ns, or with one naming no upstream: prefix routing, and no header.
            for params in ({}, {"ns": "registry.example.com"}):
                plain = http.get(f"{url}/v2/team/app/tags/list", params=params)
                assert plain.json()["tags"] == ["v2"], params
                assert "oci-namespace" not in plain.headers
    finally:
        embedded.stop()


def test_blob_redirects_are_passed_to_the_client_when_configured(
    tmp_path: Path, http: httpx.Client
) -> None:
    from ocigate.assemble import create_app
    from ocigate.config import Settings

    inner = create_app(Settings(data_dir=tmp_path / "upstream"))
    with serve_app(inner, "storage") as storage_url:
        storage = storage_url.replace("127.0.0.1", "localhost")  # another origin
        requests: list[str] = []

        async def redirecting(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if (
                scope["type"] == "http"
                and scope["method"] == "GET"
                and "/blobs/sha256:" in (scope["path"])
            ):
                requests.append(scope["path"])
                target = f"{storage}{scope['path']}?X-Signature=abc".encode()
                headers = [(b"location", target), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 307, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            await inner(scope, receive, send)

        with serve_app(redirecting, "redirecting-registry") as upstream_url:
            passing = {"url": upstream_url, "pass_redirects": True}
            data = b"bytes from the object store " * 500
            with serve_gateway(tmp_path / "gw", [passing]) as url:
                digest = push_blob_monolithic(http, url, "cdn/app", data)
                path = f"/v2/cdn/app/blobs/{digest}"
                response = http.get(f"{url}{path}")
                ranged = http.get(f"{url}{path}", headers={"Range": "bytes=5-9"})
                assert http.head(f"{url}{path}").headers["content-length"] == str(len(data))
                followed = http.get(f"{url}{path}", follow_redirects=True)
                ranged_followed = http.get(
                    f"{url}{path}", headers={"Range": "bytes=5-9"}, follow_redirects=True
                )
            # The default still follows the redirect itself.
            with serve_gateway(tmp_path / "gw2", [{"url": upstream_url}]) as url:
                default = http.get(f"{url}{path}")
    target = f"{storage}{path}?X-Signature=abc"
    for answer in (response, ranged):
        assert answer.status_code == 307, (answer.status_code, answer.text)
        assert answer.headers["location"] == target
        assert answer.content == b""
    assert followed.status_code == 200 and followed.content == data
    assert ranged_followed.status_code == 206 and ranged_followed.content == data[5:10]
    assert default.status_code == 200 and default.content == data
    assert len(requests) == 5


def _referrer(subject: Blob, index: int) -> Blob:
    empty = Blob(OCI_EMPTY, b"{}")
    return Blob(
        OCI_MANIFEST,
        json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": f"application/vnd.example.note.{index}",
                "config": empty.descriptor(),
                "layers": [empty.descriptor()],
                "subject": subject.descriptor(),
            }
        ),
    )


def _push_at_once(base: str, repo: str, manifests: list[Blob]) -> list[int]:
    """PUT every manifest from its own thread and connection, all released together."""
    barrier = threading.Barrier(len(manifests))
    statuses: list[int] = []

    def push(manifest: Blob) -> None:
        with closing_client() as client:  # a new connection: any worker may take it
            barrier.wait(timeout=30)
            response = client.put(
                f"{base}/v2/{repo}/manifests/{manifest.digest}",
                content=manifest.data,
                headers={"Content-Type": manifest.media_type},
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=push, args=(m,)) for m in manifests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_concurrent_referrers_through_two_workers_all_listed(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    """distribution has no referrers API, so the gateway maintains the ``sha256-<hex>`` tag;
    referrers pushed at once through different workers must all end up in it."""
    gateway = gateway_process([{"url": distribution.url}], tmp_path / "gw", tmp_path / "gw.log")
    gateway.start()
    try:
        push_blob_monolithic(http, gateway.url, "refs/app", b"{}")
        for round_ in range(ROUNDS):
            image = make_image(f"referred-{round_}")
            push_image(http, gateway.url, "refs/app", image, f"v{round_}")
            referrers = [_referrer(image.manifest, i) for i in range(6)]
            statuses = _push_at_once(gateway.url, "refs/app", referrers)
            assert statuses == [201] * len(referrers)
            listed = http.get(f"{gateway.url}/v2/refs/app/referrers/{image.manifest.digest}")
            assert listed.status_code == 200
            found = {m["digest"] for m in listed.json()["manifests"]}
            assert found == {r.digest for r in referrers}, f"round {round_}"
    finally:
        gateway.stop()
