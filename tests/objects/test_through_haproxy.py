"""Three replicas behind HAProxy (round-robin, no stickiness) serve one registry: the spec
suite, skopeo and oras-py through the balancer, byte for byte. The client tests are the e2e
suite's own, run here against the balancer."""

from __future__ import annotations

from e2e.test_oras import test_push_pull_custom_media_type, test_referrers
from e2e.test_skopeo import test_multi_platform_index_round_trip, test_single_image_round_trip
from parts.haproxy import HAProxy
from spec.runner import assert_spec_suite_passes

__all__ = [
    "test_multi_platform_index_round_trip",
    "test_push_pull_custom_media_type",
    "test_referrers",
    "test_single_image_round_trip",
]


def test_spec_suite_through_haproxy(registry: HAProxy) -> None:
    assert_spec_suite_passes("--registry-url", registry.url)
