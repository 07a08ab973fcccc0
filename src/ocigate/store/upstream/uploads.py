"""Blob uploads through an upstream: start, status, chunks, commit, cancel, mount.

Upload ids are signed upstream session locations (see ``upload_tokens``), so the gateway keeps
no upload state. A chunk that does not continue the upload gets 416: the upstream's offset is
checked first (distribution would accept it and corrupt the blob).

Mount: when the upstream answers a mount with 202 and a fresh session, that session is cancelled
and BlobUnknown raised, so the HTTP layer opens an ordinary upload of its own (one extra round
trip, but mount keeps the protocol's meaning: a size or BlobUnknown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ...client import Response
from ...oci.digest import Digest
from ...oci.errors import (
    BadGateway,
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    NameUnknown,
    RangeInvalid,
    SizeInvalid,
)
from ...oci.numbers import parse_decimal
from ...registry import UploadChunk, UploadState
from .blobs import UpstreamBlobs
from .core import UpstreamCore, scope
from .upload_tokens import UploadSigner, UploadToken


def _upload_offset(response: Response, fallback: int) -> int:
    """Bytes received from a ``Range: 0-<end>`` header. "0-0" means 0 or 1 byte (distribution
    reports both so), decided by what we know."""
    header = response.headers.get("range", "")
    _, _, end = header.partition("-")
    last = parse_decimal(end.strip())
    if last is None:
        return fallback
    return last + 1 if last > 0 else min(fallback, 1)


def _mount_scope(repo: str, source: str | None) -> str:
    pushing = scope(repo, push=True)
    return f"{pushing} repository:{source}:pull" if source and source != repo else pushing


class _Counted:
    """A request body that counts the bytes it passes on and, when the request declares its
    ``length``, holds exactly that many: else SizeInvalid, raised before the upstream has the
    whole declared body (the piece completing it waits for the source to end), so the upstream
    never takes a wrong chunk for a complete one, and no byte beyond the declared length is
    written on the connection (the upstream would read it as the next request)."""

    def __init__(self, chunk: UploadChunk) -> None:
        self._chunks = chunk.chunks
        self._length = chunk.length
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        completing = b""
        async for piece in self._chunks:
            received += len(piece)
            if self._length is not None and received >= self._length:
                if received > self._length:
                    raise SizeInvalid({"length": self._length}, "body longer than Content-Length")
                completing += piece
                continue
            self.sent += len(piece)
            yield piece
        if self._length is not None and received < self._length:
            raise SizeInvalid({"length": self._length}, "body shorter than Content-Length")
        if completing:
            self.sent += len(completing)
            yield completing


class UpstreamUploads:
    """The upload endpoints of one upstream, with upload ids signed by ``signer``."""

    def __init__(self, core: UpstreamCore, signer: UploadSigner, blobs: UpstreamBlobs) -> None:
        self._core = core
        self._signer = signer
        self._blobs = blobs

    def _state(self, repo: str, response: Response, known: int) -> UploadState:
        location = response.headers.get("location")
        if not location:
            raise BadGateway(
                {"upstream": self._core.name}, "upstream upload answer without Location"
            )
        origins = self._core.client.origins
        if not origins.same_origin(self._core.client.url(location)):
            # The client's blob bytes would go to a host nobody configured: refused.
            raise origins.foreign(location, "upload Location")
        offset = _upload_offset(response, known)
        return UploadState(self._signer.sign(repo, UploadToken(location, offset)), offset)

    async def start(self, repo: str) -> UploadState:
        response = await self._core.call(
            "POST", f"/v2/{repo}/blobs/uploads/", repo, ok=(202,), missing=NameUnknown, push=True
        )
        return self._state(repo, response, 0)

    async def _offset(self, repo: str, token: UploadToken) -> int:
        response = await self._core.call(
            "GET", token.location, repo, ok=(204, 200), missing=BlobUploadUnknown, push=True
        )
        return _upload_offset(response, token.offset)

    async def status(self, repo: str, upload_id: str) -> UploadState:
        token = self._signer.open(repo, upload_id)
        offset = await self._offset(repo, token)
        fresh = UploadToken(token.location, offset)
        return UploadState(self._signer.sign(repo, fresh), offset)

    async def _check_offset(self, repo: str, token: UploadToken, offset: int | None) -> int:
        """The upstream's offset; RangeInvalid when the chunk at ``offset`` does not continue it
        (distribution would accept it and corrupt the blob)."""
        if offset is None:
            return token.offset
        current = await self._offset(repo, token)
        if offset != current:
            raise RangeInvalid({"offset": current}, f"chunk at {offset}, upload is at {current}")
        return current

    async def write(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        token = self._signer.open(repo, upload_id)
        current = await self._check_offset(repo, token, chunk.offset)
        body = _Counted(chunk)
        length = chunk.length
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        if length:
            headers["Content-Range"] = f"{current}-{current + length - 1}"
        client = self._core.client
        response = await client.request(
            "PATCH", token.location, scope=scope(repo, True), headers=headers, content=body
        )
        if response.status_code != 202:
            raise await self._core.fail(response, BlobUploadUnknown)
        await client.read(response)
        return self._state(repo, response, current + body.sent)

    async def commit(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        token = self._signer.open(repo, upload_id)
        offset, length = (chunk.offset, chunk.length) if chunk is not None else (None, None)
        current = await self._check_offset(repo, token, offset)
        headers = {"Content-Type": "application/octet-stream"}
        if chunk is not None and length == 0:
            # Sent as b"" (a request that can be sent again on a fresh connection, which a
            # stream cannot), once it is sure there is nothing to send.
            async for _ in _Counted(chunk):
                pass
            chunk = None
        body = _Counted(chunk) if chunk is not None else None
        if length is not None:
            headers["Content-Length"] = str(length)
        client = self._core.client
        response = await client.request(
            "PUT",
            token.location,
            scope=scope(repo, True),
            headers=headers,
            params={"digest": str(digest)},
            content=body if body is not None else b"",
        )
        if response.status_code not in (201, 204):
            raise await self._core.fail(response, BlobUploadUnknown, DigestInvalid)
        await client.read(response)
        return current + (body.sent if body is not None else 0)

    async def cancel(self, repo: str, upload_id: str) -> None:
        token = self._signer.open(repo, upload_id)
        await self._core.delete(token.location, repo, BlobUploadUnknown, BlobUploadInvalid)

    async def mount(self, repo: str, source: str | None, digest: Digest) -> int:
        params = {"mount": str(digest)}
        if source is not None:
            params["from"] = source
        client = self._core.client
        response = await client.request(
            "POST", f"/v2/{repo}/blobs/uploads/", scope=_mount_scope(repo, source), params=params
        )
        if response.status_code == 202:
            # The upstream could not mount and opened a session instead: drop it (see module doc).
            location = response.headers.get("location")
            await response.aclose()
            if location and client.origins.same_origin(client.url(location)):
                cancel = await client.request("DELETE", location, scope=scope(repo, True))
                await cancel.aclose()
            raise BlobUnknown({"digest": str(digest)}, "blob could not be mounted")
        if response.status_code != 201:
            raise await self._core.fail(response, BlobUnknown)
        await response.aclose()
        return await self._blobs.stat(repo, digest)
