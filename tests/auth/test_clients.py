"""Real clients log in and push/pull through a live ``ocigate serve`` with auth: skopeo
(--creds, --dest-creds, login), podman (login, push, pull) and oras-py with Basic auth."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import oras.client
import pytest

from e2e.support import ServerProcess, make_image, skopeo, write_oci_layout
from spec.runner import assert_spec_suite_passes

from .conftest import USERS, serve_process


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = serve_process(tmp_path_factory.mktemp("clients-basic"), "basic")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = serve_process(tmp_path_factory.mktemp("clients-token"), "token")
    yield process
    process.stop()


@pytest.fixture(params=["token_server", "basic_server"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """skopeo and podman log in through the token flow and with plain Basic."""
    process: ServerProcess = request.getfixturevalue(request.param)
    return process


def test_skopeo_with_credentials(server: ServerProcess, tmp_path: Path) -> None:
    image = make_image(f"auth-{secrets.token_hex(2)}")
    layout = tmp_path / "layout"
    write_oci_layout(layout, image.blobs, {"v1": image.manifest})
    target = f"docker://{server.host}/team-b/app:v1"
    denied = subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            f"oci:{layout}:v1",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (denied.stderr + denied.stdout).lower()
    assert denied.returncode != 0 and ("denied" in output or "unauthorized" in output)
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"bob:{USERS['bob']}",
        f"oci:{layout}:v1",
        target,
    )
    out = tmp_path / "out"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        f"alice:{USERS['alice']}",
        target,
        f"oci:{out}:v1",
    )
    assert (out / "blobs" / "sha256" / image.manifest.digest.split(":")[1]).read_bytes() == (
        image.manifest.data
    )
    # skopeo login stores the credentials in an auth file the later commands use.
    auth_file = tmp_path / "auth.json"
    skopeo(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(auth_file),
        "-u",
        "alice",
        "-p",
        USERS["alice"],
        server.host,
    )
    tags = skopeo(
        "list-tags",
        "--tls-verify=false",
        "--authfile",
        str(auth_file),
        f"docker://{server.host}/team-b/app",
    )
    assert json.loads(tags.stdout)["Tags"] == ["v1"]


def test_podman_login_push_pull(server: ServerProcess, tmp_path: Path) -> None:
    # podman refuses a run root longer than 50 characters; pytest's tmp paths are longer.
    with tempfile.TemporaryDirectory(prefix="pm-", dir="/tmp") as runroot:
        _podman_round_trip(server, tmp_path, Path(runroot))


def _podman_round_trip(server: ServerProcess, tmp_path: Path, runroot: Path) -> None:
    storage = [
        "--storage-driver",
        "vfs",
        "--root",
        str(tmp_path / "storage"),
        "--runroot",
        str(runroot),
    ]
    auth = ["--authfile", str(tmp_path / "auth.json")]

    def podman(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *storage, *args], capture_output=True, text=True, timeout=120
        )

    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "hello.txt").write_text("hello from podman\n")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    assert podman("import", str(tmp_path / "rootfs.tar"), "localhost/auth-test:1").returncode == 0
    target = f"{server.host}/team-b/podman:1"
    login = podman(
        "login", *auth, "--tls-verify=false", "-u", "bob", "-p", USERS["bob"], server.host
    )
    assert login.returncode == 0, login.stderr
    pushed = podman("push", *auth, "--tls-verify=false", "localhost/auth-test:1", target)
    assert pushed.returncode == 0, pushed.stderr
    assert podman("rmi", "localhost/auth-test:1").returncode == 0
    pulled = podman("pull", *auth, "--tls-verify=false", target)
    assert pulled.returncode == 0, pulled.stderr
    assert podman("logout", *auth, server.host).returncode == 0
    anonymous = podman("pull", *auth, "--tls-verify=false", target)
    assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower()


def test_oras_with_basic_auth(basic_server: ServerProcess, tmp_path: Path) -> None:
    # (oras-py retries a 401 with the token it holds and refreshes only on 403, so it cannot
    # widen a token's scope mid-push; the Docker token flow answers insufficient scope with
    # 401 as the token spec says, which docker, containerd, skopeo and podman follow.)
    server = basic_server
    payload = tmp_path / "notes.txt"
    payload.write_bytes(secrets.token_bytes(64))
    client = oras.client.OrasClient(hostname=server.host, insecure=True, auth_backend="basic")
    # login() goes through docker-py, which is not here; give the auth backend the password.
    client.auth.set_basic_auth("alice", USERS["alice"])
    target = f"{server.host}/team-a/notes:v1"
    client.push(target=target, files=[f"{payload}:text/plain"], disable_path_validation=True)
    out = tmp_path / "out"
    pulled = client.pull(target=target, outdir=str(out))
    assert [Path(p).read_bytes() for p in pulled] == [payload.read_bytes()]
    # and the server refuses the same pull without credentials (checked with plain HTTP)
    resp = httpx.get(f"{server.url}/v2/team-a/notes/manifests/v1")
    assert resp.status_code == 401


def test_spec_suite_passes_with_credentials(server: ServerProcess) -> None:
    """The whole conformance suite as a non-admin user whom the policy lets work in spec/**."""
    assert_spec_suite_passes("--registry-url", server.url, "--credentials", "alice:alice-pw")


def test_docker_login_against_the_token_service(
    token_server: ServerProcess, tmp_path: Path
) -> None:
    """The Docker CLI logs in by itself (no engine needed) through the token flow."""
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path)}

    def login(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "login", "-u", "alice", "--password-stdin", token_server.host],
            input=password,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    good = login(USERS["alice"])
    assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
    saved = json.loads((tmp_path / "config.json").read_text())["auths"]
    assert token_server.host in saved
    bad = login("wrong")
    assert bad.returncode != 0 and "unauthorized" in bad.stderr.lower()
