"""The gateway authenticating to its upstream: the Docker token flow against a token service
written for the tests (tokens cached per scope, refreshed after a 401), Basic credentials
against distribution's htpasswd, and clear errors when the upstream refuses the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from e2e.support import make_image, push_blob_monolithic, push_image
from spec.conftest import serve_app

from .support import distribution_with_htpasswd, serve_gateway
from .tokens import TokenGate

USER, PASSWORD = "robot", "t0ken-pass"


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[str, TokenGate]]:
    """An embedded ocigate behind a token-flow gate; yields its URL and the gate."""
    from ocigate.assemble import create_app
    from ocigate.config import Settings

    gate = TokenGate(create_app(Settings(data_dir=tmp_path / "upstream")), USER, PASSWORD)
    with serve_app(gate, "token-registry") as url:
        gate.realm = f"{url}/token"
        yield url, gate


def test_token_flow_caches_tokens_per_scope_and_refreshes(
    token_registry: tuple[str, TokenGate], tmp_path: Path, http: httpx.Client
) -> None:
    upstream_url, gate = token_registry
    upstream = {"url": upstream_url, "username": USER, "password": PASSWORD}
    with serve_gateway(tmp_path / "gw", [upstream]) as url:
        image = make_image("tokens", layer_sizes=(10_000, 20_000, 30_000))
        push_image(http, url, "tok/app", image, "v1")
        assert http.get(f"{url}/v2/tok/app/manifests/v1").content == image.manifest.data
        # One token per scope (push, pull), however many requests used it.
        assert sorted(set(gate.issued)) == [
            "repository:tok/app:pull",
            "repository:tok/app:pull,push",
        ]
        assert len(gate.issued) == 2
        first_rejections = gate.rejected

        gate.revoke_all()  # tokens die early: the gateway must notice the 401 and fetch anew
        response = http.get(f"{url}/v2/tok/app/manifests/v1")
        assert response.status_code == 200
        assert gate.rejected == first_rejections + 1
        assert len(gate.issued) == 3

        # A streamed PATCH cannot be replayed after a 401, so it must carry a token already.
        gate.revoke_all()
        push_blob_monolithic(http, url, "tok/other", b"fresh scope, fresh token")
        assert "repository:tok/other:pull,push" in gate.issued


def test_token_service_rejecting_credentials_is_denied(
    token_registry: tuple[str, TokenGate], tmp_path: Path, http: httpx.Client
) -> None:
    upstream_url, _ = token_registry
    upstream = {"url": upstream_url, "username": USER, "password": "wrong"}
    with serve_gateway(tmp_path / "gw", [upstream]) as url:
        response = http.get(f"{url}/v2/tok/app/tags/list")
    assert response.status_code == 403
    error = response.json()["errors"][0]
    assert error["code"] == "DENIED"
    assert upstream_url in error["message"]


def test_basic_auth_upstream_wrong_password_is_denied(tmp_path: Path, http: httpx.Client) -> None:
    server = distribution_with_htpasswd(tmp_path / "d", tmp_path / "d.log", USER, PASSWORD)
    server.start()
    try:
        good = {"url": server.url, "username": USER, "password": PASSWORD}
        with serve_gateway(tmp_path / "gw1", [good]) as url:
            push_blob_monolithic(http, url, "basic/repo", b"with the right password")
        bad = {"url": server.url, "username": USER, "password": "nope"}
        with serve_gateway(tmp_path / "gw2", [bad]) as url:
            response = http.get(f"{url}/v2/basic/repo/tags/list")
    finally:
        server.stop()
    assert response.status_code == 403
    error = response.json()["errors"][0]
    assert error["code"] == "DENIED" and server.url in error["message"]


class _Cdn:
    """Serves blobs like a registry's storage redirect target, recording Authorization."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.authorizations: list[str | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict((k.decode().lower(), v.decode()) for k, v in scope["headers"])
            self.authorizations.append(headers.get("authorization"))
        await self.inner(scope, receive, send)


