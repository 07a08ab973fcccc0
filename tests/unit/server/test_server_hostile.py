"""The built-in server against hostile clients: a real ``ocigate serve`` (one worker, so the
process measured is the one serving) driven over loopback with raw sockets, memory read from
the server's ``/proc/PID/status``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.support import ServerProcess, ocigate_server

MiB = 1024 * 1024
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ocigate_server(tmp_path / "data", tmp_path / "server.log", workers=1)
    process.env = dict(os.environ, OCIGATE_BODY_TIMEOUT=str(BODY_TIMEOUT))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak so far) of the process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def exchange(server: ServerProcess, raw: bytes) -> bytes:
    """Send ``raw``, read until the server closes (or 5 s pass)."""
    with connect(server) as sock:
        sock.sendall(raw)
        return read_until_closed(sock, 5.0)


def read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    received = b""
    while True:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            return received + b"<still open>"
        if not piece:
            return received
        received += piece


def read_error_answer(sock: socket.socket) -> bytes:
    """One answer with an error body (one at a time on the connection: nothing follows it)."""
    answer = sock.recv(65536)
    while not answer.endswith(b"}]}"):
        piece = sock.recv(65536)
        assert piece, answer
        answer += piece
    return answer


def error_body(response: bytes) -> dict[str, object]:
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert isinstance(body, dict)
    entry = body["errors"][0]
    assert set(entry) == {"code", "message", "detail"}
    return body


def push_manifest(server: ServerProcess, annotation_size: int) -> bytes:
    """Pushes ``lib/app:v1`` (an empty config, a ``annotation_size``-byte annotation)."""
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    with httpx.Client(base_url=server.url) as http:
        started = http.post(f"/v2/lib/app/blobs/uploads/?digest={digest}", content=config)
        assert started.status_code == 201, started.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": digest,
                    "size": 2,
                },
                "layers": [],
                "annotations": {"filler": "f" * annotation_size},
            }
        ).encode()
        headers = {"content-type": "application/vnd.oci.image.manifest.v1+json"}
        put = http.put("/v2/lib/app/manifests/v1", content=manifest, headers=headers)
        assert put.status_code == 201, put.text
    return manifest


def test_pipelining_without_reading_keeps_memory_bounded(server: ServerProcess) -> None:
    """20,000 pipelined GETs of an 8 KiB manifest, never read: answered one at a time as the
    client takes them (160 MB if buffered), so the server grows by less than 8 MiB; then every
    answer arrives, in order."""
    manifest = push_manifest(server, 8192)
    count = 20_000
    request = b"GET /v2/lib/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request)  # the first answer: warm every cache on the way
        sock.settimeout(5)
        first = b""
        while len(first) < len(manifest):
            first += sock.recv(65536)
        time.sleep(0.3)
        before = memory_kib(server.pid, "VmRSS")
        # Send without reading until the server stops taking requests (or all are sent).
        payload = request * count
        sock.setblocking(False)
        sent, stalled_since = 0, time.monotonic()
        while sent < len(payload) and time.monotonic() - stalled_since < 2:
            try:
                sent += sock.send(payload[sent : sent + 65536])
                stalled_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(1)
        grown = memory_kib(server.pid, "VmRSS") - before
        assert grown < 8 * 1024, f"server RSS grew by {grown} KiB"
        # Nothing was lost: read every answer to what was sent, then send and read the rest.
        sock.setblocking(True)
        sock.settimeout(10)
        answered, tail = 0, b""
        while sent < len(payload) or answered < count:
            if sent < len(payload):
                sent += sock.send(payload[sent : sent + 65536])
            sock.settimeout(0.05 if sent < len(payload) else 10)
            try:
                piece = sock.recv(1024 * 1024)
            except TimeoutError:
                continue
            assert piece, f"closed after {answered} answers"
            data = tail + piece
            answered += data.count(b"HTTP/1.1 200 OK")
            tail = data[-20:]
        assert answered == count


def test_long_targets_get_414_and_misses_are_not_remembered(server: ServerProcess) -> None:
    """A target over 8 KiB: 414 with an OCI error body. 4,000 distinct missing paths of 8,000
    bytes (32 MB if remembered) leave the server no bigger; the 404 body and the access log
    line show a clipped path."""
    response = exchange(server, b"GET /v2/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 414")
    assert error_body(response)["errors"][0]["code"] == "UNSUPPORTED"  # type: ignore[index]
    with connect(server) as sock:
        for warm in range(200):  # the memo and the allocator reach their steady state
            sock.sendall(b"GET /x/%05d%s HTTP/1.1\r\nHost: x\r\n\r\n" % (warm, b"b" * 7990))
            assert read_error_answer(sock).startswith(b"HTTP/1.1 404")
        before = memory_kib(server.pid, "VmRSS")
        for miss in range(4000):
            sock.sendall(b"GET /x/%05d%s HTTP/1.1\r\nHost: x\r\n\r\n" % (miss, b"c" * 7990))
            answer = read_error_answer(sock)
        grown = memory_kib(server.pid, "VmRSS") - before
    assert grown < 8 * 1024, f"server RSS grew by {grown} KiB"
    detail = error_body(answer)["errors"][0]["detail"]  # type: ignore[index]
    assert isinstance(detail, str) and len(detail) <= 257
    logged = [line for line in server.log_path.read_text().splitlines() if '"/x/03999' in line]
    assert logged and len(logged[0]) < 1500


def test_many_tiny_headers_cost_no_memory(server: ServerProcess) -> None:
    """4 MB of empty headers: refused with 431 after the 100th, the peak RSS stays put (it
    took ~108 MB when each header became Python objects until 1 MiB of names was counted)."""
    before = memory_kib(server.pid, "VmHWM")
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused mid-send
            sock.sendall(b"a:\r\n" * (1024 * 1024))
        response = read_until_closed(sock, 5.0)
    grown = memory_kib(server.pid, "VmHWM") - before
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB"
    if response:  # a reset may take the answer; the count is checked on its own below
        assert response.startswith(b"HTTP/1.1 431")
    headers = b"".join(b"x-h%d: v\r\n" % index for index in range(101))
    response = exchange(server, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert response.startswith(b"HTTP/1.1 431")
    assert error_body(response)["errors"][0]["code"] == "SIZE_INVALID"  # type: ignore[index]


def test_a_stalled_body_is_cut_off(server: ServerProcess) -> None:
    """Half a manifest body, then silence: the connection closes after ``body_timeout``."""
    with connect(server) as sock:
        sock.sendall(
            b"PUT /v2/lib/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n" + b"{" * 500
        )
        started = time.monotonic()
        assert read_until_closed(sock, 10.0) == b""
        assert time.monotonic() - started < BODY_TIMEOUT + 2


def test_an_answer_before_the_body_closes_and_sends_no_continue(server: ServerProcess) -> None:
    """``Expect: 100-continue`` on a request the app refuses without reading the body: no
    ``100 Continue``, the refusal says ``connection: close``, and the server closes instead of
    waiting for a body."""
    with connect(server) as sock:
        sock.sendall(
            b"PATCH /v2/lib/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        started = time.monotonic()
        response = read_until_closed(sock, 10.0)
        assert time.monotonic() - started < BODY_TIMEOUT + 2
    assert response.startswith(b"HTTP/1.1 405"), response[:100]
    assert b"100 Continue" not in response
    assert b"\r\nconnection: close\r\n" in response.lower()


def test_the_access_log_shows_the_query_with_secrets_masked(server: ServerProcess) -> None:
    exchange(
        server,
        b"GET /v2/lib/app/tags/list?n=5&last=a&token=SECRET1&_state=SECRET2&X-Amz-Signature="
        b"SECRET3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    time.sleep(0.2)
    line = next(line for line in server.log_path.read_text().splitlines() if "tags/list" in line)
    query = json.loads(line)["query"]
    assert query == "n=5&last=a&token=***&_state=***&X-Amz-Signature=***"
    assert "SECRET" not in line


def test_a_valid_request_followed_by_garbage_is_answered_then_refused(
    server: ServerProcess,
) -> None:
    response = exchange(server, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE \x01\r\n\r\n")
    first, _, rest = response.partition(b"{}")
    assert first.startswith(b"HTTP/1.1 200"), response
    assert rest.startswith(b"HTTP/1.1 400"), response
    assert error_body(rest)


def test_an_absolute_form_target_is_routed_by_its_path(server: ServerProcess) -> None:
    response = exchange(
        server, b"GET http://x/v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 200"), response


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"PUT /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
        (b"GET /v2/\r\n\r\n", b"400"),  # no HTTP version
        (b"GET /v2/ HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400"),  # two
    ],
)
def test_heads_http_1_1_forbids_are_refused(
    server: ServerProcess, head: bytes, status: bytes
) -> None:
    response = exchange(server, head)
    assert response.startswith(b"HTTP/1.1 " + status), response
    assert error_body(response)


def test_the_route_memo_keeps_no_long_paths() -> None:
    from ocigate.api import routes

    held = routes._remembered.cache_info().currsize
    for index in range(100):
        assert routes.match(f"/v2/{index}/" + "x" * 2000) is None
    assert routes._remembered.cache_info().currsize == held
    assert routes.match("/v2/lib/app/manifests/v1") == routes.Route("manifest", "lib/app", "v1")


def test_an_idle_connection_is_closed_after_idle_timeout(tmp_path: Path) -> None:
    """``idle_timeout`` (2 s here, 30 s by default) closes a kept-alive connection that sends
    no next request, and one that never finishes its request head."""
    server = ocigate_server(tmp_path / "data", tmp_path / "server.log", workers=1)
    server.env = dict(os.environ, OCIGATE_IDLE_TIMEOUT=str(IDLE_TIMEOUT))
    server.start()
    try:
        _closed_after_idle_timeout(server)
    finally:
        server.stop()


def _closed_after_idle_timeout(server: ServerProcess) -> None:
    with connect(server) as kept, connect(server) as slow:
        kept.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        slow.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answered = read_until_closed(kept, 10.0)
        assert answered.startswith(b"HTTP/1.1 200") and not answered.endswith(b"<still open>")
        assert read_until_closed(slow, 10.0) == b""
        assert IDLE_TIMEOUT - 0.5 < time.monotonic() - started < IDLE_TIMEOUT + 5
