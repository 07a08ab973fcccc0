"""Repository globs: ``*`` matches within one path component, ``**`` across components.

``team-a/*`` matches ``team-a/app`` but not ``team-a/app/dev``; ``team-a/**`` matches both;
``**`` matches every repository. Among several matching globs the longest one wins, length
counting the literal characters only, and then the one with fewer ``*`` (so ``team-a/app`` beats
``team-a/*``, which beats ``team-a/**``, which beats ``**``); remaining ties go to the first listed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_GLOB = re.compile(r"[a-z0-9._/*-]+")  # fullmatch: "$" allows a final "\n"


def check_glob(glob: str) -> str:
    """The glob itself; ValueError when it could never match a repository name."""
    if not _GLOB.fullmatch(glob):
        raise ValueError(f"invalid repository glob {glob!r}: use a-z 0-9 . _ - / and * or **")
    if "***" in glob:
        raise ValueError(f"invalid repository glob {glob!r}: at most two * in a row")
    return glob


@lru_cache(maxsize=1024)
def _compile(glob: str) -> re.Pattern[str]:
    tail = ""
    if glob.endswith("/**"):  # "team/**" also matches "team" itself, as a directory glob does
        glob, tail = glob[:-3], "(?:/.*)?"
    parts = re.split(r"(\*\*|\*)", glob)
    regex = "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )
    return re.compile(f"{regex}{tail}")


def matches(glob: str, repo: str) -> bool:
    return _compile(glob).fullmatch(repo) is not None


def _specificity(glob: str) -> tuple[int, int]:
    return len(glob.replace("*", "")), -glob.count("*")


def best_match(globs: Sequence[str], repo: str) -> int | None:
    """Index of the most specific glob matching ``repo`` (first on ties), or None."""
    best: int | None = None
    for i, glob in enumerate(globs):
        if matches(glob, repo) and (best is None or _specificity(glob) > _specificity(globs[best])):
            best = i
    return best
