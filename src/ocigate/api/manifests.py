"""Manifest endpoints: GET/HEAD/PUT/DELETE ``/v2/<name>/manifests/<tag-or-digest>``."""

from __future__ import annotations

from ..oci.digest import Digest
from ..oci.errors import DigestInvalid, ManifestInvalid, ManifestUnknown, TagInvalid
from ..oci.manifests import parse_manifest
from ..oci.reference import Reference, Tag, parse_reference
from ..registry import ManifestInfo, StoredManifest
from .context import Call
from .http import Headers, respond

MAX_TAGS_PER_PUSH = 100


def _read_reference(arg: str) -> Reference:
    """GET and HEAD: no manifest is known by an invalid reference, so 404 MANIFEST_UNKNOWN, as
    the v1.1.1 conformance suite expects and distribution and zot answer; writes keep the 400."""
    try:
        return parse_reference(arg)
    except (DigestInvalid, TagInvalid) as exc:
        raise ManifestUnknown({"reference": arg[:200], "reason": exc.message}) from exc


def _headers(manifest: StoredManifest | ManifestInfo) -> Headers:
    headers: Headers = [
        (b"content-type", manifest.media_type.encode()),
        (b"docker-content-digest", str(manifest.digest).encode()),
    ]
    for note in manifest.warnings:
        # The spec's form: code 299, agent "-", a quoted string, no date.
        text = note.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "replace")
        headers.append((b"warning", b'299 - "%s"' % text))
    return headers


async def get(call: Call) -> None:
    manifest = await call.registry.get_manifest(call.repo, _read_reference(call.arg))
    await respond(call.send, 200, _headers(manifest), manifest.data)


async def head(call: Call) -> None:
    info = await call.registry.stat_manifest(call.repo, _read_reference(call.arg))
    headers = _headers(info)
    headers.append((b"content-length", b"%d" % info.size))
    await call.send({"type": "http.response.start", "status": 200, "headers": headers})
    await call.send({"type": "http.response.body", "body": b""})


async def put(call: Call) -> None:
    reference = parse_reference(call.arg)
    extra_tags = list(dict.fromkeys(Tag.parse(tag) for tag in call.request.query.get("tag", [])))
    if len(extra_tags) > MAX_TAGS_PER_PUSH:
        raise ManifestInvalid(f"at most {MAX_TAGS_PER_PUSH} tags per push")
    data = await call.request.read(call.options.max_manifest_size)
    if isinstance(reference, Digest):
        digest = Digest.of(data, reference.algorithm)
        if digest != reference:
            raise DigestInvalid(f"manifest digest is {digest}, the URL names {reference}")
        tags = extra_tags
    else:
        digest = Digest.of(data)
        tags = list(dict.fromkeys([reference, *extra_tags]))
    manifest = parse_manifest(data, call.request.headers.get("content-type"), digest)
    await call.registry.put_manifest(call.repo, manifest, data, tags)
    headers: Headers = [
        (b"location", f"/v2/{call.repo}/manifests/{digest}".encode()),
        (b"docker-content-digest", str(digest).encode()),
    ]
    if manifest.subject is not None:
        headers.append((b"oci-subject", str(manifest.subject.digest).encode()))
    if extra_tags:
        headers.append((b"oci-tag", ", ".join(map(str, extra_tags)).encode()))
    await respond(call.send, 201, headers)


async def delete(call: Call) -> None:
    reference = parse_reference(call.arg)
    if isinstance(reference, Digest):
        await call.registry.delete_manifest(call.repo, reference)
    else:
        await call.registry.delete_tag(call.repo, reference)
    await respond(call.send, 202)
