"""Configuration: file < environment < flags, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocigate.cli import main
from ocigate.config import MASK, load_settings, masked


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ocigate.yaml"
    config.write_text("workers: 2\nlisten: 127.0.0.1:6000\nsparse-index: true\n")
    settings = load_settings(config)
    assert (settings.workers, settings.listen, settings.store.sparse_index) == (
        2,
        "127.0.0.1:6000",
        True,
    )
    monkeypatch.setenv("OCIGATE_WORKERS", "3")
    assert load_settings(config).workers == 3
    assert load_settings(config, workers=4).workers == 4
    assert load_settings(config, workers=None).workers == 3


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("workers: many\n", "workers"),
        ("listen: nowhere\n", "listen"),
        ("no_such_key: 1\n", "no_such_key"),
        ("max_manifest_size: 10\n", "max_manifest_size"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["config", "check", str(config)]) == 2
    assert f"configuration error: {key}:" in capsys.readouterr().err


def test_bad_environment_value_fails_serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OCIGATE_LOG_LEVEL", "loud")
    assert main(["serve"]) == 2
    assert "configuration error: log_level:" in capsys.readouterr().err


def test_masking_covers_future_secret_keys_and_keeps_the_rest() -> None:
    dumped = {
        "tls": {"cert_file": "/c.pem", "key_file": "/k.pem", "secret_key": "s1"},
        "oidc": {"client_secret": "s2", "issuer": "https://i"},
        "upstreams": [{"url": "http://u:s3@h", "token": "s4", "username": "me"}],
        "auth": {"token": {"issuer": "ocigate", "expiry": 300}},
        "workers": 2,
    }
    out = masked(dumped)
    assert out["tls"] == {"cert_file": "/c.pem", "key_file": "/k.pem", "secret_key": MASK}
    assert out["oidc"] == {"client_secret": MASK, "issuer": "https://i"}
    assert out["upstreams"] == [{"url": f"http://u:{MASK}@h", "token": MASK, "username": "me"}]
    assert out["auth"] == dumped["auth"] and out["workers"] == 2


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("workers: 2\nlisten: [a, b\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(config))}:3:1: YAML syntax error: "):
        load_settings(config)
