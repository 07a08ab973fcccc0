"""The upstream backend: a :class:`Registry` that forwards every operation to another OCI
registry (see ``store`` for what it supplies that the upstream lacks)."""

from .store import UpstreamStore

__all__ = ["UpstreamStore"]
