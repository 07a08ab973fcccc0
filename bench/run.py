#!/usr/bin/env python3
"""Benchmark ocigate against CNCF distribution (Debian's ``docker-registry``) on loopback.

Each registry is started on its own free 127.0.0.1 port with a fresh data directory, seeded with
the same small image (``bench/app:latest``), then measured one at a time:

* manifest HEAD by tag: ``hey`` (wrk stalls on HEAD responses that carry a Content-Length)
* manifest GET by tag: ``wrk --latency``
* blob push of one large blob (POST, then one PUT streaming the body) and blob pull (GET)
* server RSS (the process and all its descendants) sampled every 50 ms during push and pull

``gateway`` is ``ocigate serve --workers 1 --upstream <distribution>`` in front of a second, fresh
distribution started for it (so it never shares data with the ``distribution`` row); it is
measured with the same steps and compared with distribution directly in a table of its own
(blob MB/s ≥ 0.9x direct, small-request p50 overhead ≤ 0.5 ms).

Results are printed as a markdown table and written to ``bench/results/latest.json``.

    python bench/run.py                 # 10 s load runs, 1 GiB blob
    python bench/run.py --quick         # 2 s, 64 MiB: smoke test
    python bench/run.py --duration 5 --blob-size-mib 256 --registries ocigate-w1,distribution
    python bench/run.py --quick --registries distribution,gateway
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
MIB = 1024 * 1024
REPO = "bench/app"
TAG = "latest"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
READY_TIMEOUT = 30.0

# targets: ocigate / distribution ratios for throughput, absolute for memory
TARGET_SMALL_RATIO = 10.0
TARGET_BLOB_RATIO = 2.0
TARGET_RSS_DELTA_MB = 50.0
# targets of the gateway against distribution directly
TARGET_GATEWAY_BLOB_RATIO = 0.9
TARGET_GATEWAY_P50_OVERHEAD_MS = 0.5


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# registry processes


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/v2/", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {READY_TIMEOUT}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def ocigate_command() -> list[str]:
    script = Path(sys.executable).with_name("ocigate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ocigate"]


def ocigate_server(
    workdir: Path, workers: int, log_level: str, upstream: str | None = None, name: str = ""
) -> Server:
    port = free_port()
    name = name or f"ocigate-w{workers}"
    data = workdir / name
    argv = [
        *ocigate_command(),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data),
        "--workers",
        str(workers),
        "--log-level",
        log_level,
    ]
    if upstream is not None:
        argv += ["--upstream", upstream]
    return Server(name, argv, port, workdir / f"{name}.log")


def distribution_server(workdir: Path, name: str = "distribution") -> Server:
    port = free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n"
        "  level: error\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "  filesystem:\n"
        f"    rootdirectory: {data}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )
    return Server(name, ["docker-registry", "serve", str(config)], port, workdir / f"{name}.log")


# --------------------------------------------------------------------------------------------
# memory sampling


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        fields = stat[stat.rindex(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class RssSampler:
    """Samples the summed VmRSS of a process tree every ``interval`` seconds in a thread."""

    def __init__(self, root_pid: int, interval: float = 0.05) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tree = process_tree(root_pid)
        self._tree_at = time.monotonic()

    def sample(self) -> int:
        if time.monotonic() - self._tree_at > 1.0:
            self._tree = process_tree(self.root_pid)
            self._tree_at = time.monotonic()
        return rss_bytes(self._tree)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def baseline_rss(pid: int, seconds: float = 1.0) -> int:
    sampler = RssSampler(pid)
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        values.append(sampler.sample())
        time.sleep(0.05)
    return max(values)


# --------------------------------------------------------------------------------------------
# seeding and blob transfer


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_url(base: str, response: httpx.Response, digest: str) -> str:
    assert response.status_code == 202, (response.status_code, response.text)
    url = urljoin(base + "/", response.headers["location"])
    return f"{url}{'&' if '?' in url else '?'}digest={digest}"


def push_small_blob(client: httpx.Client, base: str, data: bytes) -> dict[str, Any]:
    digest = digest_of(data)
    response = client.post(f"{base}/v2/{REPO}/blobs/uploads/")
    response = client.put(
        upload_url(base, response, digest),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, (response.status_code, response.text)
    return {"digest": digest, "size": len(data)}


def seed(base: str) -> str:
    """Push the same small image to a registry; returns the manifest digest."""
    rng = random.Random("ocigate-bench")
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    with httpx.Client(timeout=30.0) as client:
        config_desc = push_small_blob(client, base, config)
        layers = [push_small_blob(client, base, rng.randbytes(4096)) for _ in range(2)]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}
                    for layer in layers
                ],
            },
            indent=2,
        ).encode()
        response = client.put(
            f"{base}/v2/{REPO}/manifests/{TAG}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201, (response.status_code, response.text)
        for method in ("GET", "HEAD"):
            response = client.request(
                method, f"{base}/v2/{REPO}/manifests/{TAG}", headers={"Accept": OCI_MANIFEST}
            )
            assert response.status_code == 200, (method, response.status_code)
            assert response.headers["docker-content-digest"] == digest_of(manifest)
    return digest_of(manifest)


@dataclass(frozen=True)
class BigBlob:
    """``size`` bytes: one random MiB repeated, each copy with its index as an 8-byte prefix."""

    size: int
    block: bytes

    @classmethod
    def make(cls, size: int) -> BigBlob:
        return cls(size, random.Random("ocigate-bench-blob").randbytes(MIB))

    def chunks(self) -> Iterator[bytes]:
        tail = self.block[8:]
        full, rest = divmod(self.size, MIB)
        for index in range(full):
            yield struct.pack(">Q", index) + tail
        if rest:
            yield (struct.pack(">Q", full) + tail)[:rest]

    def digest(self) -> str:
        sha = hashlib.sha256()
        for chunk in self.chunks():
            sha.update(chunk)
        return "sha256:" + sha.hexdigest()


def push_big_blob(base: str, blob: BigBlob, digest: str) -> float:
    """POST, then one PUT streaming the whole body; returns seconds taken."""
    with httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0)) as client:
        started = time.perf_counter()
        response = client.post(f"{base}/v2/{REPO}/blobs/uploads/")
        response = client.put(
            upload_url(base, response, digest),
            content=blob.chunks(),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(blob.size),
            },
        )
        seconds = time.perf_counter() - started
    assert response.status_code == 201, (response.status_code, response.text)
    return seconds


def pull_big_blob(base: str, size: int, digest: str, client: str) -> float:
    """GET the blob streamed to nowhere, checking the byte count; returns seconds taken.

    curl (when installed) is the default client: it sinks 1.3 to 2.3 GB/s on this loopback,
    where httpx tops out lower.
    """
    url = f"{base}/v2/{REPO}/blobs/{digest}"
    if client == "curl":
        started = time.perf_counter()
        result = subprocess.run(
            ["curl", "-sS", "-L", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        seconds = time.perf_counter() - started
        status, received = (int(part) for part in result.stdout.split())
        assert status == 200, status
    else:
        received = 0
        timeout = httpx.Timeout(300.0, connect=10.0)
        with httpx.Client(timeout=timeout, follow_redirects=True) as http:
            started = time.perf_counter()
            with http.stream("GET", url) as response:
                assert response.status_code == 200, response.status_code
                for chunk in response.iter_raw():  # no re-chunking: much faster
                    received += len(chunk)
            seconds = time.perf_counter() - started
    assert received == size, f"pulled {received} bytes, expected {size}"
    return seconds


DISCARD_SIZE = 4 * MIB


def pull_discarding(base: str, size: int, digest: str) -> float:
    """GET the blob with its bytes dropped by the kernel (``recv`` with ``MSG_TRUNC`` copies
    nothing to user space); returns seconds taken. This is the server's send rate: a copying
    client (curl) sinks no faster than 1.3-2.3 GB/s here and hides what lies beyond."""
    parts = urlsplit(base)
    request = (
        f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=300) as sock:
        started = time.perf_counter()
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            assert data, "closed before the response head"
            head += data
        head, _, body = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split()[1] == "200", lines[0]
        fields = dict(line.lower().split(":", 1) for line in lines[1:])
        assert int(fields["content-length"]) == size, fields
        received = len(body)
        sink = bytearray(DISCARD_SIZE)
        while received < size and (got := sock.recv_into(sink, DISCARD_SIZE, socket.MSG_TRUNC)):
            received += got
        seconds = time.perf_counter() - started
    assert received == size, f"pulled {received} bytes, expected {size}"
    return seconds


def pull_reference(
    workdir: Path, blob: BigBlob, settings: Settings
) -> tuple[list[float], list[float]]:
    """MB/s per run, with the pull client and discarding, against a minimal server that
    ``sendfile``s the blob from the page cache: what loopback and the client allow, whatever
    the registry does."""
    path = workdir / "reference.blob"
    with path.open("wb") as out:
        for chunk in blob.chunks():
            out.write(chunk)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: done
                return
            with conn, path.open("rb") as source:
                head = b""
                while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
                    head += data
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                    % blob.size
                )
                conn.sendfile(source)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    client: list[float] = []
    discarding: list[float] = []
    try:
        for _ in range(settings.blob_runs):
            seconds = pull_big_blob(base, blob.size, "", settings.pull_client)
            client.append(blob.size / 1e6 / seconds)
            discarding.append(blob.size / 1e6 / pull_discarding(base, blob.size, ""))
    finally:
        listener.close()
        path.unlink()
    return client, discarding


# --------------------------------------------------------------------------------------------
# load generators


_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)([a-zµ]+)", value.strip())
    if not match:
        raise ValueError(f"cannot parse duration {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_tool(argv: list[str], duration: float) -> str:
    log(" ".join(argv))
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def parse_hey(output: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {
        int(p): float(s) * 1000.0 for p, s in re.findall(r"(\d+)%\s+in\s+([\d.]+)\s+secs", output)
    }
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+)\s+responses", output)}
    errors_block = output.split("Error distribution:", 1)
    errors = (
        sum(int(n) for n in re.findall(r"\[(\d+)\]\s", errors_block[1]))
        if len(errors_block) > 1
        else 0
    )
    non_2xx = sum(n for code, n in statuses.items() if not 200 <= code < 300)
    return {
        "rps": rps,
        "p50_ms": latency.get(50),
        "p99_ms": latency.get(99),
        "requests": sum(statuses.values()),
        "errors": errors + non_2xx,
    }


def parse_wrk(output: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {int(p): to_ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.M)}
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(g) for g in match.groups())
    return {
        "rps": rps,
        "p50_ms": latency.get(50),
        "p99_ms": latency.get(99),
        "requests": requests,
        "errors": errors,
    }


def bench_head(base: str, duration: float, connections: int) -> dict[str, Any]:
    output = run_tool(
        [
            "hey",
            "-z",
            f"{duration:g}s",
            "-c",
            str(connections),
            "-m",
            "HEAD",
            "-H",
            f"Accept: {OCI_MANIFEST}",
            f"{base}/v2/{REPO}/manifests/{TAG}",
        ],
        duration,
    )
    return parse_hey(output)


def bench_get(base: str, duration: float, connections: int, threads: int) -> dict[str, Any]:
    output = run_tool(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "-H",
            f"Accept: {OCI_MANIFEST}",
            f"{base}/v2/{REPO}/manifests/{TAG}",
        ],
        duration,
    )
    return parse_wrk(output)


# --------------------------------------------------------------------------------------------
# one registry


@dataclass
class Settings:
    duration: float
    blob_size: int
    connections: int
    wrk_threads: int
    registries: list[str]
    ocigate_log_level: str
    pull_client: str
    keep: bool
    json_path: Path
    blob_runs: int = 3


@dataclass
class Outcome:
    name: str
    metrics: dict[str, Any] = field(default_factory=dict)


def bench_registry(
    server: Server, settings: Settings, blob: BigBlob, digest: str, upstream: Server | None = None
) -> Outcome:
    outcome = Outcome(server.name)
    m = outcome.metrics
    log(f"starting {server.name} on {server.base}")
    server.start()
    try:
        assert server.proc is not None
        seed(server.base)
        head = bench_head(server.base, settings.duration, settings.connections)
        m.update({f"head_{k}": v for k, v in head.items()})
        # One connection: latency without queueing (a gateway's own added time shows here).
        single = bench_head(server.base, settings.duration / 2, 1)
        m.update({f"head1_{k}": v for k, v in single.items() if k in ("rps", "p50_ms")})
        if upstream is not None:  # the same, directly, in the same minute
            direct = bench_head(upstream.base, settings.duration / 2, 1)
            m["direct_head1_p50_ms"] = direct["p50_ms"]
        get = bench_get(server.base, settings.duration, settings.connections, settings.wrk_threads)
        m.update({f"get_{k}": v for k, v in get.items()})

        baseline = baseline_rss(server.proc.pid)
        runs: dict[str, list[float]] = {
            "push": [],
            "pull": [],
            "send": [],
            "direct_push": [],
            "direct_pull": [],
            "direct_send": [],
        }
        push_peak = pull_peak = samples = 0
        for index in range(settings.blob_runs):  # the medians: one disk hiccup moves one run
            # With an upstream: each run also pushes and pulls it directly, first or second in
            # turn, so both see the same disk and page cache.
            order = [server, upstream] if index % 2 == 0 else [upstream, server]
            for target in order:
                if target is None:
                    continue
                prefix = "" if target is server else "direct_"
                os.sync()  # earlier writes still being flushed would slow this push
                with RssSampler(server.proc.pid) as push_rss:
                    runs[prefix + "push"].append(push_big_blob(target.base, blob, digest))
                with RssSampler(server.proc.pid) as pull_rss:
                    seconds = pull_big_blob(target.base, blob.size, digest, settings.pull_client)
                    runs[prefix + "pull"].append(seconds)
                    runs[prefix + "send"].append(pull_discarding(target.base, blob.size, digest))
                if target is server:
                    push_peak = max(push_peak, push_rss.peak)
                    pull_peak = max(pull_peak, pull_rss.peak)
                    samples += push_rss.samples + pull_rss.samples
        for name, seconds_list in runs.items():
            if seconds_list:
                m[f"{name}_runs_mb_s"] = [blob.size / 1e6 / sec for sec in seconds_list]
                m[f"{name}_mb_s"] = blob.size / 1e6 / statistics.median(seconds_list)
        m.update(
            {
                "blob_bytes": blob.size,
                "rss_baseline_mb": baseline / 1e6,
                "rss_peak_push_mb": push_peak / 1e6,
                "rss_peak_pull_mb": pull_peak / 1e6,
                "rss_delta_mb": (max(push_peak, pull_peak) - baseline) / 1e6,
                "rss_samples": samples,
                "processes": len(process_tree(server.proc.pid)),
            }
        )
        log(f"{server.name}: {json.dumps(m)}")
    finally:
        server.stop()
    return outcome


# --------------------------------------------------------------------------------------------
# report


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    fmt: str
    target: str = ""
    # how a ratio (ocigate / distribution) or value meets the target
    check: Callable[[float, float], bool] | None = None


def _at_least(label: str, key: str, minimum: float) -> Row:
    """A row whose ratio (ocigate / distribution) must reach ``minimum``."""
    return Row(label, key, "{:,.0f}", f"≥ {minimum:g}x", lambda value, ratio: ratio >= minimum)


ROWS = [
    _at_least("manifest HEAD req/s (hey)", "head_rps", TARGET_SMALL_RATIO),
    Row("manifest HEAD p50 ms", "head_p50_ms", "{:.2f}"),
    Row("manifest HEAD p99 ms", "head_p99_ms", "{:.2f}"),
    Row("manifest HEAD p50 ms, 1 connection", "head1_p50_ms", "{:.2f}"),
    _at_least("manifest GET req/s (wrk)", "get_rps", TARGET_SMALL_RATIO),
    Row("manifest GET p50 ms", "get_p50_ms", "{:.2f}"),
    Row("manifest GET p99 ms", "get_p99_ms", "{:.2f}"),
    _at_least("blob push MB/s", "push_mb_s", TARGET_BLOB_RATIO),
    _at_least("blob pull MB/s", "pull_mb_s", TARGET_BLOB_RATIO),
    _at_least("blob pull MB/s, send rate (client discards)", "send_mb_s", TARGET_BLOB_RATIO),
    Row("RSS baseline MB", "rss_baseline_mb", "{:.1f}"),
    Row("RSS peak during push MB", "rss_peak_push_mb", "{:.1f}"),
    Row("RSS peak during pull MB", "rss_peak_pull_mb", "{:.1f}"),
    Row(
        "RSS delta (peak - baseline) MB",
        "rss_delta_mb",
        "{:.1f}",
        f"< {TARGET_RSS_DELTA_MB:g} MB",
        lambda value, ratio: value < TARGET_RSS_DELTA_MB,
    ),
    Row("errors (HEAD + GET)", "errors", "{:,.0f}"),
]


def table(outcomes: dict[str, Outcome]) -> tuple[str, dict[str, dict[str, Any]]]:
    reference = outcomes.get("distribution")
    contenders = [name for name in outcomes if name not in ("distribution", "gateway")]
    header = ["metric"]
    if reference:
        header.append("distribution")
    for name in contenders:
        header.append(name)
        if reference:
            header.append(f"{name} / dist")
    header.append("target")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    verdicts: dict[str, dict[str, Any]] = {name: {} for name in contenders}

    for row in ROWS:
        cells = [row.label]
        ref_value = reference.metrics.get(row.key) if reference else None
        if reference:
            cells.append(_fmt(row.fmt, ref_value))
        for name in contenders:
            value = outcomes[name].metrics.get(row.key)
            ratio = value / ref_value if value is not None and ref_value else None
            mark = ""
            if row.check is not None and value is not None:
                ok = row.check(value, ratio if ratio is not None else float("nan"))
                verdicts[name][row.key] = {"value": value, "ratio": ratio, "ok": ok}
                mark = " ✅" if ok else " ❌"
            if row.key == "rss_delta_mb":
                cells.append(_fmt(row.fmt, value) + mark)
            else:
                cells.append(_fmt(row.fmt, value))
            if reference:
                meaningful = ratio is not None and row.key != "rss_delta_mb"
                ratio_cell = f"{ratio:.2f}x" if meaningful else "-"
                cells.append(ratio_cell + (mark if row.key != "rss_delta_mb" else ""))
        cells.append(row.target)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), verdicts


def _fmt(fmt: str, value: Any) -> str:
    return "-" if value is None else fmt.format(value)


# (label, metric key, format, how the gateway is compared: "ratio" (with a target),
# "overhead", "times" (a ratio without one) or "" (not at all))
GATEWAY_ROWS = [
    ("manifest HEAD req/s (hey)", "head_rps", "{:,.0f}", "times"),
    ("manifest HEAD p50 ms", "head_p50_ms", "{:.2f}", "overhead"),
    ("manifest HEAD p99 ms", "head_p99_ms", "{:.2f}", "times"),
    ("manifest HEAD p50 ms, 1 connection", "head1_p50_ms", "{:.2f}", "overhead"),
    ("manifest GET req/s (wrk)", "get_rps", "{:,.0f}", "times"),
    ("manifest GET p50 ms", "get_p50_ms", "{:.2f}", "overhead"),
    ("manifest GET p99 ms", "get_p99_ms", "{:.2f}", "times"),
    ("blob push MB/s", "push_mb_s", "{:,.0f}", "ratio"),
    ("blob pull MB/s", "pull_mb_s", "{:,.0f}", "ratio"),
    ("blob pull MB/s, send rate (client discards)", "send_mb_s", "{:,.0f}", "ratio"),
    ("RSS baseline MB", "rss_baseline_mb", "{:.1f}", "times"),
    ("RSS delta (peak - baseline) MB", "rss_delta_mb", "{:.1f}", ""),
    ("errors (HEAD + GET)", "errors", "{:,.0f}", ""),
]


def gateway_table(
    gateway: Outcome, direct: Outcome | None
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The gateway against distribution directly: blob MB/s as a ratio (≥ 0.9x), small
    requests as p50 overhead in ms (gateway - direct, ≤ 0.5 ms)."""
    header = ["metric", "distribution (direct)", "gateway", "gateway vs direct", "target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    verdicts: dict[str, dict[str, Any]] = {}
    for label, key, fmt, compare in GATEWAY_ROWS:
        value = gateway.metrics.get(key)
        ref = gateway.metrics.get(f"direct_{key}")  # its upstream, measured beside it
        if ref is None:
            ref = direct.metrics.get(key) if direct else None
        versus, target = "-", ""
        if compare == "ratio":
            target = f"≥ {TARGET_GATEWAY_BLOB_RATIO:g}x"
            if value is not None and ref:
                ratio = value / ref
                ok = ratio >= TARGET_GATEWAY_BLOB_RATIO
                verdicts[key] = {"value": value, "ratio": ratio, "ok": ok}
                versus = f"{ratio:.2f}x" + (" ✅" if ok else " ❌")
        elif compare == "overhead":
            target = f"≤ +{TARGET_GATEWAY_P50_OVERHEAD_MS:g} ms"
            if value is not None and ref is not None:
                overhead = value - ref
                ok = overhead <= TARGET_GATEWAY_P50_OVERHEAD_MS
                verdicts[key] = {"value": value, "overhead_ms": overhead, "ok": ok}
                versus = f"{overhead:+.2f} ms" + (" ✅" if ok else " ❌")
        elif compare == "times" and value is not None and ref:
            versus = f"{value / ref:.2f}x"
        lines.append(f"| {label} | {_fmt(fmt, ref)} | {_fmt(fmt, value)} | {versus} | {target} |")
    return "\n".join(lines), verdicts


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("BENCH_DURATION", 10)),
        help="seconds per HEAD/GET load run (env BENCH_DURATION, default 10)",
    )
    parser.add_argument(
        "--blob-size-mib",
        type=int,
        default=int(os.environ.get("BENCH_BLOB_SIZE_MIB", 1024)),
        help="size of the pushed/pulled blob (env BENCH_BLOB_SIZE_MIB, default 1024)",
    )
    parser.add_argument(
        "--blob-runs",
        type=int,
        default=int(os.environ.get("BENCH_BLOB_RUNS", 3)),
        help="push/pull runs per registry, the median reported (env BENCH_BLOB_RUNS, default 3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 s runs, 64 MiB blob, 1 blob run"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--registries",
        default=os.environ.get("BENCH_REGISTRIES", "distribution,ocigate-w1,ocigate-w2,gateway"),
        help="comma-separated subset of distribution,ocigate-w1,ocigate-w2,gateway"
        " (ocigate-wN works)",
    )
    parser.add_argument("--ocigate-log-level", default="error")
    parser.add_argument(
        "--pull-client",
        choices=["auto", "curl", "httpx"],
        default="auto",
        help="client for the blob pull (auto: curl if installed, else httpx)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    duration, blob_mib, blob_runs = args.duration, args.blob_size_mib, args.blob_runs
    if args.quick:
        duration, blob_mib, blob_runs = 2.0, 64, 1
    registries = [name.strip() for name in args.registries.split(",") if name.strip()]
    for name in registries:
        if name not in ("distribution", "gateway") and not re.fullmatch(r"ocigate-w\d+", name):
            parser.error(f"unknown registry {name!r}")
    return Settings(
        duration=duration,
        blob_size=blob_mib * MIB,
        connections=args.connections,
        wrk_threads=args.wrk_threads,
        registries=registries,
        ocigate_log_level=args.ocigate_log_level,
        pull_client=(
            args.pull_client
            if args.pull_client != "auto"
            else ("curl" if shutil.which("curl") else "httpx")
        ),
        keep=args.keep,
        json_path=args.json,
        blob_runs=max(1, blob_runs),
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    with_distribution = {"distribution", "gateway"} & set(settings.registries)
    needed = ["hey", "wrk"] + (["docker-registry"] if with_distribution else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        log(f"missing tools: {', '.join(missing)} (make debs installs them)")
        return 2

    blob = BigBlob.make(settings.blob_size)
    started = time.perf_counter()
    digest = blob.digest()
    seconds = time.perf_counter() - started
    log(f"{settings.blob_size / MIB:.0f} MiB blob {digest} hashed in {seconds:.1f}s")

    workdir = Path(tempfile.mkdtemp(prefix="ocigate-bench-"))
    outcomes: dict[str, Outcome] = {}
    try:
        reference, reference_send = pull_reference(workdir, blob, settings)
        log(
            f"pull reference (minimal sendfile server): {[round(run) for run in reference]} MB/s"
            f", discarding {[round(run) for run in reference_send]} MB/s"
        )
        for name in settings.registries:
            upstream: Server | None = None
            if name == "distribution":
                server = distribution_server(workdir)
            elif name == "gateway":
                # A fresh distribution of its own, so it starts as empty as the direct one.
                upstream = distribution_server(workdir, "gateway-upstream")
                log(f"starting {upstream.name} on {upstream.base}")
                upstream.start()
                server = ocigate_server(
                    workdir, 1, settings.ocigate_log_level, upstream.base, name="gateway"
                )
            else:
                workers = int(name.removeprefix("ocigate-w"))
                server = ocigate_server(workdir, workers, settings.ocigate_log_level)
            try:
                outcome = bench_registry(server, settings, blob, digest, upstream)
            finally:
                if upstream is not None:
                    upstream.stop()
            outcome.metrics["errors"] = (
                outcome.metrics["head_errors"] + outcome.metrics["get_errors"]
            )
            outcomes[name] = outcome
    finally:
        if settings.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    markdown, verdicts = table(outcomes)
    gateway_markdown = ""
    if "gateway" in outcomes:
        gateway_markdown, verdicts["gateway"] = gateway_table(
            outcomes["gateway"], outcomes.get("distribution")
        )
    command = " ".join(
        [Path(sys.executable).name, "bench/run.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(
        f"\n### ocigate vs distribution — {settings.duration:g} s load runs, "
        f"{settings.connections} connections, {settings.blob_size / MIB:.0f} MiB blob "
        f"(pull client: {settings.pull_client})\n"
    )
    print(markdown)
    reference_mb_s = statistics.median(reference)
    reference_send_mb_s = statistics.median(reference_send)
    reached = ", ".join(
        f"{name} {outcome.metrics['pull_mb_s'] / reference_mb_s:.0%}"
        for name, outcome in outcomes.items()
    )
    print(
        "\nratios are ocigate / distribution (for latencies lower is better); blob rows are "
        f"medians of {settings.blob_runs} runs; machine: {os.cpu_count()} CPUs, "
        f"{platform.platform()}\n\npull reference: {reference_mb_s:,.0f} MB/s, the same client "
        "pulling the same bytes from a minimal server that sendfile()s them from the page "
        "cache: no registry can be pulled meaningfully faster by that client on this machine. "
        f"Pulls measured {reached} of it (above 100%: the noise between runs). The send-rate "
        "row pulls again with the bytes dropped by the kernel (recv with MSG_TRUNC, no copy): "
        "the server's own rate, which the copying client hides; the same minimal server "
        f"reached {reference_send_mb_s:,.0f} MB/s so.\n"
    )
    if gateway_markdown:
        print(
            "### gateway (ocigate serve --workers 1 --upstream <fresh distribution>) vs "
            "distribution directly\n"
        )
        print(gateway_markdown)
        print(
            "\nblob rows: gateway / direct; p50 rows: gateway - direct (lower is better). The "
            "blob rows and the 1-connection row compare with the gateway's own upstream "
            "measured directly in the same phase (blob runs interleaved); the others with the "
            "distribution row above.\n"
        )
    report = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "settings": {
            "duration_s": settings.duration,
            "blob_size_bytes": settings.blob_size,
            "connections": settings.connections,
            "wrk_threads": settings.wrk_threads,
            "registries": settings.registries,
            "pull_client": settings.pull_client,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "targets": {
            "small_request_ratio": TARGET_SMALL_RATIO,
            "blob_mb_s_ratio": TARGET_BLOB_RATIO,
            "rss_delta_mb": TARGET_RSS_DELTA_MB,
            "gateway_blob_mb_s_ratio": TARGET_GATEWAY_BLOB_RATIO,
            "gateway_p50_overhead_ms": TARGET_GATEWAY_P50_OVERHEAD_MS,
        },
        "pull_reference_mb_s": reference_mb_s,
        "pull_reference_runs_mb_s": reference,
        "pull_reference_send_mb_s": reference_send_mb_s,
        "pull_reference_send_runs_mb_s": reference_send,
        "results": {name: outcome.metrics for name, outcome in outcomes.items()},
        "verdicts": verdicts,
        "markdown": markdown,
        "gateway_markdown": gateway_markdown,
    }
    settings.json_path.parent.mkdir(parents=True, exist_ok=True)
    settings.json_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {settings.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
