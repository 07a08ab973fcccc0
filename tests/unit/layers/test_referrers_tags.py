"""The referrers tag fallback over backends without a referrers API: a memory store told it has
none, and a real distribution 2.8.2 on loopback behind an UpstreamStore (which probes for it).
A signature pushed with a subject is listed from the ``sha256-<hex>`` index the wrapper keeps,
and gone from it once deleted; a backend with the API is passed through untouched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from e2e.support import distribution_server
from ocigate.client import ClientOptions
from ocigate.layers.referrers_tags import ReferrersTags
from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.errors import ManifestUnknown, Unsupported
from ocigate.oci.manifests import Manifest, parse_manifest
from ocigate.oci.mediatypes import OCI_EMPTY, OCI_MANIFEST
from ocigate.oci.names import referrers_tag
from ocigate.oci.reference import Tag
from ocigate.registry import Registry, UploadChunk
from ocigate.store.memory import MemoryStore
from ocigate.store.upstream import UpstreamStore

pytestmark = pytest.mark.anyio

REPO = "lib/app"
SIGNATURE = "application/vnd.example.signature"
EMPTY = b"{}"


class WithoutReferrers(MemoryStore):
    """A memory store with no referrers API, saying so."""

    async def has_referrers_api(self, repo: str) -> bool:
        return False

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        raise Unsupported({}, "no referrers API here")


class WithReferrers(MemoryStore):
    """A memory store with its own referrers API, saying so."""

    async def has_referrers_api(self, repo: str) -> bool:
        return True


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _manifest(doc: dict[str, object]) -> tuple[Manifest, bytes]:
    data = json.dumps(doc).encode()
    return parse_manifest(data, OCI_MANIFEST, Digest.of(data)), data


async def _push_image(registry: Registry, artifact_type: str, subject: Manifest | None) -> Manifest:
    """An empty-config artifact (with ``subject`` when given), its blob uploaded first."""
    upload = await registry.start_upload(REPO)
    await registry.commit_upload(
        REPO, upload.id, Digest.of(EMPTY), UploadChunk(_chunks(EMPTY), None, 2)
    )
    empty = {"mediaType": OCI_EMPTY, "digest": str(Digest.of(EMPTY)), "size": 2}
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty,
        "layers": [empty],
    }
    if subject is not None:
        doc["subject"] = subject.as_referrer().to_json()
    manifest, data = _manifest(doc)
    await registry.put_manifest(REPO, manifest, data, [] if subject else [Tag("v1")])
    return manifest


async def _sign_list_delete(registry: Registry, backend: Registry) -> None:
    """Push an image and a signature of it through ``registry``; list, delete, list again.
    ``backend`` is what ``registry`` wraps: the index tag is looked up there."""
    image = await _push_image(registry, "application/vnd.example.image", None)
    signature = await _push_image(registry, SIGNATURE, image)

    listed = await registry.list_referrers(REPO, image.digest, None)
    assert [d.digest for d in listed] == [signature.digest]
    assert listed[0].artifact_type == SIGNATURE
    assert await registry.list_referrers(REPO, image.digest, "text/other") == []
    index = await backend.get_manifest(REPO, referrers_tag(image.digest))
    assert [m["digest"] for m in json.loads(index.data)["manifests"]] == [str(signature.digest)]

    await registry.delete_manifest(REPO, signature.digest)
    assert await registry.list_referrers(REPO, image.digest, None) == []
    index = await backend.get_manifest(REPO, referrers_tag(image.digest))
    assert json.loads(index.data)["manifests"] == []


async def test_a_memory_store_without_the_api_gets_referrers_from_tags(tmp_path: Path) -> None:
    backend = WithoutReferrers()
    registry = ReferrersTags(backend, "memory", lock_dir=tmp_path / "locks")
    await _sign_list_delete(registry, backend)
    assert list((tmp_path / "locks").glob("referrers-*.lock"))  # the cross-process lock was used
    await registry.close()


async def test_a_backend_with_the_api_is_passed_through() -> None:
    backend = WithReferrers()
    registry = ReferrersTags(backend, "memory")
    image = await _push_image(registry, "application/vnd.example.image", None)
    signature = await _push_image(registry, SIGNATURE, image)
    listed = await registry.list_referrers(REPO, image.digest, SIGNATURE)
    assert [d.digest for d in listed] == [signature.digest]
    with pytest.raises(ManifestUnknown):  # no index tag written: the backend lists them itself
        await backend.get_manifest(REPO, referrers_tag(image.digest))
    await registry.delete_manifest(REPO, signature.digest)
    assert await registry.list_referrers(REPO, image.digest, None) == []


async def test_distribution_behind_the_upstream_store_gets_referrers_from_tags(
    tmp_path: Path,
) -> None:
    distribution = distribution_server(tmp_path / "dist", tmp_path / "dist.log").start()
    upstream = UpstreamStore(ClientOptions(url=distribution.url), b"key")
    registry = ReferrersTags(upstream, upstream.name, lock_dir=tmp_path / "locks")
    try:
        assert not await upstream.has_referrers_api(REPO)  # distribution 2.8: a plain 404
        with pytest.raises(Unsupported):  # and the upstream store does not pretend otherwise
            await upstream.list_referrers(REPO, Digest.of(EMPTY), None)
        await _sign_list_delete(registry, upstream)
    finally:
        await registry.close()
        distribution.stop()
