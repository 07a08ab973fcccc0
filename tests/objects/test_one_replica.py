"""The whole HTTP spec suite against one replica (two workers) on each real S3 server."""

from __future__ import annotations

from e2e.support import ServerProcess
from spec.runner import assert_spec_suite_passes


def test_spec_suite_on_the_objects_backend(one_replica: ServerProcess) -> None:
    assert_spec_suite_passes("--registry-url", one_replica.url)
