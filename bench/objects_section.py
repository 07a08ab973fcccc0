#!/usr/bin/env python3
"""The objects backend's section of the benchmark: ocigate on ``store: kind: objects`` (blob
bytes in S3, metadata in PostgreSQL) against CNCF distribution 2.8.2 with its ``s3`` storage
driver, all on the same S3 server (one Ceph radosgw on a throw-away memstore cluster, as
``tests/parts/s3.py`` starts it) and the same PostgreSQL, each contender with a bucket (and
ocigate's with a database) of its own:

* ``objects-1``: one replica, ``--workers 2``
* ``objects-3``: three replicas, ``--workers 2`` each, behind HAProxy (round-robin)
* ``distribution-s3``: ``docker-registry`` with the ``s3`` driver (redirects off, so that it
  relays blob bytes itself as ocigate does)

Measured in rounds as ``run.py`` does (every contender in turn each round, medians reported),
with run.py's own helpers: manifest HEAD (hey) and GET (wrk) by tag at 64 connections, one
1 GiB blob push (one PUT) and pull (curl), and the CPU each party spent: the registry
processes (per replica and in total), HAProxy, PostgreSQL and the S3 server (radosgw, its OSD
and monitor) separately, since the objects backend moves work there. RSS of every replica is
sampled during the push and the pull.

Run by ``bench/run.py`` (the ``objects`` entry of ``--registries``), or alone:

    python bench/objects_section.py --quick
    python bench/run.py --registries objects
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "bench", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from run import (  # noqa: E402
    MIB,
    OCI_MANIFEST,
    REPO,
    TAG,
    BigBlob,
    Outcome,
    Row,
    RssSampler,
    Server,
    Settings,
    _at_least,
    _rss_target,
    baseline_rss,
    bench_get,
    bench_head,
    cpu_seconds,
    distribution_config,
    free_port,
    log,
    process_tree,
    pull_big_blob,
    push_big_blob,
    seed,
    table,
)

import parts.s3 as s3_parts  # noqa: E402
from objects.support import objects_store, replica  # noqa: E402
from parts.haproxy import HAProxy  # noqa: E402
from parts.postgres import USER, PostgresServer, _ensure_user  # noqa: E402
from parts.s3 import RadosGateway, S3Bucket, S3Server, create_bucket  # noqa: E402

GIB = 1024 * MIB
# GETs of distinct tags too: under load ocigate batches distinct reads as well as equal ones
TAGS = 64
SMALL = ("head", "get", "tags")  # the small-request measurements
# the targets (issue 14, "Speed"): ocigate / distribution-on-S3
TARGET_SMALL_RATIO = 10.0  # req/s at least
TARGET_SMALL_CPU_RATIO = 0.1  # registry CPU per request at most
TARGET_BLOB_CPU_RATIO = 0.5  # registry CPU-seconds per GiB at most
# The tests' memstore holds 4 GiB: every contender keeps a 1 GiB blob, distribution copies
# its upload once more on commit.
MEMSTORE_BYTES = 12 * GIB
REFERENCE = "distribution-s3"


# --------------------------------------------------------------------------------------------
# the shared servers


@dataclass
class Shared:
    """The S3 server and PostgreSQL every contender of the section uses."""

    gateway: RadosGateway
    s3: S3Server
    postgres: PostgresServer

    def s3_pids(self) -> list[int]:
        procs = [self.gateway.rgw, *self.gateway.daemons]
        return [proc.pid for proc in procs if proc is not None]

    def postgres_pids(self) -> list[int]:
        postmaster = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        return process_tree(postmaster)

    def bucket(self, name: str) -> S3Bucket:
        create_bucket(self.s3, name)
        return S3Bucket(self.s3, name)

    def bucket_bytes(self, name: str) -> int:
        """What the bucket holds, by radosgw's own accounting."""
        done = subprocess.run(
            ["radosgw-admin", "-c", str(self.gateway.conf), "bucket", "stats", "--bucket", name],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        usage = json.loads(done.stdout).get("usage", {})
        return int(sum(entry.get("size_actual", 0) for entry in usage.values()))


@contextlib.contextmanager
def shared_servers(workdir: Path) -> Iterator[Shared]:
    s3_dir = workdir / "radosgw"
    s3_dir.mkdir()
    conf = s3_parts._CEPH_CONF
    s3_parts._CEPH_CONF = conf.replace(
        "memstore device bytes = 4294967296", f"memstore device bytes = {MEMSTORE_BYTES}"
    )
    gateway = RadosGateway(s3_dir)
    pg_dir = workdir / "postgres"
    pg_dir.mkdir()
    postgres: PostgresServer | None = None
    try:
        log(f"starting radosgw on {gateway.endpoint}")
        gateway.create()
        s3_parts._CEPH_CONF = conf
        s3 = S3Server("radosgw", gateway.endpoint, gateway)
        create_bucket(s3, "ready-check")
        _ensure_user()
        if os.geteuid() == 0:
            workdir.chmod(0o711)  # the server's user enters it to reach its own directory
            shutil.chown(pg_dir, USER)
        postgres = PostgresServer(pg_dir)
        postgres.start()
        log(f"started PostgreSQL on port {postgres.port}")
        yield Shared(gateway, s3, postgres)
    finally:
        s3_parts._CEPH_CONF = conf
        if postgres is not None and postgres.running:
            postgres.stop()
        gateway.close()


# --------------------------------------------------------------------------------------------
# contenders


@dataclass
class Party:
    """One contender: its registry processes (replicas), HAProxy in front when several."""

    name: str
    base: str
    roots: list[int]
    bucket: str
    proxy_pid: int | None = None
    rounds: dict[str, list[Any]] = field(default_factory=dict)
    baseline: list[int] = field(default_factory=list)
    push_peak: list[int] = field(default_factory=list)
    pull_peak: list[int] = field(default_factory=list)

    def add(self, key: str, value: Any) -> None:
        if value is not None:
            self.rounds.setdefault(key, []).append(value)


def distribution_s3(workdir: Path, bucket: S3Bucket, settings: Settings) -> Server:
    port = free_port()
    server = bucket.server
    config = workdir / "distribution-s3.yml"
    storage = (
        "  s3:\n"
        f"    accesskey: {server.access_key}\n"
        f"    secretkey: {server.secret_key}\n"
        f"    region: {server.region}\n"
        f"    regionendpoint: {server.endpoint}\n"
        f"    bucket: {bucket.name}\n"
        "    secure: false\n"
        "    v4auth: true\n"
        f"    chunksize: {8 * MIB}\n"  # ocigate's part_size
        "    rootdirectory: /registry\n"
        "  redirect:\n"  # relay the bytes itself, as ocigate does
        "    disable: true\n"
    )
    config.write_text(distribution_config(port, storage))
    argv = ["docker-registry", "serve", str(config)]
    # The AWS SDK refuses a custom CA bundle (AWS_CA_BUNDLE) with the driver's own transport
    # (it panics at start); the endpoint is plain HTTP anyway.
    env = {key: value for key, value in os.environ.items() if key != "AWS_CA_BUNDLE"}
    return Server(REFERENCE, argv, port, workdir / "distribution-s3.log", env=env)


@contextlib.contextmanager
def contenders(workdir: Path, shared: Shared, settings: Settings) -> Iterator[list[Party]]:
    with contextlib.ExitStack() as stack:
        parties: list[Party] = []
        bucket = shared.bucket("bench-distribution")
        dist = distribution_s3(workdir, bucket, settings)
        log(f"starting {dist.name} on {dist.base}")
        stack.callback(dist.stop)
        dist.start()
        assert dist.proc is not None
        parties.append(Party(dist.name, dist.base, [dist.proc.pid], bucket.name))
        for count in (1, 3):
            name = f"objects-{count}"
            bucket = shared.bucket(f"bench-{name}")
            database = name.replace("-", "_")
            shared.postgres.sql(f"CREATE DATABASE {database}")
            store = objects_store(bucket, shared.postgres.url(database))
            root = workdir / name
            servers = []
            for index in range(count):
                server = replica(root / f"r{index}", store, 2, log_level=settings.ocigate_log_level)
                log(f"starting {name} replica {index} on {server.url}")
                stack.callback(server.stop)
                servers.append(server.start())
            if count == 1:
                party = Party(name, servers[0].url, [servers[0].pid], bucket.name)
            else:
                proxy = HAProxy(root / "haproxy", [server.port for server in servers])
                stack.callback(proxy.stop)
                proxy.start()
                assert proxy.proc is not None
                roots = [server.pid for server in servers]
                party = Party(name, proxy.url, roots, bucket.name, proxy.proc.pid)
            parties.append(party)
        for party in parties:
            seed(party.base)
            copy_tags(party.base)
        yield parties


# --------------------------------------------------------------------------------------------
# measuring


def snapshot(party: Party, shared: Shared) -> dict[str, Any]:
    """CPU-seconds so far of each replica (its process tree), HAProxy, PostgreSQL, S3."""
    return {
        "replicas": [cpu_seconds(process_tree(root), reaped=True) for root in party.roots],
        "haproxy": cpu_seconds([party.proxy_pid]) if party.proxy_pid else None,
        "postgres": cpu_seconds(shared.postgres_pids(), reaped=True),
        "s3": cpu_seconds(shared.s3_pids()),
    }


def spent(
    party: Party, before: dict[str, Any], after: dict[str, Any], prefix: str, scale: float
) -> None:
    """The CPU between two snapshots, times ``scale``, as ``prefix``-ed metrics: ``_cpu``
    (all replicas), ``_cpu_replicas`` (each, times their count when ``prefix`` is a small
    request: per request that replica served), HAProxy, PostgreSQL, S3 and the sum of all."""
    replicas = [(b - a) * scale for a, b in zip(before["replicas"], after["replicas"], strict=True)]
    total = sum(replicas)
    share = len(replicas) if prefix in SMALL else 1
    party.add(f"{prefix}_cpu", total)
    party.add(f"{prefix}_cpu_replicas", [value * share for value in replicas])
    haproxy = None
    if before["haproxy"] is not None:
        haproxy = (after["haproxy"] - before["haproxy"]) * scale
        party.add(f"{prefix}_haproxy_cpu", haproxy)
    postgres = (after["postgres"] - before["postgres"]) * scale
    s3 = (after["s3"] - before["s3"]) * scale
    party.add(f"{prefix}_postgres_cpu", postgres)
    party.add(f"{prefix}_s3_cpu", s3)
    party.add(f"{prefix}_all_cpu", total + (haproxy or 0.0) + postgres + s3)


def copy_tags(base: str) -> None:
    """The seeded manifest under :data:`TAGS` more tags, for GETs of distinct tags."""
    with httpx.Client(timeout=30.0) as client:
        url = f"{base}/v2/{REPO}/manifests"
        seeded = client.get(f"{url}/{TAG}", headers={"Accept": OCI_MANIFEST})
        seeded.raise_for_status()
        for index in range(TAGS):
            response = client.put(
                f"{url}/t{index}", content=seeded.content, headers={"Content-Type": OCI_MANIFEST}
            )
            assert response.status_code == 201, (response.status_code, response.text)


def tags_script(workdir: Path) -> Path:
    """A wrk script asking the :data:`TAGS` tags in turn on each connection."""
    script = workdir / "tags.lua"
    script.write_text(
        "local n = 0\n"
        "request = function()\n"
        f"  n = (n + 1) % {TAGS}\n"
        f'  return wrk.format("GET", "/v2/{REPO}/manifests/t" .. n)\n'
        "end\n"
    )
    return script


def measure_small(party: Party, shared: Shared, settings: Settings, script: Path) -> None:
    for op in SMALL:
        before = snapshot(party, shared)
        if op == "head":
            result = bench_head(party.base, settings.duration, settings.connections)
        else:
            result = bench_get(
                party.base,
                settings.duration,
                settings.connections,
                settings.wrk_threads,
                script if op == "tags" else None,
            )
        after = snapshot(party, shared)
        for key in ("rps", "p50_ms", "p99_ms", "errors"):
            party.add(f"{op}_{key}", result[key])
        spent(party, before, after, op, 1e6 / max(result["requests"], 1))


def measure_blob(
    party: Party, shared: Shared, settings: Settings, blob: BigBlob, digest: str
) -> None:
    if not party.baseline:
        party.baseline = [baseline_rss(root) for root in party.roots]
        party.push_peak = list(party.baseline)
        party.pull_peak = list(party.baseline)
    scale = GIB / blob.size
    with contextlib.ExitStack() as stack:
        samplers = [stack.enter_context(RssSampler(root)) for root in party.roots]
        before = snapshot(party, shared)
        seconds = push_big_blob(party.base, blob, digest)
        after = snapshot(party, shared)
    party.add("push_mb_s", blob.size / 1e6 / seconds)
    spent(party, before, after, "push", scale)
    party.push_peak = [max(p, s.peak) for p, s in zip(party.push_peak, samplers, strict=True)]
    with contextlib.ExitStack() as stack:
        samplers = [stack.enter_context(RssSampler(root)) for root in party.roots]
        before = snapshot(party, shared)
        seconds = pull_big_blob(party.base, blob.size, digest, settings.pull_client)
        after = snapshot(party, shared)
    party.add("pull_mb_s", blob.size / 1e6 / seconds)
    spent(party, before, after, "pull", scale)
    party.pull_peak = [max(p, s.peak) for p, s in zip(party.pull_peak, samplers, strict=True)]


def _median(values: list[Any]) -> Any:
    if isinstance(values[0], list):  # one value per replica: each replica's median
        return [statistics.median(column) for column in zip(*values, strict=True)]
    return statistics.median(values)


def summarize(party: Party, shared: Shared, blob: BigBlob) -> Outcome:
    outcome = Outcome(party.name)
    m = outcome.metrics
    for key, values in party.rounds.items():
        m[key] = sum(values) if key.endswith("errors") else _median(values)
        m[f"{key}_rounds"] = values
    m["errors"] = sum(m.get(f"{op}_errors", 0) for op in SMALL)
    push = [(p - b) / 1e6 for p, b in zip(party.push_peak, party.baseline, strict=True)]
    pull = [(p - b) / 1e6 for p, b in zip(party.pull_peak, party.baseline, strict=True)]
    m.update(
        {
            "replicas": len(party.roots),
            "blob_bytes": blob.size,
            "rss_baseline_mb": [value / 1e6 for value in party.baseline],
            "rss_push_delta_mb": push,
            "rss_pull_delta_mb": pull,
            "rss_delta_mb": max(push + pull),
            "bucket": party.bucket,
            "bucket_bytes": shared.bucket_bytes(party.bucket),
        }
    )
    return outcome


# --------------------------------------------------------------------------------------------
# report


def _at_most(label: str, key: str, maximum: float, fmt: str) -> Row:
    return Row(label, key, fmt, f"≤ {maximum:g}x", lambda value, ratio: ratio <= maximum)


def _cpu_rows(op: str, what: str, unit: str, fmt: str, maximum: float) -> list[Row]:
    return [
        _at_most(f"{what} registry CPU {unit}, all replicas", f"{op}_cpu", maximum, fmt),
        Row(f"{what} registry CPU {unit}, each replica", f"{op}_cpu_replicas", fmt),
        Row(f"{what} HAProxy CPU {unit}", f"{op}_haproxy_cpu", fmt),
        Row(f"{what} PostgreSQL CPU {unit}", f"{op}_postgres_cpu", fmt),
        Row(f"{what} S3 server CPU {unit} (radosgw + OSD + mon)", f"{op}_s3_cpu", fmt),
        Row(f"{what} all of the above, CPU {unit}", f"{op}_all_cpu", fmt),
    ]


def _small_rows(op: str, what: str, tool: str) -> list[Row]:
    return [
        _at_least(f"{what} req/s ({tool})", f"{op}_rps", TARGET_SMALL_RATIO),
        *(Row(f"{what} {p} ms", f"{op}_{p}_ms", "{:.2f}") for p in ("p50", "p99")),
        *_cpu_rows(op, what, "µs/request", "{:,.0f}", TARGET_SMALL_CPU_RATIO),
    ]


ROWS = [
    Row("blob push MB/s", "push_mb_s", "{:,.0f}"),
    Row("blob pull MB/s (curl)", "pull_mb_s", "{:,.0f}"),
    *_small_rows("head", "manifest HEAD", "hey"),
    *_small_rows("get", "manifest GET", "wrk"),
    *_small_rows("tags", f"manifest GET of {TAGS} tags in turn", "wrk"),
    *_cpu_rows("push", "blob push", "s/GiB", "{:.2f}", TARGET_BLOB_CPU_RATIO),
    *_cpu_rows("pull", "blob pull", "s/GiB", "{:.2f}", TARGET_BLOB_CPU_RATIO),
    Row("RSS baseline MB, each replica", "rss_baseline_mb", "{:.1f}"),
    *(
        Row(f"RSS growth during {what} MB, each replica", f"rss_{what}_delta_mb", "{:+.1f}")
        for what in ("push", "pull")
    ),
    _rss_target("RSS growth, largest of any replica, MB", "{:+.1f}"),
    Row("errors (HEAD + GETs)", "errors", "{:,.0f}"),
]


@dataclass
class Section:
    markdown: str
    verdicts: dict[str, dict[str, Any]]
    results: dict[str, dict[str, Any]]

    def print(self, settings: Settings) -> None:
        print(
            f"\n### objects backend vs distribution on S3 — {settings.duration:g} s load runs, "
            f"{settings.connections} connections, {settings.blob_size / MIB:.0f} MiB blob, "
            f"{settings.rounds} round(s)\n"
        )
        print(self.markdown)
        print(
            "\nratios are ocigate / distribution-s3 (for latencies and CPU lower is better); "
            "all on one radosgw (memstore) and one PostgreSQL on this machine. Registry CPU "
            "is the registry processes alone (the target rows); HAProxy, PostgreSQL and the "
            "S3 server are shown apart, and summed in the 'all of the above' rows. Per "
            "replica small-request CPU is per request that replica served (requests / "
            "replicas, round-robin).\n"
        )


def run_section(workdir: Path, settings: Settings) -> Section:
    blob = BigBlob.make(settings.blob_size)
    digest = blob.digest()
    script = tags_script(workdir)
    with shared_servers(workdir) as shared, contenders(workdir, shared, settings) as parties:
        for index in range(settings.rounds):
            log(f"objects section: round {index + 1} of {settings.rounds}")
            order = parties[index % len(parties) :] + parties[: index % len(parties)]
            for party in order:
                measure_small(party, shared, settings, script)
            for party in order:
                os.sync()
                measure_blob(party, shared, settings, blob, digest)
        outcomes = {party.name: summarize(party, shared, blob) for party in parties}
    for name, outcome in outcomes.items():
        log(f"{name}: {json.dumps(outcome.metrics)}")
        stored = outcome.metrics["bucket_bytes"]
        # distribution keeps the blob under rootdirectory in its bucket, as ocigate does
        assert stored >= blob.size, f"{name}: its bucket holds {stored} bytes only"
    markdown, verdicts = table(outcomes, ROWS, REFERENCE, ())
    return Section(markdown, verdicts, {name: o.metrics for name, o in outcomes.items()})


def run_and_report(settings: Settings) -> None:
    """The section, printed, and written to ``objects.json`` beside run.py's JSON."""
    workdir = Path(tempfile.mkdtemp(prefix="ocigate-bench-objects-"))
    try:
        section = run_section(workdir, settings)
    finally:
        if settings.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    section.print(settings)
    path = settings.json_path.with_name("objects.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": section.results,
        "verdicts": section.verdicts,
        "markdown": section.markdown,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    import run

    settings = run.parse_args(argv)
    run_and_report(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
