"""``Retention.run`` over the embedded store: a push racing the run wins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ocigate.registry import TagDetail
from ocigate.retention_config import RetentionConfig
from ocigate.store.core.retention_run import Retention
from ocigate.store.embedded import EmbeddedStore

from ...embedded_helpers import push_image

pytestmark = pytest.mark.anyio

CONFIG = RetentionConfig.model_validate(
    {"untagged_grace": 0, "rules": [{"repos": "**", "keep_last": 1}]}
)


class PushAfterPlanning:
    """The store's metadata, with ``push`` run right after the plan's first read of the tags:
    a client's push landing between the plan and its deletions."""

    def __init__(self, store: EmbeddedStore, push: Callable[[], Awaitable[Any]]) -> None:
        self._meta = store.meta
        self._push: Callable[[], Awaitable[Any]] | None = push

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meta, name)

    async def tag_details(self, repo: str) -> list[TagDetail] | None:
        found = await self._meta.tag_details(repo)
        if self._push is not None:
            push, self._push = self._push, None
            await push()
        return found


async def test_a_tag_pushed_again_after_the_plan_is_kept_with_its_manifest(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path)
    old = await push_image(store, "r", b'{"old": 1}', [b"old"], tags=["v0"])
    await push_image(store, "r", b'{"new": 1}', [b"new"], tags=["v1"])
    untagged = await push_image(store, "r", b'{"u": 1}', [b"u"])

    async def push() -> None:
        await push_image(store, "r", b'{"old": 1}', [b"old"], tags=["v0"])  # newest again
        await push_image(store, "r", b'{"u": 1}', [b"u"], tags=["fresh"])

    planned = await Retention(CONFIG, store).run(store.meta, dry_run=True)
    assert [(d.tag, d.digest) for d in planned] == [
        ("v0", str(old.digest)),
        (None, str(untagged.digest)),
        (None, str(old.digest)),
    ]
    racing = PushAfterPlanning(store, push)
    done = await Retention(CONFIG, store).run(racing, dry_run=False)  # type: ignore[arg-type]
    # Planned: v0 with its manifest, and the untagged manifest; the push saved them all. Only
    # v1, no longer the newest when it was planned as kept, stays: the plan is not redone.
    assert done == []
    assert [d.tag for d in await store.list_tag_details("r")] == ["fresh", "v0", "v1"]
    for manifest in (old, untagged):
        assert (await store.get_manifest("r", manifest.digest)).digest == manifest.digest
    await store.close()


async def test_a_dry_run_deletes_nothing_and_a_run_deletes_what_it_planned(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path)
    await push_image(store, "r", b'{"old": 1}', [b"old"], tags=["v0"])
    await push_image(store, "r", b'{"new": 1}', [b"new"], tags=["v1"])
    retention = Retention(CONFIG, store)
    planned = await retention.run(store.meta, dry_run=True)
    assert [(d.tag, d.reason.split(" (")[0]) for d in planned] == [
        ("v0", "not among the last 1 pushed"),
        (None, "its tags are deleted"),
    ]
    assert len(await store.list_tag_details("r")) == 2
    report = await store.collect_garbage(0, retention=retention)
    assert report.retention == planned
    assert report.summary()["tags_deleted"] == 1 and report.summary()["manifests_deleted"] == 1
    assert report.blobs_removed == 3  # the manifest's bytes, its config and its layer
    assert [d.tag for d in await store.list_tag_details("r")] == ["v1"]
    await store.close()
