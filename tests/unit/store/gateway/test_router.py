"""Unit tests of the gateway's router: prefix routing."""

from __future__ import annotations

import pytest

from ocigate.oci.errors import NameUnknown
from ocigate.store.gateway.router import RouterStore


class _Named:
    """A stand-in registry that only has to be told apart (routing never calls it here)."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_router_picks_longest_whole_component_prefix() -> None:
    everything, hub, library = _Named("all"), _Named("hub"), _Named("lib")
    router = RouterStore([("", everything), ("hub", hub), ("hub/library", library)])  # type: ignore[list-item]
    assert router.route("hub/library/alpine") == (library, "hub/library", "alpine")
    assert router.route("hub/x/y") == (hub, "hub", "x/y")
    assert router.route("hubby/x") == (everything, "", "hubby/x")
    assert router.route("hub") == (everything, "", "hub")
    only_hub = RouterStore([("hub", hub)])  # type: ignore[list-item]
    with pytest.raises(NameUnknown):
        only_hub.route("other/x")
