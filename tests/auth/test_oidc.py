"""External OIDC tokens: as a bearer token, as a Basic password, and at the token endpoint."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from spec.conftest import serve_app
from spec.helpers import manifest_url, push_image

from .conftest import POLICY, basic_client, start

ISSUER = "https://issuer.example"
AUDIENCE = "ocigate-tests"


@pytest.fixture(scope="module")
def issuer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def oidc_registry(
    tmp_path_factory: pytest.TempPathFactory, htpasswd: Path, issuer_key: rsa.RSAPrivateKey
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("oidc")
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer_key.public_key()))
    (tmp / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    oidc = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(tmp / "jwks.json")}
    with start(tmp, htpasswd, "token", auth={"oidc": oidc}, policy=POLICY) as url:
        yield url


class JwksIssuer:
    """An OIDC issuer publishing its keys over HTTP, as real issuers do; counts the fetches."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}).encode()
        self.fetches = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.jwks})


def id_token(key: rsa.RSAPrivateKey, kid: str = "k1", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ci-bot",
        "groups": ["team-a"],
        "iat": now,
        "exp": now + 300,
        **changes,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def image_repo(oidc_registry: str) -> str:
    name = f"team-a/oidc-{secrets.token_hex(3)}"
    with basic_client(oidc_registry, "alice") as alice:
        push_image(alice, name, "latest")
    return name


def test_oidc_token_as_bearer_and_as_password(
    oidc_registry: str, image_repo: str, issuer_key: rsa.RSAPrivateKey
) -> None:
    token = id_token(issuer_key)
    path = manifest_url(image_repo, "latest")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{oidc_registry}{path}", headers=headers).status_code == 200
    as_password = httpx.BasicAuth("anything", token)
    assert httpx.get(f"{oidc_registry}{path}", auth=as_password).status_code == 200
    # Group membership comes from the token's claims: without team-a, no access.
    outsider = id_token(issuer_key, groups=["team-z"])
    resp = httpx.get(f"{oidc_registry}{path}", headers={"Authorization": f"Bearer {outsider}"})
    assert resp.status_code == 403


def test_oidc_token_at_the_token_endpoint(
    oidc_registry: str, image_repo: str, issuer_key: rsa.RSAPrivateKey
) -> None:
    resp = httpx.get(
        f"{oidc_registry}/token",
        params={"service": "ocigate", "scope": f"repository:{image_repo}:pull"},
        auth=httpx.BasicAuth("ci-bot", id_token(issuer_key)),
    )
    assert resp.status_code == 200, resp.text
    registry_token = resp.json()["token"]
    claims = jwt.decode(registry_token, options={"verify_signature": False})
    assert claims["sub"] == "ci-bot" and claims["access"][0]["actions"] == ["pull"]
    headers = {"Authorization": f"Bearer {registry_token}"}
    path = manifest_url(image_repo, "latest")
    assert httpx.get(f"{oidc_registry}{path}", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 60},
        {"iss": "https://evil.example"},
    ],
    ids=["audience", "expired", "issuer"],
)
def test_bad_oidc_tokens(
    oidc_registry: str, image_repo: str, issuer_key: rsa.RSAPrivateKey, changes: dict[str, Any]
) -> None:
    token = id_token(issuer_key, **changes)
    path = manifest_url(image_repo, "latest")
    resp = httpx.get(f"{oidc_registry}{path}", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def test_oidc_token_signed_by_another_key(oidc_registry: str, image_repo: str) -> None:
    forged = id_token(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    path = manifest_url(image_repo, "latest")
    resp = httpx.get(f"{oidc_registry}{path}", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401


def test_jwks_fetched_from_the_issuer_url(
    tmp_path: Path, htpasswd: Path, issuer_key: rsa.RSAPrivateKey
) -> None:
    """The issuer's keys published over HTTP, as real issuers do."""
    issuer = JwksIssuer(issuer_key)
    with serve_app(issuer, "issuer") as issuer_url:
        oidc = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": f"{issuer_url}/jwks"}
        with start(tmp_path, htpasswd, "token", auth={"oidc": oidc}, policy=POLICY) as url:
            name = f"team-a/jwks-{secrets.token_hex(3)}"
            headers = {"Authorization": f"Bearer {id_token(issuer_key)}"}
            with httpx.Client(base_url=url, headers=headers) as bot:
                push_image(bot, name, "latest")
                assert bot.get(manifest_url(name, "latest")).status_code == 200


def test_unknown_keys_and_an_unreachable_issuer(
    tmp_path: Path, htpasswd: Path, issuer_key: rsa.RSAPrivateKey
) -> None:
    """An unknown ``kid`` is a 401 and fetches the keys at most once per refresh interval; while
    the issuer is down the keys fetched before keep working; 503 only with no keys at all."""
    issuer = JwksIssuer(issuer_key)
    with contextlib.ExitStack() as issuer_up:
        issuer_url = issuer_up.enter_context(serve_app(issuer, "issuer"))
        oidc = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": f"{issuer_url}/jwks",
            "jwks_refresh_interval": 2,
        }
        with (
            start(tmp_path, htpasswd, "token", auth={"oidc": oidc}) as url,
            httpx.Client(base_url=url) as client,
        ):

            def status(token: str) -> int:
                headers = {"Authorization": f"Bearer {token}"}
                return client.get("/v2/public/none/tags/list", headers=headers).status_code

            assert status(id_token(issuer_key)) == 404  # known and allowed: no such repository
            assert issuer.fetches == 1
            for attempt in range(10):
                assert status(id_token(issuer_key, kid=f"made-up-{attempt}")) == 401
            assert issuer.fetches == 1  # at most one fetch per refresh interval
            issuer_up.close()
            time.sleep(2.1)  # the next unknown kid tries the issuer, which is gone
            assert status(id_token(issuer_key, kid="made-up")) == 401
            assert status(id_token(issuer_key)) == 404  # the keys fetched before still work
    with start(tmp_path / "down", htpasswd, "token", auth={"oidc": oidc}) as url:
        headers = {"Authorization": f"Bearer {id_token(issuer_key)}"}
        resp = httpx.get(f"{url}/v2/public/none/tags/list", headers=headers)
        assert resp.status_code == 503 and resp.json()["errors"][0]["code"] == "UNAVAILABLE"