def test_blob_redirects_are_followed_without_leaking_credentials(
    tmp_path: Path, http: httpx.Client
) -> None:
    """Registries like Docker Hub answer blob GETs with a redirect to storage on another host:
    the gateway follows it for GET/HEAD and does not send the upstream's token there."""
    from ocigate.assemble import create_app
    from ocigate.config import Settings

    inner = create_app(Settings(data_dir=tmp_path / "upstream"))
    cdn = _Cdn(inner)
    with serve_app(cdn, "cdn") as cdn_url:
        storage = cdn_url.replace("127.0.0.1", "localhost")  # another origin, same server

        async def redirecting(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if (
                scope["type"] == "http"
                and scope["method"] == "GET"
                and "/blobs/sha256:" in (scope["path"])
            ):
                target = f"{storage}{scope['path']}".encode()
                headers = [(b"location", target), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 307, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            await inner(scope, receive, send)

        gate = TokenGate(redirecting, USER, PASSWORD)
        with serve_app(gate, "redirecting-registry") as upstream_url:
            gate.realm = f"{upstream_url}/token"
            upstream = {"url": upstream_url, "username": USER, "password": PASSWORD}
            with serve_gateway(tmp_path / "gw", [upstream]) as url:
                data = b"served from storage " * 1000
                digest = push_blob_monolithic(http, url, "cdn/app", data)
                response = http.get(f"{url}/v2/cdn/app/blobs/{digest}")
                ranged = http.get(
                    f"{url}/v2/cdn/app/blobs/{digest}", headers={"Range": "bytes=5-9"}
                )
    assert response.status_code == 200 and response.content == data
    assert ranged.status_code == 206 and ranged.content == data[5:10]
    assert cdn.authorizations, "the redirect was not followed"
    assert all(a is None for a in cdn.authorizations), cdn.authorizations


def _assert_challenged(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_forwarded_client_credentials_reach_a_basic_upstream(tmp_path: Path) -> None:
    """``forward_credentials``: the gateway holds no credentials; each client's own reach
    distribution's htpasswd, and clients without good ones are challenged to log in."""
    server = distribution_with_htpasswd(tmp_path / "d", tmp_path / "d.log", USER, PASSWORD)
    server.start()
    upstream = {"url": server.url, "forward_credentials": True}
    try:
        with (
            serve_gateway(tmp_path / "gw", [upstream]) as url,
            httpx.Client(timeout=30.0) as anonymous,
            httpx.Client(timeout=30.0, auth=(USER, PASSWORD)) as user,
            httpx.Client(timeout=30.0, auth=(USER, "wrong")) as impostor,
        ):
            _assert_challenged(anonymous.get(f"{url}/v2/"))  # so clients log in at all
            assert user.get(f"{url}/v2/").status_code == 200
            image = make_image("forwarded")
            push_image(user, url, "fwd/app", image, "v1")
            assert user.get(f"{url}/v2/fwd/app/manifests/v1").content == image.manifest.data
            for client in (anonymous, impostor):
                _assert_challenged(client.get(f"{url}/v2/fwd/app/manifests/v1"))
                _assert_challenged(client.get(f"{url}/v2/fwd/app/blobs/{image.config.digest}"))
    finally:
        server.stop()


def test_forwarded_client_credentials_get_tokens_of_their_own(
    token_registry: tuple[str, TokenGate], tmp_path: Path
) -> None:
    """Against a token-flow upstream the client's credentials fetch the token, cached per
    client: a client with a wrong password must not ride on another's cached token."""
    upstream_url, gate = token_registry
    upstream = {"url": upstream_url, "forward_credentials": True}
    with (
        serve_gateway(tmp_path / "gw", [upstream]) as url,
        httpx.Client(timeout=30.0, auth=(USER, PASSWORD)) as user,
        httpx.Client(timeout=30.0, auth=(USER, "wrong")) as impostor,
        httpx.Client(timeout=30.0) as anonymous,
    ):
        image = make_image("tokens-forwarded")
        push_image(user, url, "tok/fwd", image, "v1")
        assert user.get(f"{url}/v2/tok/fwd/manifests/v1").content == image.manifest.data
        issued = len(gate.issued)
        assert issued >= 1
        for client in (impostor, anonymous):
            _assert_challenged(client.get(f"{url}/v2/tok/fwd/manifests/v1"))
        assert len(gate.issued) == issued  # no token went to the impostor
        # A bearer token the client got from the upstream itself is passed through as is.
        token = httpx.get(
            f"{upstream_url}/token",
            params={"scope": "repository:tok/fwd:pull"},
            auth=(USER, PASSWORD),
        ).json()["token"]
        with_token = httpx.get(
            f"{url}/v2/tok/fwd/manifests/v1", headers={"Authorization": f"Bearer {token}"}
        )
        assert with_token.status_code == 200 and with_token.content == image.manifest.data


def test_forwarding_beside_ocigates_own_auth(tmp_path: Path) -> None:
    """With ocigate's own logins on, Basic credentials valid for both reach the upstream, and a
    client holding an ocigate token passes ``GET /v2/`` (its token is not forwarded)."""
    server = distribution_with_htpasswd(tmp_path / "d", tmp_path / "d.log", USER, PASSWORD)
    htpasswd = tmp_path / "gateway.htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    upstream = {"url": server.url, "forward_credentials": True}
    server.start()
    try:
        basic = {"htpasswd": str(htpasswd), "realm": "basic"}
        with (
            serve_gateway(tmp_path / "gw1", [upstream], auth=basic) as url,
            httpx.Client(timeout=30.0, auth=(USER, PASSWORD)) as user,
        ):
            image = make_image("forwarded-beside-auth")
            push_image(user, url, "both/app", image, "v1")
            assert user.get(f"{url}/v2/both/app/manifests/v1").content == image.manifest.data
        token_auth = {"htpasswd": str(htpasswd), "realm": "token"}
        with serve_gateway(tmp_path / "gw2", [upstream], auth=token_auth) as url:
            token = httpx.get(
                f"{url}/token", params={"scope": "repository:both/app:pull"}, auth=(USER, PASSWORD)
            ).json()["token"]
            ping = httpx.get(f"{url}/v2/", headers={"Authorization": f"Bearer {token}"})
            assert ping.status_code == 200
    finally:
        server.stop()
