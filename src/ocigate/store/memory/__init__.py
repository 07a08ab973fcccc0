"""The memory backend: memory blobs (``blobstore``) + SQLite in memory (``metadata``) under the
registry logic, assembled as ``MemoryStore``."""

from .store import MemoryStore

__all__ = ["MemoryStore"]
