"""The server's scheduled ``sync:``: pulls from distribution 2.8.2 into the embedded store on
its interval (with indexes and referrers), once per interval across workers, each copy reported
by the events layer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from e2e.support import ServerProcess, make_image, ocigate_server, push_image
from e2e.webhook_receiver import Receiver
from ocigate.config import Settings

from .content import assert_holds, manifest_bytes, push_set

INTERVAL = 2.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _serve(tmp_path: Path, settings: dict[str, Any]) -> ServerProcess:
    config = tmp_path / "ocigate.yml"
    config.write_text(yaml.safe_dump(settings))
    return ocigate_server(tmp_path / "data", tmp_path / "ocigate.log", config=config)


def _wait_for(http: httpx.Client, url: str, repo: str, tag: str, data: bytes) -> None:
    deadline = time.monotonic() + INTERVAL * 5 + 10
    while time.monotonic() < deadline:
        if manifest_bytes(http, url, repo, tag) == data:
            return
        time.sleep(0.1)
    raise AssertionError(f"{repo}:{tag} not synced")


def _tagging(events: list[dict[str, Any]], digest: str, tag: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["data"].get("digest") == digest
        and e["data"]["repository"] == "mirror/lib/app"
        and tag in (e["data"].get("tags") or [e["data"].get("tag")])
    ]


def test_a_new_tag_is_pulled_within_the_interval_and_reported(
    tmp_path: Path, distribution: ServerProcess, receiver: Receiver, http: httpx.Client
) -> None:
    first, second = make_image("sync-1"), make_image("sync-2")
    push_image(http, distribution.url, "lib/app", first, "v1")
    push_image(http, distribution.url, "lib/app", first, "skipped")
    # Indexes and referrers (signature of an SBOM), in the referrers tag schema distribution has.
    signed = push_set(http, distribution.url, "lib/signed", fallback=True)
    settings = {
        "events": {"webhooks": [{"name": "hook", "url": receiver.url}], "poll_interval": 0.05},
        "sync": [
            {
                "source": distribution.url,
                "repos": ["lib/*"],
                "tags": "v[0-9]+|multi",
                "referrers": True,
                "interval": f"{INTERVAL}s",
                "prefix": "mirror",
            }
        ],
    }
    server = _serve(tmp_path, settings).start()
    try:
        _wait_for(http, server.url, "mirror/lib/app", "v1", first.manifest.data)
        push_image(http, distribution.url, "lib/app", second, "v2")
        _wait_for(http, server.url, "mirror/lib/app", "v2", second.manifest.data)
        assert_holds(http, server.url, "mirror/lib/signed", signed, api=True)
        time.sleep(INTERVAL * 2)  # more runs: nothing new to copy, nothing reported
        events = receiver.events()
        log = server.log_tail(20000)
    finally:
        server.stop()
    assert manifest_bytes(http, distribution.url, "lib/app", "skipped") is not None
    assert len(_tagging(events, first.manifest.digest, "v1")) == 1, events
    assert len(_tagging(events, second.manifest.digest, "v2")) == 1, events
    assert '"tagged": ["mirror/lib/app:v2@' in log
    assert "skipped" not in {e["data"].get("tag") for e in events}


def test_a_sync_entry_with_an_unknown_key_or_bad_source_is_refused() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        Settings.model_validate({"sync": [{"source": "h", "repos": ["a"], "bogus": 1}]})
    with pytest.raises(ValidationError, match="ftp://h"):
        Settings.model_validate({"sync": [{"source": "ftp://h", "repos": ["a"]}]})
    with pytest.raises(ValidationError, match="interval"):
        Settings.model_validate({"sync": [{"source": "h", "repos": ["a"], "interval": "soon"}]})
