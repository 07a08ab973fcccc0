"""Async OCI registry client (httpx): authentication challenges, token cache, retries, streaming."""

from .auth import Challenge, TokenCache, parse_challenges
from .http import ClientOptions, RegistryClient, retry_after

__all__ = [
    "Challenge",
    "ClientOptions",
    "RegistryClient",
    "TokenCache",
    "parse_challenges",
    "retry_after",
]
