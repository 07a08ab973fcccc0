"""Retention planning: which tags and manifests of one repository its rule deletes, and why.
Pure (no I/O): ``retention_run`` reads the facts, plans, and deletes through the registry.

Tags: a tag is kept when a ``keep_tags`` pattern matches it whole, when it is among the
``keep_last`` most recently pushed, or when it was pushed less than ``keep_younger_than`` ago;
every other tag is deleted. A tag whose push time is unknown is kept.

Manifests: candidates for deletion are those whose every tag is deleted, and untagged ones
first stored longer than ``untagged_grace`` ago. Every other manifest is kept, and so is what
a kept manifest needs, transitively: an index's children, its referrers (manifests whose
subject it is: signatures, SBOMs) and its own subject (a kept referrer keeps what it is about,
so nothing kept is left pointing at a deleted manifest). "Keep anything that has referrers"
is read that way: a manifest is not kept merely for having referrers, or every signed image
would live forever; its referrers live and die with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...registry import TagDetail
from ...retention_config import RetentionRule
from ..ports import ManifestNode
from .gc import ago


@dataclass(frozen=True, slots=True)
class Deletion:
    """A tag (``tag`` set) or a manifest (``tag`` None) retention deletes."""

    repo: str
    tag: str | None
    digest: str  # the manifest's, or the one the tag points at
    rule: str  # the repository glob of the rule
    reason: str

    def __str__(self) -> str:
        what = f"tag {self.repo}:{self.tag}" if self.tag else f"manifest {self.repo}@{self.digest}"
        return f"{what} (rule {self.rule!r}): {self.reason}"


def _tag_verdicts(
    rule: RetentionRule, tags: Sequence[TagDetail], now: float
) -> dict[str, str | None]:
    """Per tag: None when kept, else why it is deleted."""
    newest = sorted(tags, key=lambda d: (-(d.pushed or 0.0), d.tag))
    last = {d.tag for d in newest[: rule.keep_last]} if rule.keep_last is not None else set()
    verdicts: dict[str, str | None] = {}
    for detail in tags:
        if detail.pushed is None or detail.tag in last or rule.keeps_by_name(detail.tag):
            verdicts[detail.tag] = None
            continue
        age = now - detail.pushed
        if rule.keep_younger_than is not None and age < rule.keep_younger_than:
            verdicts[detail.tag] = None
            continue
        why = []
        if rule.keep_last is not None:
            why.append(f"not among the last {rule.keep_last} pushed")
        if rule.keep_younger_than is not None:
            why.append(f"older than {ago(rule.keep_younger_than)}")
        if rule.keep_tags:
            why.append("matches no keep_tags pattern")
        verdicts[detail.tag] = f"{', '.join(why)} (pushed {ago(age)} ago)"
    return verdicts


def _needed(roots: set[str], manifests: Sequence[ManifestNode]) -> set[str]:
    """``roots`` and everything they need: children, referrers, subjects (transitively)."""
    known = {node.digest: node for node in manifests}
    referrers: dict[str, list[str]] = {}
    for node in manifests:
        if node.subject is not None:
            referrers.setdefault(node.subject, []).append(node.digest)
    kept = set(roots)
    todo = list(roots)
    while todo:
        node = known[todo.pop()]
        linked = [*node.children, *referrers.get(node.digest, ())]
        if node.subject is not None:
            linked.append(node.subject)
        for digest in linked:
            if digest in known and digest not in kept:
                kept.add(digest)
                todo.append(digest)
    return kept


def plan(
    repo: str,
    rule: RetentionRule,
    untagged_grace: float | None,
    tags: Sequence[TagDetail],
    manifests: Sequence[ManifestNode],
    now: float,
) -> list[Deletion]:
    """What ``rule`` deletes in ``repo``: tags in ASCII order, then manifests, newest first
    (an index before its children, a referrer before its subject). ``manifests`` are in push
    order."""
    verdicts = _tag_verdicts(rule, tags, now)
    deletions = [
        Deletion(repo, d.tag, str(d.digest), rule.repos, why)
        for d in sorted(tags, key=lambda d: d.tag)
        if (why := verdicts[d.tag]) is not None
    ]
    tags_of: dict[str, list[str]] = {}
    for detail in tags:
        tags_of.setdefault(str(detail.digest), []).append(detail.tag)
    candidates: dict[str, str] = {}
    for node in manifests:
        names = sorted(tags_of.get(node.digest, ()))
        age = now - node.stored
        if names and all(verdicts[name] is not None for name in names):
            candidates[node.digest] = f"its tags are deleted ({', '.join(names)})"
        elif not names and untagged_grace is not None and age >= untagged_grace:
            candidates[node.digest] = (
                f"untagged, stored {ago(age)} ago (untagged_grace {ago(untagged_grace)})"
            )
    roots = {node.digest for node in manifests if node.digest not in candidates}
    kept = _needed(roots, manifests)
    deletions += [
        Deletion(repo, None, node.digest, rule.repos, candidates[node.digest])
        for node in reversed(manifests)
        if node.digest in candidates and node.digest not in kept
    ]
    return deletions
