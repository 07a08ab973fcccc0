"""Blob endpoints: GET/HEAD/DELETE ``/v2/<name>/blobs/<digest>``."""

from __future__ import annotations

import os
from typing import assert_never

from ..oci.digest import Digest
from ..oci.errors import RangeNotSatisfiable
from ..registry import ByteRange, FileRange, Redirect, Stream
from .context import Call
from .errors import send_error
from .http import Headers, Send, respond
from .ranges import parse_range

READ_SIZE = 1024 * 1024
# From this size a file is handed to a server offering ASGI's zero-copy extension: below it,
# reading the bytes and writing them with the head in one call is cheaper than sendfile.
ZEROCOPY_MIN = 128 * 1024


def _blob_headers(digest: Digest, length: int) -> Headers:
    return [
        (b"content-type", b"application/octet-stream"),
        (b"docker-content-digest", str(digest).encode()),
        (b"etag", b'"%s"' % str(digest).encode()),
        (b"accept-ranges", b"bytes"),
        (b"content-length", b"%d" % length),
    ]


async def head_blob(call: Call) -> None:
    digest = Digest.parse(call.arg)
    size = await call.registry.stat_blob(call.repo, digest)
    await call.send(
        {"type": "http.response.start", "status": 200, "headers": _blob_headers(digest, size)}
    )
    await call.send({"type": "http.response.body", "body": b""})


async def get_blob(call: Call) -> None:
    digest = Digest.parse(call.arg)
    range_header = call.request.headers.get("range")
    try:
        byte_range = parse_range(range_header) if range_header else None
        body = await call.registry.get_blob(call.repo, digest, byte_range)
    except RangeNotSatisfiable as exc:
        size = exc.detail["size"] if isinstance(exc.detail, dict) else None
        if size is None:
            size = await call.registry.stat_blob(call.repo, digest)
        await send_error(call.send, exc, [(b"content-range", b"bytes */%d" % size)])
        return
    try:
        match body:
            case Redirect(status, location):
                await respond(call.send, status, [(b"location", location.encode())])
            case FileRange():
                await _send_file(call.send, body, await _start(call, body, byte_range))
            case Stream():
                await _send_stream(call.send, body, await _start(call, body, byte_range))
            case _:
                assert_never(body)
    finally:
        await body.close()


async def _start(call: Call, body: FileRange | Stream, byte_range: ByteRange | None) -> bool:
    """Send the response head for the bytes; whether the server takes zero-copy bodies."""
    headers = _blob_headers(body.digest, body.length)
    status = 200
    if byte_range is not None:
        status = 206
        end = body.start + body.length - 1
        headers.append((b"content-range", b"bytes %d-%d/%d" % (body.start, end, body.size)))
    await call.send({"type": "http.response.start", "status": status, "headers": headers})
    return "http.response.zerocopy" in (call.request.scope.get("extensions") or {})


async def _send_file(send: Send, body: FileRange, zerocopy: bool) -> None:
    if zerocopy and body.length >= ZEROCOPY_MIN:
        await send(
            {
                "type": "http.response.zerocopy",
                "file": body.fd,
                "offset": body.start,
                "count": body.length,
            }
        )
        return
    # Page-cache reads of 1 MiB are cheap enough to do on the loop, and beat a thread hop.
    position, remaining = body.start, body.length
    while remaining > 0:
        data = os.pread(body.fd, min(READ_SIZE, remaining), position)
        if not data:
            raise OSError(f"blob {body.digest} is shorter than recorded")
        position += len(data)
        remaining -= len(data)
        await send({"type": "http.response.body", "body": data, "more_body": remaining > 0})
    if body.length == 0:
        await send({"type": "http.response.body", "body": b""})


async def _send_stream(send: Send, body: Stream, zerocopy: bool) -> None:
    detached = body.detach() if zerocopy and body.length >= ZEROCOPY_MIN and body.detach else None
    if detached is not None:  # a socket: the kernel splices what has not arrived yet
        received = detached.received
        if received:
            await send({"type": "http.response.body", "body": received, "more_body": True})
        await send(
            {
                "type": "http.response.zerocopy",
                "file": detached.socket,
                "count": body.length - len(received),
                "read_timeout": detached.read_timeout,  # ours: ASGI's extension has none
            }
        )
        return
    async for data in body.chunks:
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def delete_blob(call: Call) -> None:
    await call.registry.delete_blob(call.repo, Digest.parse(call.arg))
    await respond(call.send, 202)
