"""The gateway in front of a malicious upstream (issue 18): credentials stay with the upstream's
origin and its bound token realm, URLs it hands back cannot point the gateway at other hosts
or internal addresses, listings stop, bodies read into memory are capped, and relayed blob
bytes are verified against their digest."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocigate.client.origins import OriginPolicy
from ocigate.oci.errors import BadGateway

from .hostile import Answer, Hostile, Seen, challenge, hostile_upstream
from .support import gateway_process, serve_gateway
from .test_gateway_tls import _self_signed

USER, PASSWORD = "gateway", "gateway-secret"
GATEWAY_BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CLIENT = ("alice", "alice-secret")
CLIENT_BASIC = "Basic " + base64.b64encode(b"alice:alice-secret").decode()
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
)
PRIVATE_HOST = "10.1.2.3"  # only ever an address literal: nothing is sent there
MiB = 1024 * 1024


def _with_us(upstream: Hostile, **extra: Any) -> list[dict[str, Any]]:
    return [{"url": upstream.url, "username": USER, "password": PASSWORD, **extra}]


def _error(response: httpx.Response) -> dict[str, Any]:
    first: dict[str, Any] = response.json()["errors"][0]
    return first


def _get_through(
    tmp_path: Path, http: httpx.Client, script: Any, path: str
) -> tuple[httpx.Response, Hostile]:
    """GET ``path`` through a gateway in front of an upstream answering with ``script``; the
    answer and the upstream's record."""
    with (
        hostile_upstream(script) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url}]) as url,
    ):
        return http.get(f"{url}{path}"), upstream


def _basic_protected(script: Any) -> Any:
    """``script`` behind a Basic challenge for requests without credentials."""

    def answer(request: Seen) -> Answer:
        return challenge(request, 'Basic realm="upstream"') or script(request)

    return answer


# --- 1. credentials are bound to the upstream's origin ---------------------------------------


def test_a_tags_link_to_another_origin_is_refused_without_credentials(
    tmp_path: Path, http: httpx.Client
) -> None:
    internal = b'{"name":"app","tags":["internal-secret"]}'
    with hostile_upstream(lambda _: Answer(200, {}, internal)) as other:

        def script(request: Seen) -> Answer:
            if request.path.startswith("/v2/app/tags/list"):
                link = f'<{other.url}/v2/app/tags/list?last=a>; rel="next"'
                return Answer(200, {"Link": link}, b'{"name":"app","tags":["a"]}')
            return Answer(200, {}, b"{}")

        with (
            hostile_upstream(_basic_protected(script)) as upstream,
            serve_gateway(tmp_path, _with_us(upstream)) as url,
        ):
            response = http.get(f"{url}/v2/app/tags/list")
    assert response.status_code == 502, response.text
    assert "internal-secret" not in response.text
    assert "another origin" in _error(response)["message"]
    assert other.seen == [], "the foreign Link was followed"


@pytest.mark.parametrize("query", ["", f"?mount={'sha256:' + '1' * 64}&from=base"])
def test_an_upload_location_on_another_origin_gets_no_bytes(
    tmp_path: Path, http: httpx.Client, query: str
) -> None:
    with hostile_upstream(lambda _: Answer(202, {"Range": "0-0"})) as other:

        def script(request: Seen) -> Answer:
            if request.method == "POST":
                return Answer(202, {"Location": f"{other.url}/upload/1", "Range": "0-0"})
            return Answer(200, {}, b"{}")

        with (
            hostile_upstream(_basic_protected(script)) as upstream,
            serve_gateway(tmp_path, _with_us(upstream)) as url,
        ):
            started = http.post(f"{url}/v2/app/blobs/uploads/{query}")
            if started.status_code == 202:
                http.patch(
                    httpx.URL(url).join(started.headers["location"]),
                    content=b"the client's layer",
                    headers={"Content-Type": "application/octet-stream"},
                )
    assert started.status_code == 502, started.text
    assert "upload Location" in _error(started)["message"]
    assert other.seen == [], "the client's bytes went to a host nobody configured"


def _bearer_upstream(realm: str) -> Any:
    def script(request: Seen) -> Answer:
        found = challenge(request, f'Bearer realm="{realm}",service="upstream"')
        if found is not None:
            return found
        if "/manifests/" in request.path:
            headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
            return Answer(200, headers, MANIFEST.encode())
        return Answer(200, {}, b"{}")

    return script


def _token_service() -> Any:
    return hostile_upstream(lambda _: Answer(200, {}, b'{"token":"t","expires_in":300}'))


