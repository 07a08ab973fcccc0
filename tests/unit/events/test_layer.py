"""The events layer over a real store whose metadata database keeps the outbox (the embedded
store's SQLite, PostgreSQL): which changes record which events, in the same transaction, and
the outbox's claiming, ordering and dead-lettering, across workers (replicas)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
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
from ocigate.registry import Registry, UploadChunk
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.memory import MemoryStore
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.metadata import PostgresMetadata
from ocigate.store.postgres.migrate import migrate
from parts.postgres import postgres_server, postgres_url

from ..embedded_helpers import body, descriptor, image, push_blob

pytestmark = pytest.mark.anyio
__all__ = ["postgres_server", "postgres_url"]  # fixtures
T = TypeVar("T")


run = anyio.to_thread.run_sync


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """An ``Outbox`` method, which is synchronous: its callers run it in a worker thread."""
    return await run(functools.partial(function, *args, **kwargs))


Replica = tuple[Registry, Outbox]


@dataclass
class Backend:
    """A store whose metadata database keeps its outbox, and ``replica()`` making another
    instance of both on the same data (another worker process or replica)."""

    store: Registry
    outbox: Outbox
    replica: Callable[[], Awaitable[Replica]]
    made: list[Replica] = field(default_factory=list)


@pytest.fixture(params=["embedded", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "embedded":

        async def replica() -> Replica:
            store = EmbeddedStore(tmp_path)
            return store, connect_outbox(store.meta.path)

    else:
        url = request.getfixturevalue("postgres_url")
        blobs = MemoryBlobStore()  # one bucket, as replicas share one
        schema = await Database.connect(url, pool_size=1)
        await migrate(schema)
        await schema.close()

        async def replica() -> Replica:
            meta = PostgresMetadata(await Database.connect(url, pool_size=2))
            assert meta.outbox is not None
            return RegistryOverPorts(blobs, meta), meta.outbox

    made = Backend(*await replica(), replica)
    yield made
    for store, outbox in [(made.store, made.outbox), *made.made]:
        outbox.close()
        await store.close()


async def another(backend: Backend) -> Replica:
    """Another instance of the backend's store and outbox, closed after the test."""
    backend.made.append(await backend.replica())
    return backend.made[-1]


@pytest.fixture
def store(backend: Backend) -> Registry:
    return backend.store


@pytest.fixture
def outbox(backend: Backend) -> Outbox:
    return backend.outbox


def layer(store: Registry, outbox: Outbox, **config: Any) -> EventsLayer:
    config_model = EventsConfig.model_validate({"enabled": True, **config})
    return EventsLayer(store, config_model, outbox, staged=True)


async def recorded(outbox: Outbox) -> list[dict[str, Any]]:
    """Every event in the outbox, in order."""
    rows = await call(outbox.rows, limit=10_000)
    seqs = sorted({row.seq for row in rows})
    return [json.loads(await run(outbox.event, seq) or "") for seq in seqs]


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("io.ocigate.") for e in events]


async def push(registry: EventsLayer, repo: str, config: bytes, tags: list[str]) -> str:
    upload = await registry.start_upload(repo)
    await registry.commit_upload(repo, upload.id, Digest.of(config), UploadChunk(body(config)))
    manifest, data = image(config)
    await registry.put_manifest(repo, manifest, data, [Tag(t) for t in tags])
    return str(manifest.digest)


async def test_each_change_records_its_event(store: Registry, outbox: Outbox) -> None:
    registry = layer(store, outbox)
    first = await push(registry, "team/app", b'{"a":1}', ["v1", "latest"])
    second = await push(registry, "team/app", b'{"a":2}', ["latest"])
    await registry.delete_tag("team/app", Tag("v1"))
    await registry.delete_manifest("team/app", Digest.parse(second))
    await registry.delete_blob("team/app", Digest.of(b'{"a":1}'))
    events = await recorded(outbox)
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


async def test_failed_changes_record_nothing(store: Registry, outbox: Outbox) -> None:
    registry = layer(store, outbox)
    await push(registry, "r", b"{}", ["v1"])
    before = len(await recorded(outbox))
    with pytest.raises(ManifestUnknown):
        await registry.delete_tag("r", Tag("nope"))
    manifest, data = image(b"missing-config")
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest("r", manifest, data, [Tag("v2")])
    assert len(await recorded(outbox)) == before


