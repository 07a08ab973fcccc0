"""What a person sees from the real ``ocigate`` command: one-line errors naming the file, the
start-up line, masked secrets, JSON-only logs, plain help, stores that must exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocigate.cli import COMMANDS

from .support import ServerProcess, free_port, ocigate_argv


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ocigate_argv(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("workers: 2\nlisten: 127.0.0.1:5000\n  data_dir: x\n")
    for args in (("config", "check", str(config)), ("serve", "--config", str(config))):
        line = one_line_error(run(*args))
        assert f"{config}:3:11:" in line, line


@pytest.mark.parametrize("unreadable", ["missing", "directory"])
@pytest.mark.parametrize(
    ("key", "config"),
    [
        ("auth.htpasswd", lambda f: {"auth": {"htpasswd": f, "realm": "basic"}}),
        ("auth.token.key_file", lambda f: {"auth": {"token": {"key_file": f}}}),
        (
            "auth.oidc.jwks_file",
            lambda f: {"auth": {"oidc": {"issuer": "https://i", "audience": "a", "jwks_file": f}}},
        ),
        (
            "store.upstreams.0.ca_file",
            lambda f: {"upstreams": [{"url": "https://u.test", "ca_file": f}]},
        ),
    ],
)
def test_an_unreadable_file_stops_start_up_naming_it(
    tmp_path: Path, key: str, config: object, unreadable: str
) -> None:
    path = tmp_path / "the-file"
    if unreadable == "directory":
        path.mkdir()
    assert callable(config)
    config_file = tmp_path / "ocigate.yaml"
    config_file.write_text(json.dumps(config(str(path))))
    data = tmp_path / "data"
    serve = run(
        "serve", "--config", str(config_file), "--listen", f"127.0.0.1:{free_port()}",
        "--data-dir", str(data), timeout=20,
    )  # fmt: skip
    line = one_line_error(serve)
    assert line.startswith(f"error: {key}: cannot read {path}"), line
    assert not data.exists()  # stopped before anything was set up
    assert f"{key}: cannot read {path}" in one_line_error(run("config", "check", str(config_file)))


def test_config_check_masks_every_secret(tmp_path: Path) -> None:
    secrets = ["upstream-pw", "url-pw", "static-token", "signing-key", "hook-secret", "hdr-tok"]
    config = tmp_path / "ocigate.yaml"
    config.write_text(
        json.dumps(
            {
                "upstreams": [
                    {"url": "https://gw:url-pw@a.test", "username": "gw", "password": secrets[0]},
                    {"url": "https://b.test", "prefix": "b", "token": secrets[2]},
                ],
                "upload_signing_key": secrets[3],
                "events": {
                    "webhooks": [
                        {
                            "name": "audit",
                            "url": "https://hooks.test/x",
                            "secret": secrets[4],
                            "headers": {"Authorization": f"Bearer {secrets[5]}"},
                        }
                    ]
                },
            }
        )
    )
    result = run("config", "check", str(config))
    assert result.returncode == 0, result.stderr
    for secret in secrets:
        assert secret not in result.stdout
    resolved = json.loads(result.stdout)
    assert resolved["store"]["upstreams"][0]["password"] == "********"
    assert resolved["store"]["upstreams"][0]["username"] == "gw"  # not a secret: shown
    assert resolved["store"]["upstreams"][0]["url"] == "https://gw:********@a.test"
    assert resolved["store"]["upload_signing_key"] == "********"
    assert resolved["events"]["webhooks"][0]["secret"] == "********"


def _startup_lines(tmp_path: Path, listen_host: str, *args: str) -> list[dict[str, object]]:
    port = free_port()
    data = tmp_path / "data"
    argv = [*ocigate_argv(), "serve", "--data-dir", str(data), "--listen", f"{listen_host}:{port}"]
    server = ServerProcess("ocigate", [*argv, *args], port, tmp_path / "serve.log")
    server.start()
    server.stop()
    text = server.log_path.read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("=== start")]
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    return [line for line in parsed if line.get("logger") == "ocigate"]


def test_start_up_says_where_and_what_it_serves(tmp_path: Path) -> None:
    lines = _startup_lines(tmp_path / "a", "127.0.0.1", "--workers", "2")
    messages = [str(line["msg"]) for line in lines]
    listening = [m for m in messages if m.startswith("listening on http://127.0.0.1:")]
    assert len(listening) == 1, messages
    assert listening[0].endswith(f"(embedded store {tmp_path / 'a' / 'data'}, 2 workers)")
    assert not [line for line in lines if line["level"] == "warning"]  # loopback: no warning

    upstream = f"http://127.0.0.1:{free_port()}"
    lines = _startup_lines(tmp_path / "b", "127.0.0.1", "--upstream", upstream)
    assert any(str(line["msg"]).endswith(f"(gateway to {upstream}, 1 worker)") for line in lines)

    config = tmp_path / "cache.yaml"
    config.write_text(json.dumps({"upstreams": [{"url": upstream, "cache": True}]}))
    lines = _startup_lines(tmp_path / "c", "127.0.0.1", "--config", str(config))
    cache = tmp_path / "c" / "data" / "cache"
    wanted = f"(pull-through cache of {upstream}, cache in {cache}, 1 worker)"
    assert any(str(line["msg"]).endswith(wanted) for line in lines), lines


def test_open_non_loopback_listener_warns(tmp_path: Path) -> None:
    lines = _startup_lines(tmp_path, "0.0.0.0")
    warnings = [str(line["msg"]) for line in lines if line["level"] == "warning"]
    assert len(warnings) == 1 and "no auth and no TLS" in warnings[0], lines


def test_an_unexpected_exception_is_one_json_line() -> None:
    program = (
        "import logging\n"
        "from ocigate.logformat import configure_logging\n"
        "configure_logging('info')\n"
        "try:\n"
        "    {}['missing']\n"
        "except KeyError:\n"
        "    logging.getLogger('ocigate.events').exception('event delivery failed')\n"
        "logging.getLogger('asyncio').error('library line', exc_info=ValueError('x'))\n"
        "import warnings; warnings.warn('old API', DeprecationWarning, stacklevel=1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    first, second, third = (json.loads(line) for line in lines)
    assert first["msg"] == "event delivery failed" and first["level"] == "error"
    assert "KeyError: 'missing'" in first["traceback"]
    assert second["logger"] == "asyncio" and "ValueError: x" in second["traceback"]
    assert third["logger"] == "py.warnings" and "DeprecationWarning: old API" in third["msg"]


def test_help_is_plain_and_lists_every_command_once() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and "`ocigate" not in result.stdout.split("commands:")[0]
    rows = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    for command in COMMANDS:
        assert sum(row.startswith(f"{command} ") for row in rows) == 1, (command, rows)


def test_options_before_or_after_a_subcommand(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines = _startup_lines(tmp_path, "127.0.0.1")  # a real store, made by a real server
    assert lines
    for args in (
        ("events", "status", "--data-dir", str(data)),
        ("events", "--data-dir", str(data), "status"),
        ("events", "list", "--data-dir", str(data), "--dead"),
        ("events", "replay", "1", "--data-dir", str(data)),
    ):
        result = run(*args)
        assert "unrecognized arguments" not in result.stderr, args
        assert "no event outbox" not in result.stderr, args


@pytest.mark.parametrize("command", [["gc"], ["fsck"], ["events", "status"]])
def test_commands_on_a_directory_without_a_store_fail_and_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    for data in (empty, missing):
        line = one_line_error(run(*command, "--data-dir", str(data)))
        assert str(data) in line, line
    assert list(empty.iterdir()) == []
    assert not missing.exists()


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_chosen_server_that_is_not_installed_names_its_extra(tmp_path: Path, server: str) -> None:
    # Both are installed here (the test extra); hiding the module is the one fault faked.
    program = (
        f"import sys; sys.modules[{server!r}] = None\n"
        "from ocigate.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "serve", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "OCIGATE_SERVER": server},
    )
    line = one_line_error(result)
    assert f"pip install 'ocigate[{server}]'" in line, line
