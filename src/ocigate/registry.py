"""The ``Registry`` protocol: the OCI Distribution API in OCI terms, with no HTTP in it.

Backends (``store/*``) implement it; wrappers (``layers/*``) implement it by delegating to an inner
``Registry``; the HTTP layer (``api/``) drives it. Methods raise :mod:`ocigate.oci.errors`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .oci.descriptors import Descriptor
from .oci.digest import Digest
from .oci.errors import RangeNotSatisfiable
from .oci.manifests import Manifest
from .oci.reference import Reference, Tag

Chunks = AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One RFC 9110 byte range as requested: ``first-last``, ``first-`` or ``-suffix``."""

    first: int | None
    last: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """The inclusive ``(start, end)`` within a blob of ``size`` bytes."""
        if self.first is None:
            assert self.last is not None
            if self.last == 0 or size == 0:
                raise RangeNotSatisfiable({"size": size}, f"unsatisfiable range for size {size}")
            return max(0, size - self.last), size - 1
        if self.first >= size:
            raise RangeNotSatisfiable({"size": size}, f"range starts beyond size {size}")
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, end


class Detached(NamedTuple):
    """A socket body handed over for the kernel to copy (see ``Stream.detach``)."""

    received: bytes  # already read from the socket
    socket: int  # the descriptor the rest is read from; it stays the body's (``close``)
    read_timeout: float  # seconds the socket may stay silent before the copy fails


class Chunked(Protocol):
    """A stream of a blob's bytes that releases what it holds on ``aclose``, also unread."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


# The variants of a blob being served. The reader owns the body and calls ``close`` once.


@dataclass(slots=True)
class FileRange:
    """``length`` bytes from ``start`` of an open file holding the blob (zero-copy capable).
    Not frozen: ``close`` remembers it closed the descriptor, so a second close cannot close
    another file the process has opened under the same number since."""

    digest: Digest
    size: int  # the whole blob's size
    start: int  # first byte served
    length: int  # bytes served
    fd: int
    closed: bool = field(default=False, init=False, compare=False)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True  # first: a failed close is not retried (the number is freed)
            os.close(self.fd)


@dataclass(frozen=True, slots=True)
class Stream:
    """``length`` bytes from ``start`` of the blob, as they arrive."""

    digest: Digest
    size: int
    start: int
    length: int
    chunks: Chunked
    # For a stream read from a socket (the gateway's upstream): hands over the bytes already
    # received and the socket, so the kernel can copy the rest; None if it cannot.
    detach: Callable[[], Detached | None] | None = None

    async def close(self) -> None:
        await self.chunks.aclose()


@dataclass(frozen=True, slots=True)
class Redirect:
    """No bytes: the client is sent to ``url`` (absolute) with this 3xx ``status``."""

    status: int
    url: str

    async def close(self) -> None:
        pass


BlobBody = FileRange | Stream | Redirect


@dataclass(frozen=True, slots=True)
class UploadChunk:
    """A request body appended to an upload. ``offset`` (from Content-Range) is where the client
    says it starts, None: at the bytes received so far; ``length`` (from Content-Length) how long
    it says it is, None: unknown."""

    chunks: Chunks
    offset: int | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    offset: int  # bytes received so far


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a manifest HEAD answers: everything but the bytes."""

    digest: Digest
    media_type: str
    size: int
    # Notes for the client (served as ``Warning: 299 - "..."``), e.g. a cache serving stale data.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes
    warnings: tuple[str, ...] = ()  # as in ManifestInfo

    def info(self) -> ManifestInfo:
        return ManifestInfo(self.digest, self.media_type, len(self.data), self.warnings)


@dataclass(frozen=True, slots=True)
class TagDetail:
    """A tag with what a listing shows of the manifest it points at."""

    tag: str
    digest: Digest
    media_type: str
    size: int  # the manifest's bytes
    pushed: (
        float | None
    )  # unix seconds the tag was last moved; None when the backend cannot tell (a gateway)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    more: bool  # another page follows the last item


class Registry(Protocol):
    # blobs
    async def stat_blob(self, repo: str, digest: Digest) -> int:
        """The blob's size; BlobUnknown when the repository does not hold it."""
        ...

    async def get_blob(
        self, repo: str, digest: Digest, byte_range: ByteRange | None
    ) -> BlobBody: ...

    async def delete_blob(self, repo: str, digest: Digest) -> None: ...

    # uploads
    async def start_upload(self, repo: str) -> UploadState: ...

    async def upload_status(self, repo: str, upload_id: str) -> UploadState: ...

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        """Append a chunk. Its ``offset``, when given, must equal the bytes received so far, else
        RangeInvalid; its ``length``, when given, must match its body, else SizeInvalid. A failed
        append leaves the upload as it was before it."""
        ...

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        """Append an optional last chunk, verify the digest, make the blob visible; its size."""
        ...

    async def cancel_upload(self, repo: str, upload_id: str) -> None: ...

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        """Link a blob held by ``source`` (any repository when None) into ``repo``; its size.
        BlobUnknown when it cannot be mounted."""
        ...

    # manifests and tags
    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest: ...

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        """``get_manifest`` without the bytes (a HEAD): a gateway asks its upstream with a
        HEAD too, which saves a round of waiting for the body."""
        ...

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None: ...

    async def delete_manifest(self, repo: str, digest: Digest) -> None: ...

    async def delete_tag(self, repo: str, tag: Tag) -> None: ...

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page: ...

    async def list_tag_details(self, repo: str) -> list[TagDetail]:
        """Every tag of ``repo`` in ASCII order, with its manifest's digest, media type, size
        and push time; NameUnknown when the repository does not exist."""
        ...

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]: ...

    async def list_repositories(self, last: str | None, n: int | None) -> Page: ...

    async def close(self) -> None: ...
