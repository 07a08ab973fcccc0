"""The entries of a referrers index (an API page or a referrers tag) as descriptors."""

from __future__ import annotations

from typing import Any

from .descriptors import Descriptor, parse_descriptor
from .errors import ManifestInvalid


def listed_referrers(entries: list[Any], artifact_type: str | None) -> list[Descriptor]:
    """The well-formed ``entries`` whose artifact type is ``artifact_type`` (any when None);
    a malformed entry (someone else's, in an index we did not write) is skipped."""
    found: list[Descriptor] = []
    for item in entries:
        try:
            descriptor = parse_descriptor(item, "referrer")
        except ManifestInvalid:
            continue
        if artifact_type is None or descriptor.artifact_type == artifact_type:
            found.append(descriptor)
    return found
