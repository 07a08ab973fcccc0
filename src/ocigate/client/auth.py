"""Registry authentication: challenges (RFC 9110 ``WWW-Authenticate``) and the Docker token flow.

A registry answers 401 with ``Bearer realm=...,service=...,scope=...``; the client fetches a
token from the realm (with Basic credentials when it has them) and retries. Tokens are cached
per scope until shortly before they expire, so most requests carry a token on the first try.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass

# One auth-param: key=token or key="quoted string".
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
# Refresh a token this many seconds before it expires, so it does not die in flight.
EXPIRY_MARGIN = 10.0
# The token spec's default lifetime when the realm does not say.
DEFAULT_TOKEN_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lowercase: "basic" or "bearer"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` header (several may be joined by commas)."""
    challenges: list[Challenge] = []
    rest = header.strip()
    while rest:
        scheme_match = re.match(r"([A-Za-z][A-Za-z0-9_.-]*)\s*", rest)
        if not scheme_match:
            break
        scheme = scheme_match.group(1).lower()
        rest = rest[scheme_match.end() :]
        params: dict[str, str] = {}
        while True:
            found = _PARAM.match(rest)
            if not found:
                break
            value = found.group(2) if found.group(2) is not None else found.group(3)
            params[found.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
            rest = rest[found.end() :]
        challenges.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return challenges


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Bearer tokens by scope, dropped when (nearly) expired or rejected."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}

    def get(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is None:
            return None
        if time.monotonic() >= token.expires_at - EXPIRY_MARGIN:
            del self._tokens[scope]
            return None
        return token.value

    def put(self, scope: str, value: str, expires_in: float | None) -> None:
        lifetime = expires_in if expires_in and expires_in > 0 else DEFAULT_TOKEN_SECONDS
        self._tokens[scope] = _Token(value, time.monotonic() + lifetime)

    def drop(self, scope: str) -> None:
        self._tokens.pop(scope, None)
