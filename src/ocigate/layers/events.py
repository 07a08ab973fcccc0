"""The events layer: every change the inner registry makes is recorded as a CloudEvent.

Events are staged in ``store.outbox.STAGED`` before the change is delegated; a store with the
outbox hook (the embedded store) writes them in the change's own transaction, so an event exists
exactly when its change committed. Otherwise (a store without the hook, or pulls, which change
nothing) they are appended to the outbox right after the call succeeds.

What a change was (a repository's first content, a tag moving) is read from the inner registry
just before the change. Two writers racing on the same repository may therefore both report
``repository.created``, or one ``manifest.pushed`` without its ``tag.moved``; events are
at-least-once and this keeps the Registry protocol free of event concerns.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio.to_thread

from ..auth.identity import current_identity
from ..oci.digest import Digest
from ..oci.errors import BlobUnknown, ManifestUnknown, NameUnknown, OCIError
from ..oci.manifests import Manifest, parse_manifest
from ..registry import BlobBody, ByteRange, Chunks, Registry, StoredManifest
from ..store.outbox import Event, Outbox, staging
from ..tracing import current_request_id, internal_read
from .delegate import Delegate
from .events_config import EVENT_TYPE_PREFIX, EventsConfig

T = TypeVar("T")
run = anyio.to_thread.run_sync


def make_event(
    source: str,
    short_type: str,
    repo: str,
    *,
    digest: Digest | str | None = None,
    tag: str | None = None,
    **data: Any,
) -> Event:
    """One CloudEvents 1.0 event (structured mode) with ocigate's data fields."""
    identity = current_identity.get()
    body = {
        "repository": repo,
        "digest": str(digest) if digest is not None else None,
        "tag": tag,
        "mediaType": data.pop("media_type", None),
        "artifactType": data.pop("artifact_type", None),
        "subject": data.pop("subject", None),
        "size": data.pop("size", None),
        **data,
        "actor": {"identity": identity.name, "name": identity.label()},
        "requestId": current_request_id.get(),
    }
    event_id = str(uuid.uuid4())
    subject = f"{repo}:{tag}" if tag else f"{repo}@{digest}" if digest else repo
    cloud_event = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": EVENT_TYPE_PREFIX + short_type,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": body,
    }
    return Event(
        event_id,
        repo,
        short_type,
        body["artifactType"],
        json.dumps(cloud_event, separators=(",", ":")),
    )


class EventsLayer(Delegate):
    def __init__(self, inner: Registry, config: EventsConfig, outbox: Outbox) -> None:
        super().__init__(inner)
        self.config = config
        self.outbox = outbox

    async def close(self) -> None:
        await super().close()
        self.outbox.close()

    def _event(self, short_type: str, repo: str, **fields: Any) -> Event:
        return make_event(self.config.source, short_type, repo, **fields)

    async def _changing(self, events: Sequence[Event], call: Callable[[], Awaitable[T]]) -> T:
        if not events:
            return await call()
        with staging(events) as staged:
            result = await call()
        if not staged.claimed:  # no store transaction took them: record them now
            await run(self.outbox.append, events)
        return result

    async def _repo_exists(self, repo: str) -> bool:
        try:
            await self.inner.list_tags(repo, None, 1)
        except NameUnknown:
            return False
        return True

    async def _tagged(self, repo: str, tag: str) -> Digest | None:
        try:
            return (await self.inner.get_manifest(repo, tag)).digest
        except ManifestUnknown:
            return None

    async def _created(self, repo: str) -> list[Event]:
        return [] if await self._repo_exists(repo) else [self._event("repository.created", repo)]

    # -- changes -----------------------------------------------------------------------------

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[str]
    ) -> None:
        events = await self._created(repo)
        events.append(
            self._event(
                "manifest.pushed",
                repo,
                digest=manifest.digest,
                tag=tags[0] if tags else None,
                tags=list(tags),
                media_type=manifest.media_type,
                artifact_type=manifest.artifact_type,
                subject=str(manifest.subject.digest) if manifest.subject else None,
                size=manifest.size,
            )
        )
        for tag in tags:
            previous = await self._tagged(repo, tag)
            if previous is not None and previous != manifest.digest:
                events.append(
                    self._event(
                        "tag.moved",
                        repo,
                        digest=manifest.digest,
                        tag=tag,
                        previousDigest=str(previous),
                        media_type=manifest.media_type,
                        artifact_type=manifest.artifact_type,
                    )
                )
        await self._changing(events, lambda: self.inner.put_manifest(repo, manifest, data, tags))

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        fields: dict[str, Any] = {}
        try:
            stored = await self.inner.get_manifest(repo, str(digest))
            fields = _describe(stored)
        except OCIError:
            pass  # the delete itself reports what is wrong
        event = self._event("manifest.deleted", repo, digest=digest, **fields)
        await self._changing([event], lambda: self.inner.delete_manifest(repo, digest))

    async def delete_tag(self, repo: str, tag: str) -> None:
        fields: dict[str, Any] = {}
        try:
            stored = await self.inner.get_manifest(repo, tag)
            fields = {"digest": stored.digest, **_describe(stored)}
        except OCIError:
            pass
        event = self._event("tag.deleted", repo, tag=tag, **fields)
        await self._changing([event], lambda: self.inner.delete_tag(repo, tag))

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        size = None
        with contextlib.suppress(BlobUnknown):  # the delete itself reports it
            size = await self.inner.stat_blob(repo, digest)
        event = self._event("blob.deleted", repo, digest=digest, size=size)
        await self._changing([event], lambda: self.inner.delete_blob(repo, digest))

    async def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: Chunks | None,
        offset: int | None,
        length: int | None,
    ) -> int:
        events = await self._created(repo)
        return await self._changing(
            events,
            lambda: self.inner.commit_upload(repo, upload_id, digest, chunks, offset, length),
        )

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        events = await self._created(repo)
        return await self._changing(events, lambda: self.inner.mount_blob(repo, source, digest))

    # -- pulls (optional) ------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        stored = await self.inner.get_manifest(repo, reference)
        if self.config.pulls:
            tag = None if ":" in reference else reference
            event = self._event(
                "manifest.pulled", repo, digest=stored.digest, tag=tag, **_describe(stored)
            )
            await run(self.outbox.append, [event])
        return stored

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        body = await self.inner.get_blob(repo, digest, byte_range)
        # A download counts once (not per range), and a layer's own reads not at all.
        if self.config.pulls and body.start == 0 and not internal_read.get():
            event = self._event("blob.pulled", repo, digest=digest, size=body.size)
            await run(self.outbox.append, [event])
        return body


def _describe(stored: StoredManifest) -> dict[str, Any]:
    fields: dict[str, Any] = {"media_type": stored.media_type, "size": len(stored.data)}
    try:
        manifest = parse_manifest(stored.data, stored.media_type, stored.digest)
    except OCIError:
        return fields
    fields["artifact_type"] = manifest.artifact_type
    fields["subject"] = str(manifest.subject.digest) if manifest.subject else None
    return fields
