"""The pull-through cache while its upstream (distribution 2.8.2) hangs or is down: cached content
is served within ``cache_stale_timeout`` whatever the upstream does, the outage is remembered
for ``cache_outage_cooldown`` (every later read is served at once) and a background probe picks
up the recovery; tag lists, the catalog and referrers are cached too, so real clients keep
working on a cached image."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.support import ServerProcess, get_manifest, make_image, push_image, skopeo
from ocigate.oci.mediatypes import OCI_MANIFEST

from .relay import relay
from .support import serve_gateway
from .test_cache import REPO, FakeUpstream, cache_upstream, fake_upstream


def timed_manifest(client: httpx.Client, url: str, ref: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = get_manifest(client, url, REPO, ref)
    return response, time.monotonic() - started


@pytest.mark.parametrize(("configured", "bound"), [(None, 5.0), (1.0, 1.0)])
def test_a_hung_upstream_delays_a_stale_tag_by_at_most_the_stale_timeout(
    distribution: ServerProcess,
    tmp_path: Path,
    http: httpx.Client,
    configured: float | None,
    bound: float,
) -> None:
    """The upstream's own settings stay at their defaults (60 s read timeout, 3 retries: about
    242 s before this was bounded)."""
    image = make_image("hung-1")
    push_image(http, distribution.url, REPO, image, "v1")
    with relay(distribution.port) as front:
        upstream: dict[str, Any] = {"url": front.url, "cache": True, "cache_tag_ttl": 0}
        if configured is not None:
            upstream["cache_stale_timeout"] = configured
        with serve_gateway(tmp_path / "gw", [upstream]) as url:
            assert get_manifest(http, url, REPO, "v1").content == image.manifest.data
            front.hang()
            stale, took = timed_manifest(http, url, "v1")
            assert stale.status_code == 200, stale.text
            assert stale.content == image.manifest.data
            assert "504 UNAVAILABLE" in stale.headers["warning"], stale.headers["warning"]
            assert bound - 0.2 < took < bound + 1.5, took
            # The outage is remembered: the next reads do not wait again.
            for _ in range(3):
                again, took = timed_manifest(http, url, "v1")
                assert again.status_code == 200 and "warning" in again.headers
                assert took < 0.5, took


def test_a_downed_upstream_costs_one_failure_per_cooldown_and_recovery_is_picked_up(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    """Default retries (3, with backoff: 1.75 s per refused read before the breaker)."""
    first, second = make_image("down-1"), make_image("down-2")
    push_image(http, distribution.url, REPO, first, "v1")
    cooldown = 2.0
    upstream = {
        "url": distribution.url,
        "cache": True,
        "cache_tag_ttl": 0,
        "cache_outage_cooldown": cooldown,
    }
    with serve_gateway(tmp_path / "gw", [upstream]) as url:
        assert get_manifest(http, url, REPO, "v1").content == first.manifest.data
        distribution.stop()
        distribution.wait_port_closed()
        stale, took = timed_manifest(http, url, "v1")
        assert stale.status_code == 200 and stale.content == first.manifest.data
        assert "502 UNAVAILABLE" in stale.headers["warning"]
        assert took < 5.0, took
        for _ in range(5):
            again, took = timed_manifest(http, url, "v1")
            assert again.status_code == 200 and "warning" in again.headers
            assert took < 0.3, took
        # What is not cached fails at once with the same error, without asking.
        started = time.monotonic()
        missing = get_manifest(http, url, REPO, "v2")
        assert missing.status_code == 502, missing.text
        assert missing.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert time.monotonic() - started < 0.3

        distribution.start()
        push_image(http, distribution.url, REPO, second, "v1")
        back = time.monotonic()
        # The probe (every cool-down, in the background) closes the breaker; no read waits.
        while True:
            current, took = timed_manifest(http, url, "v1")
            assert current.status_code == 200
            assert took < 1.0, took
            if current.content == second.manifest.data:
                break
            assert time.monotonic() - back < 2 * cooldown + 3.0, "recovery not picked up"
            time.sleep(0.2)
        assert "warning" not in current.headers


def test_skopeo_inspects_a_cached_image_while_the_upstream_is_down(
    distribution: ServerProcess, tmp_path: Path, http: httpx.Client
) -> None:
    """``skopeo inspect`` lists the repository's tags: the tag list must be cached too."""
    image = make_image("skopeo-down")
    push_image(http, distribution.url, REPO, image, "v1")
    push_image(http, distribution.url, REPO, image, "v2")
    with serve_gateway(tmp_path / "gw", cache_upstream(distribution.url)) as url:
        host = url.removeprefix("http://")
        target = f"docker://{host}/{REPO}:v1"
        before = json.loads(skopeo("inspect", "--tls-verify=false", target).stdout)
        assert before["RepoTags"] == ["v1", "v2"]
        catalog = http.get(f"{url}/v2/_catalog").json()
        distribution.stop()
        distribution.wait_port_closed()
        after = json.loads(skopeo("inspect", "--tls-verify=false", target).stdout)
        assert after["RepoTags"] == ["v1", "v2"]
        assert after["Digest"] == image.manifest.digest
        paged = http.get(f"{url}/v2/{REPO}/tags/list", params={"n": "1"})
        assert paged.status_code == 200 and paged.json()["tags"] == ["v1"]
        assert http.get(f"{url}/v2/_catalog").json() == catalog == {"repositories": [REPO]}


def test_tag_lists_and_referrers_are_revalidated_after_the_ttl_and_served_stale(
    tmp_path: Path,
) -> None:
    subject = make_image("ref-subject").manifest
    signature = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "5" * 64,
        "size": 321,
        "artifactType": "application/vnd.example.signature",
    }
    fake = FakeUpstream({}, manifests={"v1": subject.data})
    fake.referrers[subject.digest] = [signature]
    with ExitStack() as upstream_running:
        up = upstream_running.enter_context(fake_upstream(fake))
        upstreams = cache_upstream(up, cache_tag_ttl=1.0)
        with serve_gateway(tmp_path / "gw", upstreams) as url, httpx.Client() as client:
            referrers = f"{url}/v2/{REPO}/referrers/{subject.digest}"
            tags = f"{url}/v2/{REPO}/tags/list"
            assert client.get(tags).json()["tags"] == ["v1"]
            assert client.get(referrers).json()["manifests"] == [signature]
            assert client.get(tags).json()["tags"] == ["v1"]  # within the TTL: not asked
            filtered = client.get(referrers, params={"artifactType": "text/other"})
            assert filtered.json()["manifests"] == []  # filtered from the one cached entry
            assert fake.requests == {"GET tags": 1, "GET referrers": 1}
            time.sleep(1.1)
            fake.manifests["v2"] = subject.data
            assert client.get(tags).json()["tags"] == ["v1", "v2"]  # revalidated
            assert fake.requests["GET tags"] == 2

            upstream_running.close()  # the upstream is gone
            time.sleep(1.1)
            assert client.get(tags).json()["tags"] == ["v1", "v2"]
            got = client.get(referrers)
            assert got.status_code == 200 and got.json()["manifests"] == [signature]
            unknown = client.get(f"{url}/v2/other/tags/list")
            assert unknown.status_code == 502, unknown.text
