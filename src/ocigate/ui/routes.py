"""The UI's paths: pages read through the registry as the logged-in identity, login and logout,
errors as HTML pages. A repository the identity may not pull is "not found", as one that does
not exist: the UI never tells them apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from ..api.auth import Authenticator
from ..api.http import Headers, Request, Send, respond
from ..auth.identity import ANONYMOUS, Identity
from ..context import RequestContext, enter, leave
from ..oci.errors import (
    Denied,
    ManifestUnknown,
    NameUnknown,
    OCIError,
    Unauthorized,
)
from ..oci.names import check_name
from ..oci.reference import parse_reference
from ..registry import Registry
from . import pages, views
from .config import UiConfig
from .html import STYLESHEET, frame
from .session import COOKIE, Sessions

# A repository's storage use against its quota, as ``ocigate quota`` prints a row of it.
Usage = Callable[[str], Awaitable[tuple[str, ...]]]

_FORM_MAX = 4096
_HIDDEN = (Unauthorized, Denied, NameUnknown, ManifestUnknown)
_NOT_FOUND = "Nothing of that name here, or nothing you may see."
# Pages depend on who asks: never cached; no script, no framing, no foreign anything.
_PAGE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
        b" frame-ancestors 'none'",
    ),
]


class _Refused(Exception):
    """A page refused with an HTML answer: its status, title and body."""

    def __init__(self, status: int, title: str, body: str) -> None:
        super().__init__(title)
        self.status, self.title, self.body = status, title, body


class Ui:
    def __init__(
        self,
        registry: Registry,
        config: UiConfig,
        sessions: Sessions,
        auth: Authenticator | None,
        usage: Usage | None = None,
    ) -> None:
        self.registry = registry
        self.usage = usage
        self.base = config.path
        self.page_size = config.page_size
        self.sessions = sessions
        self.auth = auth

    def owns(self, path: str) -> bool:
        return path.startswith(self.base) or path == self.base[:-1]

    async def __call__(self, request: Request, send: Send, request_id: str) -> Identity:
        """Answer one request under the UI's path; the identity it was answered for."""
        identity = self._identity(request)
        entered = enter(RequestContext(request_id, identity))
        try:
            await self._answer(request, send, identity)
        except (OCIError, _Refused) as problem:
            # Pages are rendered whole before any byte is sent: an error can still be a page.
            refused = problem if isinstance(problem, _Refused) else self._refusal(problem, identity)
            await self._page(send, refused.status, refused.title, refused.body, identity)
        finally:
            leave(entered)
        return identity

    def _identity(self, request: Request) -> Identity:
        if self.auth is None:
            return ANONYMOUS
        cookie = _cookie(request.headers.get("cookie", ""), COOKIE)
        found = self.sessions.identity(cookie) if cookie else None
        return found or ANONYMOUS

    async def _answer(self, request: Request, send: Send, identity: Identity) -> None:
        if request.path == self.base[:-1]:
            await _redirect(send, self.base, 308)
            return
        rest = request.path[len(self.base) :]
        method = request.method
        if rest in ("login", "logout") and method == "POST":
            self._same_origin(request)
            if rest == "login":
                await self._login(request, send)
            else:
                await _redirect(send, self.base, 303, [_session_cookie(self.base, "", 0)])
            return
        if method not in ("GET", "HEAD"):
            raise _Refused(
                405,
                "Method not allowed",
                pages.error(self.base, f"{method} is not supported here."),
            )
        if rest == "style.css":
            headers = [(b"content-type", b"text/css"), (b"cache-control", b"max-age=3600")]
            await respond(send, 200, headers, STYLESHEET)
        elif rest == "login" and self.auth is not None:
            await self._page(send, 200, "Log in", pages.login(self.base), identity)
        elif rest == "":
            await self._repositories(request, send, identity)
        elif rest.startswith("r/"):
            await self._repository(request, send, identity, rest[2:])
        else:
            raise self._not_found(identity)

    async def _repositories(self, request: Request, send: Send, identity: Identity) -> None:
        query = (request.param("q") or "").strip()
        last = request.param("last") or None
        page = await views.repositories(self.registry, query, last, self.page_size)
        body = pages.repositories(self.base, page, query, last)
        await self._page(send, 200, "Repositories", body, identity)

    async def _repository(
        self, request: Request, send: Send, identity: Identity, path: str
    ) -> None:
        repo, _, reference = path.partition("/-/manifest/")
        check_name(repo)
        if reference:
            view = await views.manifest(self.registry, repo, parse_reference(reference))
            host = request.headers.get("host", "localhost")
            body = pages.manifest(self.base, repo, host, view)
            crumbs = pages.crumbs(self.base, repo, view.digest)
            await self._page(send, 200, f"{repo}@{view.digest}", body, identity, crumbs)
        else:
            last = request.param("last") or None
            rows, more = await views.tags(self.registry, repo, last, self.page_size)
            # Asked only once the policy let the listing through: usage tells nothing more.
            used = await self.usage(repo) if self.usage is not None else None
            body = pages.quota(used) + pages.tags(self.base, repo, rows, more, last)
            await self._page(send, 200, repo, body, identity, pages.crumbs(self.base, repo))

    def _refusal(self, error: OCIError, identity: Identity) -> _Refused:
        if isinstance(error, _HIDDEN):
            return self._not_found(identity)
        return _Refused(error.status, "Cannot show this", pages.error(self.base, error.message))

    def _not_found(self, identity: Identity) -> _Refused:
        message = _NOT_FOUND
        if self.auth is not None and identity.anonymous:
            message += " Logging in may show more."
        return _Refused(404, "Not found", pages.error(self.base, message))

    async def _login(self, request: Request, send: Send) -> None:
        if self.auth is None:
            raise _Refused(404, "Not found", pages.error(self.base, "This registry has no logins."))
        form = parse_qs((await request.read(_FORM_MAX)).decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0]
        password = (form.get("password") or [""])[0]
        try:
            identity = await self.auth.login(user, password)
        except Unauthorized:
            body = pages.login(self.base, "Invalid user name or password.")
            raise _Refused(401, "Log in", body) from None
        cookie = self.sessions.issue(identity)
        # Over HTTPS, also when a proxy ended it (the form's page was https).
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        secure = request.scope.get("scheme") == "https" or origin.startswith("https://")
        header = _session_cookie(self.base, cookie, self.sessions.ttl, secure=secure)
        await _redirect(send, self.base, 303, [header])

    def _same_origin(self, request: Request) -> None:
        """Form posts only from the UI's own pages (SameSite=Strict aside, a login form posted
        from elsewhere could log a victim in as the attacker). The host is compared, not the
        scheme: behind a proxy ending TLS the request arrives as http."""
        host = request.headers.get("host", "")
        sender = request.headers.get("origin") or request.headers.get("referer") or ""
        if not host or urlsplit(sender).netloc != host:
            body = pages.error(self.base, "The form was not sent from this site's own page.")
            raise _Refused(403, "Refused", body)

    async def _page(
        self,
        send: Send,
        status: int,
        title: str,
        body: str,
        identity: Identity,
        crumbs: str = "",
    ) -> None:
        logins = self.auth is not None
        html = frame(self.base, title, body, identity, logins, crumbs)
        await respond(send, status, list(_PAGE_HEADERS), html)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _session_cookie(
    path: str, value: str, max_age: int, *, secure: bool = False
) -> tuple[bytes, bytes]:
    attributes = f"{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return b"set-cookie", (attributes + ("; Secure" if secure else "")).encode()


async def _redirect(send: Send, location: str, status: int, headers: Headers | None = None) -> None:
    await respond(send, status, [(b"location", location.encode()), *(headers or [])], b"")
