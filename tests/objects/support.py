"""Replicas of ``ocigate serve`` on the objects backend, each with its own data directory (as
on separate machines) and one shared bucket and database, optionally behind HAProxy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from e2e.support import ServerProcess, free_port, ocigate_argv
from parts.haproxy import HAProxy
from parts.s3 import S3Bucket


def objects_store(bucket: S3Bucket, database_url: str, **extra: Any) -> dict[str, Any]:
    """The ``store:`` section of a replica on ``bucket`` and ``database_url``."""
    server = bucket.server
    s3 = {
        "endpoint": server.endpoint,
        "bucket": bucket.name,
        "region": server.region,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
    }
    return {"kind": "objects", "s3": s3, "database": {"url": database_url}} | extra


def replica(root: Path, store: dict[str, Any], workers: int = 2, **settings: Any) -> ServerProcess:
    """A replica (not started) in ``root``: its config file, data directory and log."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "ocigate.yaml"
    section = store | {"data_dir": str(root / "data")}
    config.write_text(yaml.safe_dump({"store": section, **settings}))
    port = free_port()
    argv = [
        *ocigate_argv(),
        "serve",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    return ServerProcess(f"replica-{root.name}", argv, port, root / "server.log")


@contextmanager
def replicas(
    root: Path, store: dict[str, Any], count: int = 3, workers: int = 2, **settings: Any
) -> Iterator[list[ServerProcess]]:
    """``count`` running replicas; stopped when the block ends."""
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            started.append(replica(root / f"r{i}", store, workers, **settings).start())
        yield started
    finally:
        for server in started:
            server.stop()


@contextmanager
def balanced(root: Path, servers: list[ServerProcess]) -> Iterator[HAProxy]:
    """HAProxy, round-robin over ``servers``."""
    proxy = HAProxy(root / "haproxy", [server.port for server in servers]).start()
    try:
        yield proxy
    finally:
        proxy.stop()
