"""``ocigate mirror`` between two ocigate instances that require logins: refused without
credentials (exit 1, the reason in the summary), complete with them from a flag and from
docker's auth file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from auth.conftest import write_htpasswd
from e2e.support import ServerProcess, ocigate_server

from .conftest import Mirror
from .content import assert_holds, push_set

SOURCE_USER, DEST_USER = ("alice", "alice-pw"), ("bob", "bob-pw")


@pytest.fixture
def logins(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two ocigate instances, each with one htpasswd user who may do everything there."""
    servers = []
    for name, (user, password) in (("source", SOURCE_USER), ("dest", DEST_USER)):
        config = tmp_path / f"{name}.yaml"
        htpasswd = write_htpasswd(tmp_path / f"{name}.htpasswd", {user: password})
        config.write_text(yaml.safe_dump({"auth": {"htpasswd": str(htpasswd)}}))
        server = ocigate_server(tmp_path / name, tmp_path / f"{name}.log", workers=1, config=config)
        servers.append(server.start())
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def test_logins_come_from_a_flag_and_from_dockers_auth_file(
    logins: tuple[ServerProcess, ServerProcess], tmp_path: Path, mirror: Mirror
) -> None:
    source, dest = logins
    with httpx.Client(auth=SOURCE_USER, timeout=30) as as_alice:
        pushed = push_set(as_alice, source.url, "app", fallback=False)

    refused = mirror(source.url, dest.url, "--repo", "app", "--referrers")
    assert refused.returncode == 1
    assert f"failed app: DENIED: upstream {source.url} denied ocigate's request (401)" in (
        refused.stdout
    )
    assert "(log in: --src-creds/--dest-creds USER:PASSWORD," in refused.stdout

    # The mirror fixture sets HOME to tmp_path: docker's file names the destination.
    dest_host = dest.url.removeprefix("http://")
    token = base64.b64encode(":".join(DEST_USER).encode()).decode()
    docker = tmp_path / ".docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {dest_host: {"auth": token}}}))
    result = mirror(
        source.url, dest.url, "--repo", "app", "--referrers", "--src-creds", ":".join(SOURCE_USER)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with httpx.Client(auth=DEST_USER, timeout=30) as as_bob:
        assert_holds(as_bob, dest.url, "app", pushed, api=True)
