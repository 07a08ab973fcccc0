"""Token signing keys: generated once (EC P-256, ES256) and kept, or RSA from config (RS256)."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ocigate.auth.identity import Identity
from ocigate.auth.tokens import TokenService, load_or_create_key


def service(path: Path) -> TokenService:
    return TokenService(load_or_create_key(path), issuer="i", service="s", expiry=60)


def test_generated_key_is_kept_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "token-key.pem"
    first = service(path)
    assert first.algorithm == "ES256"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token, _ = first.issue(Identity("alice"), {"team/app": {"pull"}})
    identity, _ = service(path).verify(token)  # another worker, same key file
    assert identity.name == "alice" and identity.grants == {"team/app": frozenset({"pull"})}


def test_rsa_key_from_config_signs_rs256(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tokens = service(path)
    token, _ = tokens.issue(Identity("bob"), {"x": {"push"}})
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    identity, _ = tokens.verify(token)
    assert identity.grants == {"x": frozenset({"push", "overwrite"})}


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "ed.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="EC P-256 or RSA"):
        load_or_create_key(path)
