"""fsck of the embedded store's data directory."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
from ocigate.registry import UploadChunk
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.embedded.fsck import check, fsck

from ...embedded_helpers import body, push_blob, push_image

pytestmark = pytest.mark.anyio


async def healthy(tmp_path: Path) -> EmbeddedStore:
    store = EmbeddedStore(tmp_path)
    await push_image(store, "r", b"{}", [os.urandom(3_000_000)], tags=["latest"])
    await push_image(store, "other", b"{}", [b"layer"], tags=["v1"])
    await push_blob(store, "r", b"x" * 10, "sha512")
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(b"partial")))
    return store


def sql(tmp_path: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(tmp_path / "meta.db")
    with conn:
        conn.execute(statement, params)
    conn.close()


async def test_clean_store_has_no_problems(tmp_path: Path) -> None:
    store = await healthy(tmp_path)
    (tmp_path / "tmp" / "blob-leftover").write_bytes(b"left by a crash")
    report = check(tmp_path)
    assert report.problems == []
    assert any("blob-leftover" in line for line in report.info)
    assert any(line.startswith("uploads/") for line in report.info)
    assert fsck(tmp_path) == []
    await store.close()


async def test_detects_a_corrupted_blob_file(tmp_path: Path) -> None:
    store = await healthy(tmp_path)
    path = store.blobs.files.path(Digest.of(b"layer"))
    os.chmod(path, 0o644)
    path.write_bytes(b"LAYER")
    problems = fsck(tmp_path)
    assert any(str(path.relative_to(tmp_path)) in p and "corrupted" in p for p in problems)
    await store.close()


async def test_detects_missing_files_and_dangling_rows(tmp_path: Path) -> None:
    store = await healthy(tmp_path)
    store.blobs.files.path(Digest.of(b"layer")).unlink()
    absent = str(Digest.of(b"absent"))
    sql(
        tmp_path,
        "INSERT INTO tags (repo, tag, digest, pushed) VALUES ('r', 'dangling', ?, 0)",
        absent,
    )
    problems = fsck(tmp_path)
    assert any("tag r:dangling" in p for p in problems)
    assert any("other links missing blob" in p for p in problems)
    assert any("references missing blob" in p for p in problems)
    await store.close()


async def test_detects_tampered_manifest_rows(tmp_path: Path) -> None:
    store = await healthy(tmp_path)
    digest = (await store.get_manifest("other", Tag("v1"))).digest
    sql(tmp_path, "UPDATE manifests SET data = ? WHERE digest = ?", b"{}", str(digest))
    problems = fsck(tmp_path)
    assert problems == [f"manifest other@{digest}: stored bytes do not match"]
    await store.close()


def test_no_store(tmp_path: Path) -> None:
    assert fsck(tmp_path / "nothing") != []
