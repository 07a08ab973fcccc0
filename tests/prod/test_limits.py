"""Rate limits on a real 2-worker server: one identity flooding is refused with 429 and
Retry-After while another is served; the upload-session cap; the per-worker connection cap on
each server, and its default."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import httpx
import pytest

from .support import ProdServer, prod_server


def _server(tmp_path: Path, limits: str, workers: int = 2) -> ProdServer:
    users = tmp_path / "htpasswd"
    users.write_text(
        "".join(
            f"{name}:{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}\n"
            for name in ("alice", "bob")
        )
    )
    config = f"auth: {{htpasswd: {users}, realm: basic}}\nrate_limits: {limits}\n"
    return prod_server(tmp_path, config, workers)


def test_a_flooding_identity_is_limited_while_another_is_served(tmp_path: Path) -> None:
    rules = "{rules: [{repository: 'team/**', reads: {rate: 1, burst: 20}}]}"
    server = _server(tmp_path, rules).start()
    url = f"{server.url}/v2/team/app/manifests/v1"
    try:
        started = time.monotonic()
        statuses: list[int] = []
        refused: list[httpx.Response] = []
        for _ in range(100):
            # New connections: the flood is spread over both workers, which share the budget.
            with httpx.Client(auth=("alice", "pw"), timeout=10) as alice:
                response = alice.head(url)
            statuses.append(response.status_code)
            if response.status_code == 429:
                refused.append(response)
        elapsed = time.monotonic() - started
        served = sum(1 for status in statuses if status != 429)
        assert 20 <= served <= 20 + elapsed * 1 + 1, (served, elapsed)
        assert int(refused[0].headers["retry-after"]) >= 1
        with httpx.Client(auth=("alice", "pw"), timeout=10) as alice:
            body = alice.get(url)
        assert body.status_code == 429
        assert body.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        with httpx.Client(auth=("bob", "pw"), timeout=10) as bob:
            assert all(bob.head(url).status_code == 404 for _ in range(15))
            # Other repositories have no rule: unlimited.
            assert bob.head(f"{server.url}/v2/other/manifests/v1").status_code == 404
        with httpx.Client(auth=("alice", "pw"), timeout=10) as alice:
            assert alice.head(f"{server.url}/v2/other/manifests/v1").status_code == 404
    finally:
        server.stop()


def test_open_upload_sessions_are_capped_per_identity(tmp_path: Path) -> None:
    server = _server(tmp_path, "{max_uploads: 3}").start()
    start = f"{server.url}/v2/team/app/blobs/uploads/"
    try:
        with httpx.Client(auth=("alice", "pw"), timeout=10) as alice:
            sessions = [alice.post(start) for _ in range(3)]
            assert [s.status_code for s in sessions] == [202] * 3
            over = alice.post(start)
            assert over.status_code == 429
            assert "upload sessions" in over.json()["errors"][0]["detail"]
            assert "retry-after" in over.headers
            with httpx.Client(auth=("bob", "pw"), timeout=10) as bob:
                assert bob.post(start).status_code == 202  # bob has his own
            location = sessions[0].headers["location"]
            assert alice.delete(httpx.URL(server.url).join(location)).status_code == 204
            assert alice.post(start).status_code == 202  # a cancelled session frees its slot
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["builtin", "uvicorn", "granian"])
def test_connections_over_the_worker_cap_are_turned_away(tmp_path: Path, kind: str) -> None:
    """builtin and uvicorn answer the connection over the cap 503; granian cannot answer it
    and leaves it in the listen backlog until a connection closes."""
    config = f"server: {kind}\nrate_limits: {{max_connections: 3}}\n"
    server = prod_server(tmp_path, config, 1)
    server.start()
    idle: list[socket.socket] = []
    try:
        time.sleep(0.2)  # the readiness probe's connection has closed
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        time.sleep(0.2)
        if kind == "granian":
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(httpx.get, f"{server.url}/healthz", timeout=10)
                time.sleep(1.0)
                assert not waiting.done()
                idle.pop().close()
                assert waiting.result().status_code == 200
        else:
            answer = httpx.get(f"{server.url}/healthz", timeout=5)
            assert answer.status_code == 503
            if kind == "builtin":
                assert answer.headers["retry-after"] == "1"
                assert answer.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        _served_once_freed(server, idle)
    finally:
        _release(server, idle)


def test_connections_are_capped_by_default(tmp_path: Path) -> None:
    """Unset, the cap is half the open-file limit (here lowered to 64) when below 4096."""
    server = prod_server(tmp_path, "", 1)
    server.argv = ["prlimit", "--nofile=64", "--", *server.argv]
    server.start()
    held: list[socket.socket] = []
    try:
        time.sleep(0.2)
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
        time.sleep(0.3)
        answer = httpx.get(f"{server.url}/healthz", timeout=5)
        assert answer.status_code == 503
        assert answer.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        _served_once_freed(server, held[-1:])
    finally:
        _release(server, held)


def _served_once_freed(server: ProdServer, held: list[socket.socket]) -> None:
    """Closing the ``held`` connections makes room: a new one is served."""
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def _release(server: ProdServer, held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()
    server.stop()


def test_anonymous_pushers_are_capped_per_client_address(tmp_path: Path) -> None:
    server = prod_server(tmp_path, "rate_limits: {max_uploads: 2}\n", 2).start()
    start = f"{server.url}/v2/open/app/blobs/uploads/"
    try:
        statuses = []
        for _ in range(4):
            with httpx.Client(timeout=10) as anonymous:  # new connections: both workers
                statuses.append(anonymous.post(start).status_code)
        assert statuses == [202, 202, 429, 429]
    finally:
        server.stop()
