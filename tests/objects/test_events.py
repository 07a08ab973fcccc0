"""Events on the objects backend: written in the same PostgreSQL transaction as the change on
whichever replica made it, delivered to the webhook once each, in order per repository, with
three replicas (two workers each) all running deliverers; ``ocigate events`` reads that outbox."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx

from e2e.support import make_image, ocigate_argv, push_image
from e2e.test_events import SECRET, events_settings, short
from e2e.webhook_receiver import Receiver
from parts.s3 import S3Bucket

from .support import objects_store, replicas


def test_events_from_every_replica_are_delivered_once_each_in_order(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str
) -> None:
    receiver = Receiver().start()
    store = objects_store(s3_bucket, postgres_url)
    try:
        with replicas(tmp_path, store, count=3, events=events_settings(receiver)) as servers:
            with httpx.Client(timeout=30) as http:
                for i in range(6):  # each repository's pushes spread over the replicas
                    for repo in ("a/one", "b/two"):
                        url = servers[(i + len(repo)) % 3].url
                        push_image(http, url, repo, make_image(f"{repo}-{i}"), "latest")
            # repository.created once per repository, then a push and a tag move per round
            expected = 2 + 6 * 2 + 5 * 2
            events = receiver.wait_for(expected, timeout=30)
            time.sleep(1.0)  # any duplicate would arrive by now
            events = receiver.events()
            config = str(tmp_path / "r0" / "ocigate.yaml")
            listed = subprocess.run(
                [*ocigate_argv(), "events", "status", "--config", config],
                capture_output=True,
                text=True,
                timeout=60,
            )
    finally:
        receiver.stop()
    ids = Counter(event["id"] for event in events)
    assert len(events) == expected and max(ids.values()) == 1, ids.most_common(3)
    assert all(delivery.signed_with(SECRET) for delivery in receiver.deliveries)
    for repo in ("a/one", "b/two"):
        lane = [e for e in events if e["data"]["repository"] == repo]
        assert short(lane[0]) == "repository.created"
        pushed = [e["data"]["digest"] for e in lane if short(e) == "manifest.pushed"]
        wanted = [make_image(f"{repo}-{i}").manifest.digest for i in range(6)]
        assert pushed == wanted  # the order they were pushed in, across replicas
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)  # the PostgreSQL outbox's status, as for SQLite's
