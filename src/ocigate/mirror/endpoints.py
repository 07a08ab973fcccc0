"""A mirror's end: ``[http://|https://]HOST[:PORT][/REPOSITORY-PREFIX]``, parsed."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..oci.errors import NameInvalid
from ..oci.names import check_name


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
