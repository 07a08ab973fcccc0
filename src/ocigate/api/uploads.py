"""Upload endpoints: POST ``/v2/<name>/blobs/uploads/`` (start, single-POST, mount) and
PATCH/PUT/GET/DELETE on the ``<blob-push-location>`` it hands out."""

from __future__ import annotations

from contextlib import suppress

from ..oci.digest import ALGORITHMS, Digest
from ..oci.errors import BlobUnknown, BlobUploadInvalid, DigestInvalid, OCIError, RangeInvalid
from ..oci.names import check_name
from ..registry import UploadChunk, UploadState
from .context import Call
from .errors import send_error
from .http import Headers, respond
from .ranges import parse_content_range


def _location(repo: str, upload_id: str) -> bytes:
    return f"/v2/{repo}/blobs/uploads/{upload_id}".encode()


def _session_headers(repo: str, state: UploadState) -> Headers:
    # An empty session reports "0-0", as distribution does and clients expect.
    end = max(state.offset - 1, 0)
    return [
        (b"location", _location(repo, state.id)),
        (b"range", b"0-%d" % end),
        (b"docker-upload-uuid", state.id.encode()),
    ]


async def _created(call: Call, digest: Digest) -> None:
    await respond(
        call.send,
        201,
        [
            (b"location", f"/v2/{call.repo}/blobs/{digest}".encode()),
            (b"docker-content-digest", str(digest).encode()),
        ],
    )


def _chunk(call: Call) -> UploadChunk:
    """The chunk this request carries: its body, placed by Content-Range and Content-Length."""
    request = call.request
    length = request.content_length()
    header = request.headers.get("content-range")
    if header is None:
        return UploadChunk(request.chunks(), None, length)
    start, end = parse_content_range(header)
    if length is not None and length != end - start + 1:
        raise BlobUploadInvalid(f"Content-Range {header!r} disagrees with Content-Length {length}")
    return UploadChunk(request.chunks(), start, end - start + 1)


async def start(call: Call) -> None:
    request = call.request
    mount = request.param("mount")
    if mount is not None:
        digest = Digest.parse(mount)
        source = request.param("from")
        if source is not None:
            check_name(source)
        try:
            await call.registry.mount_blob(call.repo, source, digest)
        except BlobUnknown:
            pass  # the spec's fallback: an ordinary upload session, 202
        else:
            await _created(call, digest)
            return
    algorithm = request.param("digest-algorithm")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise DigestInvalid(f"unsupported digest-algorithm {algorithm!r}")
    raw_digest = request.param("digest")
    whole = Digest.parse(raw_digest) if raw_digest is not None else None
    state = await call.registry.start_upload(call.repo)
    if whole is not None:
        # Single-POST monolithic upload: the body is the whole blob.
        try:
            chunk = UploadChunk(request.chunks(), None, request.content_length())
            await call.registry.commit_upload(call.repo, state.id, whole, chunk)
        except BaseException:
            with suppress(OCIError):  # the store may already have dropped the session
                await call.registry.cancel_upload(call.repo, state.id)
            raise
        await _created(call, whole)
        return
    headers = _session_headers(call.repo, state)
    if call.options.chunk_min_length:
        headers.append((b"oci-chunk-min-length", b"%d" % call.options.chunk_min_length))
    await respond(call.send, 202, headers)


async def _out_of_order(call: Call, error: OCIError) -> None:
    """416 with the session's real position, so the client can resume."""
    state = await call.registry.upload_status(call.repo, call.arg)
    await send_error(call.send, error, _session_headers(call.repo, state))


async def patch(call: Call) -> None:
    chunk = _chunk(call)
    try:
        state = await call.registry.write_upload(call.repo, call.arg, chunk)
    except RangeInvalid as exc:
        await _out_of_order(call, exc)
        return
    await respond(call.send, 202, _session_headers(call.repo, state))


async def put(call: Call) -> None:
    raw_digest = call.request.param("digest")
    if raw_digest is None:
        raise DigestInvalid("the closing PUT needs ?digest=")
    digest = Digest.parse(raw_digest)
    chunk = _chunk(call)
    try:
        await call.registry.commit_upload(call.repo, call.arg, digest, chunk)
    except RangeInvalid as exc:
        await _out_of_order(call, exc)
        return
    await _created(call, digest)


async def status(call: Call) -> None:
    state = await call.registry.upload_status(call.repo, call.arg)
    await respond(call.send, 204, _session_headers(call.repo, state))


async def cancel(call: Call) -> None:
    await call.registry.cancel_upload(call.repo, call.arg)
    await respond(call.send, 204)
