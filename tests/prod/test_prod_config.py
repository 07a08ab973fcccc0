"""The production settings through the real command line: invalid values name their key."""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e.support import ocigate_argv


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    return subprocess.run(
        [*ocigate_argv(), "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_invalid_production_settings_name_the_key(tmp_path: Path) -> None:
    missing = _check(tmp_path, "tls: {cert_file: /x.crt}\n")
    assert missing.returncode == 2 and "tls.key_file" in missing.stderr
    rate = _check(tmp_path, "rate_limits: {rules: [{reads: {rate: 0, burst: 1}}]}\n")
    assert rate.returncode == 2 and "rate_limits.rules.0.reads.rate" in rate.stderr
    extra = _check(tmp_path, "metrics: {enable: true}\n")
    assert extra.returncode == 2 and "metrics.enable" in extra.stderr


def test_serve_refuses_unreadable_certificate_files_at_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *ocigate_argv(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            "--tls-cert",
            str(tmp_path / "missing.crt"),
            "--tls-key",
            str(tmp_path / "missing.key"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "missing.crt" in done.stderr or "No such file" in done.stderr
