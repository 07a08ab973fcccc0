"""Rate limits per client: token buckets for reads and writes per repository glob, and a cap
on open upload sessions.

A client is the authenticated identity, else the client's address. The buckets are shared by
every worker (``buckets.SharedBuckets``), so a budget is the server's, however the kernel
spreads a client's connections; separate replicas each keep their own.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..auth.identity import Identity
from ..oci.errors import OCIError
from ..production_config import Budget, RateLimitsConfig
from .buckets import SharedBuckets
from .globs import best_match

_READS = frozenset({"GET", "HEAD"})


class RateLimited(OCIError):
    """429 with the seconds after which the client may try again; ``kind`` is which budget
    ran out (reads, writes, uploads)."""

    code = "TOOMANYREQUESTS"
    status = 429
    default_message = "too many requests"

    def __init__(self, retry_after: float, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.retry_after = max(1, math.ceil(retry_after))


class RateLimiter:
    def __init__(self, config: RateLimitsConfig, data_dir: Path, upload_expiry: int) -> None:
        self.config = config
        self.globs = [rule.repository for rule in config.rules]
        self.buckets = SharedBuckets(data_dir / "ratelimit.buckets")
        # Open sessions: a bucket of max_uploads, each finished session returning its token and
        # an abandoned one's coming back within upload_expiry (when the store removes it).
        self.uploads = (
            Budget(rate=config.max_uploads / upload_expiry, burst=config.max_uploads)
            if config.max_uploads
            else None
        )

    @staticmethod
    def client(identity: Identity, address: str) -> str:
        return address if identity.anonymous else f"user:{identity.name}"

    def check(self, client: str, method: str, repo: str) -> None:
        """Spend one request of the client's budget for ``repo``; RateLimited when empty."""
        rule_index = best_match(self.globs, repo) if self.globs else None
        if rule_index is None:
            return
        rule = self.config.rules[rule_index]
        kind = "reads" if method in _READS else "writes"
        budget = rule.reads if kind == "reads" else rule.writes
        if budget is None:
            return
        wait = self.buckets.take(f"{client}\0{rule_index}\0{kind}", budget.rate, budget.burst)
        if wait:
            raise RateLimited(wait, kind, f"{kind} limit of {budget.rate:g}/s for this client")

    def open_upload(self, client: str) -> None:
        if self.uploads is None:
            return
        wait = self.buckets.take(f"{client}\0uploads", self.uploads.rate, self.uploads.burst)
        if wait:
            raise RateLimited(
                wait,
                "uploads",
                f"too many open upload sessions: at most {self.uploads.burst} per client",
            )

    def upload_ended(self, client: str) -> None:
        if self.uploads is not None:
            self.buckets.give_back(f"{client}\0uploads", self.uploads.rate, self.uploads.burst)
