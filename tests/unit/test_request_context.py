"""The request context: derived for internal reads, and how the router resolves ``ns``."""

from __future__ import annotations

from ocigate.auth.identity import Identity
from ocigate.context import RequestContext, enter, internal, leave, request_context
from ocigate.store.gateway.router import RouterStore


class _Named:
    """A stand-in registry that only has to be told apart (routing never calls it here)."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_internal_read_is_a_derived_context_and_the_request_one_is_unchanged() -> None:
    alice = Identity("alice")
    token = enter(RequestContext("id-1", alice, None, "Basic x"))
    try:
        with internal():
            inside = request_context()
            assert inside.internal and inside.identity is alice and inside.request_id == "id-1"
        assert request_context() == RequestContext("id-1", alice, None, "Basic x")
    finally:
        leave(token)
    assert request_context() == RequestContext()


def test_router_resolves_only_upstream_hosts_and_routes_by_the_context() -> None:
    default, dist = _Named("default"), _Named("dist")
    router = RouterStore([("", default)], {"Dist.example:5000": dist})  # type: ignore[list-item,dict-item]
    assert router.resolve_namespace("dist.EXAMPLE:5000") == "dist.EXAMPLE:5000"
    assert router.resolve_namespace("other.example") is None
    assert router.route("team/app")[0] is default
    token = enter(RequestContext(namespace="dist.example:5000"))
    try:
        assert router.route("team/app") == (dist, "", "team/app")
    finally:
        leave(token)
