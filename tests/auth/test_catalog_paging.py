"""``_catalog`` for a caller who sees few of many repositories: the store is read in a few
batched queries, and paging runs over what the caller may see (a ``Link`` only when another
visible name follows, its ``last`` the last one returned)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ocigate.api.app import App
from ocigate.api.auth import Authenticator
from ocigate.assemble import api_options
from ocigate.auth.config import AuthConfig
from ocigate.auth.policy import Policy, PolicyConfig
from ocigate.config import Settings
from ocigate.layers.delegate import Delegate
from ocigate.layers.policy import PolicyLayer
from ocigate.oci.digest import Digest
from ocigate.oci.manifests import parse_manifest
from ocigate.oci.mediatypes import OCI_INDEX
from ocigate.oci.reference import Tag
from ocigate.registry import Page
from ocigate.store.memory import MemoryStore
from spec.conftest import serve_app
from spec.helpers import parse_link

VISIBLE = ["public/app", "public/tool"]
HIDDEN = [f"hidden/r{i:04}" for i in range(1500)] + [f"private/r{i:04}" for i in range(1500)]
POLICY = {"repositories": {"public/**": [{"who": ["*"], "actions": ["pull"]}]}}


class CountingStore(Delegate):
    """The real in-memory store, counting the catalog queries made of it."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.listings = 0

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        self.listings += 1
        return await self.inner.list_repositories(last, n)


async def _fill(store: MemoryStore) -> None:
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    manifest = parse_manifest(data, OCI_INDEX, Digest.of(data))
    for name in [*HIDDEN, *VISIBLE]:
        await store.put_manifest(name, manifest, data, [Tag.parse("v1")])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CountingStore]]:
    memory = MemoryStore()
    asyncio.run(_fill(memory))
    store = CountingStore(memory)
    tmp: Path = tmp_path_factory.mktemp("catalog")
    (tmp / "htpasswd").write_text("")
    auth_config = AuthConfig(htpasswd=tmp / "htpasswd", realm="basic")
    settings = Settings(data_dir=tmp / "data", auth=auth_config, policy=POLICY)
    policy = Policy(PolicyConfig.model_validate(POLICY))
    auth = Authenticator(auth_config, policy, settings.store.data_dir)
    with serve_app(App(PolicyLayer(store, policy), api_options(settings), auth=auth)) as url:
        yield url, store


def test_paging_over_what_the_caller_sees(served: tuple[str, CountingStore]) -> None:
    url, store = served
    with httpx.Client(base_url=url) as client:
        before = store.listings
        first = client.get("/v2/_catalog", params={"n": 1})
        assert first.json() == {"repositories": ["public/app"]}
        assert store.listings - before == 1, "one query for 3,002 names"
        target = parse_link(first.headers["link"])["next"]
        assert target == "/v2/_catalog?n=1&last=public%2Fapp"
        second = client.get(target)
        assert second.json() == {"repositories": ["public/tool"]}
        assert "link" not in second.headers  # hidden names after it are no page of their own
        everything = client.get("/v2/_catalog")
        assert everything.json() == {"repositories": VISIBLE} and "link" not in everything.headers
