"""The ASGI application: routing, authentication hook, error translation and request logs.
It serves the registry it is given; ``ocigate.assemble`` builds that from the settings."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import Token
from typing import Any, Protocol
from urllib.parse import quote

import anyio

from ..auth.identity import ANONYMOUS, Identity
from ..auth.policy import Action
from ..context import RequestContext, enter, leave, new_request_id
from ..layers.policy import PolicyLayer
from ..layers.ratelimit import RateLimited, RateLimiter
from ..metrics import CONTENT_TYPE, RATE_LIMITED, RequestMetrics
from ..oci.errors import HeadersTooLarge, NotFound, OCIError, Unauthorized, Unsupported
from ..oci.names import check_name
from ..registry import Registry
from . import blobs, health, listings, manifests, uploads
from .access_log import ECHO_MAX, LOG_MAX, clip, logged_query
from .auth import Authenticator
from .context import Call
from .errors import send_error
from .http import (
    ClientDisconnected,
    Headers,
    Message,
    Receive,
    Request,
    Scope,
    Send,
    respond,
    respond_json,
)
from .options import ApiOptions
from .routes import OPERATIONS, Route, match

log = logging.getLogger("ocigate")

Handler = Callable[[Call], Awaitable[None]]

_HANDLERS: dict[tuple[str, str], Handler] = {
    ("blob", "GET"): blobs.get_blob,
    ("blob", "HEAD"): blobs.head_blob,
    ("blob", "DELETE"): blobs.delete_blob,
    ("uploads", "POST"): uploads.start,
    ("upload", "PATCH"): uploads.patch,
    ("upload", "PUT"): uploads.put,
    ("upload", "GET"): uploads.status,
    ("upload", "DELETE"): uploads.cancel,
    ("manifest", "GET"): manifests.get,
    ("manifest", "HEAD"): manifests.head,
    ("manifest", "PUT"): manifests.put,
    ("manifest", "DELETE"): manifests.delete,
    ("tags", "GET"): listings.tags,
    ("catalog", "GET"): listings.catalog,
    ("referrers", "GET"): listings.referrers,
}
# Requests carrying a body, and what they need: decided before the body is read.
_BODY_ACTIONS: dict[tuple[str, str], Action] = {
    ("manifest", "PUT"): "push",
    ("uploads", "POST"): "push",
    ("upload", "PATCH"): "push",
    ("upload", "PUT"): "push",
}
_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


class Mount(Protocol):
    """Pages served beside the API under a path of their own (the web UI): they identify the
    caller their own way and answer every request under ``owns``."""

    def owns(self, path: str) -> bool: ...

    async def __call__(self, request: Request, send: Send, request_id: str) -> Identity:
        """Answer the request; the identity it was answered for (for the access log)."""
        ...


class App:
    """The registry's ASGI application around one :class:`Registry`."""

    def __init__(
        self,
        registry: Registry,
        options: ApiOptions,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        auth: Authenticator | None = None,
        readiness: health.Readiness | None = None,
        limits: RateLimiter | None = None,
        exposition: Callable[[], bytes] | None = None,
        opening: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        namespaces: Callable[[str], str | None] | None = None,
        mount: Mount | None = None,
    ) -> None:
        self.options = options
        # Run at start-up before any request (a backend connecting to its database); one
        # failing fails the worker's start-up with its message.
        self._opening = opening
        self.readiness = readiness or health.Readiness(())
        # Metrics are on when there is an exposition to serve them with.
        self.metrics = RequestMetrics() if exposition is not None else None
        self.limits = limits
        self._exposition = exposition
        self.registry = registry
        self.auth = auth
        # The access policy is the registry's outermost layer: asked early for body requests.
        self._gate = registry if isinstance(registry, PolicyLayer) else None
        # Clients' credentials are kept for the upstream only when one is set to forward them,
        # and never ocigate's own bearer tokens.
        self._forward_credentials = options.forward_credentials
        self._background = background
        # Whether the registry routes by a request's ``ns`` host (a gateway's router does).
        self._namespaces = namespaces
        self._tasks: list[asyncio.Task[None]] = []
        self._mount = mount

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for open_ in self._opening:
                        await open_()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                loop = asyncio.get_running_loop()
                self._tasks = [loop.create_task(job()) for job in self._background]
                if self.metrics is not None:
                    self._tasks.append(loop.create_task(self.metrics.flush_forever()))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                if self.metrics is not None:
                    self.metrics.flush()
                await self.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        # One id per request, in the access log and in the events the request causes.
        request_id = new_request_id()
        request = Request(scope, receive)
        exchange = _Exchange(send)
        route: Route | None = None
        identity = ANONYMOUS
        entered: Token[RequestContext] | None = None
        received = _CountedReceive(receive) if self.metrics and request.method in _BODIES else None
        if received is not None:
            request.receive = received
        client = ""
        try:
            route = self._route(request)
            if route.endpoint == "mount":
                assert self._mount is not None
                if self.limits is not None:
                    # Per address, under the rule for "**": the pages identify the caller
                    # themselves, and each one costs several registry reads (a login, bcrypt).
                    client = self.limits.client(ANONYMOUS, _address(scope))
                    self._limit(client, request, route)
                identity = await self._mount(request, exchange, request_id)
                return
            if route.endpoint in OPERATIONS:
                await self._operations(request, route.endpoint, exchange)
                return
            if self.auth is not None:
                identity = await self.auth.identify(request)
            if self.limits is not None:
                client = self.limits.client(identity, _address(scope))
                self._limit(client, request, route)
            context = self._context(request, request_id, identity)
            entered = enter(context)
            await self._dispatch(request, route, context, exchange)
        except OCIError as error:
            await self._refuse(request, route, identity, exchange, error)
        except ClientDisconnected:
            exchange.status = exchange.status or 499
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            await exchange.fail(OCIError("internal error"))
        finally:
            seconds = time.perf_counter() - started
            # Logged even when the connection had to be dropped mid-response.
            if log.isEnabledFor(logging.INFO):
                repo = route.name if route else ""
                _access_log(request, request_id, repo, identity, exchange, seconds)
            if self.metrics is not None:
                endpoint = route.endpoint if route else "unknown"
                size = received.bytes if received is not None else 0
                self.metrics.observe(
                    request.method, endpoint, exchange.status, seconds, exchange.bytes, size
                )
            if client and route is not None and self._ends_upload(request, route, exchange):
                assert self.limits is not None
                self.limits.upload_ended(client)
            if entered is not None:
                leave(entered)

    def _context(self, request: Request, request_id: str, identity: Identity) -> RequestContext:
        """What the layers and stores below see of this request, set once before dispatch."""
        ns = request.param("ns") if self._namespaces is not None else None
        namespace = self._namespaces(ns) if ns and self._namespaces is not None else None
        forwarded = self._client_credentials(request) if self._forward_credentials else None
        return RequestContext(request_id, identity, namespace, forwarded)

    def _limit(self, client: str, request: Request, route: Route) -> None:
        assert self.limits is not None
        try:
            self.limits.check(client, request.method, route.name)
            if route.endpoint == "uploads" and request.method == "POST":
                self.limits.open_upload(client)
        except RateLimited as error:
            RATE_LIMITED.labels(error.kind).inc()
            raise

    @staticmethod
    def _ends_upload(request: Request, route: Route, exchange: _Exchange) -> bool:
        """A session ended (completed, cancelled) or none was opened (a mount, a one-POST
        upload): its slot in the client's upload cap is free again."""
        if route.endpoint == "upload":
            return request.method in ("PUT", "DELETE") and exchange.status in (201, 204)
        return route.endpoint == "uploads" and request.method == "POST" and exchange.status == 201

    async def _operations(self, request: Request, endpoint: str, send: Send) -> None:
        if request.method not in ("GET", "HEAD"):
            raise Unsupported(f"{request.method} is not supported on /{endpoint}")
        if endpoint == "healthz":
            await health.healthz(send)
        elif endpoint == "readyz":
            await health.readyz(send, self.readiness)
        else:
            await self._scrape(request, send)

    async def _scrape(self, request: Request, send: Send) -> None:
        token = self.options.metrics_token
        if self._exposition is None:
            raise NotFound(request.path)
        if token is not None:
            sent = request.headers.get("authorization", "")
            expected = f"Bearer {token}"
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                raise Unauthorized(None, "metrics need the configured bearer token")
        if self.metrics is not None:
            self.metrics.flush()  # this worker's counts are current; the others' within 1 s
        body = await anyio.to_thread.run_sync(self._exposition)
        await respond(send, 200, [(b"content-type", CONTENT_TYPE)], body)

    def _client_credentials(self, request: Request) -> str | None:
        value = request.headers.get("authorization")
        if value is None or (self.auth is not None and value[:7].lower() == "bearer "):
            return None  # with ocigate's own auth on, a bearer token is ocigate's
        return value

    def _route(self, request: Request) -> Route:
        headers = request.scope["headers"]
        options = self.options
        # Counted as received (name, ": ", value, CRLF), as the built-in server does.
        if sum(len(k) + len(v) + 4 for k, v in headers) > options.max_header_size:
            raise HeadersTooLarge(f"limit is {options.max_header_size} bytes")
        if len(headers) > options.max_header_count:
            raise HeadersTooLarge(f"limit is {options.max_header_count} headers")
        if self._mount is not None and self._mount.owns(request.path):
            return _MOUNTED
        route = match(request.path)
        if route is None:
            raise NotFound(clip(request.path, ECHO_MAX))
        if route.name:  # before the name is used anywhere (challenges, logs, the policy)
            check_name(route.name)
        return route

    async def _refuse(
        self,
        request: Request,
        route: Route | None,
        identity: Identity,
        exchange: _Exchange,
        error: OCIError,
    ) -> None:
        headers: Headers = []
        if self.auth is not None and error.status in (401, 403):
            error, headers = self.auth.refusal(request, route, identity, error)
        elif error.status == 401 and route is not None and route.endpoint == "metrics":
            headers = [(b"www-authenticate", b'Bearer realm="metrics"')]
        elif error.status == 401:  # an upstream wants the client's credentials
            headers = [(b"www-authenticate", b'Basic realm="ocigate"')]
        if isinstance(error, RateLimited):
            headers.append((b"retry-after", b"%d" % error.retry_after))
        await exchange.fail(error, headers)

    async def _dispatch(
        self, request: Request, route: Route, context: RequestContext, send: _Exchange
    ) -> None:
        identity = context.identity
        if route.endpoint == "base":
            # Clients decide from this answer whether to log in at all (distribution does the
            # same), so anonymous callers are challenged; anonymous tokens still allow pulls.
            if self.auth is not None and identity.anonymous:
                raise Unauthorized(None, "authentication required")
            if self.auth is None and self._forward_credentials and not context.authorization:
                # Clients only send credentials they were challenged for: ask for the ones
                # to forward (their check is the upstream's, on the first real request).
                raise Unauthorized(None, "credentials for the upstream registry required")
            await respond(send, 200, [(b"content-type", b"application/json")], b"{}")
            return
        if route.endpoint == "token":
            if self.auth is None or request.method not in ("GET", "POST"):
                raise NotFound(clip(request.path, ECHO_MAX))
            status, body = await self.auth.token_endpoint(request)
            await respond_json(send, status, body)
            return
        handler = _HANDLERS.get((route.endpoint, request.method))
        if handler is None:
            raise Unsupported(f"{request.method} is not supported on {route.endpoint}")
        action = _BODY_ACTIONS.get((route.endpoint, request.method))
        if action is not None and self._gate is not None:
            self._gate.precheck(route.name, action)
        # The registry routes this request by its ``ns``: the answer says so.
        send.namespace = context.namespace
        await handler(Call(self.registry, self.options, request, send, route.name, route.arg))


