"""An OIDC issuer's signing keys (a JWKS), from a file or fetched from its URL.

Fetched keys are kept and fetched again when a token names a key not among them or when they are
older than ``max_age``, but never more than once per ``refresh_interval``: tokens with made-up
key ids cannot turn every request into a request to the issuer, and while the issuer is
unreachable the keys last fetched keep working.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import jwt

from ..oci.errors import Unavailable

log = logging.getLogger("ocigate.auth")
_FETCH_TIMEOUT = 5.0


class JwksKeys:
    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        refresh_interval: float = 60,
        max_age: float = 3600,
    ) -> None:
        self._client = (
            jwt.PyJWKClient(url, cache_jwk_set=False, timeout=_FETCH_TIMEOUT) if url else None
        )
        self._refresh_interval = refresh_interval
        self._max_age = max_age
        self._keys: jwt.PyJWKSet | None = None
        self._fetched = 0.0  # when the keys were last fetched
        self._attempted = float("-inf")  # when a fetch was last tried, failed or not
        self._lock = threading.Lock()
        if file is not None:
            self._keys = jwt.PyJWKSet.from_dict(json.loads(file.read_text()))

    def key_for(self, kid: str | None) -> Any:
        """The key to check a token naming ``kid``. Blocking when it fetches: call from a
        thread. Raises ``jwt.InvalidTokenError`` for an unknown key, :class:`Unavailable` when no
        keys were ever obtained."""
        key = None if self._stale() else self._find(kid)
        if key is None and self._client is not None:
            self._refresh()
            key = self._find(kid)
        if key is not None:
            return key
        if self._keys is None:
            raise Unavailable(None, "the OIDC issuer's keys cannot be fetched")
        raise jwt.InvalidTokenError("no key for this token's kid")

    def _stale(self) -> bool:
        return self._client is not None and time.monotonic() - self._fetched > self._max_age

    def _find(self, kid: str | None) -> Any:
        for key in self._keys.keys if self._keys is not None else []:
            if kid is None or key.key_id == kid:
                return key.key
        return None

    def _refresh(self) -> None:
        assert self._client is not None
        with self._lock:
            now = time.monotonic()
            if now - self._attempted < self._refresh_interval:
                return
            self._attempted = now
            try:
                self._keys = self._client.get_jwk_set()
            except jwt.PyJWTError as exc:  # unreachable, or not a usable JWKS
                log.warning("fetching the OIDC issuer's keys failed: %s", exc)
                return
            self._fetched = now
