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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
from .layers.quota import QuotaLayer
from .layers.ratelimit import RateLimiter
from .layers.validate import ValidatingRegistry
from .logformat import configure_logging
from .metrics import GC_FREED, GC_RUNS, exposition
from .quota_table import usage_row
from .registry import Registry
from .server.limits import Limits
from .store.core.gc import GcReport
from .store.core.registry import RegistryOverPorts
from .store.core.retention_run import Retention
from .store.embedded import EmbeddedStore
from .store.gateway import build_gateway
from .store.ports import MetadataStore

if TYPE_CHECKING:
    from .store.objects.store import ObjectsStore
from .store_config import EmbeddedStoreConfig, ObjectsStoreConfig, UpstreamsStoreConfig
from .ui.routes import Ui
from .ui.session import Sessions, load_or_create_secret

log = logging.getLogger("ocigate")

Job = Callable[[], Coroutine[Any, Any, None]]


@runtime_checkable
class ScheduledCollector(Protocol):
    """A store whose sharers agree on one scheduled collection per interval."""

    async def collect_garbage_if_due(
        self, interval: float, retention: Retention | None = None
    ) -> GcReport | None: ...


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
    changes = with_events(settings, backend.registry, backend.metadata, jobs)
    schedule_gc(settings, backend.registry, changes, jobs)
    checked = build_layers(settings, changes, backend.metadata)
    schedule_sync(settings, checked, jobs)
    registry = with_policy(checked, policy)
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
        mount=web_ui(settings, registry, auth, backend.metadata),
    )


def web_ui(
    settings: Settings,
    registry: Registry,
    auth: Authenticator | None,
    metadata: MetadataStore | None,
) -> Ui | None:
    """The web UI over the same layers as the API, unless switched off. A gateway's default is
    off: its upstreams may list nothing, and its users pull, they do not browse."""
    config = settings.ui
    enabled = config.enabled
    if enabled is None:
        enabled = not isinstance(settings.store, UpstreamsStoreConfig)
    if not enabled:
        return None
    if config.session_secret is not None:
        secret = config.session_secret.encode()
    else:
        secret = load_or_create_secret(settings.store.data_dir / "ui-session.key")
    usage = partial(usage_row, metadata, settings.quotas) if settings.quotas and metadata else None
    return Ui(registry, config, Sessions(secret, config.session_ttl), auth, usage)


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
    """Upload expiry (on the objects backend any replica may run it: an upload held
    elsewhere is skipped)."""
    jobs.append(partial(expire_uploads_forever, store, config.upload_expiry))


def schedule_gc(settings: Settings, store: Registry, changes: Registry, jobs: list[Job]) -> None:
    """GC when scheduled (one run per interval across workers/replicas), retention first,
    deleting through ``changes`` (the store under its events layer)."""
    config = settings.store
    if not isinstance(config, EmbeddedStoreConfig | ObjectsStoreConfig) or not config.gc_interval:
        return
    assert isinstance(store, ScheduledCollector)  # what both kinds build
    retention = Retention(settings.retention, changes)
    jobs.append(partial(collect_garbage_forever, store, config.gc_interval, retention))


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


async def collect_garbage_forever(
    store: ScheduledCollector, interval: int, retention: Retention
) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            report = await store.collect_garbage_if_due(interval, retention)
        except Exception:
            log.exception("garbage collection failed")
            continue
        if report is not None:
            GC_RUNS.inc()
            GC_FREED.inc(report.bytes_freed)
            log.info(json.dumps({"gc": report.summary()}))


def with_events(
    settings: Settings, store: Registry, metadata: MetadataStore | None, jobs: list[Job] | None
) -> Registry:
    """The events layer around ``store`` when events are on (webhook delivery appended to
    ``jobs``, unless None); ``metadata``: the store's, whose outbox its transactions write."""
    if not settings.events.active:
        return store
    # Asked only now: an outbox is opened on first use.
    outbox = metadata.outbox if metadata is not None else None
    return build_events(settings.events, store, outbox, settings.store.data_dir, jobs)


def build_layers(settings: Settings, changes: Registry, metadata: MetadataStore | None) -> Registry:
    """The checks the settings ask for around ``changes`` (the store under its events layer,
    ``with_events``; ``metadata``: the store's): validate(quota(events(store))). Events
    innermost: they record what the store did, and the reads telling what a change was
    (previous tag, new repository) must not be subject to the caller's access policy, which
    ``with_policy`` puts outermost."""
    registry = changes
    # Outside events: a refused push changed nothing, so it is no event. Settings refuse
    # quotas for a backend without a metadata store of its own (a gateway).
    if settings.quotas and metadata is not None:
        registry = QuotaLayer(registry, settings.quotas, metadata)
    # Without artifact types or rules there is nothing to check: no layer, no cost per push.
    if settings.artifact_types or settings.artifact_policy:
        registry = ValidatingRegistry(registry, settings.artifact_types, settings.artifact_policy)
    return registry


def schedule_sync(settings: Settings, checked: Registry, jobs: list[Job]) -> None:
    """The scheduled sync, writing into ``checked`` (``build_layers``): below the access
    policy (it is the server's own job), above events, quotas and validation, so what it
    copies is reported, counted and checked like any push."""
    if settings.sync:
        from .mirror.schedule import sync_forever

        jobs.append(partial(sync_forever, settings.sync, checked, settings.store.data_dir))


def with_policy(checked: Registry, policy: Policy | None) -> Registry:
    """Access policy outermost: a denied request reaches nothing, so it learns nothing."""
    return checked if policy is None else PolicyLayer(checked, policy)
