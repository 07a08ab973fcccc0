#!/usr/bin/env python3
"""Benchmark ocigate against CNCF distribution (Debian's ``docker-registry``) on loopback.

Each registry is started on its own free 127.0.0.1 port with a fresh data directory and seeded
with the same small image (``bench/app:latest``). All of them run for the whole benchmark, which
measures them in rounds: each round measures every registry in turn (the order rotating), so
that the ratios compare figures taken minutes apart at most, and the medians over the rounds are
reported:

* manifest HEAD by tag: ``hey`` (wrk stalls on HEAD responses that carry a Content-Length)
* manifest GET by tag: ``wrk --latency``
* blob push of one large blob (POST, then one PUT streaming the body) and blob pull (GET)
* server RSS (the process and all its descendants) sampled every 50 ms during push and pull

``gateway`` is ``ocigate serve --workers 1 --upstream <distribution>`` in front of a second, fresh
distribution started for it (so it never shares data with the ``distribution`` row); it is
measured with the same steps and compared with distribution directly in a table of its own
(blob MB/s ≥ 0.9x direct, small-request p50 overhead ≤ 0.5 ms).

Results are printed as a markdown table and written to ``bench/results/latest.json``.

``objects`` (in ``--registries``, on by default) is a section of its own, run after the others:
ocigate on the objects backend (S3 + PostgreSQL; 1 replica, and 3 behind HAProxy) against
distribution on its ``s3`` driver, on one radosgw (``bench/objects_section.py``; its table and
``bench/results/objects.json``).

    python bench/run.py                 # 3 rounds of 6 s load runs, 1 GiB blob
    python bench/run.py --quick         # 2 s, 64 MiB: smoke test
    python bench/run.py --duration 5 --blob-size-mib 256 --registries ocigate-w1,distribution
    python bench/run.py --quick --registries distribution,gateway
    python bench/run.py --quick --registries objects     # only the objects backend's section
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
    env: dict[str, str] | None = None

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
                env=self.env,
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


def distribution_config(port: int, storage: str) -> str:
    """distribution's configuration: quiet, an in-memory blob descriptor cache, deletes on,
    ``storage`` (the driver's section, indented under ``storage:``) and the address."""
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: error\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        f"{storage}"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )


def distribution_server(workdir: Path, name: str = "distribution") -> Server:
    port = free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.yml"
    config.write_text(distribution_config(port, f"  filesystem:\n    rootdirectory: {data}\n"))
    return Server(name, ["docker-registry", "serve", str(config)], port, workdir / f"{name}.log")


# --------------------------------------------------------------------------------------------
# memory sampling


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after ``pid (comm)`` (comm may hold spaces and
    parentheses): state, ppid, ...; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
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


def cpu_seconds(pids: list[int], reaped: bool = False) -> float:
    """User + system CPU time of these processes so far; with ``reaped``, that of their
    children already waited for too (a whole tree's CPU then never falls when a process in it
    exits, as PostgreSQL's backends and autovacuum workers do)."""
    ticks = 0
    for pid in pids:
        if (fields := _stat_fields(pid)) is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            if reaped:
                ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


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


@contextlib.contextmanager
def reference_server(workdir: Path, blob: BigBlob) -> Iterator[str]:
    """A minimal server that ``sendfile``s the blob from the page cache, for the pull
    reference: what loopback and the client allow, whatever a registry does. Yields its URL."""
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
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        path.unlink()


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


