"""The UI over plain HTTP: the login cookie and its flags, the origin check on form posts,
tampered cookies, escaping, error pages, and the switch and mount point in the configuration."""

from __future__ import annotations

import base64
import json
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from ocigate.assemble import create_app
from ocigate.config import Settings
from spec.conftest import serve_app, serve_ocigate

from .conftest import Content, serve

COOKIE = "ocigate_session"


def login(url: str, user: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/ui/login",
        data={"username": user, "password": password},
        headers=headers,
    )


def as_alice(url: str) -> str:
    """The cookie of alice logged in at ``url``."""
    response = login(url, "alice", "alice-pw", origin=url)
    assert response.status_code == 303, response.text
    return response.cookies[COOKIE]


def page(content: Content, path: str, cookie: str | None = None) -> httpx.Response:
    cookies = {COOKIE: cookie} if cookie else None
    return httpx.get(f"{content.url}{path}", cookies=cookies)


def test_login_sets_a_strict_httponly_cookie_every_worker_accepts(content: Content) -> None:
    response = login(content.url, "alice", "alice-pw", origin=content.url)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"
    header = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age=43200"):
        assert attribute in header, header
    assert "Secure" not in header  # plain HTTP here; set behind TLS
    cookie = response.cookies[COOKIE]
    # Each request a new connection: the two workers share the secret in the data directory.
    for _ in range(8):
        shown = page(content, "/ui/r/team-a/tool", cookie)
        assert shown.status_code == 200, shown.text
    assert (content.data_dir / "ui-session.key").stat().st_mode & 0o077 == 0


def test_logout_clears_the_cookie(content: Content) -> None:
    response = httpx.post(f"{content.url}/ui/logout", headers={"origin": content.url})
    assert response.status_code == 303
    assert f"{COOKIE}=;" in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"referer": "http://evil.example/ui/login"},
        {"origin": "null"},  # a sandboxed or privacy-sensitive context
        {},  # neither: a browser always sends one of them with a form post
    ],
)
def test_form_posts_from_elsewhere_are_refused(content: Content, headers: dict[str, str]) -> None:
    response = login(content.url, "alice", "alice-pw", **headers)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert "not sent from this site" in response.text
    logout = httpx.post(f"{content.url}/ui/logout", headers=headers)
    assert logout.status_code == 403


def test_a_referer_from_the_site_itself_is_enough(content: Content) -> None:
    response = login(content.url, "alice", "alice-pw", referer=f"{content.url}/ui/login")
    assert response.status_code == 303


def test_behind_a_proxy_ending_tls_the_cookie_is_secure(content: Content) -> None:
    # The proxy forwards the browser's Host; the page the form was on was https.
    host = content.url.removeprefix("http://")
    response = login(content.url, "alice", "alice-pw", origin=f"https://{host}")
    assert response.status_code == 303
    assert response.headers["set-cookie"].endswith("; Secure")


def test_wrong_password_gets_401_and_no_cookie(content: Content) -> None:
    response = login(content.url, "alice", "nope", origin=content.url)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "Invalid user name or password" in response.text


def test_a_tampered_cookie_is_anonymous(content: Content) -> None:
    cookie = as_alice(content.url)
    encoded, _, signature = cookie.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    claims["u"] = "root"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for value in (f"{forged}.{signature}", f"{encoded}.{signature[:-2]}xx", "garbage", "a.b.c"):
        response = page(content, "/ui/r/secret/vault", value)
        assert response.status_code == 404, value
        assert "Log in" in response.text  # shown as anonymous
    assert page(content, "/ui/r/team-a/tool", cookie).status_code == 200


def test_denied_and_missing_repositories_answer_alike(content: Content) -> None:
    cookie = as_alice(content.url)
    denied = page(content, "/ui/r/secret/vault", cookie)
    missing = page(content, "/ui/r/secret/absent", cookie)
    assert denied.status_code == missing.status_code == 404
    assert denied.text == missing.text
    assert "vault" not in denied.text
    manifest = page(content, f"/ui/r/secret/vault/-/manifest/{content.image}", cookie)
    assert manifest.status_code == 404


def test_markup_in_content_is_escaped(content: Content) -> None:
    response = page(content, f"/ui/r/public/app/-/manifest/{content.signature}")
    assert response.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<script>" not in response.text
    assert "script-src" not in response.headers["content-security-policy"]  # none allowed
    assert response.headers["cache-control"] == "no-store"


