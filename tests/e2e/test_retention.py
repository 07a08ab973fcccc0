"""Retention end to end on the embedded store: a real ``ocigate serve`` pushed to over HTTP,
then ``ocigate gc --dry-run`` and ``ocigate gc`` beside it, one repository per rule."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from objects.support import replica
from ocigate.events.database import connect_outbox

from .retention_content import SMALL, push_multi_platform, push_referrer
from .support import ServerProcess, get_manifest, make_image, ocigate_argv, push_image

AGE = 6.0  # seconds: keep_younger_than and untagged_grace; "old" content is pushed before
RETENTION = {
    "untagged_grace": f"{AGE:g}s",
    "rules": [
        {"repos": "last/**", "keep_last": 2},
        {"repos": "young/**", "keep_younger_than": f"{AGE:g}s"},
        {"repos": "named/**", "keep_tags": ["release-.*"]},
        {"repos": "multi/**", "keep_last": 1},
    ],
}


def ocigate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ocigate_argv(), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    store = {"kind": "embedded", "gc_grace": 0}
    running = replica(
        tmp_path, store, workers=1, retention=RETENTION, events={"enabled": True}
    ).start()
    yield running
    running.stop()


def image(http: httpx.Client, url: str, repo: str, seed: str, tag: str | None) -> str:
    """A small image pushed as ``tag`` (None: by digest, untagged); its digest."""
    built = make_image(seed, layer_sizes=SMALL)
    return push_image(http, url, repo, built, tag or built.manifest.digest)


def ages_hidden(lines: list[str]) -> list[str]:
    """How long ago things were pushed depends on the machine's pace: not compared."""
    return [re.sub(r"(pushed|stored) \d+ s ago", r"\1 … ago", line) for line in lines]


def status(http: httpx.Client, url: str, repo: str, reference: str) -> int:
    return get_manifest(http, url, repo, reference).status_code


def tags(http: httpx.Client, url: str, repo: str) -> list[str]:
    listed: list[str] = http.get(f"{url}/v2/{repo}/tags/list").json()["tags"]
    return sorted(listed)


