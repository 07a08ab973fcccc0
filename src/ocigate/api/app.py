"""The ASGI application: routing, authentication hook, error translation and request logs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import Token
from typing import Any
from urllib.parse import quote

import anyio

from ..auth.identity import ANONYMOUS, Identity, current_identity
from ..config import Settings
from ..oci.errors import HeadersTooLarge, NotFound, OCIError, Unauthorized, Unsupported
from ..oci.names import check_name
from ..registry import Registry
from ..tracing import (
    NamespaceRequest,
    client_authorization,
    current_request_id,
    new_request_id,
    requested_namespace,
)
from . import blobs, listings, manifests, uploads
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
from .routes import Route, match

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
_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


class App:
    """The registry's ASGI application around one :class:`Registry`."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        auth: Authenticator | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.auth = auth
        # Clients' credentials are kept for the upstream only when one is set to forward them,
        # and never ocigate's own bearer tokens.
        self._forward_credentials = any(u.forward_credentials for u in settings.upstreams)
        self._background = background
        self._tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loop = asyncio.get_running_loop()
                self._tasks = [loop.create_task(job()) for job in self._background]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                await self.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        # One id per request, in the access log and in the events the request causes.
        request_id = current_request_id.set(new_request_id())
        request = Request(scope, receive)
        ns = request.param("ns")
        namespace = NamespaceRequest(ns) if ns else None
        namespaced = requested_namespace.set(namespace) if namespace is not None else None
        exchange = _Exchange(send, namespace)
        route: Route | None = None
        identity = ANONYMOUS
        bound: Token[Identity] | None = None
        forwarded = self._client_credentials(request) if self._forward_credentials else None
        credentials = client_authorization.set(forwarded) if forwarded is not None else None
        try:
            route = self._route(request)
            if self.auth is not None:
                identity = await self.auth.identify(request)
                bound = current_identity.set(identity)
            await self._dispatch(request, route, identity, exchange)
        except OCIError as error:
            await self._refuse(request, route, identity, exchange, error)
        except ClientDisconnected:
            exchange.status = exchange.status or 499
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            await exchange.fail(OCIError("internal error"))
        finally:
            # Logged even when the connection had to be dropped mid-response.
            if log.isEnabledFor(logging.INFO):
                repo = route.name if route else ""
                _access_log(request, repo, identity, exchange, time.perf_counter() - started)
            if bound is not None:
                current_identity.reset(bound)
            if namespaced is not None:
                requested_namespace.reset(namespaced)
            if credentials is not None:
                client_authorization.reset(credentials)
            current_request_id.reset(request_id)

    def _client_credentials(self, request: Request) -> str | None:
        value = request.headers.get("authorization")
        if value is None or (self.auth is not None and value[:7].lower() == "bearer "):
            return None  # with ocigate's own auth on, a bearer token is ocigate's
        return value

    def _route(self, request: Request) -> Route:
        headers = request.scope["headers"]
        settings = self.settings
        # Counted as received (name, ": ", value, CRLF), as the built-in server does.
        if sum(len(k) + len(v) + 4 for k, v in headers) > settings.max_header_size:
            raise HeadersTooLarge(f"limit is {settings.max_header_size} bytes")
        if len(headers) > settings.max_header_count:
            raise HeadersTooLarge(f"limit is {settings.max_header_count} headers")
        route = match(request.path)
        if route is None:
            raise NotFound(clip(request.path, ECHO_MAX))
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
            error = self.auth.refuse(error, identity)
            if error.status == 401:
                headers = self.auth.challenge(request, route.name if route else "")
        elif error.status == 401:  # an upstream wants the client's credentials
            headers = [(b"www-authenticate", b'Basic realm="ocigate"')]
        await exchange.fail(error, headers)

    async def _dispatch(
        self, request: Request, route: Route, identity: Identity, send: Send
    ) -> None:
        if route.endpoint == "base":
            # Clients decide from this answer whether to log in at all (distribution does the
            # same), so anonymous callers are challenged; anonymous tokens still allow pulls.
            if self.auth is not None and identity.anonymous:
                raise Unauthorized(None, "authentication required")
            if self.auth is None and self._forward_credentials and not client_authorization.get():
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
        if route.name:
            check_name(route.name)
        await handler(Call(self.registry, self.settings, request, send, route.name, route.arg))


class _Exchange:
    """The response side of one request: adds the API version header, counts what was sent.
    When the request's ``ns`` was resolved: adds ``OCI-Namespace`` and keeps ``ns`` on the
    API locations it hands out (upload sessions), so the client's next request goes there too."""

    __slots__ = ("bytes", "namespace", "send", "status")

    def __init__(self, send: Send, namespace: NamespaceRequest | None = None) -> None:
        self.send = send
        self.namespace = namespace
        self.status = 0
        self.bytes = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"].append(_API_VERSION)
            if self.namespace is not None and self.namespace.resolved:
                message["headers"] = _namespaced(message["headers"], self.namespace.host)
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
    request: Request, repo: str, identity: Identity, sent: _Exchange, seconds: float
) -> None:
    line = {
        "ts": round(time.time(), 3),
        "id": current_request_id.get(),
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


def create_app(settings: Settings) -> App:
    """The application on the store the settings select: the gateway to the configured
    upstreams, else the embedded store."""
    from ..auth.setup import effective_policy

    policy = effective_policy(settings)
    auth = (
        Authenticator(settings.auth, policy, settings.data_dir)
        if settings.auth and policy
        else None
    )
    if settings.upstreams:
        from ..layers.stack import build as build_layers
        from ..store.gateway import build_gateway

        gateway_jobs: list[Callable[[], Coroutine[Any, Any, None]]] = []
        registry = build_layers(settings, build_gateway(settings), policy, gateway_jobs)
        return App(settings, registry, gateway_jobs, auth=auth)
    from ..store.embedded import EmbeddedStore

    store = EmbeddedStore(
        settings.data_dir,
        sparse_index=settings.sparse_index,
        auto_mount=settings.auto_mount,
        upload_expiry=settings.upload_expiry,
    )

    async def expire_uploads_forever() -> None:
        while True:
            await anyio.sleep(min(3600, settings.upload_expiry / 4))
            try:
                await store.expire_uploads()
            except Exception:
                log.exception("upload expiry failed")

    async def collect_garbage_forever() -> None:
        while True:
            await anyio.sleep(settings.gc_interval)
            try:
                report = await store.collect_garbage_if_due(settings.gc_interval)
            except Exception:
                log.exception("garbage collection failed")
                continue
            if report is not None:
                log.info(json.dumps({"gc": dataclasses.asdict(report)}))

    from ..layers.stack import build

    jobs: list[Callable[[], Coroutine[Any, Any, None]]] = [expire_uploads_forever]
    if settings.gc_interval:
        jobs.append(collect_garbage_forever)
    return App(settings, build(settings, store, policy, jobs), jobs, auth)


def app_from_environment() -> App:
    """Factory for worker processes: settings arrive serialised in the environment."""
    settings = Settings.model_validate_json(os.environ["OCIGATE_RESOLVED_SETTINGS"])
    configure_logging(settings.log_level)
    return create_app(settings)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("ocigate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
