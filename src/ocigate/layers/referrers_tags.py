"""The referrers API for a backend without one, kept through the referrers tag schema.

The distribution spec's fallback ("Referrers Tag Schema"): the referrers of a subject are listed
in an image index tagged ``<alg>-<hex>`` (``referrers_tag``) in the subject's repository. This
wrapper keeps that index on every push of a manifest with a subject and every delete of one,
and answers ``list_referrers`` from it, whenever the inner backend says (``has_referrers_api``)
that it has no referrers API of its own; otherwise every call goes straight through.

Each index is read-modify-written under a lock per (scope, repository, subject): an asyncio
lock within the process, then, when a lock directory is given, an ``flock`` on a file there
(taken in a thread) across the worker processes sharing it. Replicas with separate lock
directories are not serialised against each other.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio

from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.errors import ManifestUnknown, NameUnknown, OCIError
from ..oci.manifests import Manifest
from ..oci.mediatypes import OCI_INDEX
from ..oci.names import referrers_tag
from ..oci.reference import Tag
from ..oci.referrers import listed_referrers
from ..registry import Registry
from .delegate import Delegate


class MaybeReferrers(Registry, Protocol):
    """A backend that may lack the referrers API and says so."""

    async def has_referrers_api(self, repo: str) -> bool:
        """Whether ``list_referrers`` is served by the backend itself for ``repo``."""
        ...


class ReferrersTags(Delegate):
    """``inner`` with the referrers API supplied through referrers tags when it has none.

    ``scope`` names the backend in lock keys (backends sharing ``lock_dir`` may hold
    repositories of the same name)."""

    inner: MaybeReferrers

    def __init__(self, inner: MaybeReferrers, scope: str, lock_dir: Path | None = None) -> None:
        super().__init__(inner)
        self._scope = scope
        self._lock_dir = lock_dir
        self._locks: dict[str, asyncio.Lock] = {}

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        # Asked before pushing, so a failing probe leaves no half-done push behind.
        subject = manifest.subject
        emulate = subject is not None and not await self.inner.has_referrers_api(repo)
        await self.inner.put_manifest(repo, manifest, data, tags)
        if emulate and subject is not None:
            await self._update(repo, subject.digest, manifest.as_referrer())

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        subject: Digest | None = None
        if not await self.inner.has_referrers_api(repo):
            try:
                stored = await self.inner.get_manifest(repo, digest)
            except ManifestUnknown:
                pass  # the delete below reports it
            else:
                subject = _subject_of(stored.data)
        await self.inner.delete_manifest(repo, digest)
        if subject is not None:
            await self._update(repo, subject, None, removed=digest)

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        if await self.inner.has_referrers_api(repo):
            return await self.inner.list_referrers(repo, digest, artifact_type)
        return listed_referrers(await self._entries(repo, digest), artifact_type)

    async def _entries(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        """The entries of the subject's referrers index, as stored (none without one)."""
        try:
            stored = await self.inner.get_manifest(repo, referrers_tag(subject))
        except (ManifestUnknown, NameUnknown):
            return []
        try:
            manifests = json.loads(stored.data).get("manifests") or []
        except (ValueError, AttributeError):
            return []
        return [m for m in manifests if isinstance(m, dict)]

    async def _update(
        self,
        repo: str,
        subject: Digest,
        added: Descriptor | None,
        removed: Digest | None = None,
    ) -> None:
        tag = referrers_tag(subject)
        async with self._lock(repo, tag):
            manifests = await self._entries(repo, subject)
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
            parsed = Manifest(
                media_type=OCI_INDEX,
                digest=Digest.of(data),
                size=len(data),
                children=tuple(listed_referrers(kept, None)),
            )
            await self.inner.put_manifest(repo, parsed, data, [tag])

    @asynccontextmanager
    async def _lock(self, repo: str, tag: Tag) -> AsyncIterator[None]:
        """Exclusive use of one referrers index, within the process and (with a lock
        directory) across the processes sharing it."""
        key = f"{self._scope}\n{repo}\n{tag}"
        async with self._locks.setdefault(key, asyncio.Lock()):
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


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _subject_of(data: bytes) -> Digest | None:
    try:
        subject = json.loads(data).get("subject")
        return Digest.parse(subject["digest"]) if isinstance(subject, dict) else None
    except (ValueError, AttributeError, KeyError, TypeError, OCIError):
        return None
