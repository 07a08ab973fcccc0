"""The ``registry`` fixture: one ``Registry`` per backend, built the way the server builds it.

Every test in this directory runs once per backend:

- ``memory``: ``MemoryStore``;
- ``embedded``: ``EmbeddedStore`` on a fresh directory;
- ``upstream-embedded``: the gateway (``assemble.build_store``) in front of a real
  ``ocigate serve`` on the embedded store, one server process for the whole session;
- ``cache-embedded``: the same with ``cache: true`` and ``cache_push: write-through``;
- ``postgres``: ``RegistryOverPorts`` over memory blobs and ``PostgresMetadata`` on a fresh
  database of the session's PostgreSQL (``parts.postgres``);
- ``router``: ``RouterStore`` with ``a`` → an embedded store and ``b`` → the gateway above. Each
  test's repositories are all under one of the two prefixes, chosen from the test's name (see
  ``Names``), so both routes are exercised and a test never straddles them.

Tests share the upstream server, so each takes its repository names from ``names``, unique to
the test and the backend. Where a backend legitimately behaves otherwise, ``DIFFERENCES`` says so
and the test is expected to fail there (strictly: an unexpected pass fails too).

The stores are imported here and nowhere else in this directory.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from e2e.support import ServerProcess, ocigate_server
from ocigate.assemble import build_store
from ocigate.config import Settings
from ocigate.registry import Registry
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.gateway.router import RouterStore
from ocigate.store.memory import MemoryStore
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.metadata import PostgresMetadata
from ocigate.store.postgres.migrate import migrate
from parts.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures
BACKENDS = ["memory", "embedded", "postgres", "upstream-embedded", "cache-embedded", "router"]
ROUTER_PREFIXES = ("a", "b")  # a: embedded, b: the gateway to the upstream

# (test function, backend) -> why that backend legitimately differs; each is a strict xfail.
# Empty: every difference the suite found so far was a bug, and is fixed.
DIFFERENCES: dict[tuple[str, str], str] = {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "backend" not in callspec.params:
            continue
        name = getattr(item, "originalname", item.name)
        reason = DIFFERENCES.get((name, callspec.params["backend"]))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``ocigate serve`` on the embedded store: the upstream of the gateway backends."""
    root = tmp_path_factory.mktemp("upstream")
    server = ocigate_server(root / "data", root / "server.log", workers=1).start()
    yield server  # pytest runs the rest at the session's end, whatever the tests did
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _gateway(data_dir: Path, url: str, cache: bool) -> Registry:
    """The gateway's store as ``ocigate serve`` builds it from these settings."""
    upstream: dict[str, object] = {"url": url, "cache": cache}
    if cache:
        upstream["cache_push"] = "write-through"
    settings = Settings.model_validate({"data_dir": data_dir, "upstreams": [upstream]})
    return build_store(settings, []).registry


@pytest.fixture
async def registry(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Registry]:
    store: Registry
    if backend == "memory":
        store = MemoryStore()
    elif backend == "embedded":
        store = EmbeddedStore(tmp_path / "embedded")
    elif backend == "postgres":
        db = await Database.connect(request.getfixturevalue("postgres_url"))
        await migrate(db)
        store = RegistryOverPorts(MemoryBlobStore(), PostgresMetadata(db))
    else:
        # Started only when a backend needs it, so `-k memory` runs without a server.
        url = request.getfixturevalue("upstream").url
        if backend == "router":
            gateway = _gateway(tmp_path / "gateway", url, cache=False)
            embedded = EmbeddedStore(tmp_path / "embedded")
            to_embedded, to_gateway = ROUTER_PREFIXES
            store = RouterStore([(to_embedded, embedded), (to_gateway, gateway)])
        else:
            store = _gateway(tmp_path / "gateway", url, cache=backend == "cache-embedded")
    yield store
    await store.close()


class Names:
    """Repository names for one test: unique to it (and its backend), valid per the spec."""

    def __init__(self, test: str, backend: str) -> None:
        self.base = f"{re.sub(r'[^a-z0-9]+', '-', test.lower()).strip('-')}-{uuid.uuid4().hex[:8]}"
        if backend == "router":
            prefix = ROUTER_PREFIXES[zlib.crc32(test.encode()) % len(ROUTER_PREFIXES)]
            self.base = f"{prefix}/{self.base}"

    def repo(self, label: str = "repo") -> str:
        return f"{self.base}/{label}"


@pytest.fixture
def names(backend: str, request: pytest.FixtureRequest) -> Names:
    return Names(request.node.originalname.removeprefix("test_"), backend)
