"""Media types the registry needs to recognise."""

from __future__ import annotations

import re

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFESTS = INDEXES | IMAGE_MANIFESTS

# Layers a registry is not required to hold (image-spec: non-distributable layers).
NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

# RFC 6838 as restricted by image-spec descriptor.md.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)


def is_media_type(value: str) -> bool:
    return bool(_MEDIA_TYPE.fullmatch(value))


def base_type(content_type: str) -> str:
    """A Content-Type header without parameters (the spec says to ignore them)."""
    return content_type.split(";", 1)[0].strip()
