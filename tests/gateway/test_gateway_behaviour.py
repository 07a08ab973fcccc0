"""Gateway behaviour beyond the spec suite: stateless uploads across workers, signed upload ids,
prefix routing, skopeo, and what clients see when the upstream is down or hangs."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from e2e.support import (
    ServerProcess,
    closing_client,
    make_image,
    ocigate_server,
    push_blob_chunked,
    push_blob_monolithic,
    push_image,
    sha256_digest,
    skopeo,
    write_oci_layout,
)
from ocigate.oci.mediatypes import OCI_MANIFEST

from .support import gateway_process, scripted_server, serve_gateway, silent_server
from .test_cache import FakeUpstream, fake_upstream

OCI_EMPTY_MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    b'"annotations":{"n":"%s"}}'
)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    first = response.json()["errors"][0]
    assert first["code"] == code, first
    return str(first["message"])


def test_chunked_upload_continues_across_workers(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    gateway = gateway_process([{"url": distribution.url}], tmp_path / "gw", tmp_path / "gw.log")
    gateway.start()
    try:
        data = bytes(range(256)) * 4096  # 1 MiB in 16 chunks, each on a new connection
        with closing_client() as client:
            digest = push_blob_chunked(client, gateway.url, "multi/worker", data, 65536)
    finally:
        gateway.stop()
    direct = http.get(f"{distribution.url}/v2/multi/worker/blobs/{digest}")
    assert direct.status_code == 200
    assert direct.content == data


def test_forged_and_foreign_upload_ids_are_unknown(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    with serve_gateway(tmp_path / "gw", [{"url": distribution.url}]) as url:
        started = http.post(f"{url}/v2/ids/a/blobs/uploads/")
        assert started.status_code == 202
        upload_id = started.headers["location"].rsplit("/", 1)[1]
        session, payload, mac = upload_id.split(".")
        tampered = f"{session}.{payload[:-2]}AA.{mac}"
        for path in (f"/v2/ids/a/blobs/uploads/{tampered}", f"/v2/ids/b/blobs/uploads/{upload_id}"):
            _error(http.get(url + path), 404, "BLOB_UPLOAD_UNKNOWN")
            _error(http.patch(url + path, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
        _error(http.get(f"{url}/v2/ids/a/blobs/uploads/not-an-id"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert http.get(f"{url}/v2/ids/a/blobs/uploads/{upload_id}").status_code == 204


def test_prefix_routing_to_two_upstreams(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    embedded = ocigate_server(tmp_path / "emb", tmp_path / "emb.log", workers=1).start()
    try:
        upstreams = [{"url": embedded.url}, {"url": distribution.url, "prefix": "dist"}]
        with serve_gateway(tmp_path / "gw", upstreams) as url:
            image = make_image("routing")
            push_image(http, url, "dist/team/app", image, "v1")
            push_image(http, url, "team/app", image, "v2")
            # Each landed on its own upstream, under the name without the prefix.
            on_dist = http.get(f"{distribution.url}/v2/team/app/tags/list").json()
            on_embedded = http.get(f"{embedded.url}/v2/team/app/tags/list").json()
            assert on_dist["tags"] == ["v1"]
            assert on_embedded["tags"] == ["v2"]
            catalog = http.get(f"{url}/v2/_catalog").json()["repositories"]
            assert "dist/team/app" in catalog and "team/app" in catalog
            # A mount across upstreams cannot link anything: the client gets an upload session.
            layer = image.layers[0].digest
            mount = http.post(f"{url}/v2/dist/other/blobs/uploads/?mount={layer}&from=team/app")
            assert mount.status_code == 202
            same = http.post(f"{url}/v2/dist/other/blobs/uploads/?mount={layer}&from=dist/team/app")
            assert same.status_code == 201
    finally:
        embedded.stop()


def test_skopeo_round_trip_through_the_gateway(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    image = make_image("skopeo-gw", layer_sizes=(300_000, 5_000))
    source = tmp_path / "in"
    write_oci_layout(source, image.blobs, {"v1": image.manifest})
    with serve_gateway(tmp_path / "gw", [{"url": distribution.url, "prefix": "up"}]) as url:
        host = url.removeprefix("http://")
        skopeo(
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{source}:v1",
            f"docker://{host}/up/sk/img:v1",
        )
        out = tmp_path / "out"
        skopeo(
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{host}/up/sk/img:v1",
            f"oci:{out}:v1",
        )
    direct = http.get(
        f"{distribution.url}/v2/sk/img/manifests/v1",
        headers={"Accept": image.manifest.media_type},
    )
    assert direct.content == image.manifest.data
    pulled = (out / "blobs" / "sha256" / image.manifest.digest.split(":")[1]).read_bytes()
    assert pulled == image.manifest.data
    for blob in image.blobs:
        stored = (out / "blobs" / "sha256" / blob.digest.split(":")[1]).read_bytes()
        assert sha256_digest(stored) == blob.digest


def test_upstream_killed_gives_502_naming_it(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    upstream = {"url": distribution.url, "connect_timeout": 1, "retries": 1}
    with serve_gateway(tmp_path / "gw", [upstream]) as url:
        digest = push_blob_monolithic(http, url, "down/repo", b"still here?")
        distribution.kill()
        distribution.wait_port_closed()
        for method, path in [
            ("GET", f"/v2/down/repo/blobs/{digest}"),
            ("HEAD", "/v2/down/repo/manifests/latest"),
            ("GET", "/v2/down/repo/tags/list"),
            ("POST", "/v2/down/repo/blobs/uploads/"),
        ]:
            started = time.monotonic()
            response = http.request(method, url + path)
            assert time.monotonic() - started < 5
            assert response.status_code == 502, (path, response.status_code)
            if method != "HEAD":
                assert distribution.url in _error(response, 502, "UNAVAILABLE")


def test_hanging_upstream_gives_504_in_bounded_time(tmp_path: Path, http: httpx.Client) -> None:
    with silent_server() as port:
        upstream = {"url": f"http://127.0.0.1:{port}", "read_timeout": 1, "retries": 1}
        with serve_gateway(tmp_path / "gw", [upstream]) as url:
            started = time.monotonic()
            response = http.get(f"{url}/v2/hang/repo/manifests/latest")
            elapsed = time.monotonic() - started
    message = _error(response, 504, "UNAVAILABLE")
    assert f"127.0.0.1:{port}" in message
    assert elapsed < 5, elapsed  # two attempts of one second, plus backoff


@pytest.mark.parametrize("hang", [False, True], ids=["hangs-up", "goes-silent"])
def test_an_upstream_cutting_a_blob_short_cuts_the_client_off(tmp_path: Path, hang: bool) -> None:
    """The upstream promises 4 MiB, sends 1 MiB and hangs up, or goes silent: under ``ocigate
    serve`` (where the rest is spliced from the upstream's socket) the client's response ends
    short and closed, at once or after the upstream's ``read_timeout`` (2 s for the silent one,
    where a client's own silence is allowed 30 s), never as a complete-looking body."""
    promised, sent = 4 * 1024 * 1024, 1024 * 1024
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % promised
    with scripted_server(lambda request: head + b"x" * sent, hang=hang) as port:
        upstream: dict[str, object] = {"url": f"http://127.0.0.1:{port}", "retries": 0}
        if hang:  # only this one needs it short; a loaded machine can take 1 s to answer
            upstream["read_timeout"] = 2
        gateway = gateway_process([upstream], tmp_path / "gw", tmp_path / "gw.log", workers=1)
        gateway.start()
        try:
            received = 0
            started = time.monotonic()
            with httpx.Client(timeout=10) as client:
                url = f"{gateway.url}/v2/cut/repo/blobs/sha256:{'a' * 64}"
                with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url) as reply:
                    assert reply.status_code == 200
                    for piece in reply.iter_raw():
                        received += len(piece)
            assert received == sent
            assert time.monotonic() - started < 5
        finally:
            gateway.stop()


