"""Registry tokens (Docker token flow): signed JWTs granting actions on repositories.

The claims follow ../shared/reference/docker-auth-jwt.md: ``iss``, ``sub``, ``aud`` (the
service), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access`` — a list of
``{"type": "repository", "name": ..., "actions": [...]}``. Token actions are the Docker ones:
``pull``, ``push`` (which covers moving a tag), ``delete`` and ``*``; and
``{"type": "registry", "name": "catalog", "actions": ["*"]}`` for listing the catalog.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..keyfile import create_once
from ..oci.errors import OCIError
from .identity import Identity

# What each token action lets the policy layer do.
COVERS: dict[str, frozenset[str]] = {
    "pull": frozenset({"pull"}),
    "push": frozenset({"push", "overwrite"}),
    "delete": frozenset({"delete"}),
    "*": frozenset({"pull", "push", "overwrite", "delete"}),
}
TOKEN_ACTIONS = ("pull", "push", "delete")
CATALOG_SCOPE = "registry:catalog:*"
_CATALOG = {"type": "registry", "name": "catalog", "actions": ["*"]}


class InsufficientScope(OCIError):
    """The policy allows the caller, but its token does not grant this: a client answers the
    401 with ``error="insufficient_scope"`` by fetching a token for ``scope``."""

    code = "DENIED"
    status = 403
    default_message = "the token does not grant this"

    def __init__(self, scope: str) -> None:
        super().__init__({"scope": scope})
        self.scope = scope


@dataclass(frozen=True, slots=True)
class Scope:
    """One requested scope: ``repository:NAME:ACTION[,ACTION…]``."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name or not actions:
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """The signing key from a PEM file; generated (P-256) and kept there on first use."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_once(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(loaded, rsa.RSAPrivateKey):
        return loaded
    if isinstance(loaded, ec.EllipticCurvePrivateKey) and isinstance(loaded.curve, ec.SECP256R1):
        return loaded  # ES256 is defined for P-256 only
    raise ValueError(f"{path}: the token key must be an EC P-256 or RSA private key")


class TokenService:
    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        *,
        issuer: str,
        service: str,
        expiry: int,
    ) -> None:
        self.key = key
        self.public_key = key.public_key()
        self.algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        self.issuer = issuer
        self.service = service
        self.expiry = expiry

    def issue(
        self, identity: Identity, access: Mapping[str, Iterable[str]], *, catalog: bool = False
    ) -> tuple[str, int]:
        """A signed token for ``identity`` granting ``access`` (repository -> token actions),
        and the catalog when ``catalog``."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": identity.name or "",
            "aud": self.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.expiry,
            "jti": uuid.uuid4().hex,
            "groups": sorted(identity.groups),
            "access": [
                {"type": "repository", "name": name, "actions": sorted(actions)}
                for name, actions in access.items()
            ]
            + ([_CATALOG] if catalog else []),
        }
        return jwt.encode(claims, self.key, algorithm=self.algorithm), self.expiry

    def verify(self, token: str) -> tuple[Identity, float]:
        """The identity a token carries and when it expires; raises ``jwt.InvalidTokenError``
        on any flaw (signature, algorithm, expiry, audience, issuer, malformed claims)."""
        claims = jwt.decode(
            token,
            self.public_key,
            algorithms=[self.algorithm],  # never "none", never another family
            audience=self.service,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            leeway=5,
        )
        grants: dict[str, frozenset[str]] = {}
        catalog = False
        for entry in claims.get("access") or []:
            if entry == _CATALOG:
                catalog = True
            if not isinstance(entry, dict) or entry.get("type") != "repository":
                continue
            name, actions = entry.get("name"), entry.get("actions")
            if isinstance(name, str) and isinstance(actions, list):
                covered = frozenset().union(*(COVERS.get(str(a), frozenset()) for a in actions))
                grants[name] = grants.get(name, frozenset()) | covered
        groups = claims.get("groups") or []
        identity = Identity(
            name=str(claims["sub"]) or None,
            groups=frozenset(str(g) for g in groups if isinstance(g, str)),
            method="token",
            grants=grants,
            catalog=catalog,
        )
        return identity, float(claims["exp"])
