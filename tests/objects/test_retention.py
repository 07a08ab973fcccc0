"""Retention on the objects backend, run by a replica's scheduled garbage collection: the
retained multi-platform index keeps its children and referrers, the other one goes, with the
events an API delete emits written to PostgreSQL's outbox."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from e2e.retention_content import push_multi_platform, push_referrer
from e2e.support import get_manifest
from parts.postgres import PostgresServer
from parts.s3 import S3Bucket

from .support import objects_store, replicas

RETENTION = {"untagged_grace": "3s", "rules": [{"repos": "multi/**", "keep_last": 1}]}


def test_scheduled_gc_applies_retention(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str, postgres_server: PostgresServer
) -> None:
    store = objects_store(s3_bucket, postgres_url, gc_interval=1, gc_grace=0)
    settings = {"retention": RETENTION, "events": {"enabled": True}}
    with replicas(tmp_path, store, count=1, workers=1, **settings) as [server]:
        url = server.url
        with httpx.Client(timeout=30) as http:
            gone = push_multi_platform(http, url, "multi/app", "gone", "v0")
            gone_sig = push_referrer(http, url, "multi/app", gone.index, "application/x-sig")
            kept = push_multi_platform(http, url, "multi/app", "kept", "v1")
            kept_sig = push_referrer(http, url, "multi/app", kept.index, "application/x-sig")

            def status(digest: str) -> int:
                return get_manifest(http, url, "multi/app", digest).status_code

            deadline = time.monotonic() + 60
            while status(gone.index.digest) == 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status(gone.index.digest) == 404, server.log_tail()
            # The children and the signature are deleted in the same run, after the index.
            for blob in (*gone.children, gone_sig):
                assert status(blob.digest) == 404
            assert http.get(f"{url}/v2/multi/app/tags/list").json()["tags"] == ["v1"]
            for blob in (kept.index, *kept.children, kept_sig):
                assert status(blob.digest) == 200
            for layer in gone.layers:
                assert http.head(f"{url}/v2/multi/app/blobs/{layer.digest}").status_code == 404
            for layer in kept.layers:
                assert http.head(f"{url}/v2/multi/app/blobs/{layer.digest}").status_code == 200
    database = postgres_url.rsplit("/", 1)[1]
    types = postgres_server.sql(
        "SELECT type, count(*) FROM outbox WHERE type LIKE '%deleted' GROUP BY type ORDER BY type",
        database=database,
    )
    assert types.split() == ["manifest.deleted|4", "tag.deleted|1"]
