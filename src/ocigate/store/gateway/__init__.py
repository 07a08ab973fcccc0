"""The gateway backend: one upstream store (or cache) per configured upstream, routed by
repository prefix or ``ns`` (``router``), assembled by ``build``."""

from .build import build_gateway

__all__ = ["build_gateway"]
