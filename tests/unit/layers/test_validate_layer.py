"""The validation layer over a real EmbeddedStore: artifact types, allow-lists, payload schemas."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ocigate.config import Settings
from ocigate.layers.artifacts import ArtifactRule, ArtifactType, classify
from ocigate.layers.globs import best_match, matches
from ocigate.layers.validate import ValidatingRegistry
from ocigate.oci.digest import Digest
from ocigate.oci.errors import ManifestBlobUnknown, ManifestInvalid, ManifestUnknown, NameUnknown
from ocigate.oci.manifests import Manifest, parse_manifest
from ocigate.oci.mediatypes import OCI_EMPTY, OCI_MANIFEST
from ocigate.oci.reference import Tag
from ocigate.store.embedded import EmbeddedStore

from ..embedded_helpers import CONFIG, descriptor, index, push_blob, push_image

pytestmark = pytest.mark.anyio

RECORD = "application/record+json"
MCP = "application/mcp+json"
GOOD_RECORD = {"name": "agent", "version": "1.0.0", "schema_version": "0.7.0"}
GOOD_MCP = {"name": "tools", "servers": [{"name": "fs", "command": "mcp-fs"}]}


def types(*extra: Any) -> list[ArtifactType]:
    return Settings(artifact_types=["record", "mcp", *extra]).artifact_types


def rules(*specs: dict[str, Any]) -> list[ArtifactRule]:
    return [ArtifactRule.model_validate(spec) for spec in specs]


def artifact(
    payloads: Sequence[tuple[bytes, str]],
    *,
    artifact_type: str | None = None,
    config: tuple[bytes, str] = (b"{}", OCI_EMPTY),
) -> tuple[Manifest, bytes]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(*config),
        "layers": [descriptor(data, media_type) for data, media_type in payloads],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    data = json.dumps(doc).encode()
    return parse_manifest(data, None, Digest.of(data)), data


async def push_artifact(
    registry: ValidatingRegistry | EmbeddedStore,
    store: EmbeddedStore,
    repo: str,
    payloads: Sequence[tuple[bytes, str]],
    tags: Sequence[str] = ("v1",),
    **kwargs: Any,
) -> Manifest:
    config = kwargs.get("config", (b"{}", OCI_EMPTY))
    for data in (config[0], *(p for p, _ in payloads)):
        await push_blob(store, repo, data)
    manifest, data = artifact(payloads, **kwargs)
    await registry.put_manifest(repo, manifest, data, [Tag(t) for t in tags])
    return manifest


def payload(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# -- globs and classification --------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "repo", "expected"),
    [
        ("**", "a", True),
        ("**", "a/b/c", True),
        ("team-a/*", "team-a/app", True),
        ("team-a/*", "team-a/app/dev", False),
        ("team-a/*", "team-a", False),
        ("team-a/**", "team-a", True),
        ("team-a/**", "team-a/app/dev", True),
        ("team-a/**", "team-ab/app", False),
        ("*/tools", "x/tools", True),
        ("*/tools", "x/y/tools", False),
        ("exact", "exact", True),
        ("exact", "exactly", False),
    ],
)
def test_globs(glob: str, repo: str, expected: bool) -> None:
    assert matches(glob, repo) is expected


def test_longest_glob_wins() -> None:
    globs = ["**", "team-a/**", "team-a/*", "team-a/app"]
    assert best_match(globs, "team-a/app") == 3
    assert best_match(globs, "team-a/other") == 2  # "team-a/*" is more specific than "team-a/**"
    assert best_match(globs, "team-a/x/y") == 1
    assert best_match(globs, "elsewhere") == 0
    assert best_match(["team-a/*"], "elsewhere") is None


def test_classify_by_artifact_type_config_and_layers() -> None:
    configured = types()
    by_type, _ = artifact([(b"x", "text/plain")], artifact_type=RECORD)
    by_config, _ = artifact([], config=(payload(GOOD_RECORD), RECORD))
    by_layer, _ = artifact([(b"x", "text/plain"), (payload(GOOD_MCP), MCP)])
    assert classify(by_type, configured).artifact_type == configured[0]
    assert classify(by_config, configured).artifact_type == configured[0]
    assert classify(by_layer, configured).artifact_type == configured[1]
    image, _ = artifact(
        [(b"layer", "application/vnd.oci.image.layer.v1.tar")], config=(b"{}", CONFIG)
    )
    kind = classify(image, configured)
    assert (kind.artifact_type, kind.image) == (None, True)
    other, _ = artifact([(b"x", "text/plain")], artifact_type="application/vnd.example.sbom")
    kind = classify(other, configured)
    assert (kind.artifact_type, kind.image, kind.label) == (
        None,
        False,
        "application/vnd.example.sbom",
    )
    # artifactType is tried before the layers
    both, _ = artifact([(payload(GOOD_MCP), MCP)], artifact_type=RECORD)
    assert classify(both, configured).artifact_type == configured[0]


# -- the layer -----------------------------------------------------------------------------


async def test_valid_record_is_stored_and_tagged(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), [])
    manifest = await push_artifact(layer, store, "agents/a", [(payload(GOOD_RECORD), RECORD)])
    got = await layer.get_manifest("agents/a", Tag("v1"))
    assert got.digest == manifest.digest


async def test_invalid_record_names_digest_pointer_and_message(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), [])
    bad = payload({"name": "agent", "version": 7, "schema_version": "0.7.0"})
    with pytest.raises(ManifestInvalid) as caught:
        await push_artifact(layer, store, "agents/a", [(bad, RECORD)])
    detail = caught.value.detail
    assert detail["digest"] == str(Digest.of(bad))
    assert detail["pointer"] == "/version"
    assert "is not of type 'string'" in detail["reason"]
    assert detail["artifactType"] == "record"
    assert str(Digest.of(bad)) in caught.value.message and "/version" in caught.value.message
    # nothing stored, nothing tagged
    with pytest.raises(ManifestUnknown):
        await store.get_manifest("agents/a", Tag("v1"))
    assert (await store.list_tags("agents/a", None, None)).items == []


async def test_missing_required_field_points_at_root(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), [])
    bad = payload({"name": "tools", "servers": [{"name": "fs"}]})
    with pytest.raises(ManifestInvalid) as caught:
        await push_artifact(layer, store, "tools/a", [(bad, MCP)])
    assert caught.value.detail["pointer"] == "/servers/0"
    missing = payload({"name": "agent", "version": "1"})
    with pytest.raises(ManifestInvalid) as caught:
        await push_artifact(layer, store, "agents/a", [(missing, RECORD)])
    assert caught.value.detail["pointer"] == ""
    assert "'schema_version' is a required property" in caught.value.detail["reason"]


async def test_payload_that_is_not_json(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), [])
    with pytest.raises(ManifestInvalid) as caught:
        await push_artifact(layer, store, "agents/a", [(b"{not json", RECORD)])
    assert "not valid JSON" in caught.value.detail["reason"]


async def test_config_blob_is_validated(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), [])
    bad = payload({"name": "", "version": "1", "schema_version": "1"})
    with pytest.raises(ManifestInvalid) as caught:
        await push_artifact(layer, store, "agents/a", [], config=(bad, RECORD))
    assert caught.value.detail["pointer"] == "/name"
    good = payload(GOOD_RECORD)
    await push_artifact(layer, store, "agents/a", [], config=(good, RECORD))


async def test_max_payload_size(store: EmbeddedStore) -> None:
    small = {"name": "small", "media_types": ["application/vnd.small"], "max_payload_size": 10}
    layer = ValidatingRegistry(store, types(small), [])
    await push_artifact(layer, store, "s/a", [(b"0123456789", "application/vnd.small")])
    with pytest.raises(ManifestInvalid) as caught:
        await push_artifact(layer, store, "s/a", [(b"0123456789A", "application/vnd.small")])
    assert caught.value.detail["limit"] == 10
    assert "max_payload_size" in caught.value.message


async def test_missing_payload_blob_is_manifest_blob_unknown(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), [])
    await push_blob(store, "agents/a", b"{}")
    manifest, data = artifact([(payload(GOOD_RECORD), RECORD)])
    with pytest.raises(ManifestBlobUnknown):
        await layer.put_manifest("agents/a", manifest, data, [Tag("v1")])


async def test_custom_schema_from_file(store: EmbeddedStore, tmp_path: Path) -> None:
    schema = tmp_path / "chart.json"
    schema.write_text(json.dumps({"type": "object", "required": ["apiVersion"]}))
    chart = {
        "name": "chart",
        "media_types": ["application/vnd.example.chart.config+json"],
        "schemas": [
            {"media_type": "application/vnd.example.chart.config+json", "schema": str(schema)}
        ],
    }
    layer = ValidatingRegistry(store, types(chart), [])
    config = (payload({"apiVersion": "v2"}), "application/vnd.example.chart.config+json")
    await push_artifact(layer, store, "charts/a", [(b"tgz", "application/x-tar")], config=config)
    config = (payload({"name": "x"}), "application/vnd.example.chart.config+json")
    with pytest.raises(ManifestInvalid):
        await push_artifact(
            layer, store, "charts/a", [(b"tgz", "application/x-tar")], config=config
        )


# -- allow-list matrix -----------------------------------------------------------------------

POLICY = rules(
    {"repository": "**", "artifact_types": ["record"]},
    {"repository": "team-a/*", "artifact_types": ["record", "mcp"], "images": False},
    {"repository": "team-a/sboms", "other_artifacts": True, "images": False},
    {"repository": "images/**", "artifact_types": []},
)
KINDS = ("record", "mcp", "image", "other")
# Which kinds each repository accepts under POLICY (longest glob wins).
MATRIX = {
    "misc": {"record", "image"},
    "team-a/app": {"record", "mcp"},
    "team-a/sboms": {"other"},
    "team-a/app/dev": {"record", "image"},  # "team-a/*" covers one level only: "**" applies
    "images/base/alpine": {"image"},
}


async def push_kind(layer: ValidatingRegistry, store: EmbeddedStore, repo: str, kind: str) -> None:
    if kind == "record":
        await push_artifact(layer, store, repo, [(payload(GOOD_RECORD), RECORD)])
    elif kind == "mcp":
        await push_artifact(layer, store, repo, [(payload(GOOD_MCP), MCP)])
    elif kind == "image":
        await push_artifact(
            layer,
            store,
            repo,
            [(b"layer", "application/vnd.oci.image.layer.v1.tar")],
            config=(b"{}", CONFIG),
        )
    else:
        await push_artifact(
            layer, store, repo, [(b"sbom", "text/spdx")], artifact_type="application/spdx+json"
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("repo", sorted(MATRIX))
async def test_allow_list_matrix(store: EmbeddedStore, repo: str, kind: str) -> None:
    layer = ValidatingRegistry(store, types(), POLICY)
    if kind in MATRIX[repo]:
        await push_kind(layer, store, repo, kind)
        assert (await store.list_tags(repo, None, None)).items == ["v1"]
        return
    with pytest.raises(ManifestInvalid) as caught:
        await push_kind(layer, store, repo, kind)
    reason = caught.value.detail["reason"]
    rule = next(r for r in POLICY if r.repository in reason)
    assert matches(rule.repository, repo)
    assert repo in reason
    with contextlib.suppress(NameUnknown):  # nothing at all was linked into the repository
        assert (await store.list_tags(repo, None, None)).items == []


async def test_unmatched_repository_is_unrestricted(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), rules({"repository": "team-a/*"}))
    for kind in KINDS:
        await push_kind(layer, store, "elsewhere", kind)


async def test_index_counts_as_image(store: EmbeddedStore) -> None:
    layer = ValidatingRegistry(store, types(), rules({"repository": "**", "images": True}))
    child = await push_image(store, "r", b"{}", [b"layer"])
    manifest, data = index([child])
    await layer.put_manifest("r", manifest, data, [Tag("multi")])
    strict = ValidatingRegistry(store, types(), rules({"repository": "**", "images": False}))
    with pytest.raises(ManifestInvalid):
        await strict.put_manifest("r", manifest, data, [Tag("multi2")])
