"""``build_events``: a store outbox given means the store's transactions write the events (once,
exactly even under racing pushes); none given means the layer appends them to events.db."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ocigate.events.build import build_events
from ocigate.events.config import EventsConfig
from ocigate.events.database import connect_outbox
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.memory import MemoryStore

from .test_layer import push, types_of

pytestmark = pytest.mark.anyio
CONFIG = EventsConfig.model_validate(
    {"webhooks": [{"name": "hook", "url": "http://127.0.0.1:9/hook"}]}
)


def events_in(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT event FROM outbox ORDER BY seq").fetchall()
    return [json.loads(row[0]) for row in rows]


async def test_the_store_outbox_gets_each_event_once_from_the_stores_transactions(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    background: list[Any] = []
    registry = build_events(CONFIG, store, connect_outbox(store.meta.path), data_dir, background)
    configs = [b'{"n":%d}' % n for n in range(8)]
    # Racing pushes: decided outside the store's transaction, each would see a new repository.
    await asyncio.gather(*(push(registry, "race/app", config, ["latest"]) for config in configs))
    await registry.close()
    events = events_in(store.meta.path)
    assert types_of(events).count("repository.created") == 1
    assert types_of(events).count("manifest.pushed") == 8
    assert types_of(events).count("tag.moved") == 7
    assert len({e["id"] for e in events}) == len(events) == 16  # none written twice
    assert not (data_dir / "events.db").exists()
    assert len(background) == 1  # the webhook's deliverer


async def test_without_a_store_outbox_the_layer_appends_to_events_db(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    registry = build_events(CONFIG, MemoryStore(), None, data_dir, None)
    await push(registry, "mem/app", b"{}", ["v1"])
    await registry.close()
    assert types_of(events_in(data_dir / "events.db")) == ["repository.created", "manifest.pushed"]
