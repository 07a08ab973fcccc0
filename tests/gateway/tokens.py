"""A small Docker-token-flow registry for the tests: a token service plus a gate in front of
an in-process ocigate. Requests without a valid bearer token for their repository get
``401 WWW-Authenticate: Bearer realm=...,service=...,scope=...``; ``/token`` hands out tokens
for that scope to callers presenting the right Basic credentials."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]

_REPO = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")


@dataclass
class TokenGate:
    inner: Any
    user: str
    password: str
    lifetime: int = 300
    realm: str = ""  # set once the server's URL is known
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (scope, expiry)
    issued: list[str] = field(default_factory=list)  # scopes, one per token handed out
    rejected: int = 0  # requests answered 401

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/token":
            await self._token(scope, headers, send)
            return
        wanted = self._scope_for(scope["path"])
        if not self._allowed(headers.get("authorization", ""), wanted):
            self.rejected += 1
            challenge = f'Bearer realm="{self.realm}",service="test-registry"'
            if wanted:
                challenge += f',scope="{wanted}"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}'
            await _respond(send, 401, body, [(b"www-authenticate", challenge.encode())])
            return
        await self.inner(scope, receive, send)

    @staticmethod
    def _scope_for(path: str) -> str:
        found = _REPO.match(path)
        return f"repository:{found.group(1)}:pull,push" if found else ""

    def _allowed(self, authorization: str, wanted: str) -> bool:
        if not authorization.startswith("Bearer "):
            return False
        granted = self.tokens.get(authorization[7:])
        if granted is None or granted[1] < time.monotonic():
            return False
        if not wanted:
            return True
        repo = wanted.split(":")[1]
        return any(part.split(":")[1] == repo for part in granted[0].split(" ") if ":" in part)

    async def _token(self, scope: Scope, headers: dict[str, str], send: Any) -> None:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}":
            await _respond(send, 401, b'{"details":"bad credentials"}', [])
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        granted = " ".join(query.get("scope", []))
        token = secrets.token_hex(16)
        self.tokens[token] = (granted, time.monotonic() + self.lifetime)
        self.issued.append(granted)
        body = json.dumps({"token": token, "expires_in": self.lifetime}).encode()
        await _respond(send, 200, body, [])

    def revoke_all(self) -> None:
        self.tokens.clear()


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    out = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": out + headers})
    await send({"type": "http.response.body", "body": body})