@pytest.mark.parametrize(
    ("realm_host", "settings", "client_auth", "expected"),
    [
        # A realm on a host nobody listed: asked anonymously, as distribution's proxy does.
        ("localhost", {}, None, None),
        ("localhost", {"forward_credentials": True}, CLIENT, None),
        # The upstream's own host (another port) and a listed host are bound to it.
        ("127.0.0.1", {}, None, GATEWAY_BASIC),
        ("localhost", {"token_realm_hosts": ["localhost"]}, None, GATEWAY_BASIC),
        ("localhost", {"forward_credentials": True, "token_realm_hosts": ["localhost"]}, CLIENT,
         CLIENT_BASIC),
    ],
)  # fmt: skip
def test_credentials_go_only_to_a_token_realm_bound_to_the_upstream(
    tmp_path: Path,
    http: httpx.Client,
    realm_host: str,
    settings: dict[str, Any],
    client_auth: tuple[str, str] | None,
    expected: str | None,
) -> None:
    with _token_service() as realm:
        port = realm.url.rsplit(":", 1)[1]
        with hostile_upstream(_bearer_upstream(f"http://{realm_host}:{port}/token")) as upstream:
            config: dict[str, Any] = {"url": upstream.url, **settings}
            if not settings.get("forward_credentials"):
                config.update(username=USER, password=PASSWORD)
            with serve_gateway(tmp_path, [config]) as url:
                for repo in ("one/app", "two/app"):  # later fetches, other scopes: same rule
                    response = http.get(f"{url}/v2/{repo}/manifests/v1", auth=client_auth)
                    assert response.status_code == 200, response.text
    assert len(realm.seen) >= 2
    assert {request.headers.get("authorization") for request in realm.seen} == {expected}


def test_a_realm_refusing_the_anonymous_request_names_the_setting(
    tmp_path: Path, http: httpx.Client
) -> None:
    with hostile_upstream(lambda _: Answer(401)) as realm:
        port = realm.url.rsplit(":", 1)[1]
        with (
            hostile_upstream(_bearer_upstream(f"http://localhost:{port}/token")) as upstream,
            serve_gateway(tmp_path, _with_us(upstream)) as url,
        ):
            response = http.get(f"{url}/v2/app/manifests/v1")
    assert response.status_code == 403, response.text
    assert "unless token_realm_hosts lists it" in _error(response)["message"]
    assert [request.headers.get("authorization") for request in realm.seen] == [None]


def test_a_plain_http_realm_for_an_https_upstream_is_refused(
    tmp_path: Path, http: httpx.Client
) -> None:
    cert, key = _self_signed(tmp_path)
    with _token_service() as realm:
        script = _bearer_upstream(f"{realm.url}/token")
        with (
            hostile_upstream(script, tls=(cert, key)) as upstream,
            serve_gateway(tmp_path, _with_us(upstream, ca_file=str(cert))) as url,
        ):
            response = http.get(f"{url}/v2/app/manifests/v1")
    assert response.status_code == 502, response.text
    assert "plain-http token realm" in _error(response)["message"]
    assert realm.seen == []


# --- 2. internal answers do not come back ----------------------------------------------------

BLOB = b"blob bytes " * 100
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def _redirecting(target: str) -> Any:
    def script(request: Seen) -> Answer:
        if "/blobs/" in request.path:
            return Answer(307, {"Location": target})
        return Answer(200, {}, b"{}")

    return script


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),  # a cloud metadata service
        ("http://10.0.0.1/secret", "private"),
    ],
)
def test_redirects_to_internal_addresses_are_refused(
    tmp_path: Path, http: httpx.Client, target: str, kind: str
) -> None:
    # Refused before connecting: no packet is ever sent to the target.
    path = f"/v2/app/blobs/{BLOB_DIGEST}"
    response, _ = _get_through(tmp_path, http, _redirecting(target), path)
    assert response.status_code == 502, response.text
    assert f"{kind} address" in _error(response)["message"]


def test_an_upstream_on_loopback_may_redirect_there(tmp_path: Path, http: httpx.Client) -> None:
    with (
        hostile_upstream(lambda _: Answer(200, {}, BLOB)) as internal,
        hostile_upstream(_redirecting(f"{internal.url}/secret")) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url}]) as url,
    ):
        response = http.get(f"{url}/v2/app/blobs/{BLOB_DIGEST}")
    assert response.status_code == 200 and response.content == BLOB
    assert internal.paths() == ["/secret"]


def test_a_private_upstream_may_not_lead_to_loopback_unless_allowed() -> None:
    # The rule itself, on address literals (resolving them sends nothing): an upstream on a
    # private address pointing the gateway at loopback.
    async def check(allow: bool) -> None:
        await OriginPolicy(f"http://{PRIVATE_HOST}:5000", allow_private=allow).check_address(
            "http://127.0.0.1:5000/secret"
        )

    with pytest.raises(BadGateway, match="loopback address"):
        asyncio.run(check(False))
    asyncio.run(check(True))


