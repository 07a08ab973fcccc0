"""`make run` and `make test` on a fresh machine: what each installs, and Debian's
docker-registry service kept off the port `make run` wants."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/etc/init.d/docker-registry"


def make_dry_run(tmp_path: Path, *args: str) -> str:
    """What make would run, in a copy without a venv (as on a fresh clone)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        ["make", "-n", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    installs = [line for line in make_dry_run(tmp_path, "run").splitlines() if "install" in line]
    assert any(line.endswith("pip install -q -e .") for line in installs), installs
    assert not any("[test]" in line for line in installs), installs
    assert "[test]" in make_dry_run(tmp_path, "test")


def test_make_test_installs_every_outside_program_and_the_readme_lists_them() -> None:
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "--eval", "debs-list: ; @echo $(DEBS)", "debs-list"],
        capture_output=True,
        text=True,
        check=True,
    )
    debs = result.stdout.split()
    assert {"docker.io", "containerd", "docker-registry", "skopeo", "podman"} <= set(debs)
    quick_start = (ROOT / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    for package in debs:
        assert f"`{package}`" in quick_start, package


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_debs_stops_debians_docker_registry_service() -> None:
    assert os.geteuid() == 0 and Path(SERVICE).exists(), "needs docker-registry (make test)"
    assert not _listening(5000), "port 5000 is already taken"
    subprocess.run([SERVICE, "start"], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 10
        while not _listening(5000):
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        result = subprocess.run(
            [str(ROOT / ".ci" / "debs"), "docker-registry"],
            capture_output=True,
            text=True,
            check=True,
        )
        deadline = time.monotonic() + 10
        while _listening(5000):
            assert time.monotonic() < deadline, f"still listening: {result.stdout}"
            time.sleep(0.1)
    finally:
        subprocess.run([SERVICE, "stop"], check=False, capture_output=True)
