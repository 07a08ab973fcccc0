"""Manifest references: a digest or a tag, told apart once, where a path is parsed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digest import Digest
from .errors import TagInvalid

# Used with fullmatch only: ``$`` would also match before a final "\n" (tag "v1\n").
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag name. ``Tag(name)`` trusts its caller (a store reading back what it stored);
    text from outside goes through :meth:`parse`."""

    name: str

    @classmethod
    def parse(cls, text: str) -> Tag:
        if not _TAG.fullmatch(text):
            raise TagInvalid(f"invalid tag {text[:200]!r}", "invalid tag")
        return cls(text)

    def __str__(self) -> str:
        return self.name


Reference = Digest | Tag


def parse_reference(text: str) -> Reference:
    """The path's ``<reference>``: a digest when it has the colon no tag may have."""
    return Digest.parse(text) if ":" in text else Tag.parse(text)
