"""The two ports the registry logic (``store.core``) is written over: bytes and metadata.

A backend is a ``BlobStore`` (content-addressed bytes) plus a ``MetadataStore`` (everything
else); ``store.core.registry.RegistryOverPorts`` turns any such pair into a ``Registry``.
Local files + SQLite make the embedded store, memory + SQLite in memory the test store; an
object store + a shared database are two more implementations of the same ports.

Division of labour, so that several replicas can share one backend:

- What a client may see is decided by the metadata store alone: a blob exists in a repository
  when the metadata store links it (``blob_size``; a HEAD never asks the blob store), a manifest
  when it stores it. The blob store only holds bytes, which may exist before they are linked
  (a commit, then its link) and after they are unlinked (until garbage collection).
- Write order: bytes are durable in the blob store before the metadata transaction that links
  them commits, so metadata never points at missing bytes. Both happen under the metadata
  store's ``gc_lock`` held shared; the collector holds it exclusively from mark to sweep.
- An upload is the blob store's: it keeps the bytes received, the owning repository and the
  durable offset where any instance on the same backend (another worker or replica) finds them.
  A backend that needs more state to continue one (an object store's part list) keeps it in its
  own metadata, which it may hold in the metadata store's database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from ..events.outbox import Outbox
from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.errors import ManifestBlobUnknown
from ..oci.manifests import Manifest
from ..oci.reference import Tag
from ..registry import BlobBody, Chunks, Page, StoredManifest, TagDetail


class BlobEntry(NamedTuple):
    """A blob the blob store holds, as garbage collection lists it."""

    digest: Digest
    size: int
    modified: float  # unix seconds the bytes were last written


@dataclass(frozen=True, slots=True)
class Required:
    """A digest a manifest needs before it may be stored: a ``blob`` (config, layer: linked or
    a manifest in the repository) or a ``manifest`` (an index child: a manifest there)."""

    digest: Digest
    kind: Literal["blob", "manifest"]

    def unknown(self) -> ManifestBlobUnknown:
        """The error a manifest put answers when this is missing."""
        return ManifestBlobUnknown(
            {"digest": str(self.digest)}, f"{self.kind} unknown to registry: {self.digest}"
        )


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """A manifest of a repository as retention sees it: when it was first stored and which
    manifests it points at (digests as ``algorithm:hex``)."""

    digest: str
    stored: float  # unix seconds
    subject: str | None
    children: tuple[str, ...]  # an index's manifests


class Usage(NamedTuple):
    """What a repository holds against its quota: ``bytes`` is the sum of the sizes of the
    distinct blobs it links, manifests included (a manifest's bytes are linked like a blob's),
    each counted once however many manifests reference it; ``tags`` how many tags it has."""

    bytes: int
    tags: int


class ChangeStamp(Protocol):
    """The metadata store's change counter: different bytes after every committed change, in
    any process or replica sharing the store; reading it is cheap (no query)."""

    def read(self) -> bytes: ...


class StagedUpload(Protocol):
    """An upload session, held exclusively (across processes) while the caller uses it."""

    @property
    def id(self) -> str: ...

    @property
    def repo(self) -> str: ...

    @property
    def offset(self) -> int:
        """Bytes received so far."""
        ...

    async def append(self, chunks: Chunks, offset: int | None, length: int | None) -> int:
        """Append a body at :attr:`offset`; the new offset. ``offset`` (when given) must equal
        the current one, else RangeInvalid; ``length`` (when given) must match the body, else
        SizeInvalid. On any failure, cancellation included, the upload is as it was before."""
        ...

    async def save(self) -> None:
        """Make what was appended durable and record the new offset, where any other instance
        of the blob store will find it."""
        ...

    async def commit(self, digest: Digest) -> int:
        """Verify the bytes hash to ``digest``, then store them durably under it (a no-op when
        already held) and end the session; the size. On a mismatch DigestInvalid, the session
        is ended and nothing is stored. Call it holding the metadata store's ``gc_lock``."""
        ...

    async def discard(self) -> None:
        """End the session, dropping its bytes."""
        ...


