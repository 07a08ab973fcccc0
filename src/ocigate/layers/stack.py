"""Assemble the layers the settings ask for around a store: policy(validate(events(store)))."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ..auth.policy import Policy
from ..config import Settings
from ..registry import Registry
from .policy import PolicyLayer
from .validate import ValidatingRegistry

Job = Callable[[], Coroutine[Any, Any, None]]


def build(
    settings: Settings,
    store: Registry,
    policy: Policy | None = None,
    background: list[Job] | None = None,
) -> Registry:
    """The layered registry; jobs the layers need run for the app's lifetime are appended to
    ``background`` (event delivery)."""
    registry = store
    # Events innermost: they record what the store did, and the reads telling what a change
    # was (previous tag, new repository) must not be subject to the caller's access policy.
    if settings.events.active:
        registry = _events(settings, store, background)
    # Without artifact types or rules there is nothing to check: no layer, no cost per push.
    if settings.artifact_types or settings.artifact_policy:
        registry = ValidatingRegistry(registry, settings.artifact_types, settings.artifact_policy)
    # Access policy outermost: a denied request reaches nothing, so it learns nothing.
    if policy is not None:
        registry = PolicyLayer(registry, policy)
    return registry


def _events(settings: Settings, store: Registry, background: list[Job] | None) -> Registry:
    from ..events.build import build_events
    from ..store.core.registry import RegistryOverPorts

    # A store over ports whose metadata store keeps an outbox writes the staged events itself.
    store_outbox = store.meta.outbox if isinstance(store, RegistryOverPorts) else None
    return build_events(settings.events, store, store_outbox, settings.data_dir, background)
