"""Content digests (image-spec descriptor.md): ``algorithm ":" encoded``.

Only registered algorithms we can verify are accepted: sha256 and sha512.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from .errors import DigestInvalid

# The grammar of the image spec, used to tell "malformed" from "unsupported algorithm".
# All used with fullmatch: ``$`` would also match before a final "\n".
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_ENCODED = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}
ALGORITHMS = tuple(_ENCODED)


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not _GRAMMAR.fullmatch(text):
            raise DigestInvalid(f"malformed digest {text[:200]!r}", "invalid digest")
        algorithm, _, encoded = text.partition(":")
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}", "invalid digest")
        if not pattern.fullmatch(encoded):
            raise DigestInvalid(f"malformed {algorithm} digest {text[:200]!r}", "invalid digest")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def new_hasher(algorithm: str) -> Hasher:
    if algorithm not in _ENCODED:
        raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}", "invalid digest")
    return hashlib.new(algorithm)
