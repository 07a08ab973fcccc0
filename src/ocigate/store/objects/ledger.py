"""What the object-storage blob store keeps in a database beside the bucket: its upload
sessions and the index of the blobs it holds.

A blob is an ordered list of *segments*, objects in the bucket whose concatenation are its
bytes; each PATCH of an upload writes one segment under a key never used before, so a commit
is a row in this ledger (no copy) and garbage collection deletes keys nobody can write again.
The ledger is the only shared state of an upload, so that any replica continues it: the
segments so far and the resumable SHA-256 state after them (``resumable_hash``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from ...oci.digest import Digest


@dataclass(frozen=True, slots=True)
class Segment:
    """One object in the bucket holding a run of a blob's bytes."""

    key: str
    size: int


@dataclass(slots=True)
class UploadRecord:
    """An upload session as the ledger keeps it; the holder changes it, then saves it."""

    id: str
    repo: str
    offset: int = 0  # bytes received: the sum of the segments' sizes
    segments: list[Segment] = field(default_factory=list)
    hash_state: bytes = b""  # SHA-256 state after ``offset`` bytes; empty before any
    updated: float = 0.0  # unix seconds of the last save


@dataclass(frozen=True, slots=True)
class BlobObject:
    """A blob the store holds: its digest, size and the segments that make it up."""

    digest: Digest
    size: int
    segments: tuple[Segment, ...]
    modified: float  # unix seconds it was committed or last re-committed


class ObjectLedger(Protocol):
    """Upload sessions and the blob index, shared by every replica; each method is one
    transaction."""

    async def create_upload(self, record: UploadRecord) -> None: ...

    async def find_upload(self, upload_id: str) -> UploadRecord | None:
        """The upload as last saved, without holding it; None when there is none."""
        ...

    def hold_upload(self, upload_id: str) -> AbstractAsyncContextManager[UploadRecord | None]:
        """Hold an upload exclusively across replicas (waiting while another holds it; a
        holder that died loses it after a lease of bounded length); None when there is no
        such upload, also when it ended while waiting."""
        ...

    async def save_upload(self, record: UploadRecord) -> None:
        """Record the holder's new offset, segments and hash state."""
        ...

    async def end_upload(self, upload_id: str) -> None:
        """Forget the upload (its segments are the caller's to delete or keep)."""
        ...

    async def idle_uploads(self, before: float) -> list[UploadRecord]:
        """Uploads saved before ``before`` (unix seconds) and not held."""
        ...

    async def blob(self, digest: Digest) -> BlobObject | None: ...

    async def add_blob(self, blob: BlobObject) -> bool:
        """Index a committed blob; False (and its ``modified`` renewed) when the digest is
        already held, decided by the database when two replicas commit it at once."""
        ...

    def blobs(self) -> AsyncIterator[BlobObject]:
        """Every blob held, for garbage collection and fsck."""
        ...

    async def remove_blobs(self, digests: Sequence[Digest]) -> list[BlobObject]:
        """Drop these blobs from the index; those that were there, for their segments to be
        deleted."""
        ...
