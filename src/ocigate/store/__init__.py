"""Storage backends implementing :class:`ocigate.registry.Registry`."""

from .core.gc import GcReport
from .embedded import EmbeddedStore

__all__ = ["EmbeddedStore", "GcReport"]
