"""``MemoryStore``: the registry logic (``store.core``) over memory blobs and SQLite in memory.

Single process only, nothing survives a restart; it exists so that layers and the HTTP layer can
be tested fast against the same code the embedded store runs.
"""

from __future__ import annotations

from ..core.registry import RegistryOverPorts
from .blobstore import MemoryBlobStore
from .metadata import InMemoryMetadata


class MemoryStore(RegistryOverPorts):
    def __init__(self, *, sparse_index: bool = False, auto_mount: bool = False) -> None:
        super().__init__(
            MemoryBlobStore(),
            InMemoryMetadata(),
            sparse_index=sparse_index,
            auto_mount=auto_mount,
        )
