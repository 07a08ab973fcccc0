"""Crash consistency: SIGKILL the whole server while 20 clients push, restart, check everything.

What a registry may lose in a crash is work it never acknowledged.  What it must never do is
serve bytes that do not match their digest, serve a manifest or tag whose blobs are missing, or
lose something it acknowledged (SIGKILL keeps the page cache, so acknowledged writes survive).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory
from .support import (
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    Blob,
    ServerProcess,
    image_manifest,
    json_bytes,
    location,
    push_blob_chunked,
    push_blob_monolithic,
    push_blob_post_digest,
    put_manifest,
    run_fsck,
    sha256_digest,
    with_query,
)

PUSHERS = 20
ROUNDS = 2
KILL_AFTER_MAX = 5.0  # seconds
REDO = 3  # interrupted pushers whose push is redone after recovery
MIB = 1024 * 1024
SHARED_LAYER = Blob(OCI_LAYER_GZIP, random.Random("shared").randbytes(MIB))


@dataclass
class PushRound:
    """One image a pusher tries to push: blobs in order, then the manifest and two tags."""

    chunked: Blob
    monolithic: Blob
    config: Blob
    manifest: Blob
    tag: str

    @property
    def blobs(self) -> list[Blob]:
        return [SHARED_LAYER, self.chunked, self.monolithic, self.config]


@dataclass
class Pusher:
    index: int
    repo: str
    rounds: list[PushRound]
    acked_blobs: set[str] = field(default_factory=set)
    acked_manifests: set[str] = field(default_factory=set)
    acked_tags: dict[str, str] = field(default_factory=dict)
    attempted_tags: dict[str, set[str]] = field(default_factory=dict)
    finished: bool = False
    error: str | None = None


def make_round(pusher: int, number: int) -> PushRound:
    rng = random.Random(f"crash/{pusher}/{number}")
    chunked = Blob(OCI_LAYER_GZIP, rng.randbytes(rng.randint(2 * MIB, 3 * MIB)))
    monolithic = Blob(OCI_LAYER_GZIP, rng.randbytes(rng.randint(1 * MIB, 2 * MIB)))
    config = Blob(
        OCI_CONFIG,
        json_bytes({"architecture": "amd64", "os": "linux", "pusher": pusher, "round": number}),
    )
    manifest = image_manifest(config, [SHARED_LAYER, chunked, monolithic])
    return PushRound(chunked, monolithic, config, manifest, f"v{number}")


def run_pusher(pusher: Pusher, base: str, start: threading.Barrier, progress: list[str]) -> None:
    try:
        with httpx.Client(timeout=15.0) as client:
            start.wait(timeout=30)
            for push in pusher.rounds:
                digest = push_blob_post_digest(client, base, pusher.repo, SHARED_LAYER.data)
                pusher.acked_blobs.add(digest)
                digest = push_blob_chunked(client, base, pusher.repo, push.chunked.data, MIB)
                pusher.acked_blobs.add(digest)
                progress.append("blob")
                digest = push_blob_monolithic(client, base, pusher.repo, push.monolithic.data)
                pusher.acked_blobs.add(digest)
                progress.append("blob")
                digest = push_blob_monolithic(client, base, pusher.repo, push.config.data)
                pusher.acked_blobs.add(digest)
                for tag in (push.tag, "latest"):
                    pusher.attempted_tags.setdefault(tag, set()).add(push.manifest.digest)
                    put_manifest(client, base, pusher.repo, tag, push.manifest)
                    pusher.acked_manifests.add(push.manifest.digest)
                    pusher.acked_tags[tag] = push.manifest.digest
                    progress.append("manifest")
        pusher.finished = True
    except (httpx.HTTPError, AssertionError, threading.BrokenBarrierError) as exc:
        pusher.error = repr(exc)


@dataclass
class StalledPatch:
    """An upload session with one acknowledged chunk that is open when the server dies."""

    repo: str
    data: bytes
    upload: str = ""
    acked: int = 0
    ready: threading.Event = field(default_factory=threading.Event)


def run_stalled_patch(state: StalledPatch, base: str, killed: threading.Event) -> None:
    with httpx.Client(timeout=15.0) as client:
        response = client.post(f"{base}/v2/{state.repo}/blobs/uploads/")
        assert response.status_code == 202
        upload = location(base, response)
        half = len(state.data) // 2
        response = client.patch(
            upload,
            content=state.data[:half],
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"},
        )
        assert response.status_code == 202
        state.upload = location(base, response)
        state.acked = half
    state.ready.set()
    killed.wait(timeout=30)


def run_stalled_put(
    repo: str, data: bytes, base: str, killed: threading.Event, sending: threading.Event
) -> None:
    """A monolithic PUT whose body is half sent when the server dies."""

    def body() -> Iterator[bytes]:
        half = len(data) // 2
        yield data[:half]
        sending.set()
        killed.wait(timeout=30)
        yield data[half:]

    try:
        with httpx.Client(timeout=15.0) as client:
            response = client.post(f"{base}/v2/{repo}/blobs/uploads/")
            upload = location(base, response)
            client.put(
                with_query(upload, digest=sha256_digest(data)),
                content=body(),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                },
            )
    except httpx.HTTPError:
        pass


def check_blob(client: httpx.Client, base: str, repo: str, digest: str, expected: bytes) -> bool:
    """True when the blob is served (and then it must be byte-exact), False when it is unknown."""
    response = client.get(f"{base}/v2/{repo}/blobs/{digest}")
    assert response.status_code in (200, 404), (repo, digest, response.status_code, response.text)
    if response.status_code == 404:
        return False
    assert sha256_digest(response.content) == digest, f"{repo}@{digest} serves corrupt bytes"
    assert response.content == expected
    return True


def check_manifest(
    client: httpx.Client, base: str, repo: str, ref: str, known: dict[str, bytes]
) -> str | None:
    """The digest a reference resolves to (checking content and blobs), or None if unknown."""
    response = client.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
    assert response.status_code in (200, 404), (repo, ref, response.status_code, response.text)
    if response.status_code == 404:
        return None
    digest = sha256_digest(response.content)
    assert response.headers.get("docker-content-digest", digest) == digest
    if ref.startswith("sha256:"):
        assert digest == ref, f"{repo}@{ref} serves a manifest with digest {digest}"
    assert digest in known, f"{repo}:{ref} resolves to a manifest nobody pushed: {digest}"
    assert response.content == known[digest]
    manifest = json.loads(response.content)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        served = check_blob(client, base, repo, descriptor["digest"], known[descriptor["digest"]])
        assert served, f"{repo}:{ref} references {descriptor['digest']}, which is not served"
    return digest


def verify_after_crash(
    server: ServerProcess,
    pushers: list[Pusher],
    known: dict[str, bytes],
) -> dict[str, int]:
    base = server.url
    counts = {"blobs_served": 0, "blobs_missing": 0, "manifests": 0, "tags": 0}
    with httpx.Client(timeout=30.0) as client:
        for pusher in pushers:
            attempted = {blob.digest for push in pusher.rounds for blob in push.blobs}
            for digest in sorted(attempted):
                if check_blob(client, base, pusher.repo, digest, known[digest]):
                    counts["blobs_served"] += 1
                else:
                    assert digest not in pusher.acked_blobs, (
                        f"acknowledged blob {pusher.repo}@{digest} lost in the crash"
                    )
                    counts["blobs_missing"] += 1
            for push in pusher.rounds:
                served = check_manifest(client, base, pusher.repo, push.manifest.digest, known)
                if served is None:
                    assert push.manifest.digest not in pusher.acked_manifests, (
                        f"acknowledged manifest {pusher.repo}@{push.manifest.digest} lost"
                    )
                else:
                    counts["manifests"] += 1
            for tag, candidates in pusher.attempted_tags.items():
                resolved = check_manifest(client, base, pusher.repo, tag, known)
                if tag in pusher.acked_tags:
                    assert resolved is not None, f"acknowledged tag {pusher.repo}:{tag} lost"
                if resolved is not None:
                    assert resolved in candidates, f"{pusher.repo}:{tag} -> unexpected {resolved}"
                    counts["tags"] += 1

            response = client.get(f"{base}/v2/{pusher.repo}/tags/list")
            assert response.status_code in (200, 404), response.text
            listed = (response.json().get("tags") or []) if response.status_code == 200 else []
            assert set(pusher.acked_tags) <= set(listed)
            assert set(listed) <= set(pusher.attempted_tags), (pusher.repo, listed)
            for tag in listed:
                assert check_manifest(client, base, pusher.repo, tag, known) is not None, (
                    f"tag {pusher.repo}:{tag} is listed but does not resolve"
                )

        response = client.get(f"{base}/v2/_catalog", params={"n": 1000})
        assert response.status_code == 200, response.text
        catalog = set(response.json()["repositories"])
        assert {p.repo for p in pushers if p.acked_tags} <= catalog
    return counts


def resume_stalled_upload(server: ServerProcess, state: StalledPatch) -> None:
    """The interrupted session may be gone or resumable, but never corrupt."""
    base = server.url
    # the Location may be absolute and name the old server; keep only its path and query
    upload = httpx.URL(state.upload)
    state.upload = f"{base}{upload.raw_path.decode()}"
    with httpx.Client(timeout=30.0) as client:
        response = client.get(state.upload)
        if response.status_code == 404:
            return
        assert response.status_code == 204, response.text
        end = int(response.headers["range"].split("-", 1)[1])
        offset = end + 1
        assert offset <= state.acked, "upload reports bytes that were never acknowledged"
        response = client.patch(
            state.upload,
            content=state.data[offset:],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{len(state.data) - 1}",
            },
        )
        if response.status_code == 404:
            return
        assert response.status_code == 202, response.text
        digest = sha256_digest(state.data)
        response = client.put(with_query(location(base, response), digest=digest))
        assert response.status_code == 201, response.text
        assert check_blob(client, base, state.repo, digest, state.data)


def stop_and_fsck(server: ServerProcess, data_dir: Path, registry_kind: str) -> None:
    server.stop()
    server.wait_port_closed()
    if registry_kind != "ocigate":
        return  # harness validation against distribution: no fsck there
    result = run_fsck(data_dir)
    assert result.returncode == 0, f"fsck failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_sigkill_during_concurrent_pushes(
    server_factory: ServerFactory, registry_kind: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = server_factory(data_dir, workers=2).start()

    pushers = [
        Pusher(i, f"crash/pusher-{i:02d}", [make_round(i, n) for n in range(ROUNDS)])
        for i in range(PUSHERS)
    ]
    known: dict[str, bytes] = {}
    for pusher in pushers:
        for push in pusher.rounds:
            for blob in [*push.blobs, push.manifest]:
                known[blob.digest] = blob.data
    stalled = StalledPatch("crash/stalled", random.Random("stalled").randbytes(3 * MIB))
    stalled_put = random.Random("stalled-put").randbytes(3 * MIB)
    killed = threading.Event()
    put_sending = threading.Event()
    start = threading.Barrier(PUSHERS + 1)
    progress: list[str] = []

    threads = [
        threading.Thread(target=run_pusher, args=(p, server.url, start, progress), daemon=True)
        for p in pushers
    ]
    threads.append(
        threading.Thread(target=run_stalled_patch, args=(stalled, server.url, killed), daemon=True)
    )
    threads.append(
        threading.Thread(
            target=run_stalled_put,
            args=("crash/stalled", stalled_put, server.url, killed, put_sending),
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    start.wait(timeout=30)
    began = time.monotonic()
    # crash mid-flight: once the first manifests landed, while most blobs are still uploading
    while True:
        elapsed = time.monotonic() - began
        stalled_in_flight = stalled.ready.is_set() and put_sending.is_set()
        manifests = progress.count("manifest")
        if (elapsed >= 0.3 and manifests >= 2 and stalled_in_flight) or elapsed >= KILL_AFTER_MAX:
            break
        time.sleep(0.005)
    server.kill()
    killed.set()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive(), "a pusher hung after the crash"
    finished = sum(p.finished for p in pushers)
    assert stalled.acked, "the stalled upload never got its first chunk in"

    # restart on the same data dir (and port) and check everything that is served
    server = server_factory(data_dir, workers=2, port=server.port).start()
    counts = verify_after_crash(server, pushers, known)
    with httpx.Client(timeout=30.0) as client:
        digest = sha256_digest(stalled_put)
        assert not check_blob(client, server.url, "crash/stalled", digest, stalled_put), (
            "a blob whose upload was cut in half is served"
        )
    resume_stalled_upload(server, stalled)
    print(f"crash after {elapsed:.2f}s: {finished}/{PUSHERS} pushers finished, {counts}")
    stop_and_fsck(server, data_dir, registry_kind)

    # sanity: the registry works after recovery; redo a few interrupted pushes in full
    server = server_factory(data_dir, workers=2).start()
    redone = [pusher for pusher in pushers if not pusher.finished][:REDO]
    with httpx.Client(timeout=30.0) as client:
        for pusher in redone:
            for push in pusher.rounds:
                push_blob_chunked(client, server.url, pusher.repo, SHARED_LAYER.data, 300_000)
                push_blob_chunked(client, server.url, pusher.repo, push.chunked.data, MIB)
                push_blob_monolithic(client, server.url, pusher.repo, push.monolithic.data)
                push_blob_monolithic(client, server.url, pusher.repo, push.config.data)
                put_manifest(client, server.url, pusher.repo, push.tag, push.manifest)
                pusher.acked_tags[push.tag] = push.manifest.digest
                pusher.attempted_tags[push.tag] = {push.manifest.digest}
                pusher.acked_manifests.add(push.manifest.digest)
                pusher.acked_blobs.update(blob.digest for blob in push.blobs)
        push_blob_monolithic(client, server.url, "crash/stalled", stalled_put)
        digest = sha256_digest(stalled_put)
        assert check_blob(client, server.url, "crash/stalled", digest, stalled_put)
    verify_after_crash(server, redone, known)
    stop_and_fsck(server, data_dir, registry_kind)
