"""The whole spec suite against a real ``ocigate serve --workers 2`` process, under each
supported HTTP server: what the in-process run proves for one worker holds across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REGISTRY_KIND
from .support import ocigate_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_spec_suite_passes_against_a_live_multiworker_server(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if REGISTRY_KIND != "ocigate":
        pytest.skip("runs the spec suite against ocigate itself")
    monkeypatch.setenv("OCIGATE_SERVER", server)
    process = ocigate_server(tmp_path / "data", tmp_path / "server.log", workers=2).start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/spec",
                "-q",
                "-p",
                "no:cacheprovider",
                "--registry-url",
                process.url,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        process.stop()
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary
