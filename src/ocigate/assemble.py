"""The one place the app is put together: the settings become a store, the layers around it,
background jobs, readiness probes and the ASGI app serving them. The only module of the
server that reads the whole ``Settings``; every part gets its own sub-model or plain values."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .api import health
from .api.app import App
from .api.auth import Authenticator
from .api.options import ApiOptions
from .auth.policy import Policy
from .auth.setup import effective_policy
from .config import Settings
from .config_env import RESOLVED_SETTINGS
from .events.build import build_events
from .layers.policy import PolicyLayer
from .layers.ratelimit import RateLimiter
from .layers.validate import ValidatingRegistry
from .logformat import configure_logging
from .metrics import GC_FREED, GC_RUNS, exposition
from .registry import Registry
from .server.limits import Limits
from .store.core.registry import RegistryOverPorts
from .store.embedded import EmbeddedStore
from .store.gateway import build_gateway
from .store.ports import MetadataStore

if TYPE_CHECKING:
    from .store.objects.store import ObjectsStore
from .store_config import EmbeddedStoreConfig, ObjectsStoreConfig, UpstreamsStoreConfig

log = logging.getLogger("ocigate")

Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Backend:
    """The store the settings select, before any layer."""

    registry: Registry
    readiness: health.Readiness
    # The metadata store when the backend is one over ports: its optional outbox capability
    # lets its own transactions write the events layer's events.
    metadata: MetadataStore | None = None
    # Run in each worker before its first request (connecting to a database).
    opening: tuple[Job, ...] = ()
    # Whether a request's ``ns`` names a host the backend routes by (the gateway's router).
    namespaces: Callable[[str], str | None] | None = None


def create_app(settings: Settings) -> App:
    """The application on the store the settings select: the embedded store, or the gateway
    (or cache) to the configured upstreams."""
    policy = effective_policy(settings.policy, settings.auth)
    data_dir = settings.store.data_dir
    auth = Authenticator(settings.auth, policy, data_dir) if settings.auth and policy else None
    jobs: list[Job] = []
    backend = build_store(settings, jobs)
    registry = build_layers(settings, backend, policy, jobs)
    embedded = isinstance(settings.store, EmbeddedStoreConfig)
    return App(
        registry,
        api_options(settings),
        jobs,
        auth,
        backend.readiness,
        rate_limiter(settings),
        partial(exposition, data_dir, embedded) if settings.metrics.enabled else None,
        opening=backend.opening,
        namespaces=backend.namespaces,
    )


def app_from_environment() -> App:
    """Factory for worker processes: settings arrive serialised in the environment."""
    settings = Settings.model_validate_json(os.environ[RESOLVED_SETTINGS])
    configure_logging(settings.log_level)
    return create_app(settings)


def api_options(settings: Settings) -> ApiOptions:
    """The HTTP-level knobs of the settings, as the API takes them."""
    store = settings.store
    upstreams = store.upstreams if isinstance(store, UpstreamsStoreConfig) else []
    return ApiOptions(
        **_same_named(settings, ApiOptions.__dataclass_fields__),
        metrics_token=settings.metrics.bearer_token,
        forward_credentials=any(u.forward_credentials for u in upstreams),
    )


def server_limits(settings: Settings) -> Limits:
    """What the built-in server allows one connection."""
    return Limits(**_same_named(settings, Limits.__dataclass_fields__))


def _same_named(settings: Settings, names: Iterable[str]) -> dict[str, Any]:
    """The top-level settings named as the given fields (the knobs keep their names)."""
    return settings.model_dump(include=set(names) & set(Settings.model_fields))


def rate_limiter(settings: Settings) -> RateLimiter | None:
    """Token buckets and upload caps, when any rule or cap is set."""
    limits = settings.rate_limits
    if not (limits.rules or limits.max_uploads):
        return None
    return RateLimiter(limits, settings.store.data_dir, settings.store.upload_expiry)


def build_store(settings: Settings, jobs: list[Job]) -> Backend:
    """The backend the ``store:`` section selects, and what tells that it is ready."""
    store = settings.store
    if isinstance(store, EmbeddedStoreConfig):
        embedded = embedded_store(store, jobs)
        readiness = health.Readiness([health.sqlite_probe(store.data_dir / "meta.db")])
        return Backend(embedded, readiness, embedded.meta)
    if isinstance(store, ObjectsStoreConfig):
        objects = objects_store(store, jobs)
        probes: list[health.Probe] = [objects.database_problem, objects.bucket_problem]
        return Backend(objects, health.Readiness(probes), objects.meta, (objects.open,))
    probes = [health.upstream_probe(upstream) for upstream in store.upstreams]
    gateway = build_gateway(
        store.upstreams,
        store.data_dir,
        upload_signing_key=store.upload_signing_key,
        max_manifest_size=settings.max_manifest_size,
    )
    return Backend(gateway, health.Readiness(probes), namespaces=gateway.resolve_namespace)


def _logic(config: EmbeddedStoreConfig | ObjectsStoreConfig) -> dict[str, Any]:
    """The registry logic's knobs, as both backends over ports take them."""
    return config.model_dump(include={"sparse_index", "auto_mount", "upload_expiry", "gc_grace"})


