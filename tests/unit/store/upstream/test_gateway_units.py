"""Unit tests of the gateway's pure parts: challenges, Retry-After, signed upload ids, the
signing key file, upstream error mapping and the upstream configuration."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from urllib.parse import urljoin

import pytest
from pydantic import ValidationError

from ocigate.client import ClientOptions, RegistryClient, TokenCache, parse_challenges, retry_after
from ocigate.client.pool import Pool
from ocigate.config import load_settings
from ocigate.oci.errors import (
    BadGateway,
    BlobUploadUnknown,
    Denied,
    GatewayTimeout,
    ManifestBlobUnknown,
    ManifestUnknown,
    NameUnknown,
    TooManyRequests,
)
from ocigate.store.upstream.errors import upstream_error
from ocigate.store.upstream.upload_tokens import UploadSigner, UploadToken, load_or_create_key
from ocigate.upstream_config import UpstreamConfig


def test_parse_bearer_and_basic_challenges() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push", Basic realm="x \\"quoted\\""'
    )
    bearer, basic = parse_challenges(header)
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert basic.scheme == "basic" and basic.params["realm"] == 'x "quoted"'
    assert parse_challenges("") == []


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0
    assert retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=20.0) == 0.0


def test_token_cache_forgets_expiring_tokens() -> None:
    cache = TokenCache()
    cache.put("a", "long", 300)
    cache.put("b", "short", 5)  # within the refresh margin: never served
    assert cache.get("a") == "long"
    assert cache.get("b") is None
    cache.drop("a")
    assert cache.get("a") is None


def test_upload_ids_are_signed_bound_and_path_safe() -> None:
    signer = UploadSigner(b"key", "http://up")
    location = "/v2/r/blobs/uploads/0b7a9a7e-3c4f-4f55-9a2b-0123456789ab?_state=abc%3D"
    upload_id = signer.sign("r", UploadToken(location, 42))
    assert upload_id.startswith("0b7a9a7e-3c4f-4f55-9a2b-0123456789ab.")
    assert all(c.isalnum() or c in "-_." for c in upload_id)
    assert signer.open("r", upload_id) == UploadToken(location, 42)
    session, payload, mac = upload_id.split(".")
    forged = [
        f"{session}.{payload}.{mac[:-1]}A"
        if mac[-1] != "A"
        else f"{session}.{payload}.{mac[:-1]}B",
        f"11111111-1111-1111-1111-111111111111.{payload}.{mac}",
        "nonsense",
        "a.b.c",
    ]
    for bad in forged:
        with pytest.raises(BlobUploadUnknown):
            signer.open("r", bad)
    with pytest.raises(BlobUploadUnknown):
        signer.open("other/repo", upload_id)  # another repository
    with pytest.raises(BlobUploadUnknown):
        UploadSigner(b"key", "http://elsewhere").open("r", upload_id)  # another upstream
    with pytest.raises(BlobUploadUnknown):
        UploadSigner(b"other-key", "http://up").open("r", upload_id)


def test_signing_key_is_generated_once_and_shared(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "data", None)
    assert len(first) == 64
    assert load_or_create_key(tmp_path / "data", None) == first
    assert load_or_create_key(tmp_path / "data", "configured") == b"configured"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["upload-signing.key"]


@pytest.mark.anyio
async def test_upstream_errors_map_faithfully() -> None:
    up = "http://up.example"
    answers: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(answers.pop(0))

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(ssl.create_default_context(), 5.0, 5.0)

    async def mapped(status: int, body: object = b"") -> Exception:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answers.append(
            b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(content), content)
        )
        response = await pool.request("GET", f"http://127.0.0.1:{port}/v2/", {}, None)
        return await upstream_error(response, up, ManifestUnknown, Denied)

    oci = {"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob gone", "detail": "x"}]}
    error = await mapped(400, oci)
    assert isinstance(error, ManifestBlobUnknown) and error.message == "blob gone"
    assert isinstance(await mapped(404), ManifestUnknown)
    name_unknown = {"errors": [{"code": "NAME_UNKNOWN", "message": "no repo"}]}
    assert isinstance(await mapped(404, name_unknown), NameUnknown)
    for status in (401, 403):
        denied = await mapped(status, b"nope")
        assert isinstance(denied, Denied) and up in denied.message
    assert isinstance(await mapped(429), TooManyRequests)
    assert isinstance(await mapped(500, b"boom"), BadGateway)
    assert isinstance(await mapped(504), GatewayTimeout)
    unavailable = await mapped(503)
    assert unavailable.status == 503 and up in unavailable.message  # type: ignore[attr-defined]
    await pool.aclose()
    server.close()


def test_upstream_config_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert UpstreamConfig(url="https://r.example/", prefix="/hub/").prefix == "hub"
    assert UpstreamConfig(url="https://r.example/").url == "https://r.example"
    for bad in (
        {"url": "ftp://r.example"},
        {"url": "https://r.example", "prefix": "Bad/Prefix"},
        {"url": "https://r.example", "password": "p"},
        {"url": "https://r.example", "username": "u", "token": "t"},
        {"url": "https://r.example", "retries": 99},
        {"url": "https://r.example", "max_connections": 0},
        {"url": "https://r.example", "cache": True, "forward_credentials": True},
    ):
        with pytest.raises(ValidationError):
            UpstreamConfig.model_validate(bad)
    monkeypatch.setenv("OCIGATE_UPSTREAMS", '[{"url": "http://a.example", "prefix": "a"}]')
    settings = load_settings(None)
    assert [(u.url, u.prefix) for u in settings.store.upstreams] == [("http://a.example", "a")]
    config = tmp_path / "c.yml"
    config.write_text("upstreams:\n  - url: http://b.example\n  - url: http://c.example\n")
    monkeypatch.delenv("OCIGATE_UPSTREAMS")
    with pytest.raises(ValidationError, match="two upstreams"):
        load_settings(config)
    # Secrets survive the serialisation that hands settings to worker processes.
    secret = load_settings(None, upstreams=[{"url": "http://s.example", "token": "tok"}])
    again = type(secret).model_validate_json(secret.model_dump_json())
    assert again.store.upstreams[0].token == "tok"


@pytest.mark.parametrize("base", ["http://h:5000", "https://h/prefix/", "http://u:p@h:1/a/b"])
@pytest.mark.parametrize(
    "ref",
    ["/v2/a/manifests/v1", "/v2/a/blobs/uploads/x?state=1", "//other/x", "rel/x", "https://o/x"],
)
def test_client_urls_are_what_urljoin_makes(base: str, ref: str) -> None:
    """The fast path for API paths resolves exactly as RFC 3986 (urljoin) does."""
    client = RegistryClient(ClientOptions(url=base))
    assert client.url(ref) == urljoin(base.rstrip("/") + "/", ref)
