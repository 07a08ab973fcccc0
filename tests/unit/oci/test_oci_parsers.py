"""Property tests for the pure parsers: names, tags, digests, ranges, manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocigate.api.ranges import parse_content_range, parse_range
from ocigate.layers.globs import check_glob, matches
from ocigate.oci.digest import Digest
from ocigate.oci.errors import (
    BlobUploadInvalid,
    DigestInvalid,
    ManifestInvalid,
    NameInvalid,
    OCIError,
    RangeInvalid,
    RangeNotSatisfiable,
    TagInvalid,
)
from ocigate.oci.manifests import parse_manifest
from ocigate.oci.mediatypes import is_media_type
from ocigate.oci.names import check_name, referrers_tag
from ocigate.oci.numbers import MAX_VALUE, parse_decimal
from ocigate.oci.reference import Tag, parse_reference
from ocigate.registry import ByteRange
from ocigate.store.embedded.uploads import Uploads

# The spec's regular expressions, written out independently of the implementation's.
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

# "\n" because ``$`` also matches before a final newline: a pattern anchored so accepts "v1\n".
name_alphabet = st.text(alphabet="abcz09._-/A\n", max_size=40)


@given(name_alphabet)
def test_names_follow_the_spec_regex(name: str) -> None:
    expected = bool(SPEC_NAME.fullmatch(name)) and len(name) <= 255
    try:
        check_name(name)
        accepted = True
    except NameInvalid:
        accepted = False
    assert accepted == expected


@given(st.text(alphabet="aZ09._-:/+\n", max_size=140))
def test_tags_follow_the_spec_regex(tag: str) -> None:
    expected = bool(SPEC_TAG.fullmatch(tag))
    try:
        Tag.parse(tag)
        accepted = True
    except TagInvalid:
        accepted = False
    assert accepted == expected


@given(st.binary(max_size=256), st.sampled_from(["sha256", "sha512"]))
def test_digest_round_trip(data: bytes, algorithm: str) -> None:
    digest = Digest.of(data, algorithm)
    assert str(digest) == f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    assert Digest.parse(str(digest)) == digest


@given(st.text(max_size=150))
def test_digest_parse_rejects_or_round_trips(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except DigestInvalid:
        return
    assert str(digest) == text
    assert digest.algorithm in ("sha256", "sha512")


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "A" * 64,  # upper-case hex is not canonical
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "sha256" + "a" * 64,
        "",
    ],
)
def test_bad_digests(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


NEWLINES = ["\n", "\r\n", "\r", "\x0b"]


@pytest.mark.parametrize("newline", NEWLINES)
def test_a_trailing_newline_is_never_part_of_a_valid_token(newline: str, tmp_path: Path) -> None:
    good_digest = str(Digest.of(b"x"))
    with pytest.raises(NameInvalid):
        check_name("lib/app" + newline)
    with pytest.raises(TagInvalid):
        Tag.parse("v1" + newline)
    for digest in (good_digest + newline, "sha256" + newline + ":" + good_digest[7:]):
        with pytest.raises(DigestInvalid):
            Digest.parse(digest)
    assert not is_media_type("application/json" + newline)
    with pytest.raises(ValueError):
        check_glob("team/*" + newline)
    assert not matches("team/app", "team/app" + newline)
    with pytest.raises(OCIError):
        Uploads(tmp_path, tmp_path).dir("0" * 32 + newline)


@given(st.text(alphabet="0123456789²٣_ +-\n", max_size=25))
def test_decimal_numbers_are_ascii_digits_within_int64(text: str) -> None:
    value = parse_decimal(text)
    if re.fullmatch(r"[0-9]{1,19}", text, re.ASCII) and int(text) <= MAX_VALUE:
        assert value == int(text)
    else:
        assert value is None


@pytest.mark.parametrize(
    "text",
    ["", "²", "1²", "\u0661\u0662", " 1", "1 ", "1_0", "+1", "-1", "1\n", "9" * 20, "9" * 5000],
)
def test_not_decimal_numbers(text: str) -> None:
    assert parse_decimal(text) is None


def test_decimal_limits() -> None:
    assert parse_decimal("0") == 0
    assert parse_decimal("0" * 19) == 0
    assert parse_decimal(str(MAX_VALUE)) == MAX_VALUE
    assert parse_decimal(str(MAX_VALUE + 1)) is None


def test_referrers_tag_schema_examples_from_the_spec() -> None:
    assert referrers_tag(Digest("sha256", "a" * 64)) == Tag("sha256-" + "a" * 64)
    assert referrers_tag(Digest("sha512", "a" * 128)) == Tag("sha512-" + "a" * 64)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_range_resolution_stays_within_the_blob(first: int, last: int, size: int) -> None:
    header = f"bytes={first}-{last}"
    byte_range = parse_range(header)
    if last < first:
        assert byte_range is None
        return
    assert byte_range is not None
    try:
        start, end = byte_range.resolve(size)
    except RangeNotSatisfiable:
        assert first >= size
        return
    assert start == first
    assert end == min(last, size - 1)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_suffix_range(suffix: int, size: int) -> None:
    byte_range = parse_range(f"bytes=-{suffix}")
    assert byte_range == ByteRange(None, suffix)
    try:
        start, end = byte_range.resolve(size)
    except RangeNotSatisfiable:
        assert suffix == 0 or size == 0
        return
    assert end == size - 1
    assert end - start + 1 == min(suffix, size)


@given(st.text(max_size=40))
def test_range_parser_never_crashes(header: str) -> None:
    with contextlib.suppress(OCIError):
        parse_range(header)


@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_content_range(start: int, end: int) -> None:
    if end < start:
        with pytest.raises(RangeInvalid):
            parse_content_range(f"{start}-{end}")
    else:
        assert parse_content_range(f"{start}-{end}") == (start, end)


HUGE = "9" * 5000


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}"])
def test_range_numbers_beyond_int64_are_unsatisfiable(header: str) -> None:
    """Go's net/http (distribution) and nginx answer 416 for a range they cannot represent."""
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header)
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes=0-{MAX_VALUE + 1}")


