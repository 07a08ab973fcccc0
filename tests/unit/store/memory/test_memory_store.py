"""The in-memory store honours the same contract: the whole spec suite runs against it."""

from __future__ import annotations

from spec.runner import assert_spec_suite_passes


def test_spec_suite_passes_on_the_memory_store() -> None:
    assert_spec_suite_passes("--backend", "memory")
