"""Whichever replica gets each request, the registry is one: an upload continued on other
replicas, a tag moved on one seen by the very next request on any other, pushes on one while
another serves pulls."""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from e2e.support import (
    closing_client,
    get_manifest,
    location,
    make_image,
    push_image,
    sha256_digest,
    with_query,
)

from .conftest import Cluster


def test_a_chunked_upload_continues_on_every_replica(cluster: Cluster, repo: str) -> None:
    urls = [server.url for server in cluster.replicas]
    # 7 MiB in three chunks of different sizes: the middle one crosses S3's 5 MiB part minimum.
    data = os.urandom(7 * 1024 * 1024 + 123)
    cuts = [0, 300_000, 6_000_000, len(data)]
    with closing_client() as client:
        response = client.post(f"{urls[0]}/v2/{repo}/blobs/uploads/")
        assert response.status_code == 202, response.text
        path = urlsplit(location(urls[0], response))
        upload = path.path + (f"?{path.query}" if path.query else "")
        for i, (start, end) in enumerate(itertools.pairwise(cuts)):
            target = urls[i % 3] + upload  # chunk i to replica i
            response = client.patch(
                target,
                content=data[start:end],
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{end - 1}",
                },
            )
            assert response.status_code == 202, (i, response.status_code, response.text)
            assert response.headers["range"] == f"0-{end - 1}"
            moved = urlsplit(location(urls[i % 3], response))
            upload = moved.path + (f"?{moved.query}" if moved.query else "")
        status = client.get(urls[1] + upload)
        assert status.status_code == 204 and status.headers["range"] == f"0-{len(data) - 1}"
        digest = sha256_digest(data)
        response = client.put(with_query(urls[2] + upload, digest=digest))
        assert response.status_code == 201, response.text
        for url in urls:
            pulled = client.get(f"{url}/v2/{repo}/blobs/{digest}")
            assert pulled.status_code == 200 and pulled.content == data
            ranged = client.get(
                f"{url}/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=299990-6000009"}
            )
            assert ranged.status_code == 206 and ranged.content == data[299_990:6_000_010]


def test_a_moved_tag_is_seen_by_the_next_request_on_any_replica(
    cluster: Cluster, repo: str
) -> None:
    urls = [server.url for server in cluster.replicas]
    images = [make_image(f"move-{i}", layer_sizes=(1000 + i,)) for i in range(12)]
    with httpx.Client(timeout=30) as client:
        for image in images:  # the content first, so that each round is just the tag move
            push_image(client, urls[0], repo, image, f"v-{image.manifest.digest[7:19]}")
        # Warm every replica's view of the tag, then move it around: a cached answer would
        # show an older digest.
        for i, image in enumerate(images):
            writer, reader = urls[i % 3], urls[(i + 1) % 3]
            response = client.put(
                f"{writer}/v2/{repo}/manifests/moving",
                content=image.manifest.data,
                headers={"Content-Type": image.manifest.media_type},
            )
            assert response.status_code == 201, response.text
            for url in (reader, urls[(i + 2) % 3], writer):
                seen = get_manifest(client, url, repo, "moving")
                assert seen.status_code == 200
                assert seen.headers["docker-content-digest"] == image.manifest.digest, (i, url)


def test_pushes_on_one_replica_while_others_serve_pulls(cluster: Cluster, repo: str) -> None:
    urls = [server.url for server in cluster.replicas]
    base = make_image("base", layer_sizes=(200_000, 50_000))
    with httpx.Client(timeout=30) as client:
        push_image(client, urls[0], repo, base, "base")

    def push(i: int) -> str:
        image = make_image(f"pushed-{i}", layer_sizes=(100_000 + i,))
        with httpx.Client(timeout=30) as client:
            return push_image(client, urls[0], repo, image, f"p{i}")

    def pull(i: int) -> int:
        pulls = 0
        deadline = time.monotonic() + 3
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                served = get_manifest(client, urls[1 + i % 2], repo, "base")
                assert served.status_code == 200 and served.content == base.manifest.data
                pulls += 1
        return pulls

    with ThreadPoolExecutor(8) as pool:
        pushed = [pool.submit(push, i) for i in range(8)]
        pulled = [pool.submit(pull, i) for i in range(4)]
        digests = [future.result() for future in pushed]
        assert all(future.result() > 0 for future in pulled)
    with httpx.Client(timeout=30) as client:
        for i, digest in enumerate(digests):
            for url in urls:
                seen = get_manifest(client, url, repo, f"p{i}")
                assert seen.headers["docker-content-digest"] == digest
