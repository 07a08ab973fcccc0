"""The HTTP-level knobs the API serves with: sizes, page sizes, what it advertises."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ApiOptions:
    max_manifest_size: int = 4 * MiB  # bytes; a larger manifest gets 413
    max_header_size: int = 64 * 1024  # header bytes as received; 431 above
    max_header_count: int = 100  # header lines; more gets 431
    chunk_min_length: int = 0  # advertised OCI-Chunk-Min-Length; 0 advertises none
    referrers_page_size: int = 1000  # descriptors in one referrers page
    tags_page_size: int = 10000  # tags or repositories in one list without `n`
    metrics_token: str | None = None  # the bearer token /metrics wants, if any
    forward_credentials: bool = False  # keep clients' credentials for an upstream
