"""A mirror's two ends: ``[http://|https://]HOST[:PORT][/REPOSITORY-PREFIX]`` parsed, their
credentials found, and each opened as a :class:`Registry` over the upstream store.

Credentials, first found wins: the flag (``USER:PASS``), the environment variable named for
the end, then the auth files docker and podman write (``REGISTRY_AUTH_FILE``,
``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.docker/config.json``: ``auths.HOST.auth``,
base64 ``user:pass``). None found: anonymous (token services may still grant pulls).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..client import ClientOptions
from ..layers.referrers_tags import ReferrersTags
from ..oci.errors import NameInvalid
from ..oci.names import check_name
from ..registry import Registry
from ..store.upstream import UpstreamStore


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a mirror: a registry's base URL and the repository prefix under it."""

    url: str  # scheme://host[:port]
    prefix: str  # "" or a repository name prefix, without slashes at its ends

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc.lower()

    def repository(self, name: str) -> str:
        """The full repository name of ``name`` (relative to the prefix)."""
        return f"{self.prefix}/{name}" if self.prefix and name else self.prefix or name

    def relative(self, repository: str) -> str | None:
        """``repository`` without the prefix; None when it is not under it."""
        if not self.prefix:
            return repository
        if repository == self.prefix:
            return ""
        head = self.prefix + "/"
        return repository[len(head) :] if repository.startswith(head) else None

    def __str__(self) -> str:
        return f"{self.url}/{self.prefix}" if self.prefix else self.url


def parse_endpoint(text: str) -> Endpoint:
    """``[http://|https://]HOST[:PORT][/PREFIX]``; https when no scheme is given."""
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ValueError(f"{text}: expected [http://|https://]HOST[:PORT][/REPOSITORY-PREFIX]")
    if "@" in parts.netloc:
        raise ValueError(f"{text}: credentials go in --src-creds/--dest-creds, not the URL")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_name(prefix)
        except NameInvalid as exc:
            raise ValueError(f"{text}: {prefix!r} is not a valid repository prefix") from exc
    return Endpoint(f"{parts.scheme}://{parts.netloc}", prefix)


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


def open_registry(
    endpoint: Endpoint,
    login: tuple[str, str] | None,
    *,
    connections: int = 16,
    tls_verify: bool = True,
    read_timeout: float = 60.0,
) -> Registry:
    """``endpoint`` as a Registry, with the referrers tag schema where it has no referrers API
    (reading a source's referrers through it, writing a destination's)."""
    username, password = login if login is not None else (None, None)
    options = ClientOptions(
        url=endpoint.url,
        username=username,
        password=password,
        tls_verify=tls_verify,
        read_timeout=read_timeout,
        max_connections=connections,
    )
    # Upload ids are signed for the upstream store's gateway use; here they never leave us.
    store = UpstreamStore(options, secrets.token_bytes(32))
    return ReferrersTags(store, store.name)
