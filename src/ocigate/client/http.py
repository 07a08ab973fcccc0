"""An async HTTP client for one OCI registry: authentication, retries and streaming bodies.

Only idempotent requests without a streamed body (GET, HEAD, DELETE) are retried: a retried PATCH
could append a chunk twice, and a streamed body cannot be replayed anyway. Transport failures
become :class:`BadGateway` / :class:`GatewayTimeout` naming the upstream, never a "not found".
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ssl
import time
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

from ..context import request_context
from ..metrics import UPSTREAM_ERRORS, UPSTREAM_REQUESTS
from ..oci.errors import BadGateway, Denied, GatewayTimeout, OCIError, Unauthorized
from ..oci.numbers import parse_decimal
from .auth import Challenge, TokenCache, basic_header, parse_challenges
from .connection import MAX_BODY, Body, Response, Timeout, TooLarge, TransportError
from .origins import OriginPolicy
from .pool import Pool

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
RETRY_STATUSES = frozenset({429, 503})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Blobs are relayed byte for byte: ask for no content coding.
DEFAULT_HEADERS = {"Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class ClientOptions:
    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None  # a static bearer token, sent as is
    tls_verify: bool = True
    ca_file: Path | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 3
    max_connections: int = 256  # per origin
    # Each client's own Authorization (the request context's ``authorization``) instead of the
    # credentials above; refusals of them become 401 (Unauthorized) instead of 403.
    forward_credentials: bool = False
    backoff: float = 0.25  # first retry delay; doubles each attempt
    max_delay: float = 30.0  # cap on backoff and on a server's Retry-After
    # Token realm hosts besides the upstream's own that may receive credentials.
    token_realm_hosts: tuple[str, ...] = ()
    allow_private_redirects: bool = False  # redirects may reach loopback/private addresses
    max_body_size: int = MAX_BODY  # largest body read whole (lists, token and upload answers)


def _is_bearer(authorization: str | None) -> bool:
    return authorization is not None and authorization[:7].lower() == "bearer "


def tls_context(ca_file: Path | None, tls_verify: bool) -> ssl.SSLContext:
    """How ocigate checks an upstream's (or a webhook's) certificate: against ``ca_file`` when
    given, else the system's CAs, or not at all with ``tls_verify`` false."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    context = ssl.create_default_context()
    if not tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    seconds = parse_decimal(value)
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RegistryClient:
    """Requests against one registry base URL; responses are streamed, callers close them."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.base = options.url.rstrip("/")
        parts = urlsplit(self.base)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.origins = OriginPolicy(
            self.base, options.token_realm_hosts, options.allow_private_redirects
        )
        self._pool = Pool(
            tls_context(options.ca_file, options.tls_verify),
            options.connect_timeout,
            options.read_timeout,
            options.max_connections,
        )
        self._tokens = TokenCache()
        self._challenge: Challenge | None = None
        self._probed = False
        self._probe_lock = asyncio.Lock()
        # Labelled by the configured upstream's host, never by where a redirect led.
        self._sent = UPSTREAM_REQUESTS.labels(parts.netloc)
        self._failed = UPSTREAM_ERRORS.labels(parts.netloc)

    def url(self, path_or_url: str) -> str:
        """Absolute URL for an API path, or a (relative) Location an upstream handed out."""
        if path_or_url[:1] == "/" and path_or_url[:2] != "//":
            return self._origin + path_or_url  # what urljoin makes of it, without its cost
        return urljoin(self.base + "/", path_or_url)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def read(self, response: Response, limit: int | None = None) -> bytes:
        """A response body read whole, at most ``limit`` (default ``max_body_size``) bytes:
        beyond it, or when the transfer fails, a 502/504 naming the upstream (never a 500)."""
        if limit is None:
            limit = self.options.max_body_size
        try:
            return await response.aread(limit)
        except TooLarge as exc:
            raise BadGateway(
                {"upstream": self.base, "limit": limit},
                f"upstream {self.base} sent a body over the gateway's {limit}-byte cap",
            ) from exc
        except TransportError as exc:
            raise _fault(self.base, exc) from exc

    # --- authentication --------------------------------------------------------------------

    async def _probe(self) -> None:
        """Learn the registry's challenge once from ``GET /v2/``, so even a first request with a
        streamed (unreplayable) body can carry credentials."""
        async with self._probe_lock:
            if self._probed:
                return
            response = await self._send("GET", self.url("/v2/"), {}, None, retryable=True)
            await response.aclose()
            self._note_challenge(response)
            self._probed = True

    def _note_challenge(self, response: Response) -> Challenge | None:
        if response.status_code != 401:
            return None
        found = parse_challenges(response.headers.get("www-authenticate", ""))
        for challenge in found:
            if challenge.scheme in ("bearer", "basic"):
                self._challenge = challenge
                return challenge
        return None

    def _credentials(self) -> tuple[str | None, str | None]:
        """``(forwarded, basic)``: the client's Authorization when forwarding (None when it
        sent none), and the Basic header to authenticate with (the client's or ours)."""
        forwarded = request_context().authorization if self.options.forward_credentials else None
        if forwarded is not None and forwarded[:6].lower() == "basic ":
            return forwarded, forwarded
        if self.options.username is not None:
            own = basic_header(self.options.username, self.options.password or "")
            return forwarded, own
        return forwarded, None

    def _token_key(self, scope: str, forwarded: str | None) -> str:
        """Tokens are cached per scope, and per client when clients' credentials are used:
        one client's token must never serve another."""
        if forwarded is None:
            return scope
        return hashlib.sha256(forwarded.encode()).hexdigest()[:32] + " " + scope

    async def _authorization(self, scope: str) -> str | None:
        options = self.options
        forwarded, basic = self._credentials()
        if _is_bearer(forwarded):
            return forwarded  # a token the client got for this upstream: passed as is
        if options.token and forwarded is None:
            return f"Bearer {options.token}"
        if not self._probed:
            await self._probe()
        challenge = self._challenge
        if challenge is None:
            return forwarded  # the upstream asked for nothing (yet)
        if challenge.scheme == "basic":
            return basic
        key = self._token_key(scope, forwarded)
        token = self._tokens.get(key)
        if token is None:
            token = await self._fetch_token(challenge, key, scope.split(), basic)
        return f"Bearer {token}"

    async def _fetch_token(
        self, challenge: Challenge, key: str, scopes: list[str], basic: str | None
    ) -> str:
        """A token for ``scopes`` (one query parameter each), cached under ``key``."""
        realm = challenge.params.get("realm")
        if not realm:
            raise BadGateway({"upstream": self.base}, "upstream bearer challenge has no realm")
        params: dict[str, str | list[str]] = {"scope": scopes}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        # Credentials go to a realm bound to this upstream only; any other gets an anonymous
        # request (as distribution's proxy does), and only when it is no internal address.
        trusted = self.origins.realm_trusted(realm)
        if not trusted:
            await self.origins.check_address(realm)
        headers = {"Authorization": basic} if basic is not None and trusted else {}
        response = await self._send("GET", realm, headers, None, retryable=True, params=params)
        await self.read(response)
        if response.status_code in (401, 403):
            refused = Unauthorized if self.options.forward_credentials else Denied
            whose = "the client's" if self.options.forward_credentials else "the gateway's"
            message = f"the token service of upstream {self.base} rejected {whose} credentials"
            if basic is not None and not trusted:
                host = urlsplit(realm).hostname or ""
                message = (
                    f"the token service of upstream {self.base} refused an anonymous request:"
                    f" {whose} credentials are not sent to its realm host {host[:100]} unless"
                    " token_realm_hosts lists it"
                )
            raise refused(
                {"upstream": self.base, "realm": realm, "status": response.status_code}, message
            )
        try:
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            document = response.json()
            token = document.get("token") or document.get("access_token")
            if not isinstance(token, str) or not token:
                raise ValueError("no token in the response")
            expires_in = document.get("expires_in")
        except (ValueError, AttributeError) as exc:
            raise BadGateway(
                {"upstream": self.base, "realm": realm},
                f"bad answer from the token service of upstream {self.base}: {exc}",
            ) from exc
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else None
        self._tokens.put(key, token, lifetime)
        return token

    # --- requests --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | list[str]] | None = None,
        content: Body = None,
        follow_redirects: bool | None = None,
    ) -> Response:
        """Send a request; the response body is not read yet (``aread``/``aiter_raw``, then
        ``aclose``). 401 is answered once by re-authenticating when the body can be replayed.
        Redirects are followed for GET and HEAD unless ``follow_redirects`` says otherwise;
        the upstream's credentials do not follow a redirect to another origin."""
        follow = method in ("GET", "HEAD") if follow_redirects is None else follow_redirects
        target = self.url(url)
        replayable = not isinstance(content, AsyncIterable)
        retryable = method in IDEMPOTENT and content is None
        reauthenticated = False
        while True:
            out = dict(headers or {})
            # Credentials belong to the upstream's origin, never to a URL it named elsewhere.
            authorization = None
            if self.origins.same_origin(target):
                authorization = await self._authorization(scope)
            if authorization is not None:
                out["Authorization"] = authorization
            response = await self._send(
                method, target, out, content, retryable=retryable, params=params, follow=follow
            )
            if response.status_code != 401 or not replayable or reauthenticated:
                return response
            # The token expired or lacks this scope, or the registry turned on auth: start over.
            challenge = self._note_challenge(response)
            forwarded, basic = self._credentials()
            if challenge is None or (self.options.token and forwarded is None):
                return response
            if _is_bearer(forwarded):
                return response  # the client's own token: only the client can renew it
            await response.aclose()
            reauthenticated = True
            key = self._token_key(scope, forwarded)
            self._tokens.drop(key)
            if challenge.scheme == "bearer":
                # Ask for our scope and whatever this challenge names (it may want more).
                wanted = [*scope.split(), *challenge.params.get("scope", "").split()]
                await self._fetch_token(challenge, key, list(dict.fromkeys(wanted)), basic)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: Body,
        *,
        retryable: bool,
        params: Mapping[str, str | list[str]] | None = None,
        follow: bool | None = None,
    ) -> Response:
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        if follow is None:
            follow = method in ("GET", "HEAD")
        out = {**DEFAULT_HEADERS, **headers}
        for _ in range(MAX_REDIRECTS):
            response = await self._attempts(method, url, out, content, retryable)
            location = response.headers.get("location")
            if not (follow and response.status_code in REDIRECTS and location):
                return response
            await response.aclose()
            target = urljoin(url, location)
            if not self.origins.same_origin(target):
                await self.origins.check_address(target)
                out.pop("Authorization", None)  # presigned URLs carry their own credentials
            url = target
        raise BadGateway({"upstream": self.base}, f"upstream {self.base} redirects too often")

    async def _attempts(
        self, method: str, url: str, headers: Mapping[str, str], content: Body, retryable: bool
    ) -> Response:
        """One request, retried (when ``retryable``) on transport failures and 429/503."""
        attempt = 0
        while True:
            delay = min(self.options.backoff * 2**attempt, self.options.max_delay)
            self._sent.inc()
            try:
                response = await self._pool.request(method, url, headers, content)
            except TransportError as exc:  # timeouts included
                self._failed.inc()
                if retryable and attempt < self.options.retries:
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                raise _fault(self.base, exc) from exc
            if response.status_code >= 500:
                self._failed.inc()
            if (
                response.status_code in RETRY_STATUSES
                and retryable
                and attempt < self.options.retries
            ):
                wait = retry_after(response.headers.get("retry-after"))
                await response.aclose()
                attempt += 1
                await asyncio.sleep(min(delay if wait is None else wait, self.options.max_delay))
                continue
            return response


def _fault(upstream: str, exc: TransportError) -> OCIError:
    """504 when the upstream was too slow, 502 when it could not be reached or spoke nonsense."""
    if isinstance(exc, Timeout):
        return GatewayTimeout(
            {"upstream": upstream},
            f"upstream registry {upstream} did not answer in time: {exc}",
        )
    return BadGateway(
        {"upstream": upstream},
        f"upstream registry {upstream} unreachable: {exc or type(exc).__name__}",
    )