def test_a_redirect_to_a_link_local_address_is_refused(tmp_path: Path, http: httpx.Client) -> None:
    target = "http://169.254.169.254/latest/meta-data/"
    with (
        hostile_upstream(_redirecting(target)) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url}]) as url,
    ):
        response = http.get(f"{url}/v2/app/blobs/{BLOB_DIGEST}")
    assert response.status_code == 502, response.text
    assert "link-local address" in _error(response)["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>\r\nSet-Cookie: session=stolen\r\n\x1b[31m internal page " + b"x" * 5000,
        json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "m" * 10_000}]}).encode(),
    ],
)
def test_upstream_error_bodies_come_back_as_a_short_clean_excerpt(
    tmp_path: Path, http: httpx.Client, body: bytes
) -> None:
    with (
        hostile_upstream(lambda _: Answer(404, {"Content-Type": "text/html"}, body)) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url}]) as url,
    ):
        response = http.get(f"{url}/v2/app/manifests/v1")
    assert response.status_code == 404, response.text
    message = _error(response)["message"]
    assert len(message) <= 210
    assert re.fullmatch(r"[\x20-\x7e]*", message), message


# --- 3. paging stops -------------------------------------------------------------------------


def _paging(next_page: Any) -> Any:
    def script(request: Seen) -> Answer:
        if request.path.startswith("/v2/app/tags/list"):
            here = request.path if "?" in request.path else request.path + "?last="
            link = f'<{next_page(here)}>; rel="next"'
            return Answer(200, {"Link": link}, b'{"name":"app","tags":["a"]}')
        return Answer(200, {}, b"{}")

    return script


@pytest.mark.parametrize(
    ("next_page", "requests", "words"),
    [
        (lambda _: "/v2/app/tags/list", 1, "loops"),  # back to the first page
        (lambda path: f"{path}a", 100, "beyond 100 pages"),  # ?last=a, ?last=aa, ...
    ],
    ids=["loop", "endless"],
)
def test_tag_list_paging_stops(
    tmp_path: Path, http: httpx.Client, next_page: Any, requests: int, words: str
) -> None:
    response, upstream = _get_through(tmp_path, http, _paging(next_page), "/v2/app/tags/list")
    assert response.status_code == 502, response.text
    assert words in _error(response)["message"]
    assert len([p for p in upstream.paths() if "/tags/list" in p]) == requests


# --- 4. bounded bodies -----------------------------------------------------------------------


def _endless(total: int = 64 * MiB) -> Iterator[bytes]:
    piece = b" " * MiB
    for _ in range(total // MiB):
        yield piece


@pytest.mark.parametrize(
    ("path", "when"),
    [
        ("/v2/app/tags/list", "/tags/list"),
        ("/v2/_catalog", "/_catalog"),
        (f"/v2/app/referrers/{BLOB_DIGEST}", "/referrers/"),
        ("/v2/app/manifests/v1", "/token"),
    ],
    ids=["tags", "catalog", "referrers-probe", "token"],
)
def test_bodies_read_into_memory_are_capped(
    tmp_path: Path, http: httpx.Client, path: str, when: str
) -> None:
    def script(request: Seen) -> Answer:
        if when in request.path:
            return Answer(200, {"Content-Type": "application/json"}, _endless())
        if when == "/token" and "authorization" not in request.headers:
            return Answer(401, {"WWW-Authenticate": f'Bearer realm="{upstream.url}/token"'})
        return Answer(200, {}, b"{}")

    with (
        hostile_upstream(script) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url}]) as url,
    ):
        response = http.get(f"{url}{path}")
        assert response.status_code == 502, response.text
        assert "cap" in _error(response)["message"]
    # What the upstream managed to write: the 4 MiB cap and one more 1 MiB piece the gateway
    # read, plus what the kernel's socket buffers on both ends took without the gateway reading
    # it (their autotuning maxima), far below the 64 MiB offered.
    buffers = sum(
        int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        for name in ("tcp_rmem", "tcp_wmem")
    )
    bound = 4 * MiB + MiB + buffers + MiB
    assert upstream.sent <= bound < 64 * MiB, f"the gateway read {upstream.sent} bytes"


@pytest.mark.parametrize(("setting", "status"), [({}, 502), ({"max_body_size": "8MiB"}, 200)])
def test_the_body_cap_is_a_setting(
    tmp_path: Path, http: httpx.Client, setting: dict[str, str], status: int
) -> None:
    tags = [f"tag-{i:07d}" for i in range(400_000)]  # ~5 MiB of JSON
    listing = json.dumps({"name": "app", "tags": tags}).encode()

    def script(request: Seen) -> Answer:
        return Answer(200, {}, listing if "/tags/list" in request.path else b"{}")

    with (
        hostile_upstream(script) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url, **setting}]) as url,
    ):
        response = http.get(f"{url}/v2/app/tags/list?n=2")
    assert response.status_code == status, response.text[:300]
    if status == 200:
        assert response.json()["tags"] == tags[:2]


