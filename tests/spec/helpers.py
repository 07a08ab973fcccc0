"""Small typed helpers shared by the OCI distribution-spec conformance tests.

Everything here talks plain HTTP through an ``httpx.Client`` whose ``base_url`` is the
registry root, so the same helpers drive ocigate in-process and any live registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

# --- media types -------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# The complete list of error codes in the distribution spec ("The code field MUST be one of
# the following").
ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)

# "The client MAY encounter error codes targeting Docker schema1 manifests, such as
# `TAG_INVALID`, or `MANIFEST_UNVERIFIED`." (Legacy Docker support error codes)
LEGACY_ERROR_CODES = frozenset({"TAG_INVALID", "MANIFEST_UNVERIFIED"})

UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
RANGE_RE = re.compile(r"^0-([0-9]+)$")

# --- digests and blobs -------------------------------------------------------------------


# (user, password) every request of the suite sends, from --credentials; None: anonymous.
CREDENTIALS: tuple[str, str] | None = None


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest string of ``data`` (``sha256`` or ``sha512``)."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def random_bytes(size: int = 100) -> bytes:
    return os.urandom(size)


@dataclass(frozen=True)
class Blob:
    """Some bytes plus their digest under one algorithm."""

    data: bytes
    algorithm: str = "sha256"

    @property
    def digest(self) -> str:
        return digest_of(self.data, self.algorithm)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, media_type: str, **extra: Any) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": self.digest, "size": self.size, **extra}


def random_blob(size: int = 100, algorithm: str = "sha256") -> Blob:
    return Blob(random_bytes(size), algorithm)


def random_digest(algorithm: str = "sha256") -> str:
    """A well-formed digest of content that no registry has seen."""
    return digest_of(random_bytes(32), algorithm)


# --- URLs and headers --------------------------------------------------------------------


def location(resp: httpx.Response) -> str:
    """The response's ``Location`` resolved to an absolute URL.

    The spec allows the location to be absolute or relative (RFC 7231 7.1.2); a relative
    reference is resolved against the URL of the request that produced it.
    """
    value = resp.headers.get("Location")
    assert value, f"{resp.request.method} {resp.request.url} -> {resp.status_code}: no Location"
    return resolve(str(resp.request.url), value)


def resolve(request_url: str, reference: str) -> str:
    return urljoin(request_url, reference)


def with_params(url: str, params: list[tuple[str, str]]) -> str:
    """Append query parameters to a URL that may already carry some (critical) ones."""
    return str(httpx.URL(url).copy_merge_params(tuple(params)))


def header_list(resp: httpx.Response, name: str) -> list[str]:
    """All values of a header, whether sent as several headers or comma-separated."""
    return [v.strip() for v in resp.headers.get_list(name, split_commas=True) if v.strip()]


_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def parse_link(value: str) -> dict[str, str]:
    """Parse an RFC 5988 ``Link`` header into ``{rel: target}``."""
    links: dict[str, str] = {}
    for target, params in _LINK_RE.findall(value):
        for param in params.split(";"):
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "rel":
                for rel in val.strip().strip('"').split():
                    links[rel] = target
    return links


def next_link(resp: httpx.Response) -> str | None:
    """The absolute URL of the ``rel="next"`` Link, or None when the header is absent."""
    values = resp.headers.get_list("Link")
    if not values:
        return None
    links = parse_link(", ".join(values))
    assert "next" in links, f"Link header without rel=next: {values!r}"
    return resolve(str(resp.request.url), links["next"])


def follow_pages(client: httpx.Client, url: str, key: str, max_pages: int = 10_000) -> list[Any]:
    """GET ``url`` and every ``rel="next"`` page after it, concatenating ``body[key]``."""
    items: list[Any] = []
    next_url: str | None = url
    for _ in range(max_pages):
        if next_url is None:
            return items
        resp = client.get(next_url)
        assert resp.status_code == 200, resp.text
        items.extend(resp.json()[key] or [])
        next_url = next_link(resp)
    raise AssertionError(f"more than {max_pages} pages following {url}")


# --- errors ------------------------------------------------------------------------------


def assert_error(resp: httpx.Response, status: int | tuple[int, ...], *codes: str) -> list[str]:
    """Assert an error response and its OCI error body; return the codes in the body.

    ``status`` is the expected status (or a tuple of acceptable ones). The body must be
    ``{"errors": [{"code": ..., "message": ...}, ...]}`` with every code from the spec's list
    and, when ``codes`` are given, at least one of them present. HEAD responses carry no
    body, so only their status is checked.
    """
    allowed = (status,) if isinstance(status, int) else status
    method = resp.request.method
    assert resp.status_code in allowed, (
        f"{method} {resp.request.url}: expected {allowed}, got {resp.status_code}: "
        f"{resp.text[:500]}"
    )
    if method == "HEAD":
        return []
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(
            f"{method} {resp.request.url} -> {resp.status_code}: error body is not JSON: "
            f"{resp.text[:300]!r}"
        ) from None
    assert isinstance(body, dict), body
    errors = body.get("errors")
    assert isinstance(errors, list), f"no errors list: {body!r}"
    assert errors, f"empty errors list: {body!r}"
    found: list[str] = []
    for err in errors:
        assert isinstance(err, dict), err
        code = err.get("code")
        assert isinstance(code, str), err
        assert re.fullmatch(r"[A-Z_]+", code), f"code not uppercase/underscores: {code!r}"
        assert code in ERROR_CODES | LEGACY_ERROR_CODES, f"{code!r} is not a spec error code"
        if "message" in err:
            assert isinstance(err["message"], str), err
        found.append(code)
    if codes:
        assert set(found) & set(codes), f"expected one of {codes}, got {found}"
    return found


# --- manifests ---------------------------------------------------------------------------


def encode(doc: Any) -> bytes:
    """Compact JSON encoding (stable for a given dict)."""
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Manifest:
    """Exact manifest bytes plus the media type they are pushed under."""

    body: bytes
    media_type: str
    doc: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, doc: dict[str, Any], media_type: str | None = None) -> Manifest:
        return cls(encode(doc), media_type or doc["mediaType"], doc)

    @property
    def digest(self) -> str:
        return digest_of(self.body)

    @property
    def size(self) -> int:
        return len(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def image_manifest(
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    media_type: str = OCI_MANIFEST,
    **fields: Any,
) -> dict[str, Any]:
    """An image manifest document; ``fields`` adds e.g. subject, artifactType, annotations."""
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config,
        "layers": layers,
        **fields,
    }


def index_manifest(
    manifests: list[dict[str, Any]], media_type: str = OCI_INDEX, **fields: Any
) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests, **fields}


def config_blob() -> Blob:
    """A small but valid, unique image config."""
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"nonce": random_bytes(8).hex()}},
    }
    return Blob(encode(doc))


# --- push / pull -------------------------------------------------------------------------


def blob_url(repo: str, digest: str) -> str:
    return f"/v2/{repo}/blobs/{digest}"


def manifest_url(repo: str, ref: str) -> str:
    return f"/v2/{repo}/manifests/{ref}"


def uploads_url(repo: str) -> str:
    return f"/v2/{repo}/blobs/uploads/"


def start_upload(client: httpx.Client, repo: str, **params: str) -> str:
    """POST an upload session; assert 202 + Location and return the absolute location."""
    resp = client.post(uploads_url(repo), params=params, headers={"Content-Length": "0"})
    assert resp.status_code == 202, f"POST uploads -> {resp.status_code}: {resp.text}"
    return location(resp)


def put_upload(
    client: httpx.Client,
    upload: str,
    digest: str,
    data: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.put(
        with_params(upload, [("digest", digest)]),
        content=data,
        headers={"Content-Type": "application/octet-stream", **(headers or {})},
    )


def patch_chunk(client: httpx.Client, upload: str, data: bytes, start: int) -> httpx.Response:
    """PATCH one chunk with ``Content-Range: <start>-<end>`` (inclusive)."""
    return client.patch(
        upload,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(data) - 1}",
        },
    )


def push_blob(client: httpx.Client, repo: str, blob: Blob) -> httpx.Response:
    """Push a blob monolithically (POST then PUT); assert 201 and return the PUT response."""
    params = {} if blob.algorithm == "sha256" else {"digest-algorithm": blob.algorithm}
    upload = start_upload(client, repo, **params)
    resp = put_upload(client, upload, blob.digest, blob.data)
    assert resp.status_code == 201, f"PUT upload -> {resp.status_code}: {resp.text}"
    return resp


def put_manifest(client: httpx.Client, repo: str, ref: str, manifest: Manifest) -> httpx.Response:
    return client.put(
        manifest_url(repo, ref),
        content=manifest.body,
        headers={"Content-Type": manifest.media_type},
    )


def push_manifest(
    client: httpx.Client, repo: str, manifest: Manifest, ref: str | None = None
) -> httpx.Response:
    """PUT a manifest by ``ref`` (default: its digest); assert 201."""
    resp = put_manifest(client, repo, ref or manifest.digest, manifest)
    assert resp.status_code == 201, f"PUT manifest -> {resp.status_code}: {resp.text}"
    return resp


def push_image(
    client: httpx.Client,
    repo: str,
    ref: str | None = None,
    *,
    docker: bool = False,
    config: Blob | None = None,
    config_media_type: str | None = None,
    **fields: Any,
) -> Manifest:
    """Push config + layer blobs and an image manifest referencing them; return the manifest.

    ``docker`` selects Docker schema2 media types instead of OCI ones; ``fields`` become extra
    top-level manifest fields (subject, artifactType, annotations, ...).
    """
    config = config or config_blob()
    push_blob(client, repo, config)
    layers = [random_blob(64)]
    push_blob(client, repo, layers[0])
    if docker:
        doc = image_manifest(
            config.descriptor(config_media_type or DOCKER_CONFIG),
            [layer.descriptor(DOCKER_LAYER) for layer in layers],
            media_type=DOCKER_MANIFEST,
            **fields,
        )
    else:
        doc = image_manifest(
            config.descriptor(config_media_type or OCI_CONFIG),
            [layer.descriptor(OCI_LAYER) for layer in layers],
            **fields,
        )
    manifest = Manifest.of(doc)
    push_manifest(client, repo, manifest, ref)
    return manifest


def push_artifact(
    client: httpx.Client,
    repo: str,
    artifact_type: str | None,
    *,
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    config_media_type: str = OCI_EMPTY,
) -> Manifest:
    """Push an artifact manifest using the empty-JSON config and layer; return it."""
    empty = Blob(EMPTY_JSON)
    push_blob(client, repo, empty)
    fields: dict[str, Any] = {}
    if artifact_type is not None:
        fields["artifactType"] = artifact_type
    if subject is not None:
        fields["subject"] = subject
    if annotations is not None:
        fields["annotations"] = annotations
    doc = image_manifest(
        empty.descriptor(config_media_type), [empty.descriptor(OCI_EMPTY)], **fields
    )
    manifest = Manifest.of(doc)
    push_manifest(client, repo, manifest)
    return manifest


def referrers(client: httpx.Client, repo: str, digest: str, **params: str) -> httpx.Response:
    return client.get(f"/v2/{repo}/referrers/{digest}", params=params)


# --- raw HTTP ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(base_url: str, method: str, path: str) -> RawResponse:
    """Send one bodiless request over a fresh socket and read the raw reply until EOF.

    httpx never reads a body after HEAD, so this is how a test can see whether a server
    wrongly sends one.
    """
    parts = urlsplit(base_url)
    authorization = ""
    if CREDENTIALS is not None:
        token = base64.b64encode(":".join(CREDENTIALS).encode()).decode()
        authorization = f"Authorization: Basic {token}\r\n"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Accept: {MANIFEST_ACCEPT}\r\n{authorization}Connection: close\r\n\r\n"
    ).encode()
    chunks: list[bytes] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"incomplete response: {raw[:200]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body)
