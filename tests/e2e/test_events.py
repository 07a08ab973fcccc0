"""Durable events delivered as signed CloudEvents to a real webhook receiver on loopback.

In-process ocigate for the content and outage tests; a real ``ocigate serve`` (two workers
sharing the outbox) killed with events pending for the crash test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ocigate.cli import main
from ocigate.events.database import connect_outbox
from spec.conftest import serve_ocigate

from .support import (
    ServerProcess,
    free_port,
    make_image,
    ocigate_argv,
    push_image,
)
from .webhook_receiver import Receiver

SECRET = "s3cret"


def events_settings(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    webhook = {
        "name": "hook",
        "url": receiver.url,
        "secret": SECRET,
        "headers": {"X-Test": "yes"},
        "timeout": 2,
    }
    return {
        "webhooks": [webhook],
        "poll_interval": 0.05,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        **extra,
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def short(event: dict[str, Any]) -> str:
    return str(event["type"]).removeprefix("io.ocigate.")


def outbox_ids(data_dir: Path) -> list[str]:
    outbox = connect_outbox(data_dir / "meta.db")
    try:
        return [row.id for row in outbox.rows(limit=10_000)]
    finally:
        outbox.close()


def test_every_change_is_delivered_signed(
    tmp_path: Path, receiver: Receiver, http: httpx.Client
) -> None:
    receiver.start()
    with serve_ocigate(tmp_path / "data", events=events_settings(receiver)) as url:
        first, second = make_image("events-1"), make_image("events-2")
        first_digest = push_image(http, url, "team/app", first, "v1")
        second_digest = push_image(http, url, "team/app", second, "v1")
        assert http.delete(f"{url}/v2/team/app/manifests/v1").status_code == 202
        assert http.delete(f"{url}/v2/team/app/manifests/{first_digest}").status_code == 202
        layer = first.layers[0].digest
        assert http.delete(f"{url}/v2/team/app/blobs/{layer}").status_code == 202
        events = receiver.wait_for(7)
    assert [short(e) for e in events] == [
        "repository.created",
        "manifest.pushed",
        "manifest.pushed",
        "tag.moved",
        "tag.deleted",
        "manifest.deleted",
        "blob.deleted",
    ]
    for delivery in receiver.deliveries:
        assert delivery.signed_with(SECRET)
        assert delivery.headers["content-type"].startswith("application/cloudevents+json")
        assert delivery.headers["x-test"] == "yes"
    data = [e["data"] for e in events]
    assert data[1]["digest"] == first_digest and data[1]["tags"] == ["v1"]
    assert data[1]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert data[1]["requestId"] and data[1]["actor"]["name"] == "anonymous"
    assert data[3]["previousDigest"] == first_digest and data[3]["digest"] == second_digest
    assert (data[4]["tag"], data[4]["digest"]) == ("v1", second_digest)
    assert data[5]["digest"] == first_digest
    assert (data[6]["digest"], data[6]["size"]) == (layer, first.layers[0].size)
    assert all(e["data"]["repository"] == "team/app" for e in events)
    assert events[1]["subject"] == "team/app:v1"


def test_receiver_down_then_up_loses_nothing_and_keeps_order(
    tmp_path: Path, receiver: Receiver, http: httpx.Client
) -> None:
    data_dir = tmp_path / "data"
    with serve_ocigate(data_dir, events=events_settings(receiver)) as url:
        for i in range(4):
            for repo in ("a/one", "b/two"):
                push_image(http, url, repo, make_image(f"{repo}-{i}"), f"t{i}")
        time.sleep(1.0)  # several failed attempts while nothing listens
        assert receiver.attempts == 0
        receiver.start()
        events = receiver.wait_for(10)
        time.sleep(0.3)
        events = receiver.events()
    assert sorted(e["id"] for e in events) == sorted(outbox_ids(data_dir))
    for repo in ("a/one", "b/two"):
        lane = [e for e in events if e["data"]["repository"] == repo]
        assert [short(e) for e in lane] == ["repository.created"] + ["manifest.pushed"] * 4
        assert [e["data"]["tag"] for e in lane[1:]] == ["t0", "t1", "t2", "t3"]


def test_dead_letter_and_replay(
    tmp_path: Path, receiver: Receiver, http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.status = 500
    receiver.start()
    data_dir = tmp_path / "data"
    settings = events_settings(receiver, max_attempts=2)
    with serve_ocigate(data_dir, events=settings) as url:
        push_image(http, url, "lost/cause", make_image("dead"), "v1")
        deadline = time.monotonic() + 10
        dead = ""
        while time.monotonic() < deadline and dead.count("hook:dead") < 2:
            time.sleep(0.05)
            assert main(["events", "--data-dir", str(data_dir), "list", "--dead"]) == 0
            dead = capsys.readouterr().out
        lines = dead.strip().splitlines()
        assert len(lines) == 2 and all("hook:dead attempts=2" in line for line in lines), dead
        assert "HTTP 500" in lines[0]
        assert receiver.attempts == 4  # two events, two attempts each
        receiver.status = 200
        ids = [line.split("\t")[1] for line in lines]
        assert main(["events", "--data-dir", str(data_dir), "replay", *ids]) == 0
        events = receiver.wait_for(2)
    assert [e["id"] for e in events] == ids
    assert main(["events", "--data-dir", str(data_dir), "status"]) == 0
    assert '"delivered": 2' in capsys.readouterr().out


def write_config(path: Path, data_dir: Path, port: int, receiver: Receiver, server: str) -> Path:
    config = {
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(data_dir),
        "workers": 2,
        "server": server,
        "events": events_settings(receiver),
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("server_kind", ["granian", "uvicorn"])
def test_killed_with_events_pending_delivers_after_restart(
    tmp_path: Path, receiver: Receiver, http: httpx.Client, server_kind: str
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    config = write_config(tmp_path / "ocigate.yaml", data_dir, port, receiver, server_kind)
    argv = [*ocigate_argv(), "serve", "--config", str(config)]
    server = ServerProcess("ocigate", argv, port, tmp_path / "server.log").start()
    try:
        for i in range(3):
            push_image(http, server.url, "crash/app", make_image(f"crash-{i}"), f"t{i}")
        recorded = outbox_ids(data_dir)
        assert len(recorded) == 4  # committed with the pushes, before any delivery
        server.kill()
        server.wait_port_closed()
        receiver.start()
        time.sleep(0.5)
        assert receiver.attempts == 0  # nobody is left to deliver them
        server = ServerProcess("ocigate", argv, port, tmp_path / "server.log").start()
        events = receiver.wait_for(4)
        time.sleep(0.3)
        events = receiver.events()
    finally:
        server.stop()
    assert [e["id"] for e in events] == recorded
    assert [e["data"].get("tag") for e in events[1:]] == ["t0", "t1", "t2"]
