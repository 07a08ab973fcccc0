"""An async HTTP client for one OCI registry: authentication, retries and streaming bodies.

Only idempotent requests without a streamed body (GET, HEAD, DELETE) are retried: a retried PATCH
could append a chunk twice, and a streamed body cannot be replayed anyway. Transport failures
become :class:`BadGateway` / :class:`GatewayTimeout` naming the upstream, never a "not found".
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..oci.errors import BadGateway, Denied, GatewayTimeout, OCIError
from .auth import Challenge, TokenCache, basic_header, parse_challenges

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
RETRY_STATUSES = frozenset({429, 503})
Body = bytes | AsyncIterable[bytes] | None


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
    backoff: float = 0.25  # first retry delay; doubles each attempt
    max_delay: float = 30.0  # cap on backoff and on a server's Retry-After


def _verify(options: ClientOptions) -> ssl.SSLContext | bool:
    if not options.tls_verify:
        return False
    if options.ca_file is not None:
        return ssl.create_default_context(cafile=str(options.ca_file))
    return True


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
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
        timeout = httpx.Timeout(
            connect=options.connect_timeout,
            read=options.read_timeout,
            write=options.read_timeout,
            pool=options.connect_timeout,
        )
        self._http = httpx.AsyncClient(
            verify=_verify(options),
            timeout=timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            # Blobs are relayed byte for byte (aiter_raw): ask for no content coding.
            headers={"Accept-Encoding": "identity"},
            trust_env=False,  # a gateway's upstream is configured, not taken from proxy vars
        )
        self._tokens = TokenCache()
        self._challenge: Challenge | None = None
        self._probed = False
        self._probe_lock = asyncio.Lock()

    def url(self, path_or_url: str) -> str:
        """Absolute URL for an API path, or a (relative) Location an upstream handed out."""
        return str(httpx.URL(self.base + "/").join(path_or_url))

    async def aclose(self) -> None:
        await self._http.aclose()

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

    def _note_challenge(self, response: httpx.Response) -> Challenge | None:
        if response.status_code != 401:
            return None
        found = parse_challenges(response.headers.get("www-authenticate", ""))
        for challenge in found:
            if challenge.scheme in ("bearer", "basic"):
                self._challenge = challenge
                return challenge
        return None

    async def _authorization(self, scope: str) -> str | None:
        options = self.options
        if options.token:
            return f"Bearer {options.token}"
        if not self._probed:
            await self._probe()
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if options.username is None:
                return None
            return basic_header(options.username, options.password or "")
        token = self._tokens.get(scope)
        if token is None:
            token = await self._fetch_token(challenge, scope, scope.split())
        return f"Bearer {token}"

    async def _fetch_token(self, challenge: Challenge, scope: str, scopes: list[str]) -> str:
        """A token for ``scopes`` (one query parameter each), cached under ``scope``."""
        realm = challenge.params.get("realm")
        if not realm:
            raise BadGateway({"upstream": self.base}, "upstream bearer challenge has no realm")
        params: dict[str, str | list[str]] = {"scope": scopes}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {}
        if self.options.username is not None:
            headers["Authorization"] = basic_header(
                self.options.username, self.options.password or ""
            )
        response = await self._send("GET", realm, headers, None, retryable=True, params=params)
        await response.aread()
        if response.status_code in (401, 403):
            raise Denied(
                {"upstream": self.base, "realm": realm, "status": response.status_code},
                f"the token service of upstream {self.base} rejected the gateway's credentials",
            )
        try:
            response.raise_for_status()
            document = response.json()
            token = document.get("token") or document.get("access_token")
            if not isinstance(token, str) or not token:
                raise ValueError("no token in the response")
            expires_in = document.get("expires_in")
        except (httpx.HTTPStatusError, ValueError, AttributeError) as exc:
            raise BadGateway(
                {"upstream": self.base, "realm": realm},
                f"bad answer from the token service of upstream {self.base}: {exc}",
            ) from exc
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else None
        self._tokens.put(scope, token, lifetime)
        return token

    # --- requests --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: Body = None,
        follow_redirects: bool | None = None,
    ) -> httpx.Response:
        """Send a request; the response body is not read yet (``aread``/``aiter_raw``, then
        ``aclose``). 401 is answered once by re-authenticating when the body can be replayed.
        Redirects are followed for GET and HEAD unless ``follow_redirects`` says otherwise."""
        follow = method in ("GET", "HEAD") if follow_redirects is None else follow_redirects
        target = self.url(url)
        replayable = not isinstance(content, AsyncIterable)
        retryable = method in IDEMPOTENT and content is None
        reauthenticated = False
        while True:
            out = dict(headers or {})
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
            if challenge is None or self.options.token:
                return response
            await response.aclose()
            reauthenticated = True
            self._tokens.drop(scope)
            if challenge.scheme == "bearer":
                # Ask for our scope and whatever this challenge names (it may want more).
                wanted = [*scope.split(), *challenge.params.get("scope", "").split()]
                await self._fetch_token(challenge, scope, list(dict.fromkeys(wanted)))

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
    ) -> httpx.Response:
        attempt = 0
        if follow is None:
            follow = method in ("GET", "HEAD")
        while True:
            # httpx replaces a URL's query with ``params``; an upload Location keeps its own.
            target = httpx.URL(url).copy_merge_params(params) if params else url
            request = self._http.build_request(method, target, headers=headers, content=content)
            delay = min(self.options.backoff * 2**attempt, self.options.max_delay)
            try:
                response = await self._http.send(request, stream=True, follow_redirects=follow)
            except httpx.TransportError as exc:  # timeouts included
                if retryable and attempt < self.options.retries:
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                raise _fault(self.base, exc) from exc
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


def _fault(upstream: str, exc: httpx.TransportError) -> OCIError:
    """504 when the upstream was too slow, 502 when it could not be reached or spoke nonsense."""
    if isinstance(exc, httpx.TimeoutException):
        return GatewayTimeout(
            {"upstream": upstream},
            f"upstream registry {upstream} did not answer in time ({type(exc).__name__})",
        )
    return BadGateway(
        {"upstream": upstream},
        f"upstream registry {upstream} unreachable: {exc or type(exc).__name__}",
    )
