"""The events layer over a real EmbeddedStore: which changes record which events, in the same
transaction, and the outbox's claiming, ordering and dead-lettering."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from ocigate.config import Settings
from ocigate.events.config import EventsConfig
from ocigate.events.database import connect_outbox
from ocigate.events.layer import EventsLayer, make_event
from ocigate.events.outbox import Outbox
from ocigate.events.staging import staging
from ocigate.layers.validate import ValidatingRegistry
from ocigate.oci.digest import Digest
from ocigate.oci.errors import ManifestBlobUnknown, ManifestInvalid, ManifestUnknown
from ocigate.oci.manifests import Manifest, parse_manifest
from ocigate.oci.reference import Tag
from ocigate.registry import UploadChunk
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.memory import MemoryStore

from ..embedded_helpers import body, descriptor, image, push_blob

pytestmark = pytest.mark.anyio


@pytest.fixture
def outbox(store: EmbeddedStore) -> Outbox:
    return connect_outbox(store.meta.path)


def layer(store: EmbeddedStore, outbox: Outbox, **config: Any) -> EventsLayer:
    config_model = EventsConfig.model_validate({"enabled": True, **config})
    return EventsLayer(store, config_model, outbox, staged=True)


def recorded(store: EmbeddedStore) -> list[dict[str, Any]]:
    with sqlite3.connect(store.meta.path) as conn:
        rows = conn.execute("SELECT event FROM outbox ORDER BY seq").fetchall()
    return [json.loads(row[0]) for row in rows]


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("io.ocigate.") for e in events]


async def push(registry: EventsLayer, repo: str, config: bytes, tags: list[str]) -> str:
    upload = await registry.start_upload(repo)
    await registry.commit_upload(repo, upload.id, Digest.of(config), UploadChunk(body(config)))
    manifest, data = image(config)
    await registry.put_manifest(repo, manifest, data, [Tag(t) for t in tags])
    return str(manifest.digest)


async def test_each_change_records_its_event(store: EmbeddedStore, outbox: Outbox) -> None:
    registry = layer(store, outbox)
    first = await push(registry, "team/app", b'{"a":1}', ["v1", "latest"])
    second = await push(registry, "team/app", b'{"a":2}', ["latest"])
    await registry.delete_tag("team/app", Tag("v1"))
    await registry.delete_manifest("team/app", Digest.parse(second))
    await registry.delete_blob("team/app", Digest.of(b'{"a":1}'))
    events = recorded(store)
    assert types_of(events) == [
        "repository.created",
        "manifest.pushed",
        "manifest.pushed",
        "tag.moved",
        "tag.deleted",
        "manifest.deleted",
        "blob.deleted",
    ]
    created, pushed, _, moved, untagged, deleted, blob = (e["data"] for e in events)
    assert created["repository"] == "team/app"
    assert pushed["digest"] == first and pushed["tags"] == ["v1", "latest"]
    assert pushed["tag"] == "v1"
    assert pushed["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert pushed["artifactType"] == "application/vnd.oci.image.config.v1+json"
    assert pushed["size"] > 0 and pushed["subject"] is None
    assert pushed["actor"] == {"identity": None, "name": "anonymous"}
    assert moved == moved | {"tag": "latest", "digest": second, "previousDigest": first}
    assert untagged["tag"] == "v1" and untagged["digest"] == first
    assert deleted["digest"] == second
    assert deleted["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert blob["digest"] == str(Digest.of(b'{"a":1}')) and blob["size"] == 7
    for event in events:
        assert event["specversion"] == "1.0" and event["source"] == "/ocigate"
        assert event["time"].endswith("Z") and event["id"]


async def test_failed_changes_record_nothing(store: EmbeddedStore, outbox: Outbox) -> None:
    registry = layer(store, outbox)
    await push(registry, "r", b"{}", ["v1"])
    before = len(recorded(store))
    with pytest.raises(ManifestUnknown):
        await registry.delete_tag("r", Tag("nope"))
    manifest, data = image(b"missing-config")
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest("r", manifest, data, [Tag("v2")])
    assert len(recorded(store)) == before


async def test_events_commit_and_roll_back_with_the_change(store: EmbeddedStore) -> None:
    event = make_event("/test", "tag.deleted", "r", tag=Tag("t"))
    with staging(lambda view: [event]), pytest.raises(RuntimeError), store.meta.changing() as conn:
        conn.execute("INSERT INTO repositories (name) VALUES ('r')")
        raise RuntimeError("the change fails")
    assert recorded(store) == [] and not store.meta.repo_exists("r")
    with staging(lambda view: [event]) as staged, store.meta.changing() as conn:
        conn.execute("INSERT INTO repositories (name) VALUES ('r')")
    assert staged.claimed
    assert [e["id"] for e in recorded(store)] == [event.id]


async def test_pulls_are_optional(store: EmbeddedStore, outbox: Outbox) -> None:
    await push_blob(store, "r", b"{}")
    manifest, data = image(b"{}")
    await store.put_manifest("r", manifest, data, [Tag("v1")])
    await layer(store, outbox).get_manifest("r", Tag("v1"))
    assert recorded(store) == []
    pulls = layer(store, outbox, pulls=True)
    await pulls.get_manifest("r", Tag("v1"))
    body = await pulls.get_blob("r", manifest.blobs[0].digest, None)
    await body.close()
    assert types_of(recorded(store)) == ["manifest.pulled", "blob.pulled"]
    assert recorded(store)[0]["data"]["tag"] == "v1"


async def test_lanes_are_claimed_in_order_and_dead_lettered(
    store: EmbeddedStore, outbox: Outbox
) -> None:
    registry = layer(store, outbox)
    for i in range(3):
        await push(registry, "a", b'{"i":%d}' % i, [f"t{i}"])
    await push(registry, "b", b"{}", ["t"])
    assert outbox.fan_out("hook", lambda repo, kind, art: kind != "repository.created") == 6
    claims = outbox.claim("w1", 30, 10, ["hook"])
    # one claim per lane (repository): the first push to a and the push to b
    assert [json.loads(c.event)["data"]["tag"] for c in claims] == ["t0", "t"]
    assert outbox.claim("w2", 30, 10, ["hook"]) == []  # leased, and the lanes wait for them
    outbox.delivered(claims[0], "w1")
    outbox.failed(claims[1], "w1", "HTTP 500", None)  # dead-lettered: b's lane moves on
    [next_a] = outbox.claim("w2", 30, 10, ["hook"])
    assert json.loads(next_a.event)["data"]["tag"] == "t1"
    dead = outbox.rows(dead_only=True)
    assert [(r.repo, r.state, r.last_error) for r in dead] == [("b", "dead", "HTTP 500")]
    assert outbox.replay([dead[0].id]) == 1
    assert outbox.rows(dead_only=True) == []
    assert outbox.status()["endpoints"]["hook"]["pending"] == 3


async def test_prune_keeps_what_is_not_delivered(store: EmbeddedStore, outbox: Outbox) -> None:
    registry = layer(store, outbox)
    await push(registry, "a", b"{}", ["t"])
    await push(registry, "b", b"{}", ["t"])
    assert outbox.prune(0, ["hook"]) == 0  # "hook" has not read the outbox yet
    outbox.fan_out("hook", lambda repo, kind, art: repo == "a")
    claims = outbox.claim("w", 30, 10, ["hook"])
    outbox.delivered(claims[0], "w")
    # b's events were never for "hook"; a's first is delivered, its second still pending
    assert outbox.prune(-1, ["hook"]) == 3
    assert [r.type for r in outbox.rows()] == ["manifest.pushed"]


def record_manifest(payload: bytes) -> tuple[Manifest, bytes]:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(b"{}", "application/vnd.oci.empty.v1+json"),
        "layers": [descriptor(payload, "application/record+json")],
    }
    data = json.dumps(doc).encode()
    return parse_manifest(data, None, Digest.of(data)), data


async def test_refused_push_records_nothing_and_validation_reads_are_not_pulls(
    store: EmbeddedStore, outbox: Outbox
) -> None:
    types = Settings(artifact_types=["record"]).artifact_types
    registry = ValidatingRegistry(layer(store, outbox, pulls=True), types, [])
    good = json.dumps({"name": "n", "version": "1", "schema_version": "1"}).encode()
    bad = json.dumps({"name": "n"}).encode()
    for payload in (b"{}", good, bad):
        await push_blob(store, "r", payload)
    with pytest.raises(ManifestInvalid):
        await registry.put_manifest("r", *record_manifest(bad), [Tag("bad")])
    assert recorded(store) == []
    await registry.put_manifest("r", *record_manifest(good), [Tag("good")])
    assert types_of(recorded(store)) == ["manifest.pushed"]


async def test_concurrent_workers_never_claim_the_same_delivery(store: EmbeddedStore) -> None:
    writer = connect_outbox(store.meta.path)
    events = [
        make_event("/t", "tag.deleted", f"repo-{i % 20}", tag=Tag(str(i))) for i in range(200)
    ]
    writer.append(events)
    writer.fan_out("hook", lambda repo, kind, art: True)
    workers = [connect_outbox(store.meta.path) for _ in range(4)]
    claimed: list[list[tuple[str, int]]] = [[] for _ in workers]

    def work(index: int) -> None:
        outbox = workers[index]
        while True:
            claims = outbox.claim(f"w{index}", 30, 5, ["hook"])
            if not claims:
                if outbox.status()["endpoints"]["hook"].get("pending", 0) == 0:
                    return
                continue
            for claim in claims:
                claimed[index].append((json.loads(claim.event)["data"]["repository"], claim.seq))
                outbox.delivered(claim, f"w{index}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [c for per_worker in claimed for c in per_worker]
    assert sorted(seq for _, seq in everything) == list(range(1, 201))  # each exactly once
    for outbox in [writer, *workers]:
        outbox.close()


async def test_racing_pushes_record_exact_events(store: EmbeddedStore, outbox: Outbox) -> None:
    """Eight pushes of different manifests to one new repository and tag at once: exactly one
    ``repository.created``, and each ``tag.moved`` names the digest the tag really had."""
    registry = layer(store, outbox)
    configs = [b'{"n":%d}' % n for n in range(8)]
    await asyncio.gather(*(push(registry, "race/app", config, ["latest"]) for config in configs))
    events = recorded(store)
    assert types_of(events).count("repository.created") == 1
    pushed = [e["data"]["digest"] for e in events if e["type"].endswith("manifest.pushed")]
    moves = [
        (e["data"]["previousDigest"], e["data"]["digest"])
        for e in events
        if e["type"].endswith("tag.moved")
    ]
    assert len(pushed) == 8
    assert moves == list(itertools.pairwise(pushed))  # outbox order is commit order
    assert str((await store.get_manifest("race/app", Tag("latest"))).digest) == pushed[-1]


async def test_a_store_without_the_hook_gets_events_decided_just_before(tmp_path: Path) -> None:
    """Over the in-memory store (no transactions) the layer reads the state before each change
    and appends the events after it."""
    outbox = connect_outbox(tmp_path / "events.db")
    config = EventsConfig.model_validate({"enabled": True})
    registry = EventsLayer(MemoryStore(), config, outbox, staged=False)
    first = await push(registry, "mem/app", b'{"m":1}', ["latest"])
    second = await push(registry, "mem/app", b'{"m":2}', ["latest"])
    with sqlite3.connect(tmp_path / "events.db") as conn:
        rows = conn.execute("SELECT event FROM outbox ORDER BY seq").fetchall()
    events = [json.loads(row[0]) for row in rows]
    assert types_of(events) == [
        "repository.created",
        "manifest.pushed",
        "manifest.pushed",
        "tag.moved",
    ]
    assert (events[-1]["data"]["previousDigest"], events[-1]["data"]["digest"]) == (first, second)
