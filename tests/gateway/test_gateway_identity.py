"""In gateway mode the caller's identity is decided by ocigate before anything is forwarded,
and the upstream only ever sees the gateway's own credentials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from auth.conftest import POLICY, USERS, basic_client, write_htpasswd
from e2e.support import ocigate_server
from spec.helpers import manifest_url, push_image

from .support import serve_gateway


def _upstream_requests(log: Path, repo: str) -> list[dict[str, object]]:
    lines = []
    for raw in log.read_text().splitlines():
        if raw.startswith("{") and f'"repo":"{repo}"' in raw:
            lines.append(json.loads(raw))
    return lines


def test_policy_decides_before_forwarding_and_upstream_sees_the_gateway(tmp_path: Path) -> None:
    upstream_users = write_htpasswd(tmp_path / "upstream.htpasswd", {"gateway": "gw-secret"})
    config = tmp_path / "upstream.yaml"
    config.write_text(json.dumps({"auth": {"htpasswd": str(upstream_users), "realm": "basic"}}))
    upstream = ocigate_server(tmp_path / "up", tmp_path / "up.log", workers=1)
    upstream.argv.extend(["--config", str(config), "--log-level", "info"])
    upstream.start()
    gateway_users = write_htpasswd(tmp_path / "gateway.htpasswd", USERS)
    try:
        with serve_gateway(
            tmp_path / "gw",
            [{"url": upstream.url, "username": "gateway", "password": "gw-secret"}],
            auth={"htpasswd": str(gateway_users), "realm": "basic"},
            policy=POLICY,
        ) as gateway:
            repo = "team-a/through-gateway"
            with basic_client(gateway, "alice") as alice:
                image = push_image(alice, repo, "v1")
                assert alice.get(manifest_url(repo, "v1")).content == image.body
            time.sleep(0.2)  # let the upstream flush its request log
            seen = _upstream_requests(upstream.log_path, repo)
            assert seen and {line["identity"] for line in seen} == {"gateway"}

            with basic_client(gateway, "bob") as bob:
                assert bob.get(manifest_url(repo, "v1")).status_code == 403
                assert bob.post(f"/v2/{repo}/blobs/uploads/").status_code == 403
            time.sleep(0.2)
            assert len(_upstream_requests(upstream.log_path, repo)) == len(seen)

        # The client's own credentials mean nothing upstream: they were never sent there.
        direct = httpx.get(
            f"{upstream.url}{manifest_url(repo, 'v1')}",
            auth=httpx.BasicAuth("alice", USERS["alice"]),
        )
        assert direct.status_code == 401
    finally:
        upstream.stop()
