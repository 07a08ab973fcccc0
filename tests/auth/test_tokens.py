"""The Docker token flow: challenges, the token endpoint, scope grants, and token attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spec.helpers import manifest_url, push_image

from .conftest import USERS, TokenRegistry


def challenge(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 401, resp.text
    scheme, _, params = resp.headers["www-authenticate"].partition(" ")
    assert scheme == "Bearer"
    return dict(re.findall(r'(\w+)="([^"]*)"', params))


def fetch_token(realm: str, service: str, scope: str, user: str | None = None) -> str:
    auth = httpx.BasicAuth(user, USERS[user]) if user else None
    resp = httpx.get(realm, params={"service": service, "scope": scope}, auth=auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    return str(body["token"])


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def bearer(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def team_a_repo(token_registry: TokenRegistry) -> str:
    name = f"team-a/app-{secrets.token_hex(3)}"
    realm = f"{token_registry.url}/token"
    token = fetch_token(realm, "ocigate", f"repository:{name}:pull,push", "alice")
    with bearer(token_registry.url, token) as alice:
        push_image(alice, name, "latest")
    return name


def test_login_flow_as_a_client_does_it(token_registry: TokenRegistry, team_a_repo: str) -> None:
    denied = httpx.get(f"{token_registry.url}{manifest_url(team_a_repo, 'latest')}")
    params = challenge(denied)
    assert params == {
        "realm": f"{token_registry.url}/token",
        "service": "ocigate",
        "scope": f"repository:{team_a_repo}:pull",
    }
    token = fetch_token(params["realm"], params["service"], params["scope"], "alice")
    with bearer(token_registry.url, token) as alice:
        assert alice.get(manifest_url(team_a_repo, "latest")).status_code == 200
        assert alice.get("/v2/").status_code == 200
    assert challenge(httpx.get(f"{token_registry.url}/v2/")) == {
        "realm": f"{token_registry.url}/token",
        "service": "ocigate",
    }


def test_tokens_grant_exactly_what_the_policy_allows(
    token_registry: TokenRegistry, team_a_repo: str
) -> None:
    realm = f"{token_registry.url}/token"
    token = fetch_token(realm, "ocigate", f"repository:{team_a_repo}:pull,push", "bob")
    assert claims_of(token)["access"] == [
        {"type": "repository", "name": team_a_repo, "actions": []}
    ]
    public = f"public/app-{secrets.token_hex(3)}"
    token = fetch_token(realm, "ocigate", f"repository:{public}:pull,push,delete", "bob")
    assert claims_of(token)["access"][0]["actions"] == ["pull", "push"]
    anonymous = fetch_token(realm, "ocigate", f"repository:{public}:pull,push")
    assert claims_of(anonymous)["access"][0]["actions"] == ["pull"]
    with bearer(token_registry.url, anonymous) as client:
        resp = client.post(f"/v2/{public}/blobs/uploads/")
        assert challenge(resp)["scope"] == f"repository:{public}:pull,push"


def test_oauth2_password_grant(token_registry: TokenRegistry, team_a_repo: str) -> None:
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": USERS["alice"],
        "service": "ocigate",
        "scope": f"repository:{team_a_repo}:pull",
        "client_id": "tests",
    }
    resp = httpx.post(f"{token_registry.url}/token", data=form)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    with bearer(token_registry.url, body["access_token"]) as alice:
        assert alice.get(manifest_url(team_a_repo, "latest")).status_code == 200
    wrong = httpx.post(f"{token_registry.url}/token", data={**form, "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"


def _sign(key_file: Any, claims: dict[str, Any], **header: Any) -> str:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm="ES256", headers=header or None)  # type: ignore[arg-type]


def _valid_claims(repo: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "ocigate",
        "sub": "alice",
        "aud": "ocigate",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
        "access": [{"type": "repository", "name": repo, "actions": ["pull"]}],
    }
    return {**claims, **changes}


def _widened(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["access"][0]["actions"] = ["pull", "push", "delete"]
    raw = json.dumps(claims).encode()
    return ".".join([header, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), signature])


def test_token_attacks_are_rejected(token_registry: TokenRegistry, team_a_repo: str) -> None:
    url, key_file = token_registry.url, token_registry.key_file
    path = manifest_url(team_a_repo, "latest")
    genuine = _sign(key_file, _valid_claims(team_a_repo))
    with bearer(url, genuine) as client:
        assert client.get(path).status_code == 200  # the forging itself is right

    other_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    attacks = {
        "bad signature": jwt.encode(_valid_claims(team_a_repo), other_key, algorithm="ES256"),
        "alg none": jwt.encode(_valid_claims(team_a_repo), None, algorithm="none"),
        "alg confusion": _hs256(_valid_claims(team_a_repo), public_pem),
        "expired": _sign(key_file, _valid_claims(team_a_repo, exp=int(time.time()) - 60)),
        "wrong audience": _sign(key_file, _valid_claims(team_a_repo, aud="elsewhere")),
        "wrong issuer": _sign(key_file, _valid_claims(team_a_repo, iss="mallory")),
        "scope widened": _widened(genuine),
        "garbage": "not.a.token",
    }
    for name, token in attacks.items():
        with bearer(url, token) as client:
            resp = client.get(path)
            assert resp.status_code == 401, f"{name}: {resp.status_code}"
            assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED", name
    # A genuine token for repository A opens nothing in repository B.
    other = f"team-a/other-{secrets.token_hex(3)}"
    with bearer(url, genuine) as client:
        assert client.get(manifest_url(other, "latest")).status_code == 401
        assert client.post(f"/v2/{team_a_repo}/blobs/uploads/").status_code == 401


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """A token MACed with the registry's public key: accepted only by a confused verifier."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(mac)


