"""What a mirror copies: repository patterns, the tag filter, the platform filter, and the
counts and failures it ends with."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

# The referrers tag schema's indexes (``sha256-<hex>``): rebuilt by the destination's own
# referrers handling as the referrers are copied, never copied as tags.
REFERRERS_TAG = re.compile(r"[a-z0-9]+-[0-9a-f]{32,}")
GLOB = re.compile(r"[*?\[]")


def needs_catalog(patterns: tuple[str, ...]) -> bool:
    """Whether the source's ``_catalog`` must be listed: no names given, or a glob among them."""
    return not patterns or any(GLOB.search(p) for p in patterns)


def select_repositories(patterns: tuple[str, ...], catalog: list[str] | None) -> list[str]:
    """Explicit names as given, globs matched against ``catalog``, in order, once each."""
    chosen: dict[str, None] = {}
    for pattern in patterns or ("*",):
        if not GLOB.search(pattern):
            chosen[pattern] = None
        elif catalog is not None:
            chosen.update((name, None) for name in catalog if fnmatch.fnmatchcase(name, pattern))
    return list(chosen)


def select_tags(tags: list[str], pattern: re.Pattern[str] | None) -> list[str]:
    """The tags to copy: matching ``pattern`` in full (all without one), no referrers tags."""
    return [
        tag
        for tag in tags
        if not REFERRERS_TAG.fullmatch(tag) and (pattern is None or pattern.fullmatch(tag))
    ]


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"--platform {text}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, platform: Any) -> bool:
        """Whether an index entry's ``platform`` object is this one (any variant when none)."""
        if not isinstance(platform, dict):
            return False
        same = platform.get("os") == self.os and platform.get("architecture") == self.architecture
        return same and (self.variant is None or platform.get("variant") == self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Options:
    repos: tuple[str, ...] = ()  # names relative to the source prefix, or globs; () all
    tags: re.Pattern[str] | None = None  # matched in full
    platform: Platform | None = None  # None: every platform, indexes byte-exact
    referrers: bool = False
    dry_run: bool = False
    jobs: int = 4


@dataclass(slots=True)
class Summary:
    manifests_copied: int = 0
    manifests_skipped: int = 0
    tags_copied: int = 0
    tags_skipped: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    tagged: list[str] = field(default_factory=list)  # "repo:tag@digest" moved or created

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would copy" if dry_run else "copied"
        head = (
            f"{verb}: {self.manifests_copied} manifests, {self.tags_copied} tags,"
            f" {self.blobs_copied} blobs ({self.bytes_copied} bytes),"
            f" {self.blobs_mounted} blobs mounted; skipped (already there):"
            f" {self.manifests_skipped} manifests, {self.tags_skipped} tags,"
            f" {self.blobs_skipped} blobs; failed: {len(self.failures)}"
        )
        return [head, *(f"failed {what}: {why}" for what, why in self.failures)]
