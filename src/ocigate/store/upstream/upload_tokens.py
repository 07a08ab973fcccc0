"""Stateless upload ids for the gateway: the upstream session, signed.

The id the gateway hands out carries the upstream's upload ``Location`` and the byte offset,
HMAC-SHA256-signed with a key every worker shares, so any worker (or replica with the same key)
continues any upload and a forged or foreign id is refused as BLOB_UPLOAD_UNKNOWN. The format is
``<session uuid> "." base64url(json) "." base64url(mac[:16])``: path-safe, led by a UUID as the
spec wants of an upload location, and as short as the upstream's Location allows
(distribution's, with its own signed ``_state``, gives ids of about 450 characters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...oci.errors import BlobUploadUnknown

KEY_FILE = "upload-signing.key"
_MAC_BYTES = 16
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class UploadToken:
    location: str  # the upstream session's Location, as the upstream gave it
    offset: int  # bytes the upstream had received when this token was issued

    @property
    def session(self) -> str:
        """The upstream's session UUID when its Location shows one, else one derived from it."""
        found = _UUID.search(self.location)
        if found:
            return found.group(0).lower()
        return str(uuid.UUID(bytes=hashlib.sha256(self.location.encode()).digest()[:16]))


class UploadSigner:
    """Signs and checks upload tokens for one upstream (``scope`` binds them to it)."""

    def __init__(self, key: bytes, scope: str) -> None:
        self._key = key
        self._scope = scope.encode()

    def _mac(self, repo: str, session: str, payload: bytes) -> bytes:
        message = b"\n".join([self._scope, repo.encode(), session.encode(), payload])
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, repo: str, token: UploadToken) -> str:
        payload = json.dumps([token.location, token.offset], separators=(",", ":")).encode()
        session = token.session
        return f"{session}.{_b64(payload)}.{_b64(self._mac(repo, session, payload))}"

    def open(self, repo: str, upload_id: str) -> UploadToken:
        """The token inside ``upload_id``; BlobUploadUnknown unless we issued it for ``repo``."""
        unknown = BlobUploadUnknown({"upload": upload_id[:100]})
        parts = upload_id.split(".")
        if len(parts) != 3:
            raise unknown
        session, body, mac = parts
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, TypeError):
            raise unknown from None
        # Canonical encodings only: base64 ignores the unused low bits of the last character.
        if _b64(payload) != body or _b64(given) != mac:
            raise unknown
        if not hmac.compare_digest(given, self._mac(repo, session, payload)):
            raise unknown
        location, offset = json.loads(payload)
        return UploadToken(str(location), int(offset))


def load_or_create_key(data_dir: Path, configured: str | None) -> bytes:
    """The configured key, else one generated once and kept in ``data_dir`` (shared by workers;
    replicas behind one load balancer must configure the same key)."""
    if configured:
        return configured.encode()
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = data_dir / f".{KEY_FILE}.{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another worker won the race; then everyone uses the winner's key.
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return path.read_bytes()