async def test_events_commit_and_roll_back_with_the_change(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    outbox = connect_outbox(store.meta.path)
    event = make_event("/test", "tag.deleted", "r", tag=Tag("t"))
    with staging(lambda view: [event]), pytest.raises(RuntimeError), store.meta.changing() as conn:
        conn.execute("INSERT INTO repositories (name) VALUES ('r')")
        raise RuntimeError("the change fails")
    assert await recorded(outbox) == [] and not store.meta.repo_exists("r")
    with staging(lambda view: [event]) as staged, store.meta.changing() as conn:
        conn.execute("INSERT INTO repositories (name) VALUES ('r')")
    assert staged.claimed
    assert [e["id"] for e in await recorded(outbox)] == [event.id]
    outbox.close()
    await store.close()


async def test_pulls_are_optional(store: Registry, outbox: Outbox) -> None:
    await push_blob(store, "r", b"{}")
    manifest, data = image(b"{}")
    await store.put_manifest("r", manifest, data, [Tag("v1")])
    await layer(store, outbox).get_manifest("r", Tag("v1"))
    assert await recorded(outbox) == []
    pulls = layer(store, outbox, pulls=True)
    await pulls.get_manifest("r", Tag("v1"))
    body = await pulls.get_blob("r", manifest.blobs[0].digest, None)
    await body.close()
    assert types_of(await recorded(outbox)) == ["manifest.pulled", "blob.pulled"]
    assert (await recorded(outbox))[0]["data"]["tag"] == "v1"


async def test_lanes_are_claimed_in_order_and_dead_lettered(
    store: Registry, outbox: Outbox
) -> None:
    registry = layer(store, outbox)
    for i in range(3):
        await push(registry, "a", b'{"i":%d}' % i, [f"t{i}"])
    await push(registry, "b", b"{}", ["t"])
    assert (
        await call(outbox.fan_out, "hook", lambda repo, kind, art: kind != "repository.created")
        == 6
    )
    claims = await call(outbox.claim, "w1", 30, 10, ["hook"])
    # one claim per lane (repository): the first push to a and the push to b
    assert [json.loads(c.event)["data"]["tag"] for c in claims] == ["t0", "t"]
    assert (
        await call(outbox.claim, "w2", 30, 10, ["hook"]) == []
    )  # leased, and the lanes wait for them
    await call(outbox.delivered, claims[0], "w1")
    await call(outbox.failed, claims[1], "w1", "HTTP 500", None)  # dead-lettered: b's lane moves on
    [next_a] = await call(outbox.claim, "w2", 30, 10, ["hook"])
    assert json.loads(next_a.event)["data"]["tag"] == "t1"
    dead = await call(outbox.rows, dead_only=True)
    assert [(r.repo, r.state, r.last_error) for r in dead] == [("b", "dead", "HTTP 500")]
    assert await call(outbox.replay, [dead[0].id]) == 1
    assert await call(outbox.rows, dead_only=True) == []
    assert (await call(outbox.status))["endpoints"]["hook"]["pending"] == 3


async def test_prune_keeps_what_is_not_delivered(store: Registry, outbox: Outbox) -> None:
    registry = layer(store, outbox)
    await push(registry, "a", b"{}", ["t"])
    await push(registry, "b", b"{}", ["t"])
    assert await call(outbox.prune, 0, ["hook"]) == 0  # "hook" has not read the outbox yet
    await call(outbox.fan_out, "hook", lambda repo, kind, art: repo == "a")
    claims = await call(outbox.claim, "w", 30, 10, ["hook"])
    await call(outbox.delivered, claims[0], "w")
    # b's events were never for "hook"; a's first is delivered, its second still pending
    assert await call(outbox.prune, -1, ["hook"]) == 3
    assert [r.type for r in await call(outbox.rows)] == ["manifest.pushed"]


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
    store: Registry, outbox: Outbox
) -> None:
    types = Settings(artifact_types=["record"]).artifact_types
    registry = ValidatingRegistry(layer(store, outbox, pulls=True), types, [])
    good = json.dumps({"name": "n", "version": "1", "schema_version": "1"}).encode()
    bad = json.dumps({"name": "n"}).encode()
    for payload in (b"{}", good, bad):
        await push_blob(store, "r", payload)
    with pytest.raises(ManifestInvalid):
        await registry.put_manifest("r", *record_manifest(bad), [Tag("bad")])
    assert await recorded(outbox) == []
    await registry.put_manifest("r", *record_manifest(good), [Tag("good")])
    assert types_of(await recorded(outbox)) == ["manifest.pushed"]


async def test_concurrent_workers_never_claim_the_same_delivery(backend: Backend) -> None:
    _, writer = await another(backend)
    events = [
        make_event("/t", "tag.deleted", f"repo-{i % 20}", tag=Tag(str(i))) for i in range(200)
    ]
    await call(writer.append, events)
    await call(writer.fan_out, "hook", lambda repo, kind, art: True)
    workers = [(await another(backend))[1] for _ in range(4)]
    claimed: list[list[tuple[str, int]]] = [[] for _ in workers]

    def work(index: int) -> None:  # in a thread of its own, as a worker's delivery runs
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

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for index in range(len(workers)):
                tg.start_soon(run, work, index)
    everything = [c for per_worker in claimed for c in per_worker]
    assert sorted(seq for _, seq in everything) == list(range(1, 201))  # each exactly once


async def test_racing_pushes_on_four_instances_record_exact_events(backend: Backend) -> None:
    """Sixteen pushes of different manifests to one new repository and tag at once, spread
    over four instances of the store (workers, replicas): exactly one ``repository.created``,
    each ``tag.moved`` names the digest the tag really had, in commit order."""
    instances = [(backend.store, backend.outbox)] + [await another(backend) for _ in range(3)]
    layers = [layer(store, outbox) for store, outbox in instances]
    configs = [b'{"n":%d}' % n for n in range(16)]
    await asyncio.gather(
        *(push(layers[n % 4], "race/app", config, ["latest"]) for n, config in enumerate(configs))
    )
    events = await recorded(backend.outbox)
    assert types_of(events).count("repository.created") == 1
    pushed = [e["data"]["digest"] for e in events if e["type"].endswith("manifest.pushed")]
    moves = [
        (e["data"]["previousDigest"], e["data"]["digest"])
        for e in events
        if e["type"].endswith("tag.moved")
    ]
    assert len(pushed) == 16
    assert moves == list(itertools.pairwise(pushed))  # outbox order is commit order
    latest = await instances[3][0].get_manifest("race/app", Tag("latest"))
    assert str(latest.digest) == pushed[-1]


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
