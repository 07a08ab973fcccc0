"""The retention planner (``store.core.retention.plan``): one test per rule and per way a
manifest is kept, on plain facts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ocigate.oci.digest import Digest
from ocigate.registry import TagDetail
from ocigate.retention_config import RetentionConfig, RetentionRule
from ocigate.store.core.retention import Deletion, plan
from ocigate.store.ports import ManifestNode

NOW = 1_000_000_000.0
DAY = 86400.0


def digest(name: str) -> str:
    return str(Digest.of(name.encode()))


def tag(name: str, manifest: str, days_ago: float) -> TagDetail:
    return TagDetail(name, Digest.parse(digest(manifest)), "m", 1, NOW - days_ago * DAY)


def node(
    name: str, days_ago: float = 10, subject: str | None = None, *children: str
) -> ManifestNode:
    return ManifestNode(
        digest(name),
        NOW - days_ago * DAY,
        digest(subject) if subject else None,
        tuple(digest(c) for c in children),
    )


def rule(**keep: Any) -> RetentionRule:
    return RetentionRule.model_validate({"repos": "app/**", **keep})


def run(
    keep: RetentionRule,
    tags: list[TagDetail],
    nodes: list[ManifestNode],
    grace: float | None = DAY,
) -> list[Deletion]:
    return plan("app/x", keep, grace, tags, nodes, NOW)


def deleted(deletions: list[Deletion]) -> tuple[list[str], list[str]]:
    """(deleted tags, names of deleted manifests among m0..m9, i0..i9, s0..s9)"""
    names = {digest(f"{kind}{i}"): f"{kind}{i}" for kind in "mis" for i in range(10)}
    tags = [d.tag for d in deletions if d.tag is not None]
    return tags, [names[d.digest] for d in deletions if d.tag is None]


IMAGES = [node(f"m{i}", days_ago=10 - i) for i in range(5)]
TAGS = [tag(f"v{i}", f"m{i}", days_ago=10 - i) for i in range(5)]  # v4 the newest


def test_keep_last_keeps_the_most_recently_pushed() -> None:
    found = run(rule(keep_last=2), TAGS, IMAGES)
    assert deleted(found) == (["v0", "v1", "v2"], ["m2", "m1", "m0"])  # manifests newest first
    assert found[0].reason == "not among the last 2 pushed (pushed 10 d ago)"
    assert found[0].rule == "app/**"
    assert found[3].reason == "its tags are deleted (v2)"
    assert str(found[0]) == (
        "tag app/x:v0 (rule 'app/**'): not among the last 2 pushed (pushed 10 d ago)"
    )


def test_keep_last_goes_by_push_time_not_name_and_breaks_ties_by_name() -> None:
    tags = [tag("b", "m0", 1), tag("a", "m1", 1), tag("z", "m2", 0.5)]
    assert deleted(run(rule(keep_last=2), tags, IMAGES[:3]))[0] == ["b"]


def test_keep_younger_than() -> None:
    found = run(rule(keep_younger_than="7d12h"), TAGS, IMAGES)
    assert deleted(found) == (["v0", "v1", "v2"], ["m2", "m1", "m0"])
    assert found[0].reason == "older than 8 d (pushed 10 d ago)"


def test_keep_tags_patterns_match_whole_tags() -> None:
    tags = [*TAGS, tag("release-1", "m0", 100), tag("xrelease-2", "m1", 100)]
    found = run(rule(keep_tags=[r"release-\d+", "v4"]), tags, IMAGES)
    assert deleted(found) == (["v0", "v1", "v2", "v3", "xrelease-2"], ["m3", "m2", "m1"])
    assert found[0].reason == "matches no keep_tags pattern (pushed 10 d ago)"


def test_rules_combine_a_tag_kept_by_any() -> None:
    keep = rule(keep_last=1, keep_younger_than="8d", keep_tags=["v0"])  # v3: 7 d ago
    found = run(keep, TAGS, IMAGES)
    assert deleted(found) == (["v1", "v2"], ["m2", "m1"])
    assert found[0].reason == (
        "not among the last 1 pushed, older than 8 d, matches no keep_tags pattern (pushed 9 d ago)"
    )


def test_a_manifest_keeps_while_any_of_its_tags_is_kept() -> None:
    tags = [tag("old", "m0", 30), tag("latest", "m0", 0)]
    assert deleted(run(rule(keep_last=1), tags, IMAGES[:1])) == (["old"], [])


def test_untagged_manifests_older_than_the_grace_period() -> None:
    nodes = [node("m0", days_ago=3), node("m1", days_ago=0.5)]
    found = run(rule(keep_last=5), [], nodes)
    assert deleted(found) == ([], ["m0"])
    assert found[0].reason == "untagged, stored 3 d ago (untagged_grace 24 h)"
    assert run(rule(keep_last=5), [], nodes, grace=None) == []  # null: never
    assert deleted(run(rule(keep_last=5), [], nodes, grace=0))[1] == ["m1", "m0"]


def test_a_kept_index_keeps_its_children_and_their_referrers() -> None:
    nodes = [
        node("m0"),
        node("m1"),
        node("i0", 10, None, "m0", "m1"),
        node("s0", 10, "i0"),  # a signature of the index
        node("s1", 10, "m1"),  # an SBOM of a child
        node("s2", 10, "s1"),  # a signature of the SBOM
        node("m2"),
        node("s3", 10, "m2"),  # about an untagged old image: goes with it
    ]
    found = run(rule(keep_last=1), [tag("v1", "i0", 10)], nodes)
    assert deleted(found) == ([], ["s3", "m2"])


def test_a_deleted_index_takes_its_children_and_referrers_unless_kept_otherwise() -> None:
    nodes = [
        node("m0"),
        node("m1"),
        node("i0", 10, None, "m0", "m1"),
        node("s0", 10, "i0"),
        node("i1", 1, None, "m1"),  # the newer index shares m1
    ]
    tags = [tag("old", "i0", 10), tag("new", "i1", 1)]
    found = run(rule(keep_last=1), tags, nodes)
    assert deleted(found) == (["old"], ["s0", "i0", "m0"])  # referrers, index, then children


def test_a_kept_referrer_keeps_its_subject() -> None:
    nodes = [node("m0"), node("s0", 10, "m0")]
    tags = [tag("v0", "m0", 10), tag("sha256-sig", "s0", 0)]
    assert deleted(run(rule(keep_last=1), tags, nodes)) == (["v0"], [])


def test_young_untagged_manifests_keep_what_they_need() -> None:
    nodes = [node("m0", 10), node("i0", 0.1, None, "m0")]  # an index pushed by digest just now
    assert run(rule(keep_last=1), [], nodes) == []


def test_a_tag_whose_push_time_is_unknown_is_kept() -> None:
    unknown = TagDetail("v0", Digest.parse(digest("m0")), "m", 1, None)
    assert run(rule(keep_last=0), [unknown], IMAGES[:1]) == []


@pytest.mark.parametrize(
    ("rule_doc", "message"),
    [
        ({"repos": "app/**"}, "keeps no tag"),
        ({"repos": "App", "keep_last": 1}, "invalid repository glob"),
        ({"repos": "a", "keep_tags": ["("]}, "invalid regular expression '\\('"),
        ({"repos": "a", "keep_last": -1}, "greater than or equal to 0"),
        ({"repos": "a", "keep_younger_than": "soon"}, "not a duration"),
        ({"repos": "a", "keep_last": 1, "keep_first": 1}, "keep_first"),
    ],
)
def test_bad_rules_are_refused_naming_what_is_wrong(rule_doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetentionConfig.model_validate({"rules": [rule_doc]})


def test_config_defaults() -> None:
    config = RetentionConfig.model_validate({"untagged_grace": "12h"})
    assert config.rules == [] and config.untagged_grace == 12 * 3600
    assert RetentionConfig().untagged_grace == DAY
    assert RetentionConfig.model_validate({"untagged_grace": None}).untagged_grace is None
