"""Configuration of authentication: htpasswd users, the token service, OIDC issuers.

```yaml
auth:
  htpasswd: /etc/ocigate/htpasswd     # bcrypt entries (htpasswd -B)
  realm: token                        # token (Docker token flow) or basic
  token: {issuer: ocigate, service: registry.example.com, expiry: 300}
  oidc:
    issuer: https://token.actions.githubusercontent.com
    audience: ocigate
    jwks_url: https://token.actions.githubusercontent.com/.well-known/jwks
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .oidc import OidcConfig


class TokenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field("ocigate", description="`iss` of issued tokens")
    service: str = Field("ocigate", description="`aud` of issued tokens; the challenge's service")
    realm: str | None = Field(
        None, description="absolute URL of the token endpoint (default: this server's /token)"
    )
    key_file: Path | None = Field(
        None, description="PEM private key (EC P-256 or RSA); default DATA_DIR/token-key.pem"
    )
    expiry: int = Field(300, ge=30, le=86400, description="token lifetime in seconds")

    @field_validator("realm")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        # Clients fetch tokens there: only an absolute http(s) URL, nothing that could end the
        # challenge header early.
        if value is not None and not re.fullmatch(r"https?://[!#-~]+", value):
            raise ValueError("auth.token.realm must be an absolute http:// or https:// URL")
        return value


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    htpasswd: Path | None = Field(None, description="htpasswd file of bcrypt users")
    realm: Literal["token", "basic"] = Field(
        "token", description="challenge clients with the token flow or plain Basic"
    )
    token: TokenConfig = Field(default_factory=TokenConfig)  # type: ignore[arg-type]
    oidc: OidcConfig | None = Field(None, description="accept JWTs from this issuer")