def test_connection_refused_upstream_is_502_not_name_unknown(
    tmp_path: Path, http: httpx.Client
) -> None:
    with silent_server() as port:
        pass  # the port is closed again: nothing listens there
    upstream = {"url": f"http://127.0.0.1:{port}", "retries": 0}
    with serve_gateway(tmp_path / "gw", [upstream]) as url:
        response = http.get(f"{url}/v2/gone/repo/tags/list")
    _error(response, 502, "UNAVAILABLE")


def test_serve_upstream_flag(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    gateway = ocigate_server(tmp_path / "gw", tmp_path / "gw.log", workers=1)
    gateway.argv += ["--upstream", distribution.url]
    gateway.start()
    try:
        digest = push_blob_monolithic(http, gateway.url, "flag/repo", b"via --upstream")
    finally:
        gateway.stop()
    assert http.get(f"{distribution.url}/v2/flag/repo/blobs/{digest}").content == b"via --upstream"


def test_manifest_head_is_forwarded_as_a_head(tmp_path: Path, http: httpx.Client) -> None:
    """A client's HEAD reaches the upstream as a HEAD (no body to wait for), answered with the
    upstream's digest, type and length; one the upstream cannot answer is asked again with a
    GET, whose error body says what is missing, unless the status alone says it."""
    data = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    fake = FakeUpstream(blobs={}, manifests={"v1": data})
    with (
        fake_upstream(fake) as up,
        serve_gateway(tmp_path / "gw", [{"url": up, "retries": 0}]) as url,
    ):
        response = http.head(f"{url}/v2/lib/app/manifests/v1")
        assert response.status_code == 200
        assert response.headers["docker-content-digest"] == sha256_digest(data)
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["content-type"] == OCI_MANIFEST
        assert fake.requests == {"HEAD manifests": 1}
        missing = http.head(f"{url}/v2/lib/app/manifests/v2")
        assert missing.status_code == 404
        assert fake.requests == {"HEAD manifests": 2, "GET manifests": 1}
        # A status that says it all (rate limiting here) is passed on without a second ask.
        fake.manifest_status = 429
        limited = http.head(f"{url}/v2/lib/app/manifests/v1")
        assert limited.status_code == 429
        assert fake.requests == {"HEAD manifests": 3, "GET manifests": 1}


def _at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_identical_concurrent_reads_share_upstream_requests(
    tmp_path: Path, http: httpx.Client
) -> None:
    """Many clients reading one tag at once cost the upstream two requests per kind of read,
    not one each; a read that came after the tag moved gets the new manifest, never the answer
    to a request sent before it came."""
    old, new = (OCI_EMPTY_MANIFEST % n for n in (b"1", b"2"))
    fake = FakeUpstream(blobs={}, manifests={"v1": old}, manifest_delay=1.0)
    tag = "lib/app/manifests/v1"
    with (
        fake_upstream(fake) as up,
        serve_gateway(tmp_path / "gw", [{"url": up}]) as url,
        ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(http.head, f"{url}/v2/{tag}")
        _wait_for(lambda: fake.requests.get("HEAD manifests") == 1)
        fake.manifests["v1"] = new
        heads = [lambda: http.head(f"{url}/v2/{tag}")] * 16
        gets = [lambda: http.get(f"{url}/v2/{tag}")] * 16
        answers = _at_once(heads + gets)
        assert first.result().headers["docker-content-digest"] == sha256_digest(old)
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["docker-content-digest"] == sha256_digest(new)
    assert {answer.content for answer in answers[16:]} == {new}
    assert fake.requests == {"HEAD manifests": 2, "GET manifests": 2}


def test_concurrent_listings_share_upstream_requests(tmp_path: Path, http: httpx.Client) -> None:
    """Tag lists polled by many clients at once, whatever page each asks for, and referrers
    queried at once with different filters cost the upstream two requests each (one in flight,
    one queued), and a listing that came after a change sees it."""
    subject = sha256_digest(b"subject")
    signature = {"mediaType": OCI_MANIFEST, "size": 2, "artifactType": "application/sig"}
    sbom = {"mediaType": OCI_MANIFEST, "size": 3, "artifactType": "application/spdx+json"}
    signature["digest"], sbom["digest"] = sha256_digest(b"sig"), sha256_digest(b"sbom")
    fake = FakeUpstream(
        blobs={},
        manifests={"v1": b"{}", "v2": b"{}"},
        manifest_delay=1.0,
        referrers={subject: [signature]},
    )
    tags = "lib/app/tags/list"
    referrers = f"lib/app/referrers/{subject}"
    with (
        fake_upstream(fake) as up,
        serve_gateway(tmp_path / "gw", [{"url": up}]) as url,
        ThreadPoolExecutor(2) as pool,
    ):
        first_tags = pool.submit(http.get, f"{url}/v2/{tags}")
        first_referrers = pool.submit(http.get, f"{url}/v2/{referrers}")
        _wait_for(lambda: fake.requests.get("GET tags") == fake.requests.get("GET referrers") == 1)
        fake.manifests["v3"] = b"{}"
        fake.referrers[subject] = [signature, sbom]
        answers = _at_once(
            [lambda: http.get(f"{url}/v2/{tags}")] * 6
            + [lambda: http.get(f"{url}/v2/{tags}?n=1")] * 6
            + [lambda: http.get(f"{url}/v2/{referrers}")] * 6
            + [lambda: http.get(f"{url}/v2/{referrers}?artifactType=application/sig")] * 6
        )
        assert first_tags.result().json()["tags"] == ["v1", "v2"]
        assert len(first_referrers.result().json()["manifests"]) == 1
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    assert all(answer.json()["tags"] == ["v1", "v2", "v3"] for answer in answers[:6])
    for answer in answers[6:12]:
        assert answer.json()["tags"] == ["v1"] and "n=1" in answer.headers["link"]
    found = [[m["digest"] for m in answer.json()["manifests"]] for answer in answers[12:]]
    assert found == [[signature["digest"], sbom["digest"]]] * 6 + [[signature["digest"]]] * 6
    assert fake.requests["GET tags"] == 2
    assert fake.requests["GET referrers"] == 2


def test_reads_with_forwarded_credentials_are_shared_only_by_the_same_client(
    tmp_path: Path,
) -> None:
    """With ``forward_credentials`` the upstream decides per client: concurrent reads of one
    tag by a client it accepts and by one it refuses must each get their own answer."""
    data = OCI_EMPTY_MANIFEST % b"1"
    credentials = base64.b64encode(b"user:secret").decode()
    fake = FakeUpstream(
        blobs={}, manifests={"v1": data}, manifest_delay=0.5, basic=f"Basic {credentials}"
    )
    upstream = {"forward_credentials": True}
    with (
        fake_upstream(fake) as up,
        serve_gateway(tmp_path / "gw", [{"url": up, **upstream}]) as url,
        httpx.Client(auth=("user", "secret")) as user,
        httpx.Client(auth=("user", "wrong")) as impostor,
    ):
        tag = f"{url}/v2/lib/app/manifests/v1"
        answers = _at_once([lambda: user.head(tag), lambda: impostor.head(tag)] * 4)
    assert [answer.status_code for answer in answers] == [200, 401] * 4
