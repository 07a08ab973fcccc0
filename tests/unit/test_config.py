"""Configuration: file < environment < flags, and errors that name the key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ocigate.cli import main
from ocigate.config import MASK, Settings, load_settings, masked
from ocigate.store_config import CacheStoreConfig, GatewayStoreConfig


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


UPSTREAM = {"url": "http://a.example", "prefix": "a"}


@pytest.mark.parametrize(
    ("section", "kind", "checks"),
    [
        (
            {"kind": "embedded", "data_dir": "/d", "sparse_index": True, "gc_grace": "2h"},
            "embedded",
            {"data_dir": Path("/d"), "sparse_index": True, "gc_grace": 7200.0},
        ),
        (
            {"data_dir": "/d", "auto_mount": True},  # no kind: the embedded store
            "embedded",
            {"auto_mount": True},
        ),
        (
            {"kind": "gateway", "upstreams": [UPSTREAM], "upload_signing_key": "k"},
            "gateway",
            {"upload_signing_key": "k"},
        ),
    ],
)
def test_store_section_per_kind(
    tmp_path: Path, section: dict[str, object], kind: str, checks: dict[str, object]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"store": section}))
    store = load_settings(config).store
    assert store.kind == kind
    assert {key: getattr(store, key) for key in checks} == checks


def test_cache_kind_makes_every_upstream_cache(tmp_path: Path) -> None:
    store = Settings(store={"kind": "cache", "upstreams": [UPSTREAM]}).store
    assert isinstance(store, CacheStoreConfig) and store.upstreams[0].cache
    with pytest.raises(
        ValidationError, match=re.escape("every upstream caches; not http://a.example")
    ):
        Settings(store={"kind": "cache", "upstreams": [UPSTREAM | {"cache": False}]})


def test_old_top_level_keys_map_to_the_same_store(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("data_dir: /d\nsparse-index: true\ngc_interval: 60\n")
    new = tmp_path / "new.yaml"
    new.write_text(
        "store:\n  kind: embedded\n  data_dir: /d\n  sparse_index: true\n  gc_interval: 60\n"
    )
    assert load_settings(old).store == load_settings(new).store
    gateway = Settings(upstreams=[UPSTREAM], upload_signing_key="k", data_dir="/g")
    assert gateway.store == GatewayStoreConfig(
        kind="gateway", upstreams=[UPSTREAM], upload_signing_key="k", data_dir=Path("/g")
    )


def test_flags_merge_into_a_store_section(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"store": {"kind": "gateway", "upstreams": [UPSTREAM]}}))
    store = load_settings(config, data_dir=tmp_path).store  # --data-dir over the file's store:
    assert (store.kind, store.data_dir) == ("gateway", tmp_path)


def test_store_section_and_old_keys_both_is_an_error_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "both.yaml"
    config.write_text(
        "store:\n  kind: embedded\ndata_dir: /d\nupstreams: [{url: http://a.example}]\n"
    )
    assert main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "store: and the top-level key(s) data_dir, upstreams both given" in err


def test_unknown_key_in_store_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "store:\n  kind: gateway\n  upstreams: [{url: http://a.example}]\n  nope: 1\n"
    )
    assert main(["config", "check", str(config)]) == 2
    assert "configuration error: store.gateway.nope: Extra inputs" in capsys.readouterr().err


def test_config_check_shows_the_store_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("data_dir: /d\n")
    assert main(["config", "check", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["store"]["kind"] == "embedded" and printed["store"]["data_dir"] == "/d"
    assert "data_dir" not in printed


def test_nested_environment_variables_take_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before env_nested_delimiter, OCIGATE_EVENTS__PULLS was silently ignored.
    monkeypatch.setenv("OCIGATE_EVENTS__PULLS", "true")
    monkeypatch.setenv("OCIGATE_STORE__KIND", "gateway")
    monkeypatch.setenv("OCIGATE_STORE__UPSTREAMS", json.dumps([UPSTREAM]))
    monkeypatch.setenv("OCIGATE_TLS__CERT_FILE", "/c.pem")
    monkeypatch.setenv("OCIGATE_TLS__KEY_FILE", "/k.pem")
    settings = load_settings()
    assert settings.events.pulls is True
    assert settings.store.kind == "gateway"
    assert isinstance(settings.store, GatewayStoreConfig)
    assert settings.store.upstreams[0].prefix == "a"
    assert settings.tls is not None and settings.tls.cert_file == Path("/c.pem")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("OCIGATE_NOPE", ""),
        ("OCIGATE_EVENT__PULLS", " (did you mean OCIGATE_EVENTS__PULLS?)"),
        ("OCIGATE_STORE__NOPE", ""),
        ("OCIGATE_WORKERS__X", ""),  # a value has no keys
    ],
)
def test_unknown_environment_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, hint: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ValueError, match=re.escape(f"{name} names no setting{hint}")):
        load_settings()


def test_unknown_environment_variable_stops_serve(tmp_path: Path) -> None:
    env = dict(os.environ, OCIGATE_NOPE="1")
    serve = subprocess.run(
        [sys.executable, "-m", "ocigate", "serve", "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert serve.returncode != 0
    assert "environment variable OCIGATE_NOPE names no setting" in serve.stderr
    assert not (tmp_path / "d").exists()


def test_the_worker_hand_off_variable_is_not_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIGATE_RESOLVED_SETTINGS", "{}")
    assert load_settings().workers == 1