def bench_get(
    base: str, duration: float, connections: int, threads: int, script: Path | None = None
) -> dict[str, Any]:
    """GETs of the seeded tag, or of what the wrk Lua ``script`` asks."""
    target = ["-s", str(script), base] if script else [f"{base}/v2/{REPO}/manifests/{TAG}"]
    output = run_tool(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "-H",
            f"Accept: {OCI_MANIFEST}",
            *target,
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
    rounds: int = 3


@dataclass
class Outcome:
    name: str
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Contender:
    """A registry under test, started for the whole run and measured once per round; the
    gateway's ``upstream`` (its own distribution) is measured directly beside it."""

    server: Server
    upstream: Server | None = None
    rounds: dict[str, list[float]] = field(default_factory=dict)
    baseline_rss: int = 0
    push_peak: int = 0
    pull_peak: int = 0
    rss_samples: int = 0

    def add(self, key: str, value: float | None) -> None:
        if value is not None:
            self.rounds.setdefault(key, []).append(value)

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid


def measure_small(contender: Contender, settings: Settings) -> None:
    """One round of manifest HEAD and GET by tag, 64 connections, and HEAD on one."""
    server, upstream = contender.server, contender.upstream
    pids = process_tree(contender.pid)
    used = cpu_seconds(pids)
    head = bench_head(server.base, settings.duration, settings.connections)
    for key in ("rps", "p50_ms", "p99_ms", "errors"):
        contender.add(f"head_{key}", head[key])
    # Server CPU per request: what the host's noise moves least (req/s swing with CPU steal).
    contender.add("head_cpu_us", 1e6 * (cpu_seconds(pids) - used) / max(head["requests"], 1))
    # One connection: latency without queueing (a gateway's own added time shows here).
    single = bench_head(server.base, settings.duration / 2, 1)
    contender.add("head1_rps", single["rps"])
    contender.add("head1_p50_ms", single["p50_ms"])
    if upstream is not None:  # the same, directly, in the same minute
        contender.add(
            "direct_head1_p50_ms", bench_head(upstream.base, settings.duration / 2, 1)["p50_ms"]
        )
    used = cpu_seconds(pids)
    get = bench_get(server.base, settings.duration, settings.connections, settings.wrk_threads)
    for key in ("rps", "p50_ms", "p99_ms", "errors"):
        contender.add(f"get_{key}", get[key])
    contender.add("get_cpu_us", 1e6 * (cpu_seconds(pids) - used) / max(get["requests"], 1))


def measure_blob(
    contender: Contender, settings: Settings, blob: BigBlob, digest: str, index: int
) -> None:
    """One push, one pull and one discarding pull of the big blob, the server's RSS sampled
    throughout; with an upstream, the same directly, first or second in turn (``index``), so
    both see the same disk and page cache."""
    server, upstream = contender.server, contender.upstream
    if not contender.baseline_rss:
        contender.baseline_rss = baseline_rss(contender.pid)
    order = [server, upstream] if index % 2 == 0 else [upstream, server]
    for target in order:
        if target is None:
            continue
        prefix = "" if target is server else "direct_"
        os.sync()  # earlier writes still being flushed would slow this push
        with RssSampler(contender.pid) as push_rss:
            seconds = push_big_blob(target.base, blob, digest)
        contender.add(prefix + "push_mb_s", blob.size / 1e6 / seconds)
        with RssSampler(contender.pid) as pull_rss:
            seconds = pull_big_blob(target.base, blob.size, digest, settings.pull_client)
            contender.add(prefix + "pull_mb_s", blob.size / 1e6 / seconds)
            seconds = pull_discarding(target.base, blob.size, digest)
            contender.add(prefix + "send_mb_s", blob.size / 1e6 / seconds)
        if target is server:
            contender.push_peak = max(contender.push_peak, push_rss.peak)
            contender.pull_peak = max(contender.pull_peak, pull_rss.peak)
            contender.rss_samples += push_rss.samples + pull_rss.samples


def summarize(contender: Contender, blob: BigBlob) -> Outcome:
    """Medians over the rounds (errors summed), every round's value kept beside them."""
    outcome = Outcome(contender.server.name)
    m = outcome.metrics
    for key, values in contender.rounds.items():
        m[key] = sum(values) if key.endswith("errors") else statistics.median(values)
        m[f"{key}_rounds"] = values
    m["errors"] = m.get("head_errors", 0) + m.get("get_errors", 0)
    peak = max(contender.push_peak, contender.pull_peak)
    m.update(
        {
            "blob_bytes": blob.size,
            "rss_baseline_mb": contender.baseline_rss / 1e6,
            "rss_peak_push_mb": contender.push_peak / 1e6,
            "rss_peak_pull_mb": contender.pull_peak / 1e6,
            "rss_delta_mb": (peak - contender.baseline_rss) / 1e6,
            "rss_samples": contender.rss_samples,
            "processes": len(process_tree(contender.pid)),
        }
    )
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
    # the target is on the value itself: no ratio shown, the mark beside the value
    absolute: bool = False


def _at_least(label: str, key: str, minimum: float) -> Row:
    """A row whose ratio (ocigate / distribution) must reach ``minimum``."""
    return Row(label, key, "{:,.0f}", f"≥ {minimum:g}x", lambda value, ratio: ratio >= minimum)


def _rss_target(label: str, fmt: str) -> Row:
    """The ``rss_delta_mb`` row: under ``TARGET_RSS_DELTA_MB``, whatever the reference."""
    return Row(
        label,
        "rss_delta_mb",
        fmt,
        f"< {TARGET_RSS_DELTA_MB:g} MB",
        lambda value, ratio: value < TARGET_RSS_DELTA_MB,
        absolute=True,
    )


ROWS = [
    _at_least("manifest HEAD req/s (hey)", "head_rps", TARGET_SMALL_RATIO),
    Row("manifest HEAD p50 ms", "head_p50_ms", "{:.2f}"),
    Row("manifest HEAD p99 ms", "head_p99_ms", "{:.2f}"),
    Row("manifest HEAD p50 ms, 1 connection", "head1_p50_ms", "{:.2f}"),
    Row("manifest HEAD server CPU µs per request", "head_cpu_us", "{:.0f}"),
    _at_least("manifest GET req/s (wrk)", "get_rps", TARGET_SMALL_RATIO),
    Row("manifest GET p50 ms", "get_p50_ms", "{:.2f}"),
    Row("manifest GET p99 ms", "get_p99_ms", "{:.2f}"),
    Row("manifest GET server CPU µs per request", "get_cpu_us", "{:.0f}"),
    _at_least("blob push MB/s", "push_mb_s", TARGET_BLOB_RATIO),
    _at_least("blob pull MB/s", "pull_mb_s", TARGET_BLOB_RATIO),
    _at_least("blob pull MB/s, send rate (client discards)", "send_mb_s", TARGET_BLOB_RATIO),
    Row("RSS baseline MB", "rss_baseline_mb", "{:.1f}"),
    Row("RSS peak during push MB", "rss_peak_push_mb", "{:.1f}"),
    Row("RSS peak during pull MB", "rss_peak_pull_mb", "{:.1f}"),
    _rss_target("RSS delta (peak - baseline) MB", "{:.1f}"),
    Row("errors (HEAD + GET)", "errors", "{:,.0f}"),
]


def table(
    outcomes: dict[str, Outcome],
    rows: list[Row] | None = None,
    reference_name: str = "distribution",
    skip: tuple[str, ...] = ("distribution", "gateway"),
) -> tuple[str, dict[str, dict[str, Any]]]:
    """A markdown table of ``rows``: the reference, then each other outcome and its ratio."""
    reference = outcomes.get(reference_name)
    contenders = [name for name in outcomes if name not in skip and name != reference_name]
    header = ["metric"]
    if reference:
        header.append(reference_name)
    for name in contenders:
        header.append(name)
        if reference:
            header.append(f"{name} / dist")
    header.append("target")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    verdicts: dict[str, dict[str, Any]] = {name: {} for name in contenders}

    for row in ROWS if rows is None else rows:
        cells = [row.label]
        ref_value = reference.metrics.get(row.key) if reference else None
        if reference:
            cells.append(_fmt(row.fmt, ref_value))
        for name in contenders:
            value = outcomes[name].metrics.get(row.key)
            numeric = isinstance(value, int | float) and isinstance(ref_value, int | float)
            ratio = value / ref_value if numeric and ref_value else None
            mark = ""
            if row.check is not None and isinstance(value, int | float):
                ok = row.check(value, ratio if ratio is not None else float("nan"))
                verdicts[name][row.key] = {"value": value, "ratio": ratio, "ok": ok}
                mark = " ✅" if ok else " ❌"
            cells.append(_fmt(row.fmt, value) + (mark if row.absolute else ""))
            if reference:
                meaningful = ratio is not None and not row.absolute
                ratio_cell = f"{ratio:.2f}x" if meaningful else "-"
                cells.append(ratio_cell + ("" if row.absolute else mark))
        cells.append(row.target)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), verdicts


