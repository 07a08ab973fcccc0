"""ocigate.assemble: the settings become the expected layer stack, jobs and app options."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ocigate.assemble import (
    api_options,
    collect_garbage_forever,
    create_app,
    expire_uploads_forever,
    server_limits,
)
from ocigate.config import Settings
from ocigate.events.layer import EventsLayer
from ocigate.events.webhooks import Deliverer
from ocigate.layers.policy import PolicyLayer
from ocigate.layers.ratelimit import RateLimiter
from ocigate.layers.validate import ValidatingRegistry
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.gateway.router import RouterStore

HOOK = {"name": "h", "url": "http://127.0.0.1:9/hook"}


def _stack(registry: Any) -> list[type]:
    """The layers from the outermost in, ending with the store's type."""
    kinds = []
    while True:
        kinds.append(type(registry))
        if not hasattr(registry, "inner"):
            return kinds
        registry = registry.inner


def _jobs(app: Any) -> list[Any]:
    """What each background job runs: the function of a partial, the method's function."""
    return [job.func if isinstance(job, partial) else job.__func__ for job in app._background]


@pytest.mark.parametrize(
    ("settings", "stack"),
    [
        ({}, [EmbeddedStore]),
        ({"events": {"enabled": True}}, [EventsLayer, EmbeddedStore]),
        ({"artifact_types": ["record"]}, [ValidatingRegistry, EmbeddedStore]),
        ({"policy": {"repositories": {"**": []}}}, [PolicyLayer, EmbeddedStore]),
        (
            {
                "events": {"webhooks": [HOOK]},
                "artifact_types": ["record"],
                "policy": {"repositories": {"**": []}},
            },
            [PolicyLayer, ValidatingRegistry, EventsLayer, EmbeddedStore],
        ),
        ({"store": {"kind": "gateway", "upstreams": [{"url": "http://a.example"}]}}, [RouterStore]),
        (
            {"store": {"kind": "cache", "upstreams": [{"url": "http://a.example"}]}},
            [RouterStore],
        ),
    ],
)
def test_layer_stack_per_configuration(
    tmp_path: Path, settings: dict[str, Any], stack: list[type]
) -> None:
    if "store" in settings:
        settings["store"]["data_dir"] = tmp_path
    else:
        settings["data_dir"] = tmp_path
    assert _stack(create_app(Settings(**settings)).registry) == stack


def test_jobs_per_configuration(tmp_path: Path) -> None:
    plain = create_app(Settings(data_dir=tmp_path))
    assert _jobs(plain) == [expire_uploads_forever]
    assert len(plain.readiness.probes) == 1  # the embedded store's SQLite
    busy = create_app(Settings(data_dir=tmp_path, gc_interval=60, events={"webhooks": [HOOK]}))
    assert _jobs(busy) == [expire_uploads_forever, Deliverer.run_forever, collect_garbage_forever]
    upstreams = [{"url": "http://a.example", "prefix": "a"}, {"url": "http://b.example"}]
    gateway = create_app(Settings(data_dir=tmp_path, upstreams=upstreams))
    assert _jobs(gateway) == []
    assert len(gateway.readiness.probes) == 2  # one per upstream


def test_rate_limiter_only_with_rules_or_caps(tmp_path: Path) -> None:
    assert create_app(Settings(data_dir=tmp_path)).limits is not None  # max_uploads by default
    off = Settings(data_dir=tmp_path, rate_limits={"max_uploads": 0})
    assert create_app(off).limits is None
    on = Settings(data_dir=tmp_path, rate_limits={"max_uploads": 0, "rules": [_READS]})
    assert isinstance(create_app(on).limits, RateLimiter)


_READS = {"repository": "**", "reads": {"rate": 10, "burst": 10}}


def test_options_carry_the_http_knobs(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        chunk_min_length=1024,
        tags_page_size=5,
        max_header_count=50,
        metrics={"enabled": True, "bearer_token": "t"},
        upstreams=[{"url": "http://a.example", "forward_credentials": True}],
    )
    options = api_options(settings)
    assert (options.chunk_min_length, options.tags_page_size) == (1024, 5)
    assert options.metrics_token == "t"
    assert create_app(settings).metrics is not None
    assert create_app(Settings(data_dir=tmp_path, metrics={"enabled": False})).metrics is None
    assert options.forward_credentials
    assert server_limits(settings).max_header_count == 50