def test_a_body_cut_short_is_a_bad_gateway_not_a_server_error(
    tmp_path: Path, http: httpx.Client
) -> None:
    def script(request: Seen) -> Answer:
        if "/tags/list" in request.path:
            return Answer(200, {"Content-Length": "1000"}, b'{"tags":[', close=True)
        return Answer(200, {}, b"{}")

    with (
        hostile_upstream(script) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url, "retries": 0}]) as url,
    ):
        response = http.get(f"{url}/v2/app/tags/list")
    assert response.status_code == 502, response.text


# --- 5. relayed blobs are verified -----------------------------------------------------------


def _blob_server(served: bytes) -> Any:
    def script(request: Seen) -> Answer:
        if "/blobs/" in request.path:
            ranged = request.headers.get("range")
            if ranged:
                first, _, last = ranged.removeprefix("bytes=").partition("-")
                part = served[int(first) : int(last) + 1]
                span = f"bytes {first}-{last}/{len(served)}"
                return Answer(206, {"Content-Range": span}, part)
            return Answer(200, {"Content-Type": "application/octet-stream"}, served)
        return Answer(200, {}, b"{}")

    return script


def _pull(url: str) -> tuple[int | None, bytes]:
    """Status (None when the connection ended before one) and whatever body bytes arrived
    before the connection ended."""
    status, received = None, b""
    with httpx.Client(timeout=30) as client:
        try:
            with client.stream("GET", url) as response:
                status = response.status_code
                for piece in response.iter_raw():
                    received += piece
        except httpx.RemoteProtocolError:
            pass  # cut off: what counts is that the body never completed
    return status, received


@pytest.mark.parametrize("size", [1000, 4 * MiB], ids=["small", "spliced-size"])
def test_blob_bytes_not_matching_the_digest_are_cut_off(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256)
    lie = data[:-1] + b"!"  # one byte off, at the very end
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with hostile_upstream(_blob_server(lie)) as upstream:
        gateway = gateway_process([{"url": upstream.url}], tmp_path / "gw", tmp_path / "gw.log", 1)
        gateway.start()
        try:
            status, received = _pull(f"{gateway.url}/v2/app/blobs/{digest}")
            # A small blob is held back whole, so the connection ends before the head.
            assert status in (200, None)
            assert len(received) < len(data), "a complete body of the wrong bytes was relayed"
        finally:
            gateway.stop()


def test_a_truthful_blob_and_a_range_are_relayed(tmp_path: Path, http: httpx.Client) -> None:
    data = bytes(range(256)) * (4 * MiB // 256)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with hostile_upstream(_blob_server(data)) as upstream:
        gateway = gateway_process([{"url": upstream.url}], tmp_path / "gw", tmp_path / "gw.log", 1)
        gateway.start()
        try:
            assert _pull(f"{gateway.url}/v2/app/blobs/{digest}") == (200, data)
            ranged = http.get(
                f"{gateway.url}/v2/app/blobs/{digest}", headers={"Range": "bytes=10-300009"}
            )
            assert ranged.status_code == 206 and ranged.content == data[10:300010]
        finally:
            gateway.stop()


@pytest.mark.parametrize("number", ["9" * 5000, "\u00b2", "1_0", "99999999999999999999"])
def test_numbers_an_upstream_sends_are_parsed_strictly(
    tmp_path: Path, http: httpx.Client, number: str
) -> None:
    """Content-Length, Content-Range and Retry-After values ``int()`` mishandles (more than
    4,300 digits, a superscript digit, separators, past int64) are a 502 or ignored: never a
    500."""

    def script(request: Seen) -> Answer:
        if request.method == "HEAD":
            return Answer(200, {"content-length": number, "docker-content-digest": BLOB_DIGEST})
        if "range" in request.headers:
            return Answer(206, {"content-range": f"bytes 0-{number}/{number}"}, BLOB)
        return Answer(429, {"retry-after": number}, b"{}")

    with (
        hostile_upstream(script) as upstream,
        serve_gateway(tmp_path, [{"url": upstream.url, "retries": 0}]) as url,
    ):
        head = http.head(f"{url}/v2/app/blobs/{BLOB_DIGEST}")
        ranged = http.get(f"{url}/v2/app/blobs/{BLOB_DIGEST}", headers={"range": "bytes=0-3"})
        throttled = http.get(f"{url}/v2/app/manifests/v1")
    assert head.status_code == 502
    assert ranged.status_code == 502 and "Content-Range" in _error(ranged)["message"]
    assert throttled.status_code == 429
