"""A logged-in user the policy refuses, on the token realm: ``skopeo`` and containerd's ``ctr``
print "denied" instead of fetching token after token (``ctr`` used to retry 23 times on a 401
without ``error="insufficient_scope"``), counted in the server's access log."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.support import ServerProcess, make_image, skopeo, write_oci_layout

from .conftest import USERS, serve_process

_REPO = "team-a/refusals"  # bob may not even pull it
_PULL_ONLY = "team-b/refusals"  # alice may pull, not push


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("refusals")
    process = serve_process(tmp, "token")
    image = make_image("refusals")
    write_oci_layout(tmp / "layout", image.blobs, {"v1": image.manifest})
    for user, repo in (("alice", _REPO), ("bob", _PULL_ONLY)):
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"{user}:{USERS[user]}",
            f"oci:{tmp / 'layout'}:v1",
            f"docker://{process.host}/{repo}:v1",
        )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def containerd() -> Iterator[Path]:
    """A containerd of its own (socket paths must stay short, so under /tmp)."""
    with tempfile.TemporaryDirectory(prefix="ctr-", dir="/tmp") as tmp:
        root = Path(tmp)
        socket = root / "containerd.sock"
        (root / "config.toml").write_text(
            f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
        )
        with open(root / "containerd.log", "wb") as log:
            daemon = subprocess.Popen(
                ["containerd", "--config", str(root / "config.toml")], stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 20
            while not socket.exists():
                assert daemon.poll() is None and time.monotonic() < deadline, "no containerd"
                time.sleep(0.05)
            yield socket
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)


def _token_requests(server: ServerProcess, since: int) -> int:
    """``/token`` requests in the access log written after byte ``since``."""
    lines = server.log_path.read_bytes()[since:].decode(errors="replace").splitlines()
    return sum(1 for line in lines if line.startswith("{") and '"path":"/token"' in line)


def _refused(server: ServerProcess, argv: list[str]) -> tuple[str, int]:
    since = server.log_path.stat().st_size
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0, result.stdout
    time.sleep(0.2)  # the access log line is written after the answer
    return (result.stderr + result.stdout).lower(), _token_requests(server, since)


def test_skopeo_is_denied(server: ServerProcess, tmp_path: Path) -> None:
    tls = "--src-tls-verify=false"
    bob = f"bob:{USERS['bob']}"
    pull = ["skopeo", "copy", tls, "--src-creds", bob, f"docker://{server.host}/{_REPO}:v1"]
    output, tokens = _refused(server, [*pull, f"oci:{tmp_path / 'out'}:v1"])
    # containers/image fetches one more token when a token is refused, then gives up.
    assert "denied" in output and tokens <= 2, (tokens, output)
    source = f"docker://{server.host}/{_PULL_ONLY}:v1"
    alice = f"alice:{USERS['alice']}"
    push = ["skopeo", "copy", tls, "--dest-tls-verify=false", "--src-creds", alice]
    output, tokens = _refused(server, [*push, "--dest-creds", alice, source, f"{source}-copy"])
    assert "denied" in output and tokens <= 2, (tokens, output)


def _ctr(containerd: Path, *args: str) -> list[str]:
    return ["ctr", "--address", str(containerd), *args]


def test_ctr_gives_up_after_one_token(server: ServerProcess, containerd: Path) -> None:
    alice, bob = (f"{user}:{USERS[user]}" for user in ("alice", "bob"))
    refused_pull = f"{server.host}/{_REPO}:v1"
    fetch = ["content", "fetch", "--plain-http", "--user"]
    output, tokens = _refused(server, _ctr(containerd, *fetch, bob, refused_pull))
    assert "denied" in output and tokens == 1, (tokens, output)
    image = f"{server.host}/{_PULL_ONLY}:v1"
    fetched = subprocess.run(
        _ctr(containerd, *fetch, alice, image), capture_output=True, text=True, timeout=60
    )
    assert fetched.returncode == 0, fetched.stderr
    # A push the policy refuses: ctr used to fetch a token and retry, 23 times. (ctr 1.6 says
    # "read/write on closed pipe" when its manifest is refused before the body is read.)
    push = ["images", "push", "--plain-http", "--user", alice, f"{image}-copy", image]
    subprocess.run(_ctr(containerd, "images", "tag", image, f"{image}-copy"), check=True)
    output, tokens = _refused(server, _ctr(containerd, *push))
    assert tokens <= 2, (tokens, output)
