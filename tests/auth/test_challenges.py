"""``WWW-Authenticate`` built from request data: the repository name is checked before it is used,
every value is quote-escaped, and the realm comes from configuration or a plain Host."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from ocigate.auth.config import TokenConfig

from .conftest import TokenRegistry, start
from .raw import exchange, header_values, status_of

_BAD_LOGIN = base64.b64encode(b"alice:wrong").decode()


def _get(url: str, path: str, *, host: str | None = None, extra: str = "") -> bytes:
    netloc = url.removeprefix("http://")
    return exchange(
        url,
        f"GET {path} HTTP/1.1\r\nHost: {host or netloc}\r\n{extra}"
        f"Authorization: Basic {_BAD_LOGIN}\r\nConnection: close\r\n\r\n",
    )


def _realms(head: bytes) -> list[str]:
    """Every realm in every challenge: exactly one is expected."""
    values = header_values(head, "www-authenticate")
    return [realm for v in values for realm in re.findall(r'realm="([^"]*)"', v.decode())]


def test_a_hostile_repository_name_never_reaches_the_challenge(
    token_registry: TokenRegistry,
) -> None:
    url = token_registry.url
    injected = _get(url, "/v2/x%22,realm=%22http:%2f%2fevil.example%2ft/manifests/v1")
    assert status_of(injected) == 400 and b"evil" not in injected
    bare_cr = _get(url, "/v2/x%0dSet-Cookie:%20a=b/manifests/v1")
    assert status_of(bare_cr) == 400 and b"\r" not in bare_cr.replace(b"\r\n", b"")
    assert not header_values(bare_cr, "set-cookie")


def test_the_realm_is_built_from_a_plain_host_only(token_registry: TokenRegistry) -> None:
    url = token_registry.url
    netloc = url.removeprefix("http://")
    plain = _get(url, "/v2/team-a/x/manifests/v1", host="registry.example:5000")
    assert status_of(plain) == 401
    assert _realms(plain) == ["http://registry.example:5000/token"]
    hostile = _get(url, "/v2/team-a/x/manifests/v1", host='x",realm="http://evil/t')
    assert status_of(hostile) == 401 and b"evil" not in hostile
    assert _realms(hostile) == [f"http://{netloc}/token"]


@pytest.fixture(scope="module")
def configured_realm(tmp_path_factory: pytest.TempPathFactory, htpasswd: Path) -> Iterator[str]:
    token = {"realm": "https://auth.example/token", "service": 'reg"istry'}
    with start(tmp_path_factory.mktemp("realm"), htpasswd, "token", auth={"token": token}) as url:
        yield url


def test_configured_values_are_quote_escaped(configured_realm: str) -> None:
    head = _get(configured_realm, "/v2/team-a/x/manifests/v1", host='x",realm="http://evil/t')
    (value,) = header_values(head, "www-authenticate")
    assert value == (
        b'Bearer realm="https://auth.example/token",service="reg\\"istry",'
        b'scope="repository:team-a/x:pull"'
    )


@pytest.mark.parametrize(
    "realm", ["/token", "ftp://auth.example/t", 'https://a.example/t",realm="x', "https://a/\r\n"]
)
def test_a_configured_realm_is_an_absolute_http_url(realm: str) -> None:
    with pytest.raises(ValidationError, match="absolute"):
        TokenConfig(realm=realm)
