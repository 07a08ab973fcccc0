"""Prometheus metrics, through ``prometheus-client``, added up across worker processes.

``ocigate serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh temporary directory before the
workers start (each worker writes its counters to memory-mapped files there; a scrape on any
worker sums them). Labels are bounded: the endpoint name (never the path), method, status, the
upstream's host and the webhook's configured name; never a repository, tag or digest.

Request counts are batched in each worker (see ``RequestMetrics``): a scrape shows them at
most ``FLUSH_SECONDS`` late.
"""

from __future__ import annotations

import asyncio
import logging
import os
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
FLUSH_SECONDS = 1.0  # how far behind the request counts in a scrape may be
log = logging.getLogger("ocigate")

REQUESTS = Counter(
    "ocigate_http_requests_total", "Requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "ocigate_http_request_duration_seconds",
    "Time from request head to the end of the answer.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
BYTES_OUT = Counter("ocigate_http_response_bytes_total", "Response body bytes sent.", ["route"])
BYTES_IN = Counter("ocigate_http_request_bytes_total", "Request body bytes received.", ["route"])
UPSTREAM_REQUESTS = Counter(
    "ocigate_upstream_requests_total", "Requests sent to an upstream.", ["upstream"]
)
UPSTREAM_ERRORS = Counter(
    "ocigate_upstream_errors_total",
    "Upstream requests that failed (transport error or 5xx).",
    ["upstream"],
)
CACHE_LOOKUPS = Counter(
    "ocigate_cache_requests_total", "Pull-through cache lookups.", ["kind", "result"]
)
# Resolved once: these are counted on hot paths.
BLOB_HIT = CACHE_LOOKUPS.labels("blob", "hit")
BLOB_MISS = CACHE_LOOKUPS.labels("blob", "miss")
MANIFEST_HIT = CACHE_LOOKUPS.labels("manifest", "hit")
MANIFEST_MISS = CACHE_LOOKUPS.labels("manifest", "miss")
GC_RUNS = Counter("ocigate_gc_runs_total", "Garbage collections run by the server.")
GC_FREED = Counter("ocigate_gc_freed_bytes_total", "Bytes of blob files garbage collection freed.")
RATE_LIMITED = Counter("ocigate_rate_limited_total", "Requests refused by a rate limit.", ["kind"])


class _Pending:
    __slots__ = ("buckets", "count", "received", "seconds", "sent")

    def __init__(self) -> None:
        self.count = 0
        self.sent = 0
        self.received = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf


class RequestMetrics:
    """Per-request counts, added up in plain memory and written to the shared metric files
    at most every ``FLUSH_SECONDS`` (and before a scrape). Writing each request through
    ``prometheus-client`` cost ~11.5 µs in multi-process mode (a locked ``mmap`` write per
    counter and per histogram part); adding to a dictionary costs ~1 µs."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str, int], _Pending] = {}

    def observe(
        self, method: str, route: str, status: int, seconds: float, sent: int, received: int
    ) -> None:
        key = (method, route, status)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        pending.count += 1
        pending.sent += sent
        pending.received += received
        pending.seconds += seconds
        pending.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (method, route, status), counts in pending.items():
            REQUESTS.labels(method, route, str(status)).inc(counts.count)
            _add_observations(LATENCY.labels(method, route), counts.seconds, counts.buckets)
            if counts.sent:
                BYTES_OUT.labels(route).inc(counts.sent)
            if counts.received:
                BYTES_IN.labels(route).inc(counts.received)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()


def _add_observations(histogram: Histogram, total: float, buckets: list[int]) -> None:
    # The public API observes one value at a time; many at once need its value objects
    # (a bucket per upper bound, not cumulative, plus the sum), as ``observe`` updates them.
    histogram._sum.inc(total)
    for value, count in zip(histogram._buckets, buckets, strict=True):
        if count:
            value.inc(count)


class StoreCollector(Collector):
    """Gauges read from the data directory at scrape time (the same for every worker):
    upload sessions open, and the event outbox's backlog and failed deliveries per webhook."""

    def __init__(self, data_dir: Path, embedded: bool) -> None:
        self.data_dir = data_dir
        self.embedded = embedded  # the gateway's upload sessions live upstream

    def collect(self) -> Iterator[Metric]:
        if self.embedded:
            uploads = GaugeMetricFamily("ocigate_uploads_in_progress", "Open upload sessions.")
            try:
                with os.scandir(self.data_dir / "uploads") as sessions:
                    count = sum(1 for entry in sessions if not entry.name.startswith("."))
            except OSError:
                count = 0
            uploads.add_metric([], count)
            yield uploads
        yield from self._outbox()

    def _outbox(self) -> Iterator[Metric]:
        from .events.database import open_outbox

        try:
            outbox = open_outbox(self.data_dir)
        except (OSError, ValueError):
            return  # no outbox: events were never enabled here
        try:
            status = outbox.status()
        finally:
            outbox.close()
        behind = GaugeMetricFamily(
            "ocigate_outbox_depth", "Events not yet delivered, per webhook.", labels=["webhook"]
        )
        deliveries = GaugeMetricFamily(
            "ocigate_webhook_deliveries",
            "Deliveries per webhook and state (dead: given up after max_attempts).",
            labels=["webhook", "state"],
        )
        for webhook, states in status["endpoints"].items():
            behind.add_metric([webhook], states.get("behind", 0))
            for state in ("pending", "delivered", "dead"):
                deliveries.add_metric([webhook, state], states.get(state, 0))
        yield behind
        yield deliveries


def exposition(data_dir: Path, embedded: bool) -> bytes:
    """The text format of every metric: summed over the workers when they share a directory."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry = _with(registry, StoreCollector(data_dir, embedded))
    return generate_latest(registry)


def _with(base: CollectorRegistry, extra: Collector) -> CollectorRegistry:
    combined = CollectorRegistry()
    combined.register(_Both(base, extra))
    return combined


class _Both(Collector):
    def __init__(self, base: CollectorRegistry, extra: Collector) -> None:
        self.base = base
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self.base.collect()
        yield from self.extra.collect()


def worker_ended(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
