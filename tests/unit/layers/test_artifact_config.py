"""Artifact type configuration (errors naming the key) and ``ocigate validate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocigate.cli import main
from ocigate.config import Settings, load_settings
from ocigate.layers.artifacts import builtin_definition, builtin_names

CONFIG = """
artifact_types:
  - record
  - name: chart
    media_types: [application/vnd.example.chart+json]
    max_payload_size: 100
    schemas:
      - media_type: application/vnd.example.chart+json
        schema: {type: object, required: [apiVersion]}
artifact_policy:
  - repository: "**"
    artifact_types: [record]
  - repository: "charts/*"
    artifact_types: [chart]
    images: false
"""


def test_builtins_ship_as_package_data() -> None:
    assert {"record", "mcp"} <= set(builtin_names())
    record = builtin_definition("record")
    assert record["media_types"] == ["application/record+json"]
    schema = record["schemas"][0]["schema"]
    assert {"name", "version", "schema_version"} <= set(schema["required"])
    mcp = builtin_definition("mcp")
    assert {"name", "servers"} <= set(mcp["schemas"][0]["schema"]["required"])


def test_config_file_round_trips_to_workers(tmp_path: Path) -> None:
    path = tmp_path / "ocigate.yaml"
    path.write_text(CONFIG)
    settings = load_settings(path)
    assert [t.name for t in settings.artifact_types] == ["record", "chart"]
    assert settings.artifact_types[1].max_payload_size == 100
    # workers rebuild the settings from JSON
    assert Settings.model_validate_json(settings.model_dump_json()) == settings


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIGATE_ARTIFACT_TYPES", '["mcp"]')
    monkeypatch.setenv(
        "OCIGATE_ARTIFACT_POLICY", '[{"repository": "tools/*", "artifact_types": ["mcp"]}]'
    )
    settings = load_settings()
    assert settings.artifact_types[0].name == "mcp"
    assert settings.artifact_policy[0].repository == "tools/*"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("artifact_types: [nope]\n", "artifact_types.0", "unknown builtin"),
        ("artifact_types: [record, record]\n", "artifact_types", "defined twice"),
        (
            "artifact_types: [{name: x, media_types: [nope]}]\n",
            "artifact_types.0.media_types",
            "not a media type",
        ),
        (
            "artifact_types: [{name: x, media_types: [a/b], schemas: "
            "[{media_type: a/b, schema: {type: 12}}]}]\n",
            "artifact_types.0.schemas.0.schema",
            "invalid JSON Schema",
        ),
        (
            "artifact_types: [{name: x, media_types: [a/b], colour: red}]\n",
            "artifact_types.0.colour",
            "Extra",
        ),
        (
            "artifact_policy: [{repository: '**', artifact_types: [record]}]\n",
            "artifact_policy",
            "unknown artifact type 'record'",
        ),
        ("artifact_policy: [{repository: 'Team/*'}]\n", "artifact_policy.0.repository", "glob"),
        (
            "artifact_policy: [{repository: a}, {repository: a}]\n",
            "artifact_policy",
            "already has a rule",
        ),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, words: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {key}" in err
    assert words in err


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "a", "version": "1", "schema_version": "0.7.0"}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "a", "version": ["1"], "schema_version": "0.7.0"}))
    assert main(["validate", str(good)]) == 0
    assert "ok (record)" in capsys.readouterr().out
    assert main(["validate", "--type", "record", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: invalid" in out
    assert "JSON pointer '/version'" in out and "is not of type 'string'" in out
    assert main(["validate", "--type", "mcp", str(good)]) == 1
    assert "'servers' is a required property" in capsys.readouterr().out


def test_validate_command_with_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ocigate.yaml"
    config.write_text(CONFIG)
    chart = tmp_path / "chart.json"
    chart.write_text(json.dumps({"apiVersion": "v2"}))
    assert main(["validate", "--config", str(config), "--type", "chart", str(chart)]) == 0
    chart.write_text(json.dumps({"apiVersion": "v2", "padding": "x" * 100}))
    assert main(["validate", "--config", str(config), "--type", "chart", str(chart)]) == 1
    assert "max_payload_size" in capsys.readouterr().out
    assert main(["validate", "--type", "nope", str(chart)]) == 2
