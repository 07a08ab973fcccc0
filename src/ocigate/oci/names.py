"""Repository names and tags, by the distribution spec's regular expressions."""

from __future__ import annotations

import re
from functools import lru_cache

from .digest import Digest
from .errors import NameInvalid
from .reference import Tag

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# Used with fullmatch only: ``$`` would also match before a final "\n" (tag "v1\n").
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
MAX_NAME_LENGTH = 255


@lru_cache(maxsize=4096)  # every request checks a name, and names repeat; refusals are not kept
def check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name[:300]!r}")
    return name


def referrers_tag(digest: Digest) -> Tag:
    """The referrers tag schema: ``<alg[:32]>-<encoded[:64]>`` with illegal characters as '-'."""
    raw = f"{digest.algorithm[:32]}-{digest.encoded[:64]}"
    return Tag(re.sub(r"[^a-zA-Z0-9._-]", "-", raw))
