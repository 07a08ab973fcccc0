"""External OIDC / workload-identity tokens: JWTs from a configured issuer, checked against its
JWKS (a file or a URL), audience and expiry, with claims mapped to a user name and groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field

from .identity import Identity


class OidcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(description="expected `iss` claim")
    audience: str = Field(description="expected `aud` claim")
    jwks_url: str | None = Field(None, description="where the issuer publishes its keys")
    jwks_file: Path | None = Field(None, description="the issuer's keys as a JWKS file")
    username_claim: str = "sub"
    groups_claim: str = "groups"
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])


class OidcVerifier:
    def __init__(self, config: OidcConfig) -> None:
        if (config.jwks_url is None) == (config.jwks_file is None):
            raise ValueError("oidc: set exactly one of jwks_url and jwks_file")
        self.config = config
        self._client = jwt.PyJWKClient(config.jwks_url) if config.jwks_url else None
        self._keys: jwt.PyJWKSet | None = None
        if config.jwks_file is not None:
            self._keys = jwt.PyJWKSet.from_dict(json.loads(config.jwks_file.read_text()))

    def looks_like_ours(self, token: str) -> bool:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return False
        return bool(claims.get("iss") == self.config.issuer)

    def _key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        assert self._keys is not None
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError("no key for this token's kid")

    def verify(self, token: str) -> Identity:
        """Blocking when the JWKS is fetched: call from a thread."""
        claims = jwt.decode(
            token,
            self._key(token),
            algorithms=self.config.algorithms,
            audience=self.config.audience,
            issuer=self.config.issuer,
            options={"require": ["exp", "iss", "aud"]},
            leeway=5,
        )
        name = claims.get(self.config.username_claim)
        if not isinstance(name, str) or not name:
            raise jwt.InvalidTokenError(f"claim {self.config.username_claim!r} missing")
        raw_groups = claims.get(self.config.groups_claim) or []
        groups = raw_groups if isinstance(raw_groups, list) else [raw_groups]
        return Identity(name, frozenset(str(g) for g in groups), method="oidc")
