"""``ocigate validate``: check payload files against artifact types without a registry."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .artifacts import ArtifactType, PayloadChecker, builtin_names


def known_types(configured: Sequence[ArtifactType]) -> dict[str, ArtifactType]:
    """The configured types, plus every builtin not shadowed by a configured one."""
    types = {t.name: t for t in configured}
    for name in builtin_names():
        types.setdefault(name, ArtifactType.model_validate(name))
    return types


def validate_files(
    files: Sequence[Path],
    configured: Sequence[ArtifactType],
    type_name: str | None = None,
    media_type: str | None = None,
    out: TextIO | None = None,
) -> int:
    """0 when every file conforms (to ``type_name``, else to some type with a schema), else 1.

    Prints one line per file, and for a failure each tried type's JSON pointer and message.
    """
    out = out or sys.stdout
    types = known_types(configured)
    if type_name is not None and type_name not in types:
        raise ValueError(f"unknown artifact type {type_name!r} (known: {', '.join(types)})")
    chosen = [types[type_name]] if type_name else [t for t in types.values() if t.schemas]
    checkers = [PayloadChecker(t) for t in chosen]
    if type_name is not None:  # one type asked for: its schema must be unambiguous
        media_types = checkers[0].media_types
        if media_type is not None and media_type not in media_types:
            raise ValueError(f"artifact type {type_name!r} has no schema for {media_type!r}")
        if media_type is None and len(media_types) > 1:
            raise ValueError(
                f"artifact type {type_name!r} has schemas for several media types"
                f" ({', '.join(media_types)}): choose one with --media-type"
            )
    failed = 0
    for path in files:
        payload = path.read_bytes()
        problems: list[str] = []
        passed: str | None = None
        for checker in checkers:
            name, limit = checker.artifact_type.name, checker.artifact_type.payload_limit
            target = _target(checker, media_type)
            if target is None:
                continue
            problem = checker.problem(target, payload)
            if len(payload) > limit:
                problems.append(f"{name}: {len(payload)} bytes, more than max_payload_size {limit}")
            elif problem is not None:
                problems.append(f"{name}: at {problem.where}: {problem.message}")
            elif passed is None:
                passed = name
        if passed is not None:
            print(f"{path}: ok ({passed})", file=out)
            continue
        failed += 1
        print(f"{path}: invalid", file=out)
        for line in problems or ["no artifact type has a schema for it"]:
            print(f"  {line}", file=out)
    return 1 if failed else 0


def _target(checker: PayloadChecker, media_type: str | None) -> str | None:
    """The media type whose schema to apply: the one asked for, else the type's first."""
    if media_type is not None:
        return media_type if checker.checks(media_type) else None
    return checker.media_types[0] if checker.media_types else None