def test_pages_that_cannot_be_shown(content: Content) -> None:
    invalid_tag = page(content, "/ui/r/public/app/-/manifest/bad%20tag")
    assert invalid_tag.status_code == 400
    assert invalid_tag.headers["content-type"].startswith("text/html")
    assert page(content, "/ui/nowhere").status_code == 404
    assert page(content, "/ui/r/Not_A_Name!").status_code == 400
    assert httpx.delete(f"{content.url}/ui/r/public/app").status_code == 405
    moved = page(content, "/ui")
    assert moved.status_code == 308 and moved.headers["location"] == "/ui/"
    css = page(content, "/ui/style.css")
    assert css.status_code == 200 and css.headers["content-type"] == "text/css"
    # The API beside it is untouched: it still challenges.
    assert httpx.get(f"{content.url}/v2/").status_code == 401


def test_switched_off_and_moved(tmp_path: Path) -> None:
    with serve_ocigate(tmp_path / "off", ui={"enabled": False}) as url:
        response = httpx.get(f"{url}/ui/")
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"  # the API's answer
    with serve_ocigate(tmp_path / "moved", ui={"path": "/browse/"}) as url:
        assert httpx.get(f"{url}/browse/").status_code == 200
        assert httpx.get(f"{url}/ui/").status_code == 404


def test_gateways_default_to_no_ui(tmp_path: Path) -> None:
    gateway = {"kind": "gateway", "upstreams": [{"url": "http://127.0.0.1:9"}]}

    def serve(ui: dict[str, bool]) -> AbstractContextManager[str]:
        store = {**gateway, "data_dir": str(tmp_path)}
        return serve_app(create_app(Settings(store=store, ui=ui)))

    with serve({}) as url:
        response = httpx.get(f"{url}/ui/")
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    with serve({"enabled": True}) as url:
        # Switched on, the upstream's failure is a page too (nothing listens on port 9).
        response = httpx.get(f"{url}/ui/")
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert "Cannot show this" in response.text


@pytest.mark.parametrize(
    ("ui", "problem"),
    [
        ({"path": "/v2/ui/"}, "path of the registry API"),
        ({"path": "ui"}, "must look like /ui/"),
        ({"path": "/UI/"}, "must look like /ui/"),
        ({"session_secret": "short"}, "at least 32"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_configuration_errors_name_the_key(ui: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(ui=ui)
    assert problem in str(caught.value)
    assert "ui" in str(caught.value)


def test_pages_and_logins_spend_the_address_budget(tmp_path: Path) -> None:
    budget = {"rate": 0.01, "burst": 2}
    limits = {"rules": [{"repository": "**", "reads": budget, "writes": budget}]}
    with serve_ocigate(tmp_path, rate_limits=limits) as url:
        assert [httpx.get(f"{url}/ui/").status_code for _ in range(3)] == [200, 200, 429]
        form = {"username": "x", "password": "y"}
        posts = [
            httpx.post(f"{url}/ui/login", data=form, headers={"origin": url}).status_code
            for _ in range(3)
        ]
        assert posts == [404, 404, 429]  # no logins configured here; the third is not tried


def test_replicas_with_one_secret_accept_each_others_logins(tmp_path: Path) -> None:
    secret = "s" * 40
    one = serve(tmp_path / "one", {"session_secret": secret})
    other = serve(tmp_path / "other", {"session_secret": secret})
    stranger = serve(tmp_path / "stranger", {})
    try:
        cookies = {COOKIE: as_alice(one.url)}
        # Each server has its own empty data directory: the repository is missing on all
        # three, but only the servers sharing the secret see alice logged in.
        for server, user in ((one, "alice"), (other, "alice"), (stranger, None)):
            shown = httpx.get(f"{server.url}/ui/", cookies=cookies)
            assert shown.status_code == 200
            assert ("<span>alice</span>" in shown.text) == (user is not None), server.url
        assert not (tmp_path / "one" / "data" / "ui-session.key").exists()
    finally:
        for process in (one, other, stranger):
            process.stop()


def test_logins_work_with_the_token_realm_too(tmp_path: Path) -> None:
    process = serve(tmp_path, {}, realm="token")
    try:
        shown = httpx.get(f"{process.url}/ui/", cookies={COOKIE: as_alice(process.url)})
        assert "<span>alice</span>" in shown.text
        # The API beside it challenges with the token flow as before.
        challenge = httpx.get(f"{process.url}/v2/").headers["www-authenticate"]
        assert challenge.startswith("Bearer realm=")
    finally:
        process.stop()
