"""/healthz and /readyz on the embedded store and the gateway (a real distribution stopped and
restarted), and /metrics scraped from a real 2-worker server."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from e2e.support import MANIFEST_ACCEPT, distribution_server, free_port, make_image, push_image

from .support import prod_server


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_readiness_follows_the_upstream_down_and_back(tmp_path: Path) -> None:
    port = free_port()
    upstream = distribution_server(tmp_path / "upstream", tmp_path / "upstream.log", port=port)
    upstream.start()
    server = prod_server(tmp_path, f"upstreams:\n  - url: http://127.0.0.1:{port}\n", 2)
    server.start()
    try:
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{server.url}/readyz").status_code == 200
            upstream.stop()
            upstream.wait_port_closed()
            time.sleep(1.1)  # the last answer is kept for 1 s
            started = time.monotonic()
            down = client.get(f"{server.url}/readyz")
            assert down.status_code == 503, down.text
            assert time.monotonic() - started < 3.0  # bounded by the 2 s probe timeout
            assert "upstream" in down.json()["problems"][0]
            assert client.get(f"{server.url}/healthz").status_code == 200  # the process is up
            upstream.start()
            deadline = time.monotonic() + 5
            while client.get(f"{server.url}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready again after the upstream came back"
                time.sleep(0.2)
    finally:
        server.stop()
        upstream.stop()


def test_readiness_of_the_embedded_store_fails_when_its_database_is_gone(tmp_path: Path) -> None:
    server = prod_server(tmp_path, "", 1)
    server.start()
    try:
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{server.url}/readyz").status_code == 200
            database = tmp_path / "data" / "meta.db"
            database.rename(tmp_path / "moved.db")
            time.sleep(1.1)
            down = client.get(f"{server.url}/readyz")
            assert down.status_code == 503 and "database" in down.json()["problems"][0]
            (tmp_path / "moved.db").rename(database)
            time.sleep(1.1)
            assert client.get(f"{server.url}/readyz").status_code == 200
    finally:
        server.stop()


def test_metrics_add_up_across_two_workers(tmp_path: Path) -> None:
    server = prod_server(tmp_path, "", 2)
    server.start()
    requests = 200
    try:
        # A new connection per request: the kernel spreads them over both workers.
        for _ in range(requests):
            with httpx.Client(timeout=10) as client:
                client.head(f"{server.url}/v2/prod/metrics/manifests/latest")
        # Both workers counted some (one file of counters per process)...
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 2
        for worker in children:
            opened = [str(fd.readlink()) for fd in Path(f"/proc/{worker}/fd").iterdir()]
            assert any(f"/counter_{worker}.db" in name for name in opened), opened
        time.sleep(1.5)  # each worker writes its request counts out every second
        # ...and whichever worker answers a scrape, the counts are the sum over both.
        for _ in range(6):
            with httpx.Client(timeout=10) as client:
                scrape = client.get(f"{server.url}/metrics")
            assert scrape.status_code == 200
            assert scrape.headers["content-type"].startswith("text/plain")
            counted = _sample(
                scrape.text,
                "ocigate_http_requests_total",
                method="HEAD",
                route="manifest",
                status="404",
            )
            assert counted == requests
        text = scrape.text
        assert (
            _sample(text, "ocigate_http_request_duration_seconds_count", route="manifest")
            == requests
        )
        assert _sample(text, "ocigate_http_response_bytes_total", route="manifest") > 0
        # Never a repository, tag or digest in a label.
        assert "prod/metrics" not in text and "latest" not in text
        assert re.search(r"^ocigate_uploads_in_progress 0\.0$", text, re.M)
    finally:
        server.stop()


def test_metrics_can_be_protected_or_turned_off(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    protected = prod_server(tmp_path / "a", "metrics: {bearer_token: s3cret}\n", 1).start()
    off = prod_server(tmp_path / "b", "metrics: {enabled: false}\n", 1).start()
    try:
        with httpx.Client(timeout=10) as client:
            refused = client.get(f"{protected.url}/metrics")
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
            auth = {"authorization": "Bearer s3cret"}
            assert client.get(f"{protected.url}/metrics", headers=auth).status_code == 200
            gone = client.get(f"{off.url}/metrics")
            assert gone.status_code == 404
            assert gone.json()["errors"][0]["code"]
    finally:
        protected.stop()
        off.stop()


def test_metrics_count_upstream_requests_errors_and_cache_hits(tmp_path: Path) -> None:
    port = free_port()
    upstream = distribution_server(tmp_path / "upstream", tmp_path / "upstream.log", port=port)
    upstream.start()
    config = f"upstreams:\n  - {{url: 'http://127.0.0.1:{port}', cache: true}}\n"
    server = prod_server(tmp_path, config, 2)
    server.start()
    image = make_image("metrics")
    try:
        with httpx.Client(timeout=10) as client:
            push_image(client, upstream.url, "prod/cached", image, "v1")
            for _ in range(3):
                pulled = client.get(
                    f"{server.url}/v2/prod/cached/manifests/{image.manifest.digest}",
                    headers={"accept": MANIFEST_ACCEPT},
                )
                assert pulled.status_code == 200
            upstream.stop()
            upstream.wait_port_closed()
            missing = client.get(f"{server.url}/v2/prod/cached/manifests/other")
            assert missing.status_code in (502, 504)
            text = client.get(f"{server.url}/metrics").text
        host = f"127.0.0.1:{port}"
        assert _sample(text, "ocigate_cache_requests_total", kind="manifest", result="miss") >= 1
        hits = _sample(text, "ocigate_cache_requests_total", kind="manifest", result="hit")
        misses = _sample(text, "ocigate_cache_requests_total", kind="manifest", result="miss")
        assert hits + misses >= 3 and hits >= 1  # another worker may have missed once too
        assert _sample(text, "ocigate_upstream_requests_total", upstream=host) >= 2
        assert _sample(text, "ocigate_upstream_errors_total", upstream=host) >= 1
        assert "prod/cached" not in text and image.manifest.digest not in text
    finally:
        server.stop()
        upstream.stop()


def test_metrics_show_the_outbox_backlog_and_failed_webhook_deliveries(tmp_path: Path) -> None:
    dead_port = free_port()  # nothing listens: every delivery fails
    config = (
        "events:\n  max_attempts: 1\n  backoff_initial: 0.1\n  poll_interval: 0.1\n"
        "  webhooks:\n"
        f"    - {{name: audit, url: 'http://127.0.0.1:{dead_port}/hook', timeout: 1}}\n"
    )
    server = prod_server(tmp_path, config, 2)
    server.start()
    try:
        with httpx.Client(timeout=10) as client:
            push_image(client, server.url, "prod/events", make_image("events"), "v1")
            deadline = time.monotonic() + 15
            while True:
                text = client.get(f"{server.url}/metrics").text
                dead = _sample(text, "ocigate_webhook_deliveries", webhook="audit", state="dead")
                if dead >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert dead >= 1, text
        assert 'ocigate_outbox_depth{webhook="audit"}' in text
        assert "prod/events" not in text
    finally:
        server.stop()
