"""Where a mirror's credentials come from, first found wins: the flag (``USER:PASS``), the
environment variable named for the end, then the auth files docker and podman write
(``REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.docker/config.json``:
``auths.HOST.auth``, base64 ``user:pass``). None found: anonymous (token services may still
grant pulls)."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from .endpoints import Endpoint


def split_credentials(text: str, where: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise ValueError(f"{where}: expected USER:PASSWORD")
    return user, password


def auth_files() -> list[Path]:
    """Where docker and podman keep registry credentials, in the order they are asked."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def _auth_host(key: str) -> str:
    # Keys are a host, or a URL such as docker's "https://index.docker.io/v1/".
    return (urlsplit(key).netloc if "://" in key else key.split("/")[0]).lower()


def file_credentials(host: str, files: list[Path]) -> tuple[str, str] | None:
    """``host``'s credentials from the first auth file holding any."""
    for path in files:
        try:
            auths = json.loads(path.read_text()).get("auths", {})
        except (OSError, ValueError, AttributeError):
            continue  # absent or not an auth file: the next one
        for key, entry in auths.items() if isinstance(auths, dict) else ():
            if _auth_host(key) != host or not isinstance(entry, dict) or "auth" not in entry:
                continue
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
                raise ValueError(f"{path}: auths.{key}.auth is not base64 USER:PASSWORD") from exc
            return split_credentials(decoded, f"{path}: auths.{key}.auth")
    return None


def credentials(endpoint: Endpoint, flag: str | None, env: str) -> tuple[str, str] | None:
    """The credentials for ``endpoint``: the flag, else the variable ``env``, else auth files."""
    given = flag or os.environ.get(env)
    if given:
        return split_credentials(given, env if flag is None else "credentials flag")
    return file_credentials(endpoint.host, auth_files())
