"""The objects backend end to end: real PostgreSQL, real S3 servers (radosgw and SeaweedFS),
replicas as real ``ocigate serve`` processes, HAProxy in front."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.support import ServerProcess
from parts.haproxy import HAProxy
from parts.postgres import PostgresServer, postgres_server, postgres_url
from parts.registries import http
from parts.s3 import S3Bucket, S3Server, create_bucket, radosgw, s3_bucket, s3_server, seaweedfs

from .support import balanced, objects_store, replicas

__all__ = [
    "http",
    "postgres_server",
    "postgres_url",
    "radosgw",
    "s3_bucket",
    "s3_server",
    "seaweedfs",
]


@pytest.fixture(scope="session")
def registry_kind() -> str:
    return "ocigate"  # what the e2e tests run here ask to tell ocigate from distribution


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to the test (lowercase, valid per the distribution spec)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"objects/{name}"


class Cluster:
    """Replicas sharing one bucket and one database, and HAProxy in front of them."""

    def __init__(self, servers: list[ServerProcess], proxy: HAProxy) -> None:
        self.replicas = servers
        self.proxy = proxy


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, radosgw: S3Server
) -> Iterator[Cluster]:
    """Three replicas of two workers each on radosgw and PostgreSQL, behind HAProxy; shared
    by a module's tests (each uses its own repositories)."""
    root = tmp_path_factory.mktemp("cluster")
    database = f"c_{uuid.uuid4().hex}"
    postgres_server.sql(f"CREATE DATABASE {database}")
    bucket = S3Bucket(radosgw, f"c-{uuid.uuid4().hex[:20]}")
    create_bucket(radosgw, bucket.name)
    store = objects_store(bucket, postgres_server.url(database))
    with replicas(root, store, count=3, workers=2) as servers, balanced(root, servers) as proxy:
        yield Cluster(servers, proxy)


@pytest.fixture
def registry(cluster: Cluster) -> HAProxy:
    """The cluster's load balancer, standing in for one registry (as the e2e tests take it)."""
    return cluster.proxy


@pytest.fixture
def one_replica(tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str) -> Iterator[ServerProcess]:
    """One replica of two workers on each S3 server in turn."""
    with replicas(tmp_path, objects_store(s3_bucket, postgres_url), count=1) as [server]:
        yield server
