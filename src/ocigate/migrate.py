"""``ocigate migrate --to CONFIG``: copy an embedded store, every repository, blob link,
manifest (in push order, so referrers keep theirs), tag and referrer, into the store another
configuration names (the objects backend, or another embedded store), byte for byte. A
repository left empty by deletions (listed, holding nothing) has nothing to copy: not created.

It goes through the destination's own ``Registry`` operations, so every byte is re-verified
against its digest on the way in and the destination's indexes (referrers, references for GC)
are built as a push builds them. It reads the source's SQLite in one snapshot, and may run
while the source still serves (what is pushed after the snapshot is not copied: run it again,
it skips what the destination already holds), or against a destination already serving.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from .oci.digest import Digest
from .oci.manifests import parse_manifest
from .oci.reference import Tag
from .registry import FileRange, Redirect, Registry, Stream, UploadChunk
from .store.core.registry import RegistryOverPorts
from .store.embedded import EmbeddedStore
from .store.embedded.metadata import connect

READ_SIZE = 1024 * 1024


@dataclass(slots=True)
class Copied:
    repositories: int = 0
    blobs: int = 0  # uploaded
    mounted: int = 0  # linked into another repository from one already holding it
    skipped: int = 0  # already held by the destination's repository
    manifests: int = 0
    tags: int = 0
    bytes: int = 0

    def line(self) -> str:
        return (
            f"{self.repositories} repositories, {self.manifests} manifests, {self.tags} tags,"
            f" {self.blobs} blobs uploaded ({self.bytes} bytes), {self.mounted} mounted,"
            f" {self.skipped} already there"
        )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    links: dict[str, list[tuple[str, int]]]  # repo -> (digest, size), in link order
    manifests: dict[str, list[tuple[str, str, bytes]]]  # repo -> (digest, media type, data)
    tags: dict[tuple[str, str], list[str]]  # (repo, manifest digest) -> its tags


def _snapshot(data_dir: Path) -> _Snapshot:
    conn = connect(data_dir / "meta.db", readonly=True)
    try:
        conn.execute("BEGIN")  # one consistent view of everything below
        links: dict[str, list[tuple[str, int]]] = {}
        for repo, digest, size in conn.execute(
            "SELECT repo, digest, size FROM repo_blobs ORDER BY repo, linked, digest"
        ):
            links.setdefault(repo, []).append((digest, size))
        manifests: dict[str, list[tuple[str, str, bytes]]] = {}
        for repo, digest, media_type, data in conn.execute(
            "SELECT repo, digest, media_type, data FROM manifests ORDER BY id"
        ):
            manifests.setdefault(repo, []).append((digest, media_type, bytes(data)))
        tags: dict[tuple[str, str], list[str]] = {}
        for repo, tag, digest in conn.execute("SELECT repo, tag, digest FROM tags ORDER BY tag"):
            tags.setdefault((repo, digest), []).append(tag)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return _Snapshot(links, manifests, tags)


async def _file_chunks(body: FileRange) -> AsyncIterator[bytes]:
    position, end = body.start, body.start + body.length
    while position < end:
        data = await anyio.to_thread.run_sync(
            os.pread, body.fd, min(READ_SIZE, end - position), position
        )
        if not data:
            raise OSError(f"blob {body.digest} is shorter than recorded")
        position += len(data)
        yield data


async def _upload(source: EmbeddedStore, dest: Registry, repo: str, digest: str, size: int) -> None:
    parsed = Digest.parse(digest)
    body = await source.blobs.open(parsed, size, 0, size)
    if body is None:
        raise OSError(f"source blob {digest} is missing (run `ocigate fsck` on the source)")
    try:
        match body:
            case FileRange():
                chunks = _file_chunks(body)
            case Stream():
                chunks = body.chunks
            case Redirect():
                raise OSError(f"source blob {digest} is a redirect, not bytes")
        upload = await dest.start_upload(repo)
        await dest.commit_upload(repo, upload.id, parsed, UploadChunk(chunks, 0, size))
    finally:
        await body.close()


async def copy_store(
    source: EmbeddedStore, dest: RegistryOverPorts, say: Callable[[str], None] = print
) -> Copied:
    snapshot = _snapshot(source.data_dir)
    # Manifests go in push order, which need not be children first where the source accepted
    # sparse indexes; the source checked them when they were pushed.
    dest.sparse_index = True
    copied = Copied()
    held: dict[str, str] = {}  # digest -> a destination repository linking it
    repos = sorted(set(snapshot.links) | set(snapshot.manifests))
    for repo in repos:
        copied.repositories += 1
        own = {digest for digest, _, _ in snapshot.manifests.get(repo, [])}
        for digest, size in snapshot.links.get(repo, []):
            if digest in own:
                continue  # a manifest's bytes: linked by its put below
            parsed = Digest.parse(digest)
            if await dest.meta.blob_size(repo, parsed) is not None:
                copied.skipped += 1
            elif digest in held:
                await dest.mount_blob(repo, held[digest], parsed)
                copied.mounted += 1
            else:
                await _upload(source, dest, repo, digest, size)
                copied.blobs += 1
                copied.bytes += size
            held.setdefault(digest, repo)
        for digest, media_type, data in snapshot.manifests.get(repo, []):
            manifest = parse_manifest(data, media_type, Digest.parse(digest))
            tags = snapshot.tags.get((repo, digest), [])
            await dest.put_manifest(repo, manifest, data, [Tag(tag) for tag in tags])
            copied.manifests += 1
            copied.tags += len(tags)
        say(f"copied {repo}")
    return copied