_BODIES = frozenset({"POST", "PUT", "PATCH"})


def _address(scope: Scope) -> str:
    return scope["client"][0] if scope.get("client") else ""


_MOUNTED = Route("mount")


class _CountedReceive:
    """The request's receive, counting the body bytes it hands over."""

    __slots__ = ("bytes", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.bytes = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        self.bytes += len(message.get("body", b""))
        return message


class _Exchange:
    """The response side of one request: adds the API version header, counts what was sent.
    When the request was routed by its ``ns``: adds ``OCI-Namespace`` and keeps ``ns`` on the
    API locations it hands out (upload sessions), so the client's next request goes there too."""

    __slots__ = ("bytes", "namespace", "send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.namespace: str | None = None  # the ``ns`` host, once the request is routed by it
        self.status = 0
        self.bytes = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"].append(_API_VERSION)
            if self.namespace is not None:
                message["headers"] = _namespaced(message["headers"], self.namespace)
            self.status = message["status"]
        elif message["type"] == "http.response.zerocopy":
            self.bytes += message["count"]
        else:
            self.bytes += len(message.get("body", b""))
        await self.send(message)

    async def fail(self, error: OCIError, headers: Headers | None = None) -> None:
        if self.status:
            raise error  # the response already started: only dropping the connection is left
        await send_error(self, error, headers)


def _namespaced(headers: Headers, host: str) -> Headers:
    ns = quote(host, safe=":").encode()
    out: Headers = []
    for name, value in headers:
        if name == b"location" and value.startswith(b"/v2/"):
            value += b"%sns=%s" % (b"&" if b"?" in value else b"?", ns)
        out.append((name, value))
    out.append((b"oci-namespace", host.encode()))
    return out


def _access_log(
    request: Request,
    request_id: str,
    repo: str,
    identity: Identity,
    sent: _Exchange,
    seconds: float,
) -> None:
    line = {
        "ts": round(time.time(), 3),
        "id": request_id,
        "method": request.method,
        "path": clip(request.path, LOG_MAX),
        "query": logged_query(request.scope.get("query_string", b"")),
        "repo": repo,
        "identity": identity.label(),
        "status": sent.status,
        "bytes": sent.bytes,
        "ms": round(seconds * 1000, 3),
    }
    log.info(json.dumps(line, separators=(",", ":")))
