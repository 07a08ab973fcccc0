"""Several worker processes sharing one data directory, each with its own EmbeddedStore."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import anyio
import pytest

from ocigate.oci.digest import Digest
from ocigate.registry import UploadChunk
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.embedded.fsck import fsck

from ...embedded_helpers import body, push_image

WORKERS = 4
CHUNKS = 5
CHUNK = 200_000


async def _work(data_dir: Path, upload_id: str, n: int) -> None:
    store = EmbeddedStore(data_dir)
    for _ in range(CHUNKS):
        chunk = bytes([ord("A") + n]) * CHUNK
        await store.write_upload("shared", upload_id, UploadChunk(body(chunk)))
    await push_image(store, "shared", b"{}", [f"layer-{n}".encode()], tags=[f"w{n}", "latest"])
    await store.close()


def _worker(data_dir: str, upload_id: str, n: int) -> None:
    anyio.run(_work, Path(data_dir), upload_id, n)


@pytest.mark.anyio
async def test_worker_processes_share_a_data_dir(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    upload = await store.start_upload("shared")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(str(tmp_path), upload.id, n)) for n in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = (tmp_path / "uploads" / upload.id / "data").read_bytes()
    assert len(data) == WORKERS * CHUNKS * CHUNK
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    assert all(len(set(c)) == 1 for c in chunks)  # appends never interleaved
    size = await store.commit_upload("shared", upload.id, Digest.of(data), None)
    assert size == len(data)
    tags = (await store.list_tags("shared", None, None)).items
    assert tags == ["latest", *(f"w{n}" for n in range(WORKERS))]
    await store.close()
    assert fsck(tmp_path) == []
