"""The events layer: every change the inner registry makes is recorded as a CloudEvent.

For each change the layer stages a decision (``staging.STAGED``): given a view of the
registry's state, which events describe the change. What a change was (a repository's first
content, a tag moving from one digest to another) depends on that state. Over a store whose
metadata store has an outbox of its own (``staged=True``: the embedded store) the decision is
made inside the change's own transaction, so the events are exact even when writers race, and
commit with the change. Otherwise (``staged=False``: another store; and pulls, which change
nothing) the layer reads the state just before the change, decides from that, and appends the
events right after the call succeeds; racing writers of such a store may both report
``repository.created``. Events are delivered at least once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, assert_never

import anyio.to_thread

from ..context import request_context
from ..layers.delegate import Delegate
from ..oci.digest import Digest
from ..oci.errors import BlobUnknown, ManifestUnknown, NameUnknown, OCIError
from ..oci.manifests import Manifest, parse_manifest
from ..oci.reference import Reference, Tag
from ..registry import (
    BlobBody,
    ByteRange,
    FileRange,
    ManifestInfo,
    Redirect,
    Registry,
    StoredManifest,
    Stream,
    UploadChunk,
)
from .config import EVENT_TYPE_PREFIX, EventsConfig
from .outbox import Event, Outbox
from .staging import Decide, StoreView, staging

T = TypeVar("T")
run = anyio.to_thread.run_sync


def make_event(
    source: str,
    short_type: str,
    repo: str,
    *,
    digest: Digest | str | None = None,
    tag: Tag | None = None,
    **data: Any,
) -> Event:
    """One CloudEvents 1.0 event (structured mode) with ocigate's data fields."""
    context = request_context()
    identity = context.identity
    body = {
        "repository": repo,
        "digest": str(digest) if digest is not None else None,
        "tag": None if tag is None else tag.name,
        "mediaType": data.pop("media_type", None),
        "artifactType": data.pop("artifact_type", None),
        "subject": data.pop("subject", None),
        "size": data.pop("size", None),
        **data,
        "actor": {"identity": identity.name, "name": identity.label()},
        "requestId": context.request_id,
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
    def __init__(
        self, inner: Registry, config: EventsConfig, outbox: Outbox, *, staged: bool
    ) -> None:
        """``staged``: the inner store's own transactions decide and write the events staged
        for each change (its metadata store's outbox is ``outbox``); else the layer appends
        them to ``outbox`` itself."""
        super().__init__(inner)
        self.config = config
        self.outbox = outbox
        self._staged = staged

    async def close(self) -> None:
        await super().close()
        self.outbox.close()

    def _event(self, short_type: str, repo: str, **fields: Any) -> Event:
        return make_event(self.config.source, short_type, repo, **fields)

    async def _changing(
        self,
        decide: Decide,
        call: Callable[[], Awaitable[T]],
        repo: str,
        tags: Sequence[Tag] = (),
    ) -> T:
        """Run the change ``call`` with its events decided by ``decide``, which reads whether
        ``repo`` exists and where ``tags`` point."""
        if self._staged:
            with staging(decide):
                return await call()  # an unclaimed decision: no transaction, no change
        events = decide(await self._snapshot(repo, tags))
        result = await call()
        if events:
            await run(self.outbox.append, events)
        return result

    async def _snapshot(self, repo: str, tags: Sequence[Tag]) -> _Snapshot:
        """The state a change will apply to, read just before it (unstaged stores)."""
        try:
            await self.inner.list_tags(repo, None, 1)
            exists = True
        except NameUnknown:
            exists = False
        pointing: dict[str, str | None] = {}
        for tag in tags:
            try:
                pointing[tag.name] = str((await self.inner.get_manifest(repo, tag)).digest)
            except (ManifestUnknown, NameUnknown):
                pointing[tag.name] = None
        return _Snapshot(exists, pointing)

    def _created(self, view: StoreView, repo: str) -> list[Event]:
        exists = view.repository_exists(repo)
        return [] if exists else [self._event("repository.created", repo)]

    # -- changes -----------------------------------------------------------------------------

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        def decide(view: StoreView) -> list[Event]:
            events = self._created(view, repo)
            events.append(
                self._event(
                    "manifest.pushed",
                    repo,
                    digest=manifest.digest,
                    tag=tags[0] if tags else None,
                    tags=[tag.name for tag in tags],
                    media_type=manifest.media_type,
                    artifact_type=manifest.artifact_type,
                    subject=str(manifest.subject.digest) if manifest.subject else None,
                    size=manifest.size,
                )
            )
            for tag in tags:
                previous = view.tag_digest(repo, tag.name)
                if previous is not None and previous != str(manifest.digest):
                    events.append(
                        self._event(
                            "tag.moved",
                            repo,
                            digest=manifest.digest,
                            tag=tag,
                            previousDigest=previous,
                            media_type=manifest.media_type,
                            artifact_type=manifest.artifact_type,
                        )
                    )
            return events

        await self._changing(
            decide, lambda: self.inner.put_manifest(repo, manifest, data, tags), repo, tags
        )

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        fields: dict[str, Any] = {}
        try:
            stored = await self.inner.get_manifest(repo, digest)
            fields = _describe(stored)
        except OCIError:
            pass  # the delete itself reports what is wrong
        event = self._event("manifest.deleted", repo, digest=digest, **fields)
        await self._changing(_just(event), lambda: self.inner.delete_manifest(repo, digest), repo)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        fields: dict[str, Any] = {}
        try:
            stored = await self.inner.get_manifest(repo, tag)
            fields = {"digest": stored.digest, **_describe(stored)}
        except OCIError:
            pass
        event = self._event("tag.deleted", repo, tag=tag, **fields)
        await self._changing(_just(event), lambda: self.inner.delete_tag(repo, tag), repo)

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        size = None
        with contextlib.suppress(BlobUnknown):  # the delete itself reports it
            size = await self.inner.stat_blob(repo, digest)
        event = self._event("blob.deleted", repo, digest=digest, size=size)
        await self._changing(_just(event), lambda: self.inner.delete_blob(repo, digest), repo)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        return await self._changing(
            lambda view: self._created(view, repo),
            lambda: self.inner.commit_upload(repo, upload_id, digest, chunk),
            repo,
        )

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        return await self._changing(
            lambda view: self._created(view, repo),
            lambda: self.inner.mount_blob(repo, source, digest),
            repo,
        )

    # -- pulls (optional) ------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        stored = await self.inner.get_manifest(repo, reference)
        if self.config.pulls:
            tag = reference if isinstance(reference, Tag) else None
            event = self._event(
                "manifest.pulled", repo, digest=stored.digest, tag=tag, **_describe(stored)
            )
            await run(self.outbox.append, [event])
        return stored

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        if self.config.pulls:  # a HEAD is a pull as well, described from the bytes
            return (await self.get_manifest(repo, reference)).info()
        return await self.inner.stat_manifest(repo, reference)

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        body = await self.inner.get_blob(repo, digest, byte_range)
        # A download counts once (not per range), and a layer's own reads not at all.
        if self.config.pulls and not request_context().internal:
            match body:
                case FileRange() | Stream():
                    counted, size = body.start == 0, body.size
                case Redirect():
                    counted, size = True, 0  # the size is the redirect target's to tell
                case _:
                    assert_never(body)
            if counted:
                event = self._event("blob.pulled", repo, digest=digest, size=size)
                await run(self.outbox.append, [event])
        return body


def _just(event: Event) -> Decide:
    return lambda view: [event]


class _Snapshot:
    """:class:`StoreView` from reads made just before a change."""

    def __init__(self, exists: bool, tags: dict[str, str | None]) -> None:
        self._exists = exists
        self._tags = tags

    def repository_exists(self, repo: str) -> bool:
        return self._exists

    def tag_digest(self, repo: str, tag: str) -> str | None:
        return self._tags.get(tag)


def _describe(stored: StoredManifest) -> dict[str, Any]:
    fields: dict[str, Any] = {"media_type": stored.media_type, "size": len(stored.data)}
    try:
        manifest = parse_manifest(stored.data, stored.media_type, stored.digest)
    except OCIError:
        return fields
    fields["artifact_type"] = manifest.artifact_type
    fields["subject"] = str(manifest.subject.digest) if manifest.subject else None
    return fields
