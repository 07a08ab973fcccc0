"""``ocigate quota``: each repository's usage against the rule that applies to it, as a table."""

from __future__ import annotations

from collections.abc import Sequence

from .layers.globs import matches
from .quota_config import QuotaRule, human_size, rule_for
from .store.ports import MetadataStore

HEADER = ("REPOSITORY", "BYTES USED / LIMIT", "TAGS / LIMIT", "USE", "RULE")


def _of(used: str, limit: str | None) -> str:
    return used if limit is None else f"{used} / {limit}"


def _percent(used: int, limit: int | None) -> float | None:
    if limit is None:
        return None
    if limit == 0:
        return 100.0 if used else 0.0
    return 100.0 * used / limit


async def usage_row(meta: MetadataStore, rules: Sequence[QuotaRule], repo: str) -> tuple[str, ...]:
    """``repo``'s usage, limits, the fuller of the two percentages (how close the repository
    is to being refused) and the rule, as ``HEADER`` names them."""
    usage = await meta.usage(repo)
    rule = rule_for(rules, repo)
    max_bytes = None if rule is None or rule.max_bytes is None else int(rule.max_bytes)
    max_tags = None if rule is None else rule.max_tags
    shares = [
        p
        for p in (_percent(usage.bytes, max_bytes), _percent(usage.tags, max_tags))
        if p is not None
    ]
    return (
        repo,
        _of(human_size(usage.bytes), None if max_bytes is None else human_size(max_bytes)),
        _of(str(usage.tags), None if max_tags is None else str(max_tags)),
        f"{max(shares):.0f}%" if shares else "-",
        rule.repos if rule is not None else "-",
    )


async def usage_rows(
    meta: MetadataStore, rules: Sequence[QuotaRule], glob: str
) -> list[tuple[str, ...]]:
    """One row per repository matching ``glob`` (``usage_row``)."""
    repos = (await meta.list_repositories(None, None)).items
    return [await usage_row(meta, rules, repo) for repo in repos if matches(glob, repo)]


async def usage_table(meta: MetadataStore, rules: Sequence[QuotaRule], glob: str) -> str:
    rows = [HEADER, *await usage_rows(meta, rules, glob)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
