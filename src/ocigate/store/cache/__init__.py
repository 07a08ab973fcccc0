"""The pull-through cache backend: an upstream plus a local copy of what was pulled (see
``store``)."""

from .store import CacheStore

__all__ = ["CacheStore"]
