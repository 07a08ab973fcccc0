"""The upstream store: a :class:`Registry` that forwards every operation to another OCI registry.

Bytes are streamed both ways (blobs and upload chunks never sit whole in memory); manifests are
forwarded byte-exact. Upload ids are signed upstream session locations (see ``upload_tokens``),
so the gateway keeps no upload state. What the upstream lacks is supplied here:

- the referrers API, emulated through the referrers tag schema (``sha256-<hex>`` index tags)
  when the upstream has no ``/referrers/`` endpoint (detected once);
- 416 for chunks that do not continue the upload (the upstream's offset is checked first);
- sorted tags with ``n``/``last`` paging (the upstream's whole list is fetched and paged here),
  and an empty list, not NAME_UNKNOWN, for a repository the catalog shows but with no tags;
- tag deletion where the upstream only deletes by digest (see ``_untag``);
- 404 MANIFEST_UNKNOWN, not distribution's 500, for a blob's digest on the manifests endpoint;
- several tags at once: ``tag`` parameters are sent, and tags the upstream did not confirm
  with ``OCI-Tag`` are pushed one PUT per tag, which every registry understands.

Errors: 4xx OCI bodies keep their code; 401/403 become DENIED naming the upstream; 429 stays
TOOMANYREQUESTS; refused/reset connections and 5xx become 502, timeouts 504, 503 stays 503, all
with code UNAVAILABLE (the spec lists no server-side code; distribution uses UNAVAILABLE).

Mount: when the upstream answers a mount with 202 and a fresh session, that session is cancelled
and BlobUnknown raised, so the HTTP layer opens an ordinary upload of its own (one extra round
trip, but mount keeps the protocol's meaning: a size or BlobUnknown).

Redirects: blob GETs follow the upstream's redirects (without its credentials), unless
``pass_redirects`` is set: then a 3xx with a Location (e.g. a presigned object-store URL) is
handed to the client as it is, and the bytes never pass through the gateway.

Emulated referrers indexes are read-modify-written under a lock per (upstream, repository,
subject): an asyncio lock within the process, then, when a lock directory is given, an
``flock`` on a file there (taken in a thread) across the worker processes sharing it. Replicas
with separate data directories are not serialised against each other.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urljoin

import anyio

from ..client import ClientOptions, RegistryClient, Response
from ..oci.descriptors import Descriptor, parse_descriptor
from ..oci.digest import Digest, is_digest, new_hasher
from ..oci.errors import (
    BadGateway,
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    OCIError,
    PaginationInvalid,
    RangeInvalid,
    RangeNotSatisfiable,
    SizeInvalid,
    Unsupported,
)
from ..oci.manifests import Manifest
from ..oci.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from ..oci.names import referrers_tag
from ..oci.numbers import parse_decimal
from ..registry import (
    BlobBody,
    ByteRange,
    Chunks,
    Detached,
    ManifestInfo,
    Page,
    StoredManifest,
    UploadState,
)
from ..tracing import client_authorization
from .collapse import Collapser
from .upload_tokens import UploadSigner, UploadToken
from .upstream_errors import upstream_error

MANIFEST_ACCEPT = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, "*/*;q=0.1"]
)
CATALOG_PAGE = 100  # distribution refuses n above its own maximum; ask for small pages
# Pages of one upstream listing followed for one request (each at most MAX_BODY bytes): an
# upstream whose Link never ends must not make one client request cost it thousands.
MAX_LIST_PAGES = 100
_LINK = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")
_RANGE = re.compile(r"^(?:bytes\s+)?(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED = re.compile(r"^bytes\s+\*/(\d+)$")
_REDIRECTS = (301, 302, 303, 307, 308)
# Relayed pieces from this size are hashed in a thread (hashlib lets go of the GIL), so the
# event loop keeps serving other requests meanwhile.
HASH_OFF_LOOP = 256 * 1024
# Failures ``upstream_error`` tells from the status alone (500 is not one: distribution answers
# it for a blob's digest on the manifests endpoint). After a HEAD, asking again with a GET would
# only double the requests, and the retries, sent to an upstream that refuses, limits or fails.
_TOLD_BY_STATUS = frozenset({401, 403, 429, 502, 503, 504})
T = TypeVar("T")
R = TypeVar("R", str, Digest)


def _next_link(response: Response) -> str | None:
    found = _LINK.search(response.headers.get("link", ""))
    return urljoin(response.url, found.group(1)) if found else None


def _upload_offset(response: Response, fallback: int) -> int:
    """Bytes received from a ``Range: 0-<end>`` header. "0-0" means 0 or 1 byte (distribution
    reports both so), decided by what we know."""
    header = response.headers.get("range", "")
    _, _, end = header.partition("-")
    last = parse_decimal(end.strip())
    if last is None:
        return fallback
    return last + 1 if last > 0 else min(fallback, 1)


class _Counted:
    """A request body that counts the bytes it passes on and, when the request declares its
    ``length``, holds exactly that many: else SizeInvalid, raised before the upstream has the
    whole declared body (the piece completing it waits for the source to end), so the upstream
    never takes a wrong chunk for a complete one, and no byte beyond the declared length is
    written on the connection (the upstream would read it as the next request)."""

    def __init__(self, chunks: Chunks, length: int | None = None) -> None:
        self._chunks = chunks
        self._length = length
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


class _ResponseStream:
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

    def __aiter__(self) -> _ResponseStream:
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


class UpstreamStore:
    """Forwards the :class:`Registry` protocol to one upstream registry."""

    def __init__(
        self,
        options: ClientOptions,
        signing_key: bytes,
        max_manifest_size: int = 4 * 1024 * 1024,
        *,
        pass_redirects: bool = False,
        lock_dir: Path | None = None,
    ) -> None:
        self.client = RegistryClient(options)
        self.name = self.client.base
        self._signer = UploadSigner(signing_key, self.name)
        self._max_manifest = max_manifest_size
        self._pass_redirects = pass_redirects
        self._native_referrers: bool | None = None
        self._referrer_locks: dict[str, asyncio.Lock] = {}
        self._lock_dir = lock_dir
        self._collapser = Collapser()

    # --- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _scope(repo: str, push: bool = False) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    async def _fail(
        self,
        response: Response,
        missing: type[OCIError],
        invalid: type[OCIError] = BlobUploadInvalid,
    ) -> OCIError:
        forwarding = self.client.options.forward_credentials
        return await upstream_error(response, self.name, missing, invalid, forwarding)

    async def _call(
        self,
        method: str,
        url: str,
        repo: str,
        *,
        ok: tuple[int, ...],
        missing: type[OCIError],
        invalid: type[OCIError] = BlobUploadInvalid,
        push: bool = False,
        **kwargs: Any,
    ) -> Response:
        """A request whose response is read whole (small) and checked against ``ok``."""
        response = await self.client.request(method, url, scope=self._scope(repo, push), **kwargs)
        if response.status_code not in ok:
            raise await self._fail(response, missing, invalid)
        await self.client.read(response)
        return response

    async def _delete(
        self,
        url: str,
        repo: str,
        missing: type[OCIError],
        invalid: type[OCIError] = Unsupported,
    ) -> None:
        """A DELETE the upstream must accept (200, 202 or 204)."""
        await self._call(
            "DELETE", url, repo, ok=(200, 202, 204), missing=missing, invalid=invalid, push=True
        )

    # --- blobs -----------------------------------------------------------------------------

    def _collapsed(
        self, fetch: Callable[[str, R], Coroutine[Any, Any, T]], repo: str, reference: R
    ) -> Coroutine[Any, Any, T]:
        """``fetch(repo, reference)`` shared with concurrent identical reads (see ``collapse``);
        the client's credentials are part of the question when they are what the upstream sees."""
        forwarded = client_authorization.get() if self.client.options.forward_credentials else None
        key = (fetch.__name__, repo, reference, forwarded)
        return self._collapser.run(key, lambda: fetch(repo, reference))

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        return await self._collapsed(self._stat_blob, repo, digest)

    async def _stat_blob(self, repo: str, digest: Digest) -> int:
        response = await self._call(
            "HEAD", f"/v2/{repo}/blobs/{digest}", repo, ok=(200,), missing=BlobUnknown
        )
        length = parse_decimal(response.headers.get("content-length", ""))
        if length is None:
            raise BadGateway({"upstream": self.name}, "upstream blob HEAD without Content-Length")
        return length

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        headers = {}
        if byte_range is not None:
            first = "" if byte_range.first is None else str(byte_range.first)
            last = "" if byte_range.last is None else str(byte_range.last)
            headers["Range"] = f"bytes={first}-{last}"
        response = await self.client.request(
            "GET",
            f"/v2/{repo}/blobs/{digest}",
            scope=self._scope(repo),
            headers=headers,
            follow_redirects=not self._pass_redirects,
        )
        status = response.status_code
        location = response.headers.get("location")
        if self._pass_redirects and status in _REDIRECTS and location:
            target = urljoin(response.url, location)
            await response.aclose()
            return BlobBody(digest=digest, size=0, start=0, length=0, redirect=(status, target))
        if status == 416:
            found = _UNSATISFIED.match(response.headers.get("content-range", ""))
            await response.aclose()
            told = parse_decimal(found.group(1)) if found else None
            size = told if told is not None else await self.stat_blob(repo, digest)
            raise RangeNotSatisfiable({"size": size}, f"unsatisfiable range for size {size}")
        if status not in (200, 206):
            raise await self._fail(response, BlobUnknown)
        try:
            known = None
            if status == 200 and parse_decimal(response.headers.get("content-length", "")) is None:
                # Streamed without a length (chunked, e.g. through a proxy): HEAD tells it.
                known = await self.stat_blob(repo, digest)
            start, length, size = self._body_bounds(response, byte_range, known)
        except BaseException:
            await response.aclose()
            raise
        skip = start if status == 200 else 0
        # A whole blob is verified while relayed; a range cannot be, and is relayed as is.
        whole = status == 200 and start == 0 and length == size
        stream = _ResponseStream(
            response, skip, length, self.client.options.read_timeout, digest if whole else None
        )
        return BlobBody(
            digest=digest,
            size=size,
            start=start,
            length=length,
            stream=stream,
            detach=stream.detach,
        )

    @staticmethod
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

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        await self._delete(f"/v2/{repo}/blobs/{digest}", repo, BlobUnknown)

    # --- uploads ---------------------------------------------------------------------------

    def _state(self, repo: str, response: Response, known: int) -> UploadState:
        location = response.headers.get("location")
        if not location:
            raise BadGateway({"upstream": self.name}, "upstream upload answer without Location")
        if not self.client.origins.same_origin(self.client.url(location)):
            # The client's blob bytes would go to a host nobody configured: refused.
            raise self.client.origins.foreign(location, "upload Location")
        offset = _upload_offset(response, known)
        return UploadState(self._signer.sign(repo, UploadToken(location, offset)), offset)

    async def start_upload(self, repo: str) -> UploadState:
        response = await self._call(
            "POST", f"/v2/{repo}/blobs/uploads/", repo, ok=(202,), missing=NameUnknown, push=True
        )
        return self._state(repo, response, 0)

    async def _status(self, repo: str, token: UploadToken) -> int:
        response = await self._call(
            "GET", token.location, repo, ok=(204, 200), missing=BlobUploadUnknown, push=True
        )
        return _upload_offset(response, token.offset)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        token = self._signer.open(repo, upload_id)
        offset = await self._status(repo, token)
        fresh = UploadToken(token.location, offset)
        return UploadState(self._signer.sign(repo, fresh), offset)

    async def _check_offset(self, repo: str, token: UploadToken, offset: int | None) -> int:
        """The upstream's offset; RangeInvalid when the chunk at ``offset`` does not continue it
        (distribution would accept it and corrupt the blob)."""
        if offset is None:
            return token.offset
        current = await self._status(repo, token)
        if offset != current:
            raise RangeInvalid({"offset": current}, f"chunk at {offset}, upload is at {current}")
        return current

    async def write_upload(
        self, repo: str, upload_id: str, chunks: Chunks, offset: int | None, length: int | None
    ) -> UploadState:
        token = self._signer.open(repo, upload_id)
        current = await self._check_offset(repo, token, offset)
        body = _Counted(chunks, length)
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        if length:
            headers["Content-Range"] = f"{current}-{current + length - 1}"
        response = await self.client.request(
            "PATCH", token.location, scope=self._scope(repo, True), headers=headers, content=body
        )
        if response.status_code != 202:
            raise await self._fail(response, BlobUploadUnknown)
        await self.client.read(response)
        return self._state(repo, response, current + body.sent)

    async def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: Chunks | None,
        offset: int | None,
        length: int | None,
    ) -> int:
        token = self._signer.open(repo, upload_id)
        current = await self._check_offset(repo, token, offset)
        headers = {"Content-Type": "application/octet-stream"}
        if chunks is not None and length == 0:
            # Sent as b"" (a request that can be sent again on a fresh connection, which a
            # stream cannot), once it is sure there is nothing to send.
            async for _ in _Counted(chunks, length):
                pass
            chunks = None
        body = _Counted(chunks, length) if chunks is not None else None
        if length is not None:
            headers["Content-Length"] = str(length)
        response = await self.client.request(
            "PUT",
            token.location,
            scope=self._scope(repo, True),
            headers=headers,
            params={"digest": str(digest)},
            content=body if body is not None else b"",
        )
        if response.status_code not in (201, 204):
            raise await self._fail(response, BlobUploadUnknown, DigestInvalid)
        await self.client.read(response)
        return current + (body.sent if body is not None else 0)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        token = self._signer.open(repo, upload_id)
        await self._delete(token.location, repo, BlobUploadUnknown, BlobUploadInvalid)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        params = {"mount": str(digest)}
        if source is not None:
            params["from"] = source
        response = await self.client.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            scope=self._mount_scope(repo, source),
            params=params,
        )
        if response.status_code == 202:
            # The upstream could not mount and opened a session instead: drop it (see module doc).
            location = response.headers.get("location")
            await response.aclose()
            if location and self.client.origins.same_origin(self.client.url(location)):
                cancel = await self.client.request(
                    "DELETE", location, scope=self._scope(repo, True)
                )
                await cancel.aclose()
            raise BlobUnknown({"digest": str(digest)}, "blob could not be mounted")
        if response.status_code != 201:
            raise await self._fail(response, BlobUnknown)
        await response.aclose()
        return await self.stat_blob(repo, digest)

    @staticmethod
    def _mount_scope(repo: str, source: str | None) -> str:
        scope = f"repository:{repo}:pull,push"
        return f"{scope} repository:{source}:pull" if source and source != repo else scope

    # --- manifests -------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        return await self._collapsed(self._get_manifest, repo, reference)

    async def _request_manifest(self, method: str, repo: str, reference: str) -> Response:
        return await self.client.request(
            method,
            f"/v2/{repo}/manifests/{reference}",
            scope=self._scope(repo),
            headers={"Accept": MANIFEST_ACCEPT},
        )

    async def _get_manifest(self, repo: str, reference: str) -> StoredManifest:
        response = await self._request_manifest("GET", repo, reference)
        if response.status_code == 500 and is_digest(reference):
            # distribution fails with 500 when the digest names a blob that is no manifest;
            # a blob that is there proves the upstream is up and the manifest is not.
            await response.aclose()
            try:
                await self.stat_blob(repo, Digest.parse(reference))
            except BlobUnknown:
                pass
            else:
                raise ManifestUnknown({"reference": reference}, "the digest names no manifest")
            raise BadGateway({"upstream": self.name}, f"upstream {self.name} failed with 500")
        if response.status_code != 200:
            raise await self._fail(response, ManifestUnknown, ManifestInvalid)
        media_type = response.headers.get("content-type", OCI_MANIFEST).split(";")[0].strip()
        data = await self.client.read(response, self._max_manifest)
        if is_digest(reference):
            expected = Digest.parse(reference)
            digest = Digest.of(data, expected.algorithm)
            if digest != expected:
                raise BadGateway(
                    {"upstream": self.name, "digest": reference},
                    f"upstream {self.name} returned a manifest not matching {reference}",
                )
        else:
            digest = Digest.of(data)
        return StoredManifest(digest, media_type, data)

    async def head_manifest(self, repo: str, reference: str) -> Response:
        """The upstream's answer to a manifest HEAD, whatever its status (no body to read)."""
        response = await self._request_manifest("HEAD", repo, reference)
        await response.aclose()
        return response

    async def stat_manifest(self, repo: str, reference: str) -> ManifestInfo:
        return await self._collapsed(self._stat_manifest, repo, reference)

    async def _stat_manifest(self, repo: str, reference: str) -> ManifestInfo:
        response = await self.head_manifest(repo, reference)
        if response.status_code in _TOLD_BY_STATUS:
            raise await self._fail(response, ManifestUnknown, ManifestInvalid)
        header = response.headers.get("docker-content-digest", "")
        length = parse_decimal(response.headers.get("content-length", ""))
        digest = Digest.parse(header) if is_digest(header) else None
        if (
            response.status_code != 200
            or digest is None
            or length is None
            or (is_digest(reference) and digest != Digest.parse(reference))
        ):
            # Other errors (told right only from a body) and answers missing what a HEAD
            # needs: the GET says what is what.
            return (await self.get_manifest(repo, reference)).info()
        media_type = response.headers.get("content-type", OCI_MANIFEST).split(";")[0].strip()
        return ManifestInfo(digest, media_type, length)

    async def _put_manifest_ref(
        self, repo: str, reference: str, media_type: str, data: bytes, tags: Sequence[str] = ()
    ) -> Response:
        return await self._call(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo,
            ok=(200, 201),
            missing=NameUnknown,
            invalid=ManifestInvalid,
            push=True,
            headers={"Content-Type": media_type},
            content=data,
            params={"tag": list(tags)} if tags else None,
        )

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[str]
    ) -> None:
        # Probe before pushing, so a failing probe leaves no half-done push behind.
        emulate = manifest.subject is not None and not await self._has_referrers_api(repo)
        if len(tags) == 1:
            await self._put_manifest_ref(repo, tags[0], manifest.media_type, data)
        else:
            # Several tags: one push by digest with ``tag`` parameters; an upstream without
            # them answers with fewer OCI-Tag headers, and the tags left are pushed one by one.
            response = await self._put_manifest_ref(
                repo, str(manifest.digest), manifest.media_type, data, tags
            )
            applied = {t.strip() for t in response.headers.get("oci-tag", "").split(",")}
            for tag in tags:
                if tag not in applied:
                    await self._put_manifest_ref(repo, tag, manifest.media_type, data)
        if emulate and manifest.subject is not None:
            await self._update_referrers(repo, manifest.subject.digest, manifest.as_referrer())

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        subject: Digest | None = None
        if not await self._has_referrers_api(repo):
            try:
                stored = await self.get_manifest(repo, str(digest))
            except ManifestUnknown:
                pass  # the DELETE below reports it
            else:
                subject = _subject_of(stored.data)
        await self._delete(f"/v2/{repo}/manifests/{digest}", repo, ManifestUnknown)
        if subject is not None:
            await self._update_referrers(repo, subject, None, removed=digest)

    async def delete_tag(self, repo: str, tag: str) -> None:
        target = await self.get_manifest(repo, tag)  # ManifestUnknown when there is no such tag
        response = await self.client.request(
            "DELETE", f"/v2/{repo}/manifests/{tag}", scope=self._scope(repo, True)
        )
        if response.status_code in (200, 202, 204):
            await response.aclose()
            return
        if response.status_code not in (400, 405):
            raise await self._fail(response, ManifestUnknown)
        await response.aclose()
        await self._untag(repo, tag, target)

    async def _untag(self, repo: str, tag: str, target: StoredManifest) -> None:
        """Tag deletion for registries that only delete by digest (distribution answers
        DIGEST_INVALID): delete the manifest, which drops all its tags, then push it back by
        digest and under its other tags. Not atomic: readers may briefly miss the manifest."""
        others: list[str] = []
        listed = await self._all_pages(repo, f"/v2/{repo}/tags/list", "tags", self._scope(repo))
        for other in sorted(str(t) for t in listed):
            if other == tag:
                continue
            head = await self.head_manifest(repo, other)
            if head.headers.get("docker-content-digest") == str(target.digest):
                others.append(other)
        await self._delete(f"/v2/{repo}/manifests/{target.digest}", repo, ManifestUnknown)
        for reference in [str(target.digest), *others]:
            await self._put_manifest_ref(repo, reference, target.media_type, target.data)

    # --- listings --------------------------------------------------------------------------

    async def _all_pages(self, repo: str, path: str, key: str, scope: str) -> list[Any]:
        """Every item of a paged list, following ``Link`` headers on the upstream's origin
        only (another origin's answer must not be merged in), for at most MAX_LIST_PAGES
        pages and never to a page already read."""
        items: list[Any] = []
        url: str | None = self.client.url(path)
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= MAX_LIST_PAGES:
                why = "loops" if url in seen else f"goes on beyond {MAX_LIST_PAGES} pages"
                raise BadGateway(
                    {"upstream": self.name, "pages": len(seen)},
                    f"upstream {self.name} {key} list {why}: refused",
                )
            if not self.client.origins.same_origin(url):
                raise self.client.origins.foreign(url, "Link")
            seen.add(url)
            response = await self.client.request("GET", url, scope=scope)
            if response.status_code != 200:
                raise await self._fail(response, NameUnknown, PaginationInvalid)
            await self.client.read(response)
            items.extend(self._listed(response, key))
            url = _next_link(response)
        return items

    def _listed(self, response: Response, key: str) -> list[Any]:
        """The ``key`` list of a JSON answer already read; 502 for anything else."""
        try:
            found = response.json().get(key) or []
        except (ValueError, AttributeError) as exc:
            raise BadGateway({"upstream": self.name}, f"bad {key} list: {exc}") from exc
        if not isinstance(found, list):
            raise BadGateway({"upstream": self.name}, f"bad {key} list: not a list")
        return found

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        # Every page is cut from the whole list, so concurrent listings share one.
        tags = await self._collapsed(self._all_tags, repo, "")
        if last is not None:
            tags = [t for t in tags if t > last]
        if n is None:
            return Page(list(tags), False)  # the list is shared: each caller gets its own
        return Page(tags[:n], len(tags) > n)

    async def _all_tags(self, repo: str, _reference: str) -> list[str]:
        try:
            listed = await self._all_pages(repo, f"/v2/{repo}/tags/list", "tags", self._scope(repo))
        except NameUnknown:
            # distribution says NAME_UNKNOWN for a repository whose manifests are all untagged;
            # the catalog tells whether the repository exists after all.
            if not await self._in_catalog(repo):
                raise
            listed = []
        return sorted(str(t) for t in listed)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        want = n if n is not None else 10_000
        names: list[str] = []
        cursor = last
        # Bounded like _all_pages; a short answer says "more" and the client pages on.
        for _ in range(MAX_LIST_PAGES):
            if len(names) >= want:
                break
            params = {"n": str(min(CATALOG_PAGE, want - len(names)))}
            if cursor:
                params["last"] = cursor
            response = await self._call(
                "GET", "/v2/_catalog", "", ok=(200,), missing=NameUnknown, params=params
            )
            page = [str(r) for r in self._listed(response, "repositories")]
            names.extend(page)
            if not page or _next_link(response) is None:
                return Page(names, False)
            cursor = page[-1]
        return Page(names, True)

    async def _in_catalog(self, repo: str) -> bool:
        """Whether the upstream's catalog lists ``repo`` (False when it has no catalog)."""
        try:
            names = await self._all_pages(
                repo, f"/v2/_catalog?n={CATALOG_PAGE}", "repositories", "registry:catalog:*"
            )
        except OCIError:
            return False
        return repo in names

    # --- referrers -------------------------------------------------------------------------

    async def _has_referrers_api(self, repo: str) -> bool:
        """Whether the upstream serves ``/referrers/`` itself: asked once. An OCI error body
        (even 404 NAME_UNKNOWN) proves the endpoint exists; distribution's plain 404 does not."""
        if self._native_referrers is None:
            probe = f"/v2/{repo}/referrers/sha256:{'0' * 64}"
            response = await self.client.request("GET", probe, scope=self._scope(repo))
            if response.status_code >= 500 or response.status_code in (401, 403, 429):
                raise await self._fail(response, NameUnknown)
            await self.client.read(response)
            native = response.status_code == 200
            if response.status_code == 404:
                try:
                    native = bool(response.json().get("errors"))
                except (ValueError, AttributeError):
                    native = False
            self._native_referrers = native
        return self._native_referrers

    async def _index(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        try:
            stored = await self.get_manifest(repo, referrers_tag(subject))
        except (ManifestUnknown, NameUnknown):
            return []
        try:
            manifests = json.loads(stored.data).get("manifests") or []
        except (ValueError, AttributeError):
            return []
        return [m for m in manifests if isinstance(m, dict)]

    async def _update_referrers(
        self,
        repo: str,
        subject: Digest,
        added: Descriptor | None,
        removed: Digest | None = None,
    ) -> None:
        tag = referrers_tag(subject)
        async with self._referrers_lock(repo, tag):
            manifests = await self._index(repo, subject)
            drop = {str(removed)} if removed is not None else set()
            if added is not None:
                drop.add(str(added.digest))
            kept = [m for m in manifests if m.get("digest") not in drop]
            if added is not None:
                kept.append(added.to_json())
            elif len(kept) == len(manifests):
                return  # nothing to remove: no rewrite
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kept}
            data = json.dumps(index, separators=(",", ":")).encode()
            await self._put_manifest_ref(repo, tag, OCI_INDEX, data)

    @asynccontextmanager
    async def _referrers_lock(self, repo: str, tag: str) -> AsyncIterator[None]:
        """Exclusive use of one emulated referrers index, within the process and (with a lock
        directory) across the processes sharing it."""
        key = f"{self.name}\n{repo}\n{tag}"
        async with self._referrer_locks.setdefault(key, asyncio.Lock()):
            if self._lock_dir is None:
                yield
                return
            name = hashlib.sha256(key.encode()).hexdigest()[:40]
            path = self._lock_dir / f"referrers-{name}.lock"
            fd = await anyio.to_thread.run_sync(_open_lock_file, path)
            try:
                # Not abandoned on cancellation: the fd is closed only once flock has returned.
                await anyio.to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        raw = await self._collapsed(self._raw_referrers, repo, digest)
        found: list[Descriptor] = []
        for item in raw:
            try:
                descriptor = parse_descriptor(item, "referrer")
            except ManifestInvalid:
                continue  # someone else's malformed entry in a referrers tag: skip it
            if artifact_type is None or descriptor.artifact_type == artifact_type:
                found.append(descriptor)
        return found

    async def _raw_referrers(self, repo: str, digest: Digest) -> list[dict[str, Any]]:
        """The referrers index entries, unfiltered: concurrent queries share them, whatever
        ``artifactType`` each filters by."""
        if await self._has_referrers_api(repo):
            path = f"/v2/{repo}/referrers/{digest}"
            return await self._all_pages(repo, path, "manifests", self._scope(repo))
        return await self._index(repo, digest)

    async def close(self) -> None:
        await self.client.aclose()


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _subject_of(data: bytes) -> Digest | None:
    try:
        subject = json.loads(data).get("subject")
        return Digest.parse(subject["digest"]) if isinstance(subject, dict) else None
    except (ValueError, AttributeError, KeyError, TypeError, OCIError):
        return None
