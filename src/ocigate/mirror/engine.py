"""The copy from one :class:`Registry` to another: repositories, tags, indexes with their
children, referrers (recursively: signatures of SBOMs), blobs — byte-exact and incremental.

Incremental by digest: a manifest the destination holds is not pushed again (nor its children
and blobs, which a registry holding it holds too), a blob the destination's repository holds
is not sent, a blob another destination repository holds (seen in this run) is mounted. Which
also makes it resumable: a rerun after an interruption copies what is still missing, an
interrupted blob upload starting again from its first byte.

Pushed children first (blobs, index children), tags last, so a reader of the destination never
sees a tag whose content is incomplete. Every manifest's bytes are checked against its digest
on the way (a blob's are by the source store, and again by the destination on commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.errors import BlobUnknown, Denied, ManifestUnknown, NameUnknown, OCIError
from ..oci.manifests import Manifest, parse_manifest
from ..oci.reference import Reference, Tag
from ..registry import Chunked, Registry, StoredManifest, Stream, UploadChunk
from .endpoints import Endpoint
from .plan import Options, Summary, needs_catalog, select_repositories, select_tags
from .progress import Reporter

T = TypeVar("T")
# Where a refused login can come from (``credentials``), for the refusal's reason.
LOGINS = (
    "--src-creds/--dest-creds USER:PASSWORD, MIRROR_SRC_CREDS/MIRROR_DEST_CREDS,"
    " REGISTRY_AUTH_FILE, podman's auth.json or docker's config.json naming the host"
)
ABSENT = (ManifestUnknown, NameUnknown, BlobUnknown)


class Mirror:
    """One run copying ``source`` (under ``src``'s prefix) into ``dest`` (under ``dst``'s)."""

    def __init__(
        self,
        source: Registry,
        src: Endpoint,
        dest: Registry,
        dst: Endpoint,
        options: Options,
        reporter: Reporter,
    ) -> None:
        self._source, self._src = source, src
        self._dest, self._dst = dest, dst
        self._options = options
        self._report = reporter
        self.summary = Summary()
        self._tag_slots = asyncio.Semaphore(options.jobs)
        self._blob_slots = asyncio.Semaphore(options.jobs)
        self._once: dict[tuple[str, str, str], asyncio.Future[Any]] = {}
        self._held: dict[Digest, str] = {}  # blob -> a destination repository holding it

    async def run(self) -> Summary:
        try:
            names = await self._repositories()
        except OCIError as exc:
            self._fail(f"repositories of {self._src}", exc)
            return self.summary
        # One repository after another (tags and blobs in parallel within one), so a blob a
        # repository copied is there to be mounted into the next.
        for name in names:
            await self._repository(name)
        return self.summary

    def _fail(self, what: str, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, Denied) and exc.detail.get("status") == 401:
            reason += f" (log in: {LOGINS})"
        self.summary.failures.append((what, reason))
        self._report.note(f"failed {what}: {reason}")

    async def _repositories(self) -> list[str]:
        """The repositories to copy, relative to the source prefix. The catalog is asked only
        when a glob needs it; a registry without one still serves explicit names."""
        patterns = self._options.repos
        catalog: list[str] | None = None
        if needs_catalog(patterns):
            catalog = []
            last: str | None = None
            while True:
                page = await self._source.list_repositories(last, None)
                catalog += [r for r in map(self._src.relative, page.items) if r is not None]
                if not page.more or not page.items:
                    break
                last = page.items[-1]
        return select_repositories(patterns, catalog)

    async def _repository(self, name: str) -> None:
        src_repo, dst_repo = self._src.repository(name), self._dst.repository(name)
        try:
            tags = await self._all_tags(src_repo)
        except OCIError as exc:
            self._fail(src_repo, exc)
            return
        chosen = select_tags(tags, self._options.tags)
        await asyncio.gather(*(self._tag(src_repo, dst_repo, tag) for tag in chosen))

    async def _all_tags(self, repo: str) -> list[str]:
        tags: list[str] = []
        last: str | None = None
        while True:
            page = await self._source.list_tags(repo, last, None)
            tags += page.items
            if not page.more or not page.items:
                return tags
            last = page.items[-1]

    async def _tag(self, src_repo: str, dst_repo: str, tag: str) -> None:
        async with self._tag_slots:
            try:
                stored = await self._fetch(src_repo, Tag(tag), None)
                stored = await self._platform_pick(src_repo, stored)
                manifest = await self._content(src_repo, dst_repo, stored)
                await self._point(dst_repo, tag, manifest, stored.data)
            except (OCIError, OSError) as exc:
                self._fail(f"{src_repo}:{tag}", exc)

    async def _fetch(
        self, repo: str, reference: Reference, expected: Digest | None
    ) -> StoredManifest:
        """A source manifest whose bytes are proven to be the digest asked (or served)."""
        stored = await self._source.get_manifest(repo, reference)
        want = expected or stored.digest
        if Digest.of(stored.data, want.algorithm) != want:
            raise OSError(f"{repo}@{want}: the source served bytes of another digest")
        return stored

    async def _platform_pick(self, repo: str, stored: StoredManifest) -> StoredManifest:
        """With ``--platform``, an index is replaced by its matching child: a filtered index
        would not be the source's bytes (skopeo copies so too)."""
        platform = self._options.platform
        manifest = parse_manifest(stored.data, stored.media_type, stored.digest)
        if platform is None or not manifest.is_index:
            return stored
        entries = json.loads(stored.data).get("manifests") or []
        for entry in entries:
            if isinstance(entry, dict) and platform.matches(entry.get("platform")):
                child = Digest.parse(str(entry.get("digest")))
                return await self._fetch(repo, child, child)
        raise ManifestUnknown({"platform": str(platform)}, f"no manifest for platform {platform}")

    async def _point(self, dst_repo: str, tag: str, manifest: Manifest, data: bytes) -> None:
        """The tag last, and only when it does not already name this manifest."""
        try:
            current = (await self._dest.stat_manifest(dst_repo, Tag(tag))).digest
        except ABSENT:
            current = None
        if current == manifest.digest:
            self.summary.tags_skipped += 1
            return
        if not self._options.dry_run:
            await self._dest.put_manifest(dst_repo, manifest, data, [Tag(tag)])
        self.summary.tags_copied += 1
        self.summary.tagged.append(f"{dst_repo}:{tag}@{manifest.digest}")
        self._report.note(f"tagged {dst_repo}:{tag} -> {manifest.digest}")

    def _one(self, key: tuple[str, str, str], work: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """``work`` done once per key in this run, whoever else asks for it meanwhile."""
        future = self._once.get(key)
        if future is None:
            future = self._once[key] = asyncio.ensure_future(work())
            # Its failure is reported by whoever awaits it; one no longer awaited (its tag
            # failed elsewhere first) is not a stray "exception never retrieved".
            future.add_done_callback(_observed)
        return future

    async def _content(self, src_repo: str, dst_repo: str, stored: StoredManifest) -> Manifest:
        manifest = parse_manifest(stored.data, stored.media_type, stored.digest)
        key = ("manifest", dst_repo, str(stored.digest))
        await self._one(key, lambda: self._copy_manifest(src_repo, dst_repo, manifest, stored))
        return manifest

    async def _copy_manifest(
        self, src_repo: str, dst_repo: str, manifest: Manifest, stored: StoredManifest
    ) -> None:
        if await self._dest_has_manifest(dst_repo, manifest.digest):
            self.summary.manifests_skipped += 1
        else:
            await asyncio.gather(
                *(self._child(src_repo, dst_repo, child) for child in manifest.children),
                *(self._blob(src_repo, dst_repo, blob) for blob in manifest.blobs),
            )
            if not self._options.dry_run:
                await self._dest.put_manifest(dst_repo, manifest, stored.data, [])
            self.summary.manifests_copied += 1
            self._report.note(f"copied manifest {dst_repo}@{manifest.digest}")
        if self._options.referrers:
            referrers = await self._source.list_referrers(src_repo, manifest.digest, None)
            await asyncio.gather(*(self._child(src_repo, dst_repo, r) for r in referrers))

    async def _dest_has_manifest(self, repo: str, digest: Digest) -> bool:
        try:
            await self._dest.stat_manifest(repo, digest)
        except ABSENT:
            return False
        return True

    async def _child(self, src_repo: str, dst_repo: str, child: Descriptor) -> None:
        stored = await self._fetch(src_repo, child.digest, child.digest)
        await self._content(src_repo, dst_repo, stored)

    async def _blob(self, src_repo: str, dst_repo: str, blob: Descriptor) -> None:
        key = ("blob", dst_repo, str(blob.digest))
        await self._one(key, lambda: self._copy_blob(src_repo, dst_repo, blob))

    async def _copy_blob(self, src_repo: str, dst_repo: str, blob: Descriptor) -> None:
        digest = blob.digest
        try:
            await self._dest.stat_blob(dst_repo, digest)
        except ABSENT:
            pass
        else:
            self.summary.blobs_skipped += 1
            self._held.setdefault(digest, dst_repo)
            return
        holder = self._held.get(digest)
        if holder is not None and await self._mount(dst_repo, holder, digest):
            self.summary.blobs_mounted += 1
            self._report.note(f"mounted blob {digest} into {dst_repo} from {holder}")
        else:
            async with self._blob_slots:
                if not self._options.dry_run:
                    await self._upload(src_repo, dst_repo, blob)
            self.summary.blobs_copied += 1
            self.summary.bytes_copied += blob.size
        self._held.setdefault(digest, dst_repo)

    async def _mount(self, repo: str, holder: str, digest: Digest) -> bool:
        if self._options.dry_run:
            return True  # a dry run does not try; a destination without mounts gets an upload
        try:
            await self._dest.mount_blob(repo, holder, digest)
        except BlobUnknown:
            return False
        return True

    async def _upload(self, src_repo: str, dst_repo: str, blob: Descriptor) -> None:
        """The blob streamed from source to destination in one upload: memory stays flat."""
        body = await self._source.get_blob(src_repo, blob.digest, None)
        try:
            if not isinstance(body, Stream):
                raise OSError(f"{src_repo}@{blob.digest}: the source did not serve the bytes")
            progress = self._report.blob(f"{dst_repo}@{str(blob.digest)[:19]}", body.size)
            ok = False
            upload = await self._dest.start_upload(dst_repo)
            try:
                chunks = _counted(body.chunks, progress.advance)
                chunk = UploadChunk(chunks, 0, body.size)
                await self._dest.commit_upload(dst_repo, upload.id, blob.digest, chunk)
                ok = True
            finally:
                progress.finish(ok)
                if not ok:
                    await _quietly(self._dest.cancel_upload(dst_repo, upload.id))
        finally:
            await body.close()


def _observed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _counted(chunks: Chunked, advance: Callable[[int], None]) -> AsyncIterator[bytes]:
    async for piece in chunks:
        advance(len(piece))
        yield piece


async def _quietly(cancel: Awaitable[None]) -> None:
    """A best-effort cleanup: a failed cancel leaves a session the registry expires."""
    with contextlib.suppress(OCIError, OSError):
        await cancel
