"""The ``quotas:`` section: sizes as people write them, first match, errors naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from ocigate.config import load_settings
from ocigate.quota_config import QuotaRule, rule_for

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Quotas", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_documented_example_parses_and_the_first_match_applies(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(_example())
    rules = load_settings(config).quotas
    assert [(r.repos, r.max_bytes, r.max_tags) for r in rules] == [
        ("lib/app", 10 * 1024**3, None),
        ("lib/**", 2_000_000_000, 100),
        ("sandbox/*", None, 10),
    ]
    assert rule_for(rules, "lib/app") is rules[0]  # not lib/**, listed after it
    assert rule_for(rules, "lib/a/b") is rules[1]
    assert rule_for(rules, "sandbox/x/y") is None


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500MiB", 500 * 1024**2),
        ("2GB", 2 * 10**9),
        ("1.5 GiB", 3 * 512 * 1024**2),
        ("10G", 10**10),
        (7, 7),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert QuotaRule.model_validate({"repos": "**", "max_bytes": text}).max_bytes == size


@pytest.mark.parametrize(
    ("rule", "key", "problem"),
    [
        ({"repos": "a/*", "max_bytes": "lots"}, "quotas.0.max_bytes", "not a size: 'lots'"),
        ({"repos": "a/*", "max_tags": -1}, "quotas.0.max_tags", "greater than or equal to 0"),
        ({"repos": "A/*", "max_tags": 1}, "quotas.0.repos", "invalid repository glob"),
        ({"repos": "a/*", "max_tag": 1}, "quotas.0.max_tag", "Extra inputs"),
        ({"repos": "a/*"}, "quotas.0", "needs max_bytes, max_tags or both"),
    ],
)
def test_errors_name_the_key(rule: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load_settings(quotas=[rule])
    (error,) = caught.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == key
    assert problem in error["msg"]