class BlobStore(Protocol):
    """Content-addressed bytes shared by every repository, and the uploads staging them."""

    async def size(self, digest: Digest) -> int | None:
        """The size of the bytes held under ``digest``, None when there are none. Not for
        answering clients (the metadata store says what a repository holds): a mount checks
        with it that the bytes it links are still there."""
        ...

    async def open(self, digest: Digest, size: int, start: int, length: int) -> BlobBody | None:
        """``length`` bytes from ``start`` of the blob of ``size`` bytes, for the caller to
        serve and close; None when the bytes are missing (a damaged store)."""
        ...

    async def write(self, digest: Digest, data: bytes) -> None:
        """Store small content (manifest bytes) durably under ``digest``, verified by the
        caller; a no-op when already held. Call it holding the metadata store's ``gc_lock``."""
        ...

    async def start_upload(self, repo: str) -> str:
        """A new, empty upload owned by ``repo``; its id (safe in a URL)."""
        ...

    async def upload_offset(self, repo: str, upload_id: str) -> int:
        """The durable offset of an upload; BlobUploadUnknown when there is no such upload or
        ``repo`` does not own it."""
        ...

    def upload(self, repo: str, upload_id: str) -> AbstractAsyncContextManager[StagedUpload]:
        """Hold an upload exclusively (waiting for another holder, in any process); raises
        BlobUploadUnknown as :meth:`upload_offset` does, also when it ended while waiting."""
        ...

    async def expire_uploads(self, max_age: float) -> int:
        """Remove uploads (and temporary leftovers) idle for more than ``max_age`` seconds and
        not held; how many uploads were removed."""
        ...

    def list(self) -> AsyncIterator[BlobEntry]:
        """Every blob held (garbage collection's sweep)."""
        ...

    async def delete(self, digests: Sequence[Digest]) -> None:
        """Delete these blobs' bytes (those already gone are skipped). Only garbage collection
        calls it, after the metadata store unlinked them everywhere."""
        ...

    async def close(self) -> None: ...


class MetadataStore(Protocol):
    """Repositories, blob links, manifests, tags and referrers; every change is one
    transaction, visible whole or not at all, in every process sharing the store, once the
    method returns. Digests of the GC methods are ``algorithm:hex`` strings."""

    @property
    def changes(self) -> ChangeStamp | None:
        """None when no query-free stamp can tell every sharer of the store about a change
        (replicas on several machines): the registry logic then keeps no answers in memory."""
        ...

    @property
    def outbox(self) -> Outbox | None:
        """The durable event outbox that this store's own transactions write the events layer's
        staged events into (``events.staging``), so they commit or roll back with the
        change; None when this store cannot (the events layer then appends them itself)."""
        ...

    def gc_lock(self, *, exclusive: bool) -> AbstractAsyncContextManager[None]:
        """Held shared by whatever makes bytes visible or links them (from before it checks or
        writes the bytes until its link committed), exclusively by the GC from mark to sweep;
        across every process sharing the store."""
        ...

    # blobs
    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        """The size of a blob ``repo`` links, None when it links none (the answer to HEAD)."""
        ...

    async def any_blob_size(self, digest: Digest) -> int | None:
        """The size of a blob any repository links, None when none does."""
        ...

    async def link_blob(self, repo: str, digest: Digest, size: int) -> None:
        """Link a blob into ``repo`` (creating the repository), renewing the link's time."""
        ...

    async def unlink_blob(self, repo: str, digest: Digest) -> bool:
        """Remove ``repo``'s link; whether there was one."""
        ...

    async def usage(self, repo: str) -> Usage:
        """What ``repo`` holds (zeros for a repository that does not exist)."""
        ...

    # manifests and tags
    async def manifest_by_tag(self, repo: str, tag: Tag) -> StoredManifest | None: ...

    async def manifest_by_digest(self, repo: str, digest: Digest) -> StoredManifest | None: ...

    async def first_missing(self, repo: str, required: Sequence[Required]) -> Required | None:
        """The first of ``required`` that ``repo`` lacks, None when it holds them all."""
        ...

    async def put_manifest(
        self,
        repo: str,
        manifest: Manifest,
        data: bytes,
        tags: Sequence[Tag],
        required: Sequence[Required],
    ) -> None:
        """In one transaction: check ``required`` (raising ``Required.unknown()`` for the first
        missing, changing nothing), store the manifest (a re-push keeps its push order), link
        its bytes, record what it references and move ``tags`` to it (pushed: now)."""
        ...

    async def delete_manifest(self, repo: str, digest: Digest) -> bool:
        """Remove a manifest with its tags, references and link; whether it was there."""
        ...

    async def delete_tag(self, repo: str, tag: Tag) -> bool:
        """Remove a tag; whether it was there."""
        ...

    # listings (names in ASCII order; ``n`` None: all)
    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page | None:
        """Tags after ``last``; None when the repository does not exist."""
        ...

    async def tag_details(self, repo: str) -> list[TagDetail] | None:
        """Every tag with its manifest and when the tag was last pushed; None when the
        repository does not exist."""
        ...

    async def list_repositories(self, last: str | None, n: int | None) -> Page: ...

    async def manifest_nodes(self, repo: str) -> list[ManifestNode]:
        """Every manifest of ``repo`` (none when it does not exist), in push order."""
        ...

    async def referrers(
        self, repo: str, subject: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        """Manifests of ``repo`` whose subject is ``subject``, in push order."""
        ...

    # garbage collection
    async def referenced_digests(self) -> set[str]:
        """Every manifest and every digest a manifest references (config, layers, index
        children, subject): the mark set. Links alone do not count."""
        ...

    async def links(self) -> dict[str, tuple[int, float]]:
        """Per linked digest: in how many repositories, and when it was last linked."""
        ...

    async def unlink_everywhere(self, digests: Sequence[str]) -> None:
        """Remove every repository's link to these digests, in one transaction."""
        ...

    async def close(self) -> None: ...
