"""``ocigate mirror`` between real registries: distribution 2.8.2 (no referrers API: the
referrers tag schema) and ocigate (the API), both ways, byte-exact and incremental."""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
from pathlib import Path

import httpx

from e2e.support import ServerProcess

from .conftest import Mirror, mirror_argv
from .content import assert_holds, manifest_bytes, push_set


def test_distribution_to_ocigate_copies_everything_then_nothing(
    distribution: ServerProcess,
    ocigate_pair: tuple[ServerProcess, ServerProcess],
    http: httpx.Client,
    mirror: Mirror,
) -> None:
    dest, _ = ocigate_pair
    pushed = push_set(http, distribution.url, "lib/app", fallback=True)

    first = mirror(distribution.url, f"{dest.url}/copy", "--repo", "lib/app", "--referrers")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_holds(http, dest.url, "copy/lib/app", pushed, api=True)
    # Not a terminal: plain log lines, one per thing done.
    assert "copied blob copy/lib/app@sha256:" in first.stderr
    assert "tagged copy/lib/app:v1 -> sha256:" in first.stderr
    assert "copied: 6 manifests, 2 tags," in first.stdout
    # The source's referrers tags are rebuilt by the referrers API, not copied as tags.
    tags = http.get(f"{dest.url}/v2/copy/lib/app/tags/list").json()["tags"]
    assert sorted(tags) == ["multi", "v1"]

    again = mirror(distribution.url, f"{dest.url}/copy", "--repo", "lib/app", "--referrers")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "copied: 0 manifests, 0 tags, 0 blobs (0 bytes), 0 blobs mounted;" in again.stdout
    # The index is there, so its children are not even looked at.
    assert "skipped (already there): 4 manifests, 2 tags," in again.stdout
    assert "copied blob" not in again.stderr
    # Named repositories need no catalog: it works against registries without one (GHCR, ACR).
    requests = distribution.log_path.read_text()
    assert "/v2/lib/app/manifests/" in requests and "/v2/_catalog" not in requests


def test_ocigate_to_distribution_keeps_referrers_in_the_tag_schema_and_mounts(
    distribution: ServerProcess,
    ocigate_pair: tuple[ServerProcess, ServerProcess],
    http: httpx.Client,
    mirror: Mirror,
) -> None:
    source, _ = ocigate_pair
    pushed = push_set(http, source.url, "team/a", fallback=False)
    push_set(http, source.url, "team/b", fallback=False)  # the same content: every blob

    result = mirror(
        f"{source.url}/team", distribution.url, "--repo", "a", "--repo", "b", "--referrers"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_holds(http, distribution.url, "a", pushed, api=False)
    assert_holds(http, distribution.url, "b", pushed, api=False)
    # b's blobs were all in a already: mounted, none sent twice.
    assert "0 blobs mounted" not in result.stdout
    assert "mounted blob" in result.stderr
    assert "copied blob b@" not in result.stderr


def test_ocigate_to_ocigate_dry_run_tags_platform_and_a_failing_repository(
    ocigate_pair: tuple[ServerProcess, ServerProcess], http: httpx.Client, mirror: Mirror
) -> None:
    source, dest = ocigate_pair
    pushed = push_set(http, source.url, "app", fallback=False)

    dry = mirror(source.url, dest.url, "--repo", "app", "--referrers", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would copy: 6 manifests, 2 tags," in dry.stdout
    assert http.get(f"{dest.url}/v2/_catalog").json()["repositories"] == []

    only = mirror(
        source.url, dest.url, "--repo", "app", "--tags", "v.*", "--platform", "linux/arm64"
    )
    assert only.returncode == 0, only.stdout + only.stderr
    assert manifest_bytes(http, dest.url, "app", "v1") == pushed.tags["v1"].data
    assert manifest_bytes(http, dest.url, "app", "multi") is None

    platform = mirror(
        source.url, dest.url, "--repo", "app", "--tags", "multi", "--platform", "linux/arm64"
    )
    assert platform.returncode == 0, platform.stdout + platform.stderr
    arm = pushed.manifests[2]
    assert manifest_bytes(http, dest.url, "app", "multi") == arm.data  # the child, byte-exact
    assert manifest_bytes(http, dest.url, "app", pushed.tags["multi"].digest) is None

    failing = mirror(source.url, dest.url, "--repo", "app", "--repo", "missing")
    assert failing.returncode == 1
    assert "failed: 1" in failing.stdout
    assert "failed missing: NAME_UNKNOWN" in failing.stdout

    gone = mirror("http://127.0.0.1:1", dest.url, "--repo", "app")
    assert gone.returncode == 1
    assert "failed app: UNAVAILABLE" in gone.stdout

    bad = mirror(source.url, dest.url, "--tags", "[")
    assert bad.returncode == 2
    assert "error: --tags [:" in bad.stderr


def test_on_a_terminal_progress_bars_show_bytes_and_rate(
    ocigate_pair: tuple[ServerProcess, ServerProcess], http: httpx.Client, tmp_path: Path
) -> None:
    source, dest = ocigate_pair
    push_set(http, source.url, "app", fallback=False)
    controller, terminal = pty.openpty()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm-256color", "COLUMNS": "120"}
    process = subprocess.Popen(
        mirror_argv(source.url, dest.url, "--repo", "app"),
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
        text=True,
    )
    os.close(terminal)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the process closed its end
        while chunk := os.read(controller, 65536):
            shown += chunk
    os.close(controller)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0, stdout
    screen = shown.decode(errors="replace")
    assert "total" in screen and "━" in screen  # the overall bar
    assert "/s" in screen  # a transfer rate
    assert "tagged app:v1" in screen
    assert "copied: 4 manifests, 2 tags," in stdout
