"""The policy layer lets a caller list tag details where it may pull, as it does tag lists."""

from __future__ import annotations

import pytest

from ocigate.auth.policy import Policy, PolicyConfig
from ocigate.layers.policy import PolicyLayer
from ocigate.oci.errors import Denied
from ocigate.store.memory import MemoryStore

from ..embedded_helpers import index

pytestmark = pytest.mark.anyio

POLICY = {"repositories": {"public/**": [{"who": ["*"], "actions": ["pull"]}]}}


async def test_tag_details_need_pull() -> None:
    store = MemoryStore()
    manifest, data = index([])
    for repo in ("public/app", "private/app"):
        await store.put_manifest(repo, manifest, data, [])
    layer = PolicyLayer(store, Policy(PolicyConfig.model_validate(POLICY)))
    assert await layer.list_tag_details("public/app") == []
    with pytest.raises(Denied):
        await layer.list_tag_details("private/app")
    await layer.close()
