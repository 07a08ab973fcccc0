"""``EmbeddedStore``: the registry logic over local blob files and SQLite, on one data directory
shared safely by several worker processes (each with its own ``EmbeddedStore``).

Layout under ``data_dir``::

    blobs/<alg>/<hex[:2]>/<hex>   verified, read-only blob files (layers, configs, manifest bytes),
                                  shared by all repositories: a blob pushed twice is stored once
    uploads/<uuid4 hex>/data      bytes received so far by an upload session
    uploads/<uuid4 hex>/state.json  {"repo", "offset"}: owner and durable offset (atomic replace)
    tmp/                          temporary files and upload staging dirs; never visible, swept
                                  by ``expire_uploads`` once older than the upload expiry
    meta.db (+ -wal, -shm)        SQLite: repositories, repo_blobs, manifests, tags, manifest_refs
    meta.stamp                    the change stamp every metadata commit rewrites
    gc.lock                       flock: shared by commits/links, exclusive for the GC sweep
    gc.last                       when the last scheduled collection ran

Write order is always: blob file complete, fsynced and renamed into ``blobs/`` first, then the
metadata transaction that links it, so after a crash metadata never points at a missing file (at
worst an unlinked file is left for GC). See ``blobstore``, ``uploads``, ``metadata``, ``core.gc``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..core import gc
from ..core.gc import GcReport
from ..core.registry import RegistryOverPorts
from ..core.retention_run import Retention
from .blobstore import LocalBlobStore
from .gc_lock import FileLock
from .gc_schedule import collect_if_due
from .metadata import SqliteMetadata


class EmbeddedStore(RegistryOverPorts):
    blobs: LocalBlobStore
    meta: SqliteMetadata

    def __init__(
        self,
        data_dir: Path,
        *,
        sparse_index: bool = False,
        auto_mount: bool = False,
        upload_expiry: int = 86400,
        gc_grace: float = gc.DEFAULT_GRACE,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            LocalBlobStore(self.data_dir),
            SqliteMetadata(self.data_dir / "meta.db", FileLock(self.data_dir / "gc.lock")),
            sparse_index=sparse_index,
            auto_mount=auto_mount,
            upload_expiry=upload_expiry,
            gc_grace=gc_grace,
        )

    async def collect_garbage_if_due(
        self, interval: float, retention: Retention | None = None
    ) -> GcReport | None:
        """A scheduled collection (with ``retention`` first): None when another worker ran one
        within ``interval``."""
        collect = partial(self.collect_garbage, retention=retention)
        return await collect_if_due(self.data_dir / "gc.last", interval, collect)
