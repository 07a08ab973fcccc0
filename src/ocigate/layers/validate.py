"""The validation layer: artifact types allowed per repository, and payloads checked by schema.

Everything is checked before the push is delegated, so a refused manifest leaves nothing stored
or tagged. Payload blobs are read back from the inner registry (they were uploaded before the
manifest, as the spec requires), size-capped before any byte is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import assert_never

import anyio.to_thread

from ..context import internal
from ..oci.descriptors import Descriptor
from ..oci.errors import BlobUnknown, ManifestBlobUnknown, ManifestInvalid
from ..oci.manifests import Manifest
from ..oci.reference import Tag
from ..registry import FileRange, Redirect, Registry, Stream
from .artifacts import (
    ArtifactRule,
    ArtifactType,
    Kind,
    PayloadChecker,
    classify,
    config_and_layers,
    refusal,
)
from .delegate import Delegate

READ_SIZE = 1024 * 1024


class ValidatingRegistry(Delegate):
    def __init__(
        self, inner: Registry, types: Sequence[ArtifactType], rules: Sequence[ArtifactRule]
    ) -> None:
        super().__init__(inner)
        self.types = tuple(types)
        self.rules = tuple(rules)
        self._checkers = {t.name: PayloadChecker(t) for t in types}

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        kind = classify(manifest, self.types)
        why = refusal(repo, kind, self.rules)
        if why is not None:
            raise ManifestInvalid(
                {"repository": repo, "kind": kind.label, "reason": why}, f"manifest invalid: {why}"
            )
        if kind.artifact_type is not None:
            await self._check_payloads(repo, manifest, kind)
        await self.inner.put_manifest(repo, manifest, data, tags)

    async def _check_payloads(self, repo: str, manifest: Manifest, kind: Kind) -> None:
        assert kind.artifact_type is not None
        artifact_type = kind.artifact_type
        checker = self._checkers[artifact_type.name]
        config, layers = config_and_layers(manifest)
        seen: set[str] = set()
        for desc in (config, *layers) if config else layers:
            if artifact_type.max_payload_size and desc.size > artifact_type.max_payload_size:
                raise _too_large(artifact_type, desc, desc.size)
            if not checker.checks(desc.media_type) or str(desc.digest) in seen:
                continue
            seen.add(str(desc.digest))
            payload = await self._read(repo, desc, artifact_type)
            problem = checker.problem(desc.media_type, payload)
            if problem is not None:
                detail = {
                    "artifactType": artifact_type.name,
                    "digest": str(desc.digest),
                    "mediaType": desc.media_type,
                    "pointer": problem.pointer,
                    "reason": problem.message,
                }
                raise ManifestInvalid(
                    detail,
                    f"blob {desc.digest} ({desc.media_type}) is not a valid"
                    f" {artifact_type.name!r} payload at {problem.where}:"
                    f" {problem.message}",
                )

    async def _read(self, repo: str, desc: Descriptor, artifact_type: ArtifactType) -> bytes:
        try:
            with internal():
                body = await self.inner.get_blob(repo, desc.digest, None)
        except BlobUnknown:
            digest = str(desc.digest)
            raise ManifestBlobUnknown(
                {"digest": digest}, f"blob unknown to registry: {digest}"
            ) from None
        try:
            match body:
                case Redirect():
                    return b""  # bytes the backend hands out elsewhere: checked as none
                case FileRange() | Stream() if body.size > artifact_type.payload_limit:
                    raise _too_large(artifact_type, desc, body.size)
                case FileRange():
                    return await _read_file(body)
                case Stream():
                    return await _read_stream(body)
                case _:
                    assert_never(body)
        finally:
            await body.close()


def _too_large(artifact_type: ArtifactType, desc: Descriptor, size: int) -> ManifestInvalid:
    limit = artifact_type.payload_limit
    return ManifestInvalid(
        {
            "artifactType": artifact_type.name,
            "digest": str(desc.digest),
            "size": size,
            "limit": limit,
        },
        f"blob {desc.digest} is {size} bytes, more than the {limit} bytes an artifact of type"
        f" {artifact_type.name!r} may reference (max_payload_size)",
    )


async def _read_file(body: FileRange) -> bytes:
    fd, start, length = body.fd, body.start, body.length

    def pread_all() -> bytes:
        parts, offset = [], start
        while offset < start + length:
            part = os.pread(fd, min(READ_SIZE, start + length - offset), offset)
            if not part:
                break
            parts.append(part)
            offset += len(part)
        return b"".join(parts)

    return await anyio.to_thread.run_sync(pread_all)


async def _read_stream(body: Stream) -> bytes:
    parts: list[bytes] = []
    received = 0
    async for part in body.chunks:
        received += len(part)
        if received > body.length:  # a stream longer than announced: stop reading
            break
        parts.append(part)
    return b"".join(parts)
