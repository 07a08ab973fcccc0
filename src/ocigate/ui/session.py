"""The login cookie: the identity a login found and its expiry, signed with HMAC-SHA256.

Stateless, so every worker and replica accepts the cookie another one set, as long as they share
the secret: ``ui.session_secret`` (replicas), or a random key created once in the data directory
the workers of one server share. Changing the secret logs everybody out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

from ..auth.identity import Identity
from ..keyfile import create_once

COOKIE = "ocigate_session"


def load_or_create_secret(path: Path) -> bytes:
    """The key in ``path``, created (32 random bytes, mode 0600) by whichever worker is first."""
    if not path.exists():
        create_once(path, secrets.token_bytes(32))
    return path.read_bytes()


class Sessions:
    def __init__(self, secret: bytes, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())

    def issue(self, identity: Identity) -> str:
        claims = {
            "u": identity.name,
            "g": sorted(identity.groups),
            "m": identity.method,
            "e": int(time.time()) + self.ttl,
        }
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def identity(self, cookie: str) -> Identity | None:
        """The identity a valid, unexpired cookie carries; None for anything else."""
        encoded, _, signature = cookie.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        claims = json.loads(payload)  # signed by us: well-formed
        if claims["e"] <= time.time() or not claims["u"]:
            return None
        return Identity(str(claims["u"]), frozenset(claims["g"]), method=str(claims["m"]))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
