"""Blob reads from an upstream: stat, get (relayed as a verified stream), delete.

Redirects: blob GETs follow the upstream's redirects (without its credentials), unless
``pass_redirects`` is set: then a 3xx with a Location (e.g. a presigned object-store URL) is
handed to the client as it is, and the bytes never pass through the gateway.
"""

from __future__ import annotations

import asyncio
import re
from typing import cast
from urllib.parse import urljoin

from ...client import Response
from ...oci.digest import Digest, new_hasher
from ...oci.errors import BadGateway, BlobUnknown, RangeNotSatisfiable
from ...oci.numbers import parse_decimal
from ...registry import BlobBody, ByteRange, Detached, Redirect, Stream
from .core import UpstreamCore, scope

_RANGE = re.compile(r"^(?:bytes\s+)?(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED = re.compile(r"^bytes\s+\*/(\d+)$")
_REDIRECTS = (301, 302, 303, 307, 308)
# Relayed pieces from this size are hashed in a thread (hashlib lets go of the GIL), so the
# event loop keeps serving other requests meanwhile.
HASH_OFF_LOOP = 256 * 1024


class ResponseStream:
    """A response body as an async iterator whose ``aclose`` always releases the connection,
    also when iteration never began. Skips and trims to serve a range the upstream ignored.

    With ``verify`` (a whole blob) the bytes are hashed as they pass and the last piece is
    handed on only once they match: a lying upstream gets the client a cut connection, never
    a complete wrong blob."""

    def __init__(
        self,
        response: Response,
        skip: int,
        length: int,
        read_timeout: float,
        verify: Digest | None = None,
    ) -> None:
        self._response = response
        self._read_timeout = read_timeout
        self._raw = response.aiter_raw()
        self._skip = skip
        self._left = length
        self._verify = verify
        self._hasher = new_hasher(verify.algorithm) if verify is not None else None

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        while self._left > 0:
            try:
                piece = await self._raw.__anext__()
            except StopAsyncIteration:
                await self.aclose()
                # Fail loudly: ending quietly would send a body shorter than its Content-Length.
                raise BadGateway({}, f"upstream blob ended {self._left} bytes early") from None
            if self._skip:
                dropped = min(self._skip, len(piece))
                piece, self._skip = piece[dropped:], self._skip - dropped
            piece = piece[: self._left]
            if piece:
                self._left -= len(piece)
                if self._hasher is not None:
                    await self._check(piece)
                return piece
        await self.aclose()
        raise StopAsyncIteration

    async def _check(self, piece: bytes) -> None:
        hasher = self._hasher
        assert hasher is not None and self._verify is not None
        if len(piece) >= HASH_OFF_LOOP:
            await asyncio.get_running_loop().run_in_executor(None, hasher.update, piece)
        else:
            hasher.update(piece)
        if self._left == 0 and hasher.hexdigest() != self._verify.encoded:
            await self.aclose()
            raise BadGateway(
                {"digest": str(self._verify)},
                f"upstream blob bytes do not match {self._verify}: relay cut",
            )

    async def aclose(self) -> None:
        await self._response.aclose()

    def detach(self) -> Detached | None:
        """The body as the bytes received so far and the socket to copy the rest from, when it
        is exactly what the client gets and nothing has been read yet."""
        if self._skip or self._hasher is not None or self._left != self._response.remaining:
            return None
        detached = self._response.detach()
        if detached is None:
            return None
        self._left = 0
        return Detached(*detached, self._read_timeout)


def _body_bounds(
    response: Response, byte_range: ByteRange | None, known: int | None
) -> tuple[int, int, int]:
    """``(start, length, size)`` of what the response carries (or what we cut from it);
    ``known`` is the blob's size when the response does not say."""
    if response.status_code == 206:
        found = _RANGE.match(response.headers.get("content-range", "").strip())
        numbers = [parse_decimal(group) for group in found.groups()] if found else [None]
        if None in numbers:
            raise BadGateway({}, "upstream 206 without a usable Content-Range")
        start, end, total = cast(list[int], numbers)
        return start, end - start + 1, total
    told = parse_decimal(response.headers.get("content-length", ""))
    size = told if told is not None else known
    if size is None:
        raise BadGateway({}, "upstream blob response without Content-Length")
    if byte_range is None:
        return 0, size, size
    # The upstream ignored Range: cut the range out of the whole body ourselves.
    start, end = byte_range.resolve(size)
    return start, end - start + 1, size


class UpstreamBlobs:
    """The blob endpoints of one upstream."""

    def __init__(self, core: UpstreamCore, pass_redirects: bool) -> None:
        self._core = core
        self._pass_redirects = pass_redirects

    async def stat(self, repo: str, digest: Digest) -> int:
        return await self._core.collapsed(self._stat, repo, digest)

    async def _stat(self, repo: str, digest: Digest) -> int:
        response = await self._core.call(
            "HEAD", f"/v2/{repo}/blobs/{digest}", repo, ok=(200,), missing=BlobUnknown
        )
        length = parse_decimal(response.headers.get("content-length", ""))
        if length is None:
            raise BadGateway(
                {"upstream": self._core.name}, "upstream blob HEAD without Content-Length"
            )
        return length

    async def get(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        headers = {}
        if byte_range is not None:
            first = "" if byte_range.first is None else str(byte_range.first)
            last = "" if byte_range.last is None else str(byte_range.last)
            headers["Range"] = f"bytes={first}-{last}"
        client = self._core.client
        response = await client.request(
            "GET",
            f"/v2/{repo}/blobs/{digest}",
            scope=scope(repo),
            headers=headers,
            follow_redirects=not self._pass_redirects,
        )
        status = response.status_code
        location = response.headers.get("location")
        if self._pass_redirects and status in _REDIRECTS and location:
            target = urljoin(response.url, location)
            await response.aclose()
            return Redirect(status, target)
        if status == 416:
            found = _UNSATISFIED.match(response.headers.get("content-range", ""))
            await response.aclose()
            told = parse_decimal(found.group(1)) if found else None
            size = told if told is not None else await self.stat(repo, digest)
            raise RangeNotSatisfiable({"size": size}, f"unsatisfiable range for size {size}")
        if status not in (200, 206):
            raise await self._core.fail(response, BlobUnknown)
        try:
            known = None
            if status == 200 and parse_decimal(response.headers.get("content-length", "")) is None:
                # Streamed without a length (chunked, e.g. through a proxy): HEAD tells it.
                known = await self.stat(repo, digest)
            start, length, size = _body_bounds(response, byte_range, known)
        except BaseException:
            await response.aclose()
            raise
        skip = start if status == 200 else 0
        # A whole blob is verified while relayed; a range cannot be, and is relayed as is.
        whole = status == 200 and start == 0 and length == size
        stream = ResponseStream(
            response, skip, length, client.options.read_timeout, digest if whole else None
        )
        return Stream(digest, size, start, length, stream, stream.detach)

    async def delete(self, repo: str, digest: Digest) -> None:
        await self._core.delete(f"/v2/{repo}/blobs/{digest}", repo, BlobUnknown)
