"""Where an upstream's credentials may go, and which addresses the URLs it hands back may reach.

An upstream names other URLs: a token ``realm``, a ``Link`` to the next page, an upload
``Location``, a redirect. Anyone who can answer for the upstream chooses them, so credentials
go only to the upstream's own origin and to a realm on its host (same scheme) or on a host its
configuration lists; a redirect may not lead the gateway to loopback, link-local or private
addresses unless the upstream itself lives in that kind of address (or the configuration allows
it), so the gateway cannot be used to reach internal services.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..oci.errors import BadGateway, OCIError

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute URL, lower-cased, the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, 0)


def address_kind(address: str) -> str | None:
    """``loopback``, ``link-local`` or ``private`` for a non-public IP address, else None."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


async def _kinds(host: str, port: int) -> set[str | None]:
    """The address kinds ``host`` resolves to (a name may resolve to several)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BadGateway({"host": host}, f"cannot resolve {host}: {exc}") from exc
    return {address_kind(str(info[4][0])) for info in infos}


class OriginPolicy:
    """The origin rules of one upstream (see the module doc)."""

    def __init__(
        self, base_url: str, realm_hosts: Iterable[str] = (), allow_private: bool = False
    ) -> None:
        self.base = base_url
        self.origin = origin(base_url)
        self._realm_hosts = {host.lower() for host in realm_hosts}
        self._allow_private = allow_private
        self._own_kinds: set[str | None] | None = None

    def same_origin(self, url: str) -> bool:
        return origin(url) == self.origin

    def foreign(self, url: str, what: str) -> OCIError:
        host = urlsplit(url).netloc[:100]
        return BadGateway(
            {"upstream": self.base, "host": host},
            f"upstream {self.base} sent a {what} on another origin ({host}): refused",
        )

    def realm_trusted(self, realm: str) -> bool:
        """Whether the gateway's (or the client's) credentials may go to this token realm.
        A realm downgrading https to http is refused outright (502)."""
        scheme, host, _ = origin(realm)
        if scheme not in DEFAULT_PORTS:
            raise BadGateway({"upstream": self.base}, "upstream token realm is no http(s) URL")
        if self.origin[0] == "https" and scheme != "https":
            raise BadGateway(
                {"upstream": self.base},
                f"upstream {self.base} named a plain-http token realm: refused",
            )
        return scheme == self.origin[0] and (host == self.origin[1] or host in self._realm_hosts)

    async def check_address(self, url: str) -> None:
        """BadGateway unless ``url``'s host may be reached: a public address, or one of a kind
        the upstream itself has, or any with ``allow_private``."""
        if self._allow_private:
            return
        if self._own_kinds is None:
            self._own_kinds = await _kinds(self.origin[1], self.origin[2])
        _, host, port = origin(url)
        refused = sorted(str(kind) for kind in (await _kinds(host, port)) - self._own_kinds if kind)
        if refused:
            raise BadGateway(
                {"upstream": self.base, "host": host[:100]},
                f"upstream {self.base} pointed the gateway at a {refused[0]} address"
                f" ({host[:100]}): refused (allow_private_redirects allows it)",
            )
