"""Storage backends implementing :class:`ocigate.registry.Registry`."""

from .embedded import EmbeddedStore, GcReport

__all__ = ["EmbeddedStore", "GcReport"]
