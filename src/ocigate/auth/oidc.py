"""External OIDC / workload-identity tokens: JWTs from a configured issuer, checked against its
JWKS (a file or a URL), audience and expiry, with claims mapped to a user name and groups."""

from __future__ import annotations

from pathlib import Path

import jwt
from pydantic import BaseModel, ConfigDict, Field

from .identity import Identity
from .jwks import JwksKeys


class OidcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(description="expected `iss` claim")
    audience: str = Field(description="expected `aud` claim")
    jwks_url: str | None = Field(None, description="where the issuer publishes its keys")
    jwks_file: Path | None = Field(None, description="the issuer's keys as a JWKS file")
    username_claim: str = "sub"
    groups_claim: str = "groups"
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwks_refresh_interval: float = Field(
        60, ge=1, description="fetch jwks_url at most once per this many seconds"
    )
    jwks_max_age: float = Field(3600, ge=1, description="fetch jwks_url again after this long")


class OidcVerifier:
    def __init__(self, config: OidcConfig) -> None:
        if (config.jwks_url is None) == (config.jwks_file is None):
            raise ValueError("oidc: set exactly one of jwks_url and jwks_file")
        self.config = config
        self._keys = JwksKeys(
            url=config.jwks_url,
            file=config.jwks_file,
            refresh_interval=config.jwks_refresh_interval,
            max_age=config.jwks_max_age,
        )

    def looks_like_ours(self, token: str) -> bool:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return False
        return bool(claims.get("iss") == self.config.issuer)

    def verify(self, token: str) -> Identity:
        """Blocking when the JWKS is fetched: call from a thread."""
        claims = jwt.decode(
            token,
            self._keys.key_for(jwt.get_unverified_header(token).get("kid")),
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
