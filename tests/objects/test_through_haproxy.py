"""Three replicas behind HAProxy (round-robin, no stickiness) serve one registry: the spec
suite, skopeo and oras-py through the balancer, byte for byte. The client tests are the e2e
suite's own, run here against the balancer."""

from __future__ import annotations

from pathlib import Path

from e2e.test_oras import test_push_pull_custom_media_type, test_referrers
from e2e.test_skopeo import test_multi_platform_index_round_trip, test_single_image_round_trip
from spec.runner import assert_spec_suite_passes

from .conftest import Cluster

__all__ = [
    "test_multi_platform_index_round_trip",
    "test_push_pull_custom_media_type",
    "test_referrers",
    "test_single_image_round_trip",
]


def _api_requests(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if '"path":"/v2/' in line)


def test_spec_suite_through_haproxy(cluster: Cluster) -> None:
    before = [_api_requests(server.log_path) for server in cluster.replicas]
    assert_spec_suite_passes("--registry-url", cluster.proxy.url)
    served = [_api_requests(s.log_path) - b for s, b in zip(cluster.replicas, before, strict=True)]
    # Round-robin: every replica served about a third of the suite's requests.
    assert min(served) > sum(served) / 3 * 0.8, served