def _fmt(fmt: str, value: Any) -> str:
    if isinstance(value, list):  # one value per replica
        return " / ".join(_fmt(fmt, item) for item in value)
    return "-" if value is None else fmt.format(value)


# (label, metric key, format, how the gateway is compared: "ratio" (with a target),
# "overhead", "times" (a ratio without one) or "" (not at all))
GATEWAY_ROWS = [
    ("manifest HEAD req/s (hey)", "head_rps", "{:,.0f}", "times"),
    ("manifest HEAD p50 ms", "head_p50_ms", "{:.2f}", "overhead"),
    ("manifest HEAD p99 ms", "head_p99_ms", "{:.2f}", "times"),
    ("manifest HEAD p50 ms, 1 connection", "head1_p50_ms", "{:.2f}", "overhead"),
    ("manifest HEAD server CPU µs per request", "head_cpu_us", "{:.0f}", "times"),
    ("manifest GET req/s (wrk)", "get_rps", "{:,.0f}", "times"),
    ("manifest GET p50 ms", "get_p50_ms", "{:.2f}", "overhead"),
    ("manifest GET p99 ms", "get_p99_ms", "{:.2f}", "times"),
    ("manifest GET server CPU µs per request", "get_cpu_us", "{:.0f}", "times"),
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
        default=float(os.environ.get("BENCH_DURATION", 6)),
        help="seconds per HEAD/GET load run, each round (env BENCH_DURATION, default 6)",
    )
    parser.add_argument(
        "--blob-size-mib",
        type=int,
        default=int(os.environ.get("BENCH_BLOB_SIZE_MIB", 1024)),
        help="size of the pushed/pulled blob (env BENCH_BLOB_SIZE_MIB, default 1024)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=int(os.environ.get("BENCH_ROUNDS", 3)),
        help="rounds, each measuring every registry in turn; medians reported"
        " (env BENCH_ROUNDS, default 3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 s runs, 64 MiB blob, 1 round"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--registries",
        default=os.environ.get(
            "BENCH_REGISTRIES", "distribution,ocigate-w1,ocigate-w2,gateway,objects"
        ),
        help="comma-separated subset of distribution,ocigate-w1,ocigate-w2,gateway,objects"
        " (ocigate-wN works; objects: the objects backend's section, bench/objects_section.py)",
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
    duration, blob_mib, rounds = args.duration, args.blob_size_mib, args.rounds
    if args.quick:
        duration, blob_mib, rounds = 2.0, 64, 1
    registries = [name.strip() for name in args.registries.split(",") if name.strip()]
    for name in registries:
        sections = ("distribution", "gateway", "objects")
        if name not in sections and not re.fullmatch(r"ocigate-w\d+", name):
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
        rounds=max(1, rounds),
    )