def test_each_rule_its_dry_run_and_the_deletions_with_their_events(
    server: ServerProcess, tmp_path: Path
) -> None:
    url = server.url
    with httpx.Client(timeout=30) as http:
        # Old: pushed before the pause.
        last = [image(http, url, "last/app", f"last{i}", f"v{i}") for i in range(3)]
        old_untagged = image(http, url, "last/app", "untagged-old", None)
        young_old = image(http, url, "young/app", "young-old", "old")
        named = {t: image(http, url, "named/app", t, t) for t in ("release-1", "dev-1")}
        gone = push_multi_platform(http, url, "multi/app", "gone", "v0")
        gone_sig = push_referrer(http, url, "multi/app", gone.index, "application/x-sig")
        kept = push_multi_platform(http, url, "multi/app", "kept", "v1")
        kept_sig = push_referrer(http, url, "multi/app", kept.index, "application/x-sig")
        child_sbom = push_referrer(http, url, "multi/app", kept.children[0], "application/x-sbom")
        untouched = image(http, url, "untouched/app", "untouched", None)
        image(http, url, "untouched/app", "untouched-v1", "v1")
        time.sleep(AGE + 0.5)
        # Young: pushed just now.
        young_new = image(http, url, "young/app", "young-new", "new")
        new_untagged = image(http, url, "last/app", "untagged-new", None)

        config = str(tmp_path / "ocigate.yaml")
        dry = ocigate("gc", "--dry-run", "--config", config)
        assert dry.returncode == 0, dry.stderr
        would = [line for line in dry.stdout.splitlines() if line.startswith("would delete ")]
        planned = [
            line for line in would if line.startswith(("would delete tag", "would delete manifest"))
        ]
        assert ages_hidden(planned) == ages_hidden(
            [
                "would delete tag last/app:v0 (rule 'last/**'): not among the last 2 pushed"
                f" (pushed {round(AGE)} s ago)",
                f"would delete manifest last/app@{old_untagged} (rule 'last/**'): untagged, stored"
                f" {round(AGE)} s ago (untagged_grace {round(AGE)} s)",
                f"would delete manifest last/app@{last[0]} (rule 'last/**'): its tags are deleted"
                " (v0)",
                "would delete tag multi/app:v0 (rule 'multi/**'): not among the last 1 pushed"
                f" (pushed {round(AGE)} s ago)",
                # newest first: the signature, the index, then its children
                f"would delete manifest multi/app@{gone_sig.digest} (rule 'multi/**'): untagged,"
                f" stored {round(AGE)} s ago (untagged_grace {round(AGE)} s)",
                f"would delete manifest multi/app@{gone.index.digest} (rule 'multi/**'): its tags"
                " are deleted (v0)",
                *(
                    f"would delete manifest multi/app@{child.digest} (rule 'multi/**'): untagged,"
                    f" stored {round(AGE)} s ago (untagged_grace {round(AGE)} s)"
                    for child in reversed(gone.children)
                ),
                "would delete tag named/app:dev-1 (rule 'named/**'): matches no keep_tags pattern"
                f" (pushed {round(AGE)} s ago)",
                f"would delete manifest named/app@{named['dev-1']} (rule 'named/**'): its tags are"
                " deleted (dev-1)",
                f"would delete tag young/app:old (rule 'young/**'): older than {round(AGE)} s"
                f" (pushed {round(AGE)} s ago)",
                f"would delete manifest young/app@{young_old} (rule 'young/**'): its tags are"
                " deleted (old)",
            ]
        ), dry.stdout
        assert (
            "(dry run)" in dry.stdout and "retention would delete 4 tags, 8 manifests" in dry.stdout
        )
        assert tags(http, url, "last/app") == ["v0", "v1", "v2"]  # a dry run deletes nothing
        assert status(http, url, "multi/app", gone.index.digest) == 200

        done = ocigate("gc", "--config", config)
        assert done.returncode == 0, done.stderr
        assert "retention deleted 4 tags, 8 manifests" in done.stdout, done.stdout
        deletions = [line for line in done.stdout.splitlines() if line.startswith("deleted ")]
        made = [line.replace("deleted ", "would delete ", 1) for line in deletions[:12]]
        assert ages_hidden(made) == ages_hidden(planned)

        assert tags(http, url, "last/app") == ["v1", "v2"]
        assert status(http, url, "last/app", last[0]) == 404
        assert status(http, url, "last/app", old_untagged) == 404
        assert status(http, url, "last/app", new_untagged) == 200  # within untagged_grace
        assert tags(http, url, "young/app") == ["new"]
        assert status(http, url, "young/app", young_old) == 404
        assert status(http, url, "young/app", young_new) == 200
        assert tags(http, url, "named/app") == ["release-1"]
        assert status(http, url, "named/app", named["dev-1"]) == 404
        # The retained multi-platform index keeps its children and its referrers, and a child
        # keeps its own; the deleted index took its children, signature and blobs with it.
        assert tags(http, url, "multi/app") == ["v1"]
        for blob in (kept.index, *kept.children, kept_sig, child_sbom):
            assert status(http, url, "multi/app", blob.digest) == 200
        referrers = http.get(f"{url}/v2/multi/app/referrers/{kept.index.digest}").json()
        assert [r["digest"] for r in referrers["manifests"]] == [kept_sig.digest]
        for blob in (gone.index, *gone.children, gone_sig):
            assert status(http, url, "multi/app", blob.digest) == 404
        for layer in gone.layers:  # swept by the same collection (gc_grace 0)
            assert http.head(f"{url}/v2/multi/app/blobs/{layer.digest}").status_code == 404
        for layer in kept.layers:
            assert http.head(f"{url}/v2/multi/app/blobs/{layer.digest}").status_code == 200
        # No rule matches: left alone, untagged and old as it is.
        assert status(http, url, "untouched/app", untouched) == 200
        assert tags(http, url, "untouched/app") == ["v1"]

    # The same events an API delete emits, in the store's outbox.
    outbox = connect_outbox(tmp_path / "data" / "meta.db")
    try:
        events = [json.loads(outbox.event(row.seq) or "{}") for row in outbox.rows(limit=1000)]
    finally:
        outbox.close()
    deleted = [
        (e["type"].removeprefix("io.ocigate."), e["data"].get("tag") or e["data"]["digest"])
        for e in events
        if e["type"].endswith("deleted")
    ]
    assert ("tag.deleted", "v0") in deleted and ("tag.deleted", "dev-1") in deleted
    assert ("manifest.deleted", gone.index.digest) in deleted
    assert len([kind for kind, _ in deleted if kind == "tag.deleted"]) == 4
    assert len([kind for kind, _ in deleted if kind == "manifest.deleted"]) == 8


def test_a_bad_rule_stops_the_server_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "ocigate.yaml"
    config.write_text(json.dumps({"retention": {"rules": [{"repos": "a/**"}]}}))
    found = ocigate("config", "check", str(config))
    assert found.returncode != 0
    assert "retention.rules.0" in found.stdout + found.stderr
    assert "keeps no tag" in found.stdout + found.stderr