def test_catalog_through_the_token_flow(token_registry: TokenRegistry, team_a_repo: str) -> None:
    url = token_registry.url
    params = challenge(httpx.get(f"{url}/v2/"))
    realm, service = params["realm"], params["service"]
    team_b = [f"team-b/app-{secrets.token_hex(3)}" for _ in range(2)]
    scopes = " ".join(f"repository:{name}:pull,push" for name in team_b)
    push_token = fetch_token(realm, service, scopes, "bob")
    with bearer(url, push_token) as bob:
        for name in team_b:
            push_image(bob, name, "latest")
    # A token without the catalog scope is told which one to fetch.
    with bearer(url, push_token) as bob:
        wanted = challenge(bob.get("/v2/_catalog"))
    assert wanted["scope"] == "registry:catalog:*" and wanted["error"] == "insufficient_scope"
    seen: dict[str, set[str]] = {}
    for user in ("root", "bob"):
        token = fetch_token(realm, service, wanted["scope"], user)
        with bearer(url, token) as client:
            seen[user] = set(client.get("/v2/_catalog").json()["repositories"])
            page = client.get("/v2/_catalog", params={"n": 1})
            assert len(page.json()["repositories"]) == 1 and "link" in page.headers
    assert {team_a_repo, *team_b} <= seen["root"]
    assert set(team_b) <= seen["bob"] and team_a_repo not in seen["bob"]


def test_refused_after_one_token_fetch(token_registry: TokenRegistry, team_a_repo: str) -> None:
    """A token that does not cover a request gets 401 ``insufficient_scope`` naming the scope
    (clients give up there instead of fetching token after token), whether the policy refuses
    the user or would grant a token for it; a user refused over Basic gets 403 DENIED."""
    url = token_registry.url
    path = manifest_url(team_a_repo, "latest")
    params = challenge(httpx.get(f"{url}{path}"))
    assert "error" not in params  # a plain challenge: go and get a token
    token = fetch_token(params["realm"], params["service"], params["scope"], "bob")
    with bearer(url, token) as bob:
        refused = bob.get(path)
    assert challenge(refused) == {**params, "error": "insufficient_scope"}
    assert "denied" in refused.json()["errors"][0]["message"]
    pull_only = fetch_token(params["realm"], params["service"], params["scope"], "alice")
    with bearer(url, pull_only) as alice:
        wanted = challenge(alice.delete(path))
    assert wanted["error"] == "insufficient_scope"
    assert wanted["scope"] == f"repository:{team_a_repo}:delete"
    with httpx.Client(base_url=url, auth=httpx.BasicAuth("bob", USERS["bob"])) as bob:
        direct = bob.get(path)
    assert direct.status_code == 403 and direct.json()["errors"][0]["code"] == "DENIED"
    assert "www-authenticate" not in direct.headers
