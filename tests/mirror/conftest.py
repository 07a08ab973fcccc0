"""Fixtures for the mirror tests: real registries on loopback (Debian's distribution 2.8.2,
ocigate instances) and the ``ocigate mirror`` command run as a process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.support import ServerProcess, ocigate_argv, ocigate_server
from parts.registries import distribution, http

__all__ = ["distribution", "http"]

AUTH_VARIABLES = ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "MIRROR_SRC_CREDS", "MIRROR_DEST_CREDS")
Mirror = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ocigate_pair(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two ocigate instances, one worker each."""
    servers = [
        ocigate_server(tmp_path / name, tmp_path / f"{name}.log", workers=1).start()
        for name in ("one", "two")
    ]
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def mirror_argv(*args: str) -> list[str]:
    return [*ocigate_argv(), "mirror", *args]


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    """Runs ``ocigate mirror ARGS`` (stderr a pipe: not a terminal), with no auth files."""

    def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES}
        env["HOME"] = str(tmp_path)
        return subprocess.run(
            mirror_argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )

    return run