@pytest.mark.parametrize("header", ["bytes=²-", "bytes=0-\u0661", "bytes=0-9\n"])
def test_range_with_non_ascii_digits_is_ignored(header: str) -> None:
    assert parse_range(header) is None


@pytest.mark.parametrize("header", [f"0-{HUGE}", f"{HUGE}-{HUGE}", f"0-{MAX_VALUE + 1}"])
def test_content_range_beyond_int64_is_out_of_order(header: str) -> None:
    with pytest.raises(RangeInvalid):
        parse_content_range(header)


@pytest.mark.parametrize("header", ["0-²", "\u0661-\u0662", "0-9\n/10", "0 -9"])
def test_content_range_with_non_ascii_digits_is_malformed(header: str) -> None:
    with pytest.raises(BlobUploadInvalid):
        parse_content_range(header)


digit_runs = st.integers(0, 6000).map(lambda length: "7" * length)


@given(digit_runs, digit_runs)
def test_range_numbers_of_any_length_are_client_errors(first: str, last: str) -> None:
    with contextlib.suppress(OCIError):
        parse_range(f"bytes={first}-{last}")
    with contextlib.suppress(OCIError):
        parse_content_range(f"{first}-{last}")


@given(st.text(max_size=30))
def test_content_range_garbage_is_a_client_error(header: str) -> None:
    with contextlib.suppress(BlobUploadInvalid, RangeInvalid):
        parse_content_range(header)


def _descriptor(data: bytes, media_type: str) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "config",
                "layers",
                "subject",
                "manifests",
                "schemaVersion",
                "mediaType",
                "annotations",
                "artifactType",
            ]
        ),
        json_values,
    )
)
def test_manifest_parser_only_raises_manifest_invalid(doc: dict[str, object]) -> None:
    data = json.dumps(doc).encode()
    with contextlib.suppress(ManifestInvalid):
        parse_manifest(data, None, Digest.of(data))


def test_image_manifest_references_and_artifact_type_fallback() -> None:
    config = _descriptor(b"{}", "application/vnd.example.config")
    layer = _descriptor(b"layer", "application/vnd.oci.image.layer.v1.tar")
    subject = _descriptor(b"s", "application/vnd.oci.image.manifest.v1+json")
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
        "subject": subject,
        "annotations": {"a": "b"},
    }
    data = json.dumps(doc).encode()
    manifest = parse_manifest(data, "application/vnd.oci.image.manifest.v1+json", Digest.of(data))
    assert [str(d.digest) for d in manifest.blobs] == [config["digest"], layer["digest"]]
    assert manifest.artifact_type == "application/vnd.example.config"
    assert manifest.subject is not None and str(manifest.subject.digest) == subject["digest"]
    referrer = manifest.as_referrer().to_json()
    assert referrer["annotations"] == {"a": "b"}
    assert referrer["size"] == len(data)


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        ({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}, None),
        ({"schemaVersion": 1, "name": "x"}, None),
        ({"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "x", "size": 1}}, None),
        (
            {
                "schemaVersion": 2,
                "config": {"mediaType": "a/b", "size": -1, "digest": str(Digest.of(b""))},
            },
            None,
        ),
        (
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": _descriptor(b"{}", "a/b"),
                "layers": [],
            },
            "application/vnd.oci.image.index.v1+json",
        ),
    ],
)
def test_invalid_manifests(doc: dict[str, object], content_type: str | None) -> None:
    data = json.dumps(doc).encode()
    with pytest.raises(ManifestInvalid):
        parse_manifest(data, content_type, Digest.of(data))


@pytest.mark.parametrize("size", [str(MAX_VALUE + 1), "9" * 5000, "1" + "0" * 4300])
def test_descriptor_size_beyond_int64_is_invalid(size: str) -> None:
    """image-spec descriptor.md: `size` is an int64 (and json.loads refuses 4,301+ digits)."""
    digest = Digest.of(b"{}")
    data = (
        b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "%s", "size": %s},'
        b' "layers": []}' % (str(digest).encode(), size.encode())
    )
    with pytest.raises(ManifestInvalid):
        parse_manifest(data, None, Digest.of(data))
    largest = data.replace(size.encode(), str(MAX_VALUE).encode())
    assert parse_manifest(largest, None, Digest.of(largest)).blobs[0].size == MAX_VALUE


def test_data_field_must_match_descriptor() -> None:
    good = {**_descriptor(b"{}", "a/b"), "data": "e30="}
    bad = {**_descriptor(b"{}", "a/b"), "data": "W10="}
    for config, ok in ((good, True), (bad, False)):
        data = json.dumps({"schemaVersion": 2, "config": config, "layers": []}).encode()
        if ok:
            parse_manifest(data, None, Digest.of(data))
        else:
            with pytest.raises(ManifestInvalid):
                parse_manifest(data, None, Digest.of(data))


def test_a_reference_is_told_apart_once_by_its_colon() -> None:
    digest = str(Digest.of(b"x"))
    assert parse_reference(digest) == Digest.parse(digest)
    assert parse_reference("v1.0_rc-2") == Tag("v1.0_rc-2")
    assert str(Tag("v1")) == "v1" and Tag("v1") != "v1"  # a tag is no string
    with pytest.raises(DigestInvalid):
        parse_reference("sha256:short")
    with pytest.raises(TagInvalid):
        parse_reference("-starts-with-a-dash")
