"""The URL map of the distribution API: path → (endpoint name, repository, argument)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Repository names contain '/', so each pattern anchors the endpoint suffix at the end.
_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<arg>[^/]+)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<arg>[^/]+:[^/]+)$")),
    ("upload", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<arg>[^/]+)$")),
    ("uploads", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?(?P<arg>)$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list(?P<arg>)$")),
    ("referrers", re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<arg>[^/]+)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<arg>[^/]+)$")),
)


# Outside /v2/, for load balancers and scrapers: no authentication, no rate limit.
_OPERATIONS = frozenset({"/healthz", "/readyz", "/metrics"})
OPERATIONS = frozenset(path[1:] for path in _OPERATIONS)


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: str
    name: str = ""
    arg: str = ""


# Longer than any valid route (a 255-character name, a sha512 digest): a path is remembered only
# up to this, so the memo holds at most 4096 x this many characters whatever clients send.
MEMO_KEY_MAX = 512


def match(path: str) -> Route | None:
    if len(path) > MEMO_KEY_MAX:
        return _match(path)
    return _remembered(path)


# Clients repeat the same paths (a tag pulled by every node): the regexes cost ~3 µs.
@lru_cache(maxsize=4096)
def _remembered(path: str) -> Route | None:
    return _match(path)


def _match(path: str) -> Route | None:
    if path in ("/v2/", "/v2"):
        return Route("base")
    if path == "/v2/_catalog":
        return Route("catalog")
    if path == "/token":
        return Route("token")
    if path in _OPERATIONS:
        return Route(path[1:])
    if not path.startswith("/v2/"):
        return None
    for endpoint, pattern in _ROUTES:
        found = pattern.fullmatch(path)  # not match: "$" allows a final "\n"
        if found:
            return Route(endpoint, found.group("name"), found.group("arg"))
    return None
