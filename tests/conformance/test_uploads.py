"""Blob uploads: in one and in several chunks, offsets, resuming, cancelling, wrong digests."""

from __future__ import annotations

import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
)
from ocigate.registry import Registry, UploadChunk, UploadState

from .conftest import Names
from .content import chunks, read

pytestmark = pytest.mark.anyio

DATA = b"conformance blob bytes, " * 40  # 960 bytes: small, but more than one chunk


async def holding(registry: Registry, repo: str, first: bytes) -> UploadState:
    """An upload started in ``repo`` that has received ``first``."""
    state = await registry.start_upload(repo)
    return await registry.write_upload(repo, state.id, UploadChunk(chunks(first), 0, len(first)))


async def test_upload_in_one_chunk(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    upload = await registry.start_upload(repo)
    assert upload.offset == 0
    size = await registry.commit_upload(
        repo, upload.id, digest, UploadChunk(chunks(DATA), None, len(DATA))
    )
    assert size == len(DATA)
    assert await registry.stat_blob(repo, digest) == len(DATA)
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_upload_in_several_chunks(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await registry.start_upload(repo)
    for start in (0, 300, 600):
        piece = DATA[start : start + 300]
        # An upload id may change with each answer (a gateway signs the offset into it).
        state = await registry.write_upload(
            repo, state.id, UploadChunk(chunks(piece), start, len(piece))
        )
        assert state.offset == start + len(piece)
    last = DATA[900:]
    size = await registry.commit_upload(
        repo, state.id, digest, UploadChunk(chunks(last), 900, len(last))
    )
    assert size == len(DATA)
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_commit_without_a_last_chunk(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await holding(registry, repo, DATA)
    assert await registry.commit_upload(repo, state.id, digest, None) == len(DATA)
    assert await registry.stat_blob(repo, digest) == len(DATA)


async def test_out_of_order_chunk_is_refused_and_changes_nothing(
    registry: Registry, names: Names
) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await holding(registry, repo, DATA[:100])
    for wrong in (0, 50, 200):
        with pytest.raises(RangeInvalid):
            await registry.write_upload(repo, state.id, UploadChunk(chunks(DATA[wrong:]), wrong))
    assert (await registry.upload_status(repo, state.id)).offset == 100
    rest = DATA[100:]
    assert await registry.commit_upload(
        repo, state.id, digest, UploadChunk(chunks(rest), 100, len(rest))
    ) == len(DATA)
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_status_resumes_an_upload(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    started = await registry.start_upload(repo)
    assert (await registry.upload_status(repo, started.id)).offset == 0
    written = await registry.write_upload(repo, started.id, UploadChunk(chunks(DATA[:400]), 0, 400))
    # A client that lost the answer asks where the upload is and goes on from there.
    status = await registry.upload_status(repo, written.id)
    assert status.offset == 400
    rest = DATA[400:]
    await registry.commit_upload(
        repo, status.id, digest, UploadChunk(chunks(rest), status.offset, len(rest))
    )
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_cancel_upload(registry: Registry, names: Names) -> None:
    repo = names.repo()
    state = await holding(registry, repo, DATA[:10])
    await registry.cancel_upload(repo, state.id)
    with pytest.raises(BlobUploadUnknown):
        await registry.upload_status(repo, state.id)
    with pytest.raises(BlobUploadUnknown):
        await registry.cancel_upload(repo, state.id)
    with pytest.raises(BlobUploadUnknown):
        await registry.write_upload(repo, state.id, UploadChunk(chunks(DATA[10:20]), 10, 10))
    with pytest.raises(BlobUploadUnknown):
        await registry.commit_upload(repo, state.id, Digest.of(DATA[:10]), None)
    with pytest.raises(BlobUnknown):
        await registry.stat_blob(repo, Digest.of(DATA[:10]))


async def test_commit_with_a_wrong_digest_makes_nothing_visible(
    registry: Registry, names: Names
) -> None:
    repo, wrong = names.repo(), Digest.of(b"other bytes")
    state = await registry.start_upload(repo)
    with pytest.raises(DigestInvalid):
        await registry.commit_upload(
            repo, state.id, wrong, UploadChunk(chunks(DATA), None, len(DATA))
        )
    for digest in (wrong, Digest.of(DATA)):
        with pytest.raises(BlobUnknown):
            await registry.stat_blob(repo, digest)
        with pytest.raises(BlobUnknown):
            await registry.get_blob(repo, digest, None)


async def test_unknown_upload(registry: Registry, names: Names) -> None:
    repo, other = names.repo(), names.repo("other")
    with pytest.raises(BlobUploadUnknown):
        await registry.upload_status(repo, "0" * 32)
    state = await registry.start_upload(other)
    # An upload belongs to its repository.
    with pytest.raises(BlobUploadUnknown):
        await registry.upload_status(repo, state.id)
    with pytest.raises(BlobUploadUnknown):
        await registry.write_upload(repo, state.id, UploadChunk(chunks(DATA), 0, len(DATA)))


async def test_chunk_shorter_or_longer_than_its_length_changes_nothing(
    registry: Registry, names: Names
) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await holding(registry, repo, DATA[:100])
    for declared in (50, 150):
        with pytest.raises(SizeInvalid):
            await registry.write_upload(
                repo, state.id, UploadChunk(chunks(DATA[100:200]), 100, declared)
            )
        assert (await registry.upload_status(repo, state.id)).offset == 100
    rest = DATA[100:]
    await registry.commit_upload(repo, state.id, digest, UploadChunk(chunks(rest), 100, len(rest)))
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_last_chunk_shorter_or_longer_than_its_length_commits_nothing(
    registry: Registry, names: Names
) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await holding(registry, repo, DATA[:100])
    rest = DATA[100:]
    for declared in (0, 10, len(rest) + 1):
        with pytest.raises(SizeInvalid):
            await registry.commit_upload(
                repo, state.id, digest, UploadChunk(chunks(rest), 100, declared)
            )
        with pytest.raises(BlobUnknown):
            await registry.stat_blob(repo, digest)
        assert (await registry.upload_status(repo, state.id)).offset == 100
    await registry.commit_upload(repo, state.id, digest, UploadChunk(chunks(rest), 100, len(rest)))
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_commit_at_a_wrong_offset_is_refused(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await holding(registry, repo, DATA[:100])
    rest = DATA[100:]
    with pytest.raises(RangeInvalid):
        await registry.commit_upload(
            repo, state.id, digest, UploadChunk(chunks(rest), 90, len(rest))
        )
    with pytest.raises(BlobUnknown):
        await registry.stat_blob(repo, digest)
    assert await registry.commit_upload(
        repo, state.id, digest, UploadChunk(chunks(rest), 100, len(rest))
    ) == len(DATA)


async def test_an_upload_is_gone_once_committed(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    state = await registry.start_upload(repo)
    await registry.commit_upload(repo, state.id, digest, UploadChunk(chunks(DATA), None, len(DATA)))
    with pytest.raises(BlobUploadUnknown):
        await registry.upload_status(repo, state.id)
    with pytest.raises(BlobUploadUnknown):
        await registry.commit_upload(
            repo, state.id, digest, UploadChunk(chunks(DATA), None, len(DATA))
        )


async def test_empty_blob(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(b"")
    state = await registry.start_upload(repo)
    assert await registry.commit_upload(repo, state.id, digest, UploadChunk(chunks(), None, 0)) == 0
    assert await registry.stat_blob(repo, digest) == 0
    assert await read(await registry.get_blob(repo, digest, None)) == b""


async def test_the_same_blob_pushed_twice(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    for _ in range(2):
        state = await registry.start_upload(repo)
        await registry.commit_upload(
            repo, state.id, digest, UploadChunk(chunks(DATA), None, len(DATA))
        )
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_concurrent_uploads_to_one_repository(registry: Registry, names: Names) -> None:
    repo = names.repo()
    blobs = [DATA + bytes([n]) for n in range(3)]
    states = [await registry.start_upload(repo) for _ in blobs]
    assert len({state.id for state in states}) == len(blobs)
    # Interleaved: each session keeps its own bytes.
    states = [
        await registry.write_upload(repo, state.id, UploadChunk(chunks(blob[:500]), 0, 500))
        for state, blob in zip(states, blobs, strict=True)
    ]
    for state, blob in zip(states, blobs, strict=True):
        rest = blob[500:]
        await registry.commit_upload(
            repo, state.id, Digest.of(blob), UploadChunk(chunks(rest), 500, len(rest))
        )
    for blob in blobs:
        assert await read(await registry.get_blob(repo, Digest.of(blob), None)) == blob


async def test_chunks_of_many_pieces_and_of_unknown_length(
    registry: Registry, names: Names
) -> None:
    repo, digest = names.repo(), Digest.of(DATA)
    pieces = [DATA[start : start + 7] for start in range(0, 399, 7)]  # 399 bytes in 57 pieces
    state = await registry.start_upload(repo)
    state = await registry.write_upload(repo, state.id, UploadChunk(chunks(*pieces), 0, 399))
    assert state.offset == 399
    # No Content-Length: the chunk is as long as its body.
    state = await registry.write_upload(
        repo, state.id, UploadChunk(chunks(DATA[399:700], b""), 399)
    )
    assert state.offset == 700
    rest = [DATA[700:800], DATA[800:]]
    assert await registry.commit_upload(
        repo, state.id, digest, UploadChunk(chunks(*rest), 700)
    ) == len(DATA)
    assert await read(await registry.get_blob(repo, digest, None)) == DATA


async def test_sha512_blob(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(DATA, "sha512")
    state = await registry.start_upload(repo)
    assert await registry.commit_upload(
        repo, state.id, digest, UploadChunk(chunks(DATA), None, len(DATA))
    ) == len(DATA)
    assert await registry.stat_blob(repo, digest) == len(DATA)
    assert await read(await registry.get_blob(repo, digest, None)) == DATA
    with pytest.raises(BlobUnknown):  # the same bytes, but not pushed under sha256
        await registry.stat_blob(repo, Digest.of(DATA))
