"""Async OCI registry client: authentication challenges, token cache, retries, streaming."""

from .auth import Challenge, TokenCache, parse_challenges
from .connection import Response
from .http import ClientOptions, RegistryClient, retry_after

__all__ = [
    "Challenge",
    "ClientOptions",
    "RegistryClient",
    "Response",
    "TokenCache",
    "parse_challenges",
    "retry_after",
]
