"""An in-process ocigate with htpasswd users and a policy, for the identity and policy tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from e2e.support import ServerProcess, ocigate_server
from spec.conftest import make_client, serve_ocigate

USERS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw"}

POLICY: dict[str, Any] = {
    "admins": ["root"],
    "groups": {"team-a": ["alice"], "team-b": ["bob"]},
    "repositories": {
        "**": [{"who": ["authenticated"], "actions": ["pull"]}],
        "team-a/**": [
            {"who": ["group:team-a"], "actions": ["pull", "push", "overwrite", "delete"]}
        ],
        "team-b/**": [
            {"who": ["group:team-b"], "actions": ["pull", "push", "overwrite", "delete"]},
            {"who": ["authenticated"], "actions": ["pull"], "message": "team-b only"},
        ],
        "public/**": [
            {"who": ["*"], "actions": ["pull"]},
            {"who": ["authenticated"], "actions": ["pull", "push"]},
        ],
        "releases/**": [
            {
                "who": ["authenticated"],
                "actions": ["pull", "push", "overwrite", "delete"],
                "immutable_tags": ["v*"],
            }
        ],
        "spec/**": [{"who": ["group:team-a"], "actions": ["pull", "push", "overwrite", "delete"]}],
        "agents/**": [
            {
                "who": ["authenticated"],
                "actions": ["pull", "push"],
                "artifact_types": ["application/record+json"],
            }
        ],
    },
}


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, password in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_htpasswd(tmp_path_factory.mktemp("auth") / "htpasswd", USERS)


def serve_process(tmp: Path, realm: str, workers: int = 2) -> ServerProcess:
    """``ocigate serve`` (the built-in server) with the test users and policy."""
    htpasswd = write_htpasswd(tmp / "htpasswd", USERS)
    config = tmp / "ocigate.yaml"
    config.write_text(
        json.dumps({"auth": {"htpasswd": str(htpasswd), "realm": realm}, "policy": POLICY})
    )
    process = ocigate_server(tmp / "data", tmp / "server.log", workers=workers)
    process.argv.extend(["--config", str(config)])
    return process.start()


def start(tmp: Path, htpasswd: Path, realm: str, **extra: Any) -> Any:
    auth = {"htpasswd": str(htpasswd), "realm": realm, **extra.pop("auth", {})}
    return serve_ocigate(tmp / "data", auth=auth, policy=extra.pop("policy", POLICY), **extra)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory, htpasswd: Path) -> Iterator[str]:
    with start(tmp_path_factory.mktemp("basic"), htpasswd, "basic") as url:
        yield url


@dataclass(frozen=True)
class TokenRegistry:
    url: str
    key_file: Path  # the registry's signing key, for forging tokens in attack tests


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, htpasswd: Path
) -> Iterator[TokenRegistry]:
    tmp = tmp_path_factory.mktemp("token")
    key_file = tmp / "token-key.pem"
    with start(tmp, htpasswd, "token", auth={"token": {"key_file": str(key_file)}}) as url:
        yield TokenRegistry(url, key_file)


ClientFor = Callable[[str | None], httpx.Client]


def basic_client(url: str, user: str | None) -> httpx.Client:
    client = make_client(url)
    if user is not None:
        client.auth = httpx.BasicAuth(user, USERS[user])
    return client
