"""The ``events:`` configuration: errors naming the key, webhook filters, backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocigate.cli import main
from ocigate.config import load_settings
from ocigate.events.config import EventsConfig, Webhook

CONFIG = """
events:
  pulls: true
  max_attempts: 3
  webhooks:
    - name: audit
      url: https://hooks.example/ocigate
      secret: s3cret
      headers: {Authorization: Bearer abc}
      repositories: ["team-a/**"]
      types: [manifest.pushed, tag.deleted]
      artifact_types: [application/record+json]
"""


def test_events_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "ocigate.yaml"
    path.write_text(CONFIG)
    events = load_settings(path).events
    assert events.active and events.pulls and events.max_attempts == 3
    [hook] = events.webhooks
    assert (hook.name, hook.secret, hook.timeout) == ("audit", "s3cret", 10.0)
    assert load_settings().events.active is False


def test_webhook_filters() -> None:
    hook = Webhook.model_validate(
        {
            "name": "h",
            "url": "http://x",
            "repositories": ["team-a/**", "shared"],
            "types": ["manifest.pushed"],
            "artifact_types": ["application/record+json"],
        }
    )
    assert hook.accepts("team-a/x/y", "manifest.pushed", "application/record+json")
    assert hook.accepts("shared", "manifest.pushed", "application/record+json")
    assert not hook.accepts("team-b/x", "manifest.pushed", "application/record+json")
    assert not hook.accepts("team-a/x", "tag.deleted", "application/record+json")
    assert not hook.accepts("team-a/x", "manifest.pushed", None)
    everything = Webhook.model_validate({"name": "all", "url": "https://x"})
    assert everything.accepts("any/repo", "blob.deleted", None)


def test_backoff_doubles_to_the_cap_then_dead_letters() -> None:
    config = EventsConfig.model_validate(
        {"backoff_initial": 1, "backoff_max": 5, "max_attempts": 5}
    )
    assert [config.retry_in(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, None]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("events: {webhooks: [{name: a, url: 'ftp://x'}]}\n", "events.webhooks.0.url"),
        ("events: {webhooks: [{name: a, url: 'http://x', types: [x]}]}\n", "events.webhooks.0"),
        ("events: {webhooks: [{name: a, url: 'http://x', colour: 1}]}\n", "events.webhooks.0"),
        ("events: {webhooks: [{name: a, url: 'http://x', repositories: [A]}]}\n", "events"),
        (
            "events: {webhooks: [{name: a, url: 'http://x'}, {name: a, url: 'http://y'}]}\n",
            "events",
        ),
        ("events: {max_attempts: 0}\n", "events.max_attempts"),
        ("events: {nope: 1}\n", "events.nope"),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["config", "check", str(path)]) == 2
    assert f"configuration error: {key}" in capsys.readouterr().err


def test_default_retries_outlast_an_hour_long_outage() -> None:
    from ocigate.events.config import EventsConfig

    events = EventsConfig()
    waits = []
    attempts = 1
    while (wait := events.retry_in(attempts)) is not None:
        waits.append(wait)
        attempts += 1
    assert sum(waits) > 2 * 3600
