"""The referrers API: manifests with a ``subject``, listed, filtered, and gone once deleted."""

from __future__ import annotations

import pytest

from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from ocigate.registry import Registry

from .conftest import Names
from .content import CONFIG_TYPE, Pushable, image, index

pytestmark = pytest.mark.anyio

SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"


def listed(referrer: Pushable) -> Descriptor:
    """What the referrers list holds for ``referrer``."""
    manifest = referrer.manifest
    return Descriptor(
        manifest.media_type, referrer.digest, len(referrer.data), manifest.artifact_type
    )


async def test_referrers_listed_filtered_and_deleted(registry: Registry, names: Names) -> None:
    repo = names.repo()
    subject = await image("subject").push(registry, repo, "v1")
    assert await registry.list_referrers(repo, subject.digest, None) == []
    signature = await image("sig", subject=subject, artifact_type=SIGNATURE).push(registry, repo)
    sbom = await image("sbom", subject=subject, artifact_type=SBOM).push(registry, repo)

    found = await registry.list_referrers(repo, subject.digest, None)
    assert sorted(found, key=lambda d: str(d.digest)) == sorted(
        [listed(signature), listed(sbom)], key=lambda d: str(d.digest)
    )
    assert await registry.list_referrers(repo, subject.digest, SBOM) == [listed(sbom)]
    assert await registry.list_referrers(repo, subject.digest, "application/x-none") == []

    await registry.delete_manifest(repo, sbom.digest)
    assert await registry.list_referrers(repo, subject.digest, None) == [listed(signature)]
    assert await registry.list_referrers(repo, subject.digest, SBOM) == []


async def test_referrers_of_an_unknown_subject(registry: Registry, names: Names) -> None:
    repo = names.repo()
    await image("unrelated").push(registry, repo, "v1")
    for where in (repo, names.repo("nowhere")):
        assert await registry.list_referrers(where, Digest.of(b"no such manifest"), None) == []


async def test_referrer_pushed_before_its_subject(registry: Registry, names: Names) -> None:
    repo = names.repo()
    subject = image("late subject")
    early = await image("early", subject=subject, artifact_type=SIGNATURE).push(registry, repo)
    assert await registry.list_referrers(repo, subject.digest, None) == [listed(early)]
    await subject.push(registry, repo, "v1")
    assert await registry.list_referrers(repo, subject.digest, None) == [listed(early)]


async def test_referrer_descriptor_carries_type_and_annotations(
    registry: Registry, names: Names
) -> None:
    repo = names.repo()
    subject = await image("subject").push(registry, repo, "v1")
    notes = {"org.example.note": "signed by the test"}
    # No artifactType: the config's media type stands for it.
    plain = await image("plain", subject=subject, annotations=notes).push(registry, repo)
    expected = Descriptor(
        OCI_MANIFEST, plain.digest, len(plain.data), CONFIG_TYPE, annotations=notes
    )
    assert await registry.list_referrers(repo, subject.digest, None) == [expected]
    assert await registry.list_referrers(repo, subject.digest, CONFIG_TYPE) == [expected]


async def test_an_index_as_referrer(registry: Registry, names: Names) -> None:
    repo = names.repo()
    subject = await image("subject").push(registry, repo, "v1")
    child = await image("child").push(registry, repo)
    referrer = await index([child], subject=subject, artifact_type=SBOM).push(registry, repo)
    expected = Descriptor(OCI_INDEX, referrer.digest, len(referrer.data), SBOM)
    assert await registry.list_referrers(repo, subject.digest, None) == [expected]


async def test_referrers_are_per_repository(registry: Registry, names: Names) -> None:
    mine, theirs = names.repo("mine"), names.repo("theirs")
    subject = await image("subject").push(registry, mine, "v1")
    await subject.push(registry, theirs, "v1")
    signature = await image("sig", subject=subject, artifact_type=SIGNATURE).push(registry, mine)
    assert await registry.list_referrers(mine, subject.digest, None) == [listed(signature)]
    assert await registry.list_referrers(theirs, subject.digest, None) == []
