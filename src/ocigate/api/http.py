"""The small slice of ASGI HTTP the routes need: a request view and response senders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ..bodies import join_capped
from ..oci.errors import BlobUploadInvalid, PayloadTooLarge, SizeInvalid
from ..oci.numbers import parse_decimal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class ClientDisconnected(Exception):
    """The client went away while we were reading its request body."""


class Request:
    __slots__ = ("_headers", "_query", "method", "path", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self._headers: dict[str, str] | None = None
        self._query: dict[str, list[str]] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            # Repeated headers are joined as RFC 9110 allows for list-valued fields.
            merged: dict[str, str] = {}
            for raw_name, raw_value in self.scope["headers"]:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                merged[name] = f"{merged[name]}, {value}" if name in merged else value
            self._headers = merged
        return self._headers

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = parse_qs(raw, keep_blank_values=True) if raw else {}
        return self._query

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def content_length(self) -> int | None:
        raw = self.headers.get("content-length")
        if raw is None:
            return None
        length = parse_decimal(raw.strip(" \t"))
        if length is None:
            raise SizeInvalid(f"invalid Content-Length {raw[:50]!r}")
        return length

    async def chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives, never buffered whole."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            body: bytes = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return

    async def read(self, limit: int) -> bytes:
        """The whole body, refusing more than ``limit`` bytes with 413."""
        declared = self.content_length()
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
        body = await join_capped(self.chunks(), limit)
        if body is None:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        if declared is not None and len(body) != declared:
            raise BlobUploadInvalid(f"received {len(body)} bytes, Content-Length said {declared}")
        return body


async def respond(
    send: Send, status: int, headers: Headers | None = None, body: bytes = b""
) -> None:
    out = headers or []
    if status != 204:  # RFC 9110: no Content-Length on 204
        out.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send,
    status: int,
    document: object,
    headers: Headers | None = None,
    content_type: bytes = b"application/json",
) -> None:
    out = headers or []
    out.append((b"content-type", content_type))
    await respond(send, status, out, json.dumps(document, separators=(",", ":")).encode())
