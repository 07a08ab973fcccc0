"""What a mirror selects: repositories (the catalog only for globs), tags, platforms."""

from __future__ import annotations

import re

import pytest

from ocigate.mirror.plan import Platform, needs_catalog, select_repositories, select_tags


def test_explicit_names_need_no_catalog_and_globs_do() -> None:
    assert not needs_catalog(("app", "tools/cli"))
    assert needs_catalog(("app", "lib/*"))
    assert needs_catalog(())
    assert select_repositories(("app", "tools/cli"), None) == ["app", "tools/cli"]
    catalog = ["app", "lib/a", "lib/b", "other"]
    assert select_repositories(("lib/*", "app", "lib/a"), catalog) == ["lib/a", "lib/b", "app"]
    assert select_repositories((), catalog) == catalog


def test_tags_match_in_full_and_referrers_tags_are_left_out() -> None:
    tags = ["v1", "v10", "v1-rc", "latest", "sha256-" + "ab" * 32]
    assert select_tags(tags, re.compile(r"v[0-9]+")) == ["v1", "v10"]
    assert select_tags(tags, None) == ["v1", "v10", "v1-rc", "latest"]


def test_platforms_parse_and_match_entries() -> None:
    arm = Platform.parse("linux/arm64")
    assert arm.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert not arm.matches({"os": "linux", "architecture": "amd64"})
    assert not Platform.parse("linux/arm/v7").matches({"os": "linux", "architecture": "arm"})
    with pytest.raises(ValueError, match="OS/ARCH"):
        Platform.parse("linux")
