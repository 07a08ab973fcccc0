"""Retention applied: each repository a rule matches is planned (``retention.plan``) from the
metadata store's facts and its deletions are made through a ``Registry`` — the store under
the events layer, so each emits the events an API delete does (``tag.deleted``,
``manifest.deleted``). Garbage collection runs it before its mark, so the blobs only the
deleted manifests referenced are swept by the same collection (after their grace period).

A push racing the run wins: just before deleting, the tags are read again, and a tag moved or
pushed again since the plan is not deleted, nor a manifest a tag (not being deleted) points
at now.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from ...layers.globs import best_match
from ...oci.digest import Digest
from ...oci.errors import ManifestUnknown
from ...oci.reference import Tag
from ...registry import Registry
from ...retention_config import RetentionConfig, RetentionRule
from ..ports import MetadataStore
from .retention import Deletion, plan

_CATALOG_BATCH = 1000


async def _repositories(meta: MetadataStore) -> AsyncIterator[str]:
    last: str | None = None
    while True:
        page = await meta.list_repositories(last, _CATALOG_BATCH)
        for name in page.items:
            yield name
        if not page.more or not page.items:
            return
        last = page.items[-1]


class Retention:
    """``config``'s rules, deleting through ``registry``."""

    def __init__(self, config: RetentionConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry

    async def run(self, meta: MetadataStore, *, dry_run: bool) -> list[Deletion]:
        """What the rules delete (or, in a dry run, would), in every repository."""
        rules = self.config.rules
        if not rules:  # the default: no catalog walk on every collection
            return []
        globs = [rule.repos for rule in rules]
        done: list[Deletion] = []
        async for repo in _repositories(meta):
            index = best_match(globs, repo)
            if index is not None:
                done += await self._repository(meta, repo, rules[index], dry_run)
        return done

    async def _repository(
        self, meta: MetadataStore, repo: str, rule: RetentionRule, dry_run: bool
    ) -> list[Deletion]:
        tags = await meta.tag_details(repo) or []
        nodes = await meta.manifest_nodes(repo)
        planned = plan(repo, rule, self.config.untagged_grace, tags, nodes, time.time())
        if dry_run or not planned:
            return planned
        then = {detail.tag: detail for detail in tags}
        now = {detail.tag: detail for detail in await meta.tag_details(repo) or []}
        unchanged = {name for name, detail in now.items() if then.get(name) == detail}
        doomed = {item.tag for item in planned if item.tag in unchanged}
        pointed = {str(d.digest) for name, d in now.items() if name not in doomed}
        done: list[Deletion] = []
        for item in planned:
            if item.tag is not None:
                if item.tag in doomed and await self._deleted_tag(repo, item.tag):
                    done.append(item)
            elif item.digest not in pointed and await self._deleted_manifest(repo, item.digest):
                done.append(item)
        return done

    async def _deleted_tag(self, repo: str, tag: str) -> bool:
        try:
            await self.registry.delete_tag(repo, Tag(tag))
        except ManifestUnknown:
            return False  # deleted meanwhile
        return True

    async def _deleted_manifest(self, repo: str, digest: str) -> bool:
        try:
            await self.registry.delete_manifest(repo, Digest.parse(digest))
        except ManifestUnknown:
            return False
        return True