def _maintain(
    store: EmbeddedStore | ObjectsStore,
    config: EmbeddedStoreConfig | ObjectsStoreConfig,
    jobs: list[Job],
) -> None:
    """Upload expiry always (on the objects backend any replica may run it: an upload held
    elsewhere is skipped), GC when scheduled (one run per interval across workers/replicas)."""
    jobs.append(partial(expire_uploads_forever, store, config.upload_expiry))
    if config.gc_interval:
        jobs.append(partial(collect_garbage_forever, store, config.gc_interval))


def objects_store(config: ObjectsStoreConfig, jobs: list[Job]) -> ObjectsStore:
    """An S3 bucket and PostgreSQL, shared with the other replicas."""
    from .store.objects.store import ObjectsStore  # asyncpg and obstore only when configured

    store = ObjectsStore(config.s3, config.database, **_logic(config))
    _maintain(store, config, jobs)
    return store


def embedded_store(config: EmbeddedStoreConfig, jobs: list[Job]) -> EmbeddedStore:
    """Blob files and SQLite in ``data_dir``."""
    store = EmbeddedStore(config.data_dir, **_logic(config))
    _maintain(store, config, jobs)
    return store


async def expire_uploads_forever(store: RegistryOverPorts, expiry: int) -> None:
    while True:
        await anyio.sleep(min(3600, expiry / 4))
        try:
            await store.expire_uploads()
        except Exception:
            log.exception("upload expiry failed")


async def collect_garbage_forever(store: EmbeddedStore | ObjectsStore, interval: int) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            report = await store.collect_garbage_if_due(interval)
        except Exception:
            log.exception("garbage collection failed")
            continue
        if report is not None:
            GC_RUNS.inc()
            GC_FREED.inc(report.bytes_freed)
            log.info(json.dumps({"gc": report.summary()}))


def build_layers(
    settings: Settings, backend: Backend, policy: Policy | None, jobs: list[Job]
) -> Registry:
    """The layers the settings ask for around a store: policy(validate(events(store)));
    jobs the layers need run for the app's lifetime are appended to ``jobs``."""
    registry = backend.registry
    # Events innermost: they record what the store did, and the reads telling what a change
    # was (previous tag, new repository) must not be subject to the caller's access policy.
    if settings.events.active:
        # Asked only now: an outbox is opened on first use.
        outbox = backend.metadata.outbox if backend.metadata is not None else None
        registry = build_events(settings.events, registry, outbox, settings.store.data_dir, jobs)
    # Without artifact types or rules there is nothing to check: no layer, no cost per push.
    if settings.artifact_types or settings.artifact_policy:
        registry = ValidatingRegistry(registry, settings.artifact_types, settings.artifact_policy)
    # The scheduled sync writes below the access policy (it is the server's own job) and
    # above the events layer and validation: what it copies is reported and checked.
    if settings.sync:
        from .mirror.schedule import sync_forever

        jobs.append(partial(sync_forever, settings.sync, registry, settings.store.data_dir))
    # Access policy outermost: a denied request reaches nothing, so it learns nothing.
    if policy is not None:
        registry = PolicyLayer(registry, policy)
    return registry
