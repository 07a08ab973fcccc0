"""The whole spec suite against a real ``ocigate serve --workers 2`` process, under each
supported HTTP server: what the in-process run proves for one worker holds across processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from spec.runner import assert_spec_suite_passes

from .conftest import REGISTRY_KIND
from .support import ocigate_server


@pytest.mark.slow
@pytest.mark.parametrize("server", ["granian", "uvicorn", "builtin"])
def test_spec_suite_passes_against_a_live_multiworker_server(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if REGISTRY_KIND != "ocigate":
        pytest.skip("runs the spec suite against ocigate itself")
    monkeypatch.setenv("OCIGATE_SERVER", server)
    process = ocigate_server(tmp_path / "data", tmp_path / "server.log", workers=2).start()
    try:
        assert_spec_suite_passes("--registry-url", process.url)
    finally:
        process.stop()