def contender(workdir: Path, name: str, settings: Settings) -> Contender:
    if name == "distribution":
        return Contender(distribution_server(workdir))
    if name == "gateway":
        # A fresh distribution of its own, so it starts as empty as the direct one.
        upstream = distribution_server(workdir, "gateway-upstream")
        level = settings.ocigate_log_level
        return Contender(ocigate_server(workdir, 1, level, upstream.base, "gateway"), upstream)
    workers = int(name.removeprefix("ocigate-w"))
    return Contender(ocigate_server(workdir, workers, settings.ocigate_log_level))


def run_rounds(
    workdir: Path, settings: Settings, blob: BigBlob, digest: str
) -> tuple[dict[str, Outcome], list[float], list[float]]:
    """Every registry runs for the whole benchmark and each round measures all of them in
    turn (the order rotating), so the ratios compare figures taken minutes apart at most: on
    a shared host the machine's speed drifts more than that between whole-registry phases."""
    contenders = {name: contender(workdir, name, settings) for name in settings.registries}
    reference: list[float] = []
    reference_send: list[float] = []
    started: list[Server] = []
    try:
        for entry in contenders.values():
            for server in (entry.upstream, entry.server):
                if server is not None:
                    log(f"starting {server.name} on {server.base}")
                    server.start()
                    started.append(server)
            seed(entry.server.base)
        names = list(contenders)
        with reference_server(workdir, blob) as reference_base:
            for index in range(settings.rounds):
                log(f"round {index + 1} of {settings.rounds}")
                order = names[index % len(names) :] + names[: index % len(names)]
                for name in order:
                    measure_small(contenders[name], settings)
                seconds = pull_big_blob(reference_base, blob.size, "", settings.pull_client)
                reference.append(blob.size / 1e6 / seconds)
                seconds = pull_discarding(reference_base, blob.size, "")
                reference_send.append(blob.size / 1e6 / seconds)
                for name in order:
                    measure_blob(contenders[name], settings, blob, digest, index)
        outcomes = {name: summarize(entry, blob) for name, entry in contenders.items()}
    finally:
        for server in reversed(started):
            server.stop()
    for name, outcome in outcomes.items():
        log(f"{name}: {json.dumps(outcome.metrics)}")
    rounded = [round(run) for run in reference], [round(run) for run in reference_send]
    log(f"pull reference: {rounded[0]} MB/s, discarding {rounded[1]} MB/s")
    return outcomes, reference, reference_send


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    objects = "objects" in settings.registries
    settings.registries = [name for name in settings.registries if name != "objects"]
    with_distribution = objects or {"distribution", "gateway"} & set(settings.registries)
    needed = ["hey", "wrk"] + (["docker-registry"] if with_distribution else [])
    needed += ["radosgw", "ceph-mon", "ceph-osd", "haproxy"] if objects else []
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        log(f"missing tools: {', '.join(missing)} (make debs installs them)")
        return 2
    if settings.registries:
        registries_section(settings, argv)
    if objects:  # the objects backend's section, after the others (its own servers)
        import objects_section

        objects_section.run_and_report(settings)
    return 0


def registries_section(settings: Settings, argv: list[str] | None) -> None:
    """ocigate (embedded store, gateway) against distribution on its filesystem driver."""
    blob = BigBlob.make(settings.blob_size)
    started = time.perf_counter()
    digest = blob.digest()
    seconds = time.perf_counter() - started
    log(f"{settings.blob_size / MIB:.0f} MiB blob {digest} hashed in {seconds:.1f}s")

    workdir = Path(tempfile.mkdtemp(prefix="ocigate-bench-"))
    try:
        outcomes, reference, reference_send = run_rounds(workdir, settings, blob, digest)
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
        "\nratios are ocigate / distribution (for latencies and CPU lower is better); all rows "
        f"are medians of {settings.rounds} rounds; machine: {os.cpu_count()} CPUs, "
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
            "measured directly in the same round (blob runs interleaved); the others with the "
            "distribution row above.\n"
        )
    report = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "settings": {
            "duration_s": settings.duration,
            "rounds": settings.rounds,
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


if __name__ == "__main__":
    raise SystemExit(main())
