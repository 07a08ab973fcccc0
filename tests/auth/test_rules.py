"""Policy details: catalog filtering, mounts, existence hiding, immutable tags, artifact types,
the base endpoint, bad credentials and htpasswd reloads."""

from __future__ import annotations

import json
import logging
import secrets
import statistics
import time
from pathlib import Path

import bcrypt
import httpx
import pytest

from spec.helpers import (
    encode,
    image_manifest,
    manifest_url,
    push_artifact,
    push_blob,
    push_image,
    random_blob,
)

from .conftest import USERS, basic_client, start, write_htpasswd


def repo(prefix: str) -> str:
    return f"{prefix}/app-{secrets.token_hex(3)}"


def test_catalog_lists_only_pullable_repositories(basic_registry: str) -> None:
    names = {prefix: repo(prefix) for prefix in ("team-a", "team-b", "public")}
    with basic_client(basic_registry, "root") as root:
        for name in names.values():
            push_image(root, name, "latest")
        everything = set(root.get("/v2/_catalog").json()["repositories"])
    assert set(names.values()) <= everything
    with basic_client(basic_registry, "bob") as bob:
        seen = set(bob.get("/v2/_catalog").json()["repositories"])
    assert names["team-b"] in seen and names["public"] in seen
    assert names["team-a"] not in seen
    with basic_client(basic_registry, None) as anonymous:
        seen = set(anonymous.get("/v2/_catalog").json()["repositories"])
    assert seen and all(name.startswith("public/") for name in seen)
    with basic_client(basic_registry, "bob") as bob:  # paging over the filtered list
        page = bob.get("/v2/_catalog", params={"n": 1})
        assert len(page.json()["repositories"]) == 1 and "link" in page.headers


def test_mount_needs_pull_on_the_source(basic_registry: str) -> None:
    secret, target = repo("team-a"), repo("team-b")
    blob = random_blob(50)
    with basic_client(basic_registry, "alice") as alice:
        push_blob(alice, secret, blob)
    with basic_client(basic_registry, "bob") as bob:
        resp = bob.post(
            f"/v2/{target}/blobs/uploads/", params={"mount": blob.digest, "from": secret}
        )
        assert resp.status_code == 202  # an ordinary upload: nothing revealed, nothing linked
        assert bob.head(f"/v2/{target}/blobs/{blob.digest}").status_code == 404
    public = repo("public")
    with basic_client(basic_registry, "root") as root:
        push_blob(root, public, blob)
    with basic_client(basic_registry, "bob") as bob:
        resp = bob.post(
            f"/v2/{target}/blobs/uploads/", params={"mount": blob.digest, "from": public}
        )
        assert resp.status_code == 201


def test_denied_pull_of_missing_and_existing_repositories_look_alike(basic_registry: str) -> None:
    existing = repo("team-a")
    with basic_client(basic_registry, "alice") as alice:
        push_image(alice, existing, "latest")
    missing = repo("team-a")
    with basic_client(basic_registry, "bob") as bob:
        answers = [
            bob.get(path)
            for name in (existing, missing)
            for path in (manifest_url(name, "latest"), f"/v2/{name}/tags/list")
        ]
    assert {a.status_code for a in answers} == {403}
    bodies = {a.text.replace(existing, "X").replace(missing, "X") for a in answers}
    assert len(bodies) == 1


def test_immutable_tags_cannot_move_or_go(basic_registry: str) -> None:
    name = repo("releases")
    with basic_client(basic_registry, "alice") as alice:
        first = push_image(alice, name, "v1.0")
        push_image(alice, name, "latest")
        second = push_image(alice, name)
        moved = alice.put(
            manifest_url(name, "v1.0"),
            content=second.body,
            headers={"Content-Type": second.media_type},
        )
        assert moved.status_code == 403 and "immutable" in moved.text
        assert alice.delete(manifest_url(name, "v1.0")).status_code == 403
        assert alice.delete(manifest_url(name, first.digest)).status_code == 403
        assert alice.get(manifest_url(name, "v1.0")).content == first.body
        # Re-pushing the same manifest to the tag is no move; other tags are free.
        resp = alice.put(
            manifest_url(name, "v1.0"),
            content=first.body,
            headers={"Content-Type": first.media_type},
        )
        assert resp.status_code == 201
        assert alice.delete(manifest_url(name, "latest")).status_code == 202


def test_artifact_type_condition(basic_registry: str) -> None:
    name = repo("agents")
    with basic_client(basic_registry, "alice") as alice:
        push_artifact(alice, name, "application/record+json")
        config = random_blob(10)
        push_blob(alice, name, config)
        doc = image_manifest(config.descriptor("application/vnd.oci.image.config.v1+json"), [])
        denied = alice.put(
            manifest_url(name, "image"),
            content=encode(doc),
            headers={"Content-Type": doc["mediaType"]},
        )
        assert denied.status_code == 403
        assert "application/vnd.oci.image.config.v1+json" in denied.text


def test_base_endpoint_and_bad_credentials(basic_registry: str) -> None:
    with basic_client(basic_registry, None) as anonymous:
        # Clients decide from /v2/ whether to log in: anonymous callers are challenged there,
        # and may still pull what the policy lets anonymous pull.
        resp = anonymous.get("/v2/")
        assert (
            resp.status_code == 401 and resp.headers["www-authenticate"] == 'Basic realm="ocigate"'
        )
        assert anonymous.get("/v2/public/none/tags/list").status_code == 404
    with httpx.Client(base_url=basic_registry, auth=httpx.BasicAuth("alice", "wrong")) as bad:
        resp = bad.get("/v2/")
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Basic")
        assert bad.get("/v2/public/x/tags/list").status_code == 401
    with basic_client(basic_registry, "alice") as alice:
        assert alice.get("/v2/").status_code == 200


def test_htpasswd_is_reread_when_it_changes(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": USERS["alice"]})
    with (
        start(tmp_path, htpasswd, "basic") as url,
        httpx.Client(base_url=url, auth=httpx.BasicAuth("carol", "carol-pw")) as carol,
    ):
        assert carol.get("/v2/").status_code == 401
        write_htpasswd(htpasswd, {"alice": USERS["alice"], "carol": "carol-pw"})
        assert carol.get("/v2/").status_code == 200


def test_one_audit_line_per_decision(basic_registry: str, caplog: pytest.LogCaptureFixture) -> None:
    name = repo("team-a")
    with caplog.at_level(logging.INFO, logger="ocigate.audit"):
        with basic_client(basic_registry, "bob") as bob:
            assert bob.get(manifest_url(name, "v1")).status_code == 403
        with basic_client(basic_registry, "alice") as alice:
            assert alice.get(manifest_url(name, "v1")).status_code == 404
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ocigate.audit"]
    mine = [line for line in lines if line["repository"] == name]
    assert [(x["identity"], x["action"], x["reference"], x["allowed"]) for x in mine] == [
        ("bob", "pull", "v1", False),
        ("alice", "pull", "v1", True),
    ]
    assert mine[1]["rule"] == "team-a/**#0" and mine[0]["method"] == "basic"


def test_a_denying_rule_speaks_its_message(basic_registry: str) -> None:
    name = repo("team-b")
    with basic_client(basic_registry, "alice") as alice:
        resp = alice.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status_code == 403
    assert resp.json()["errors"][0] == {
        "code": "DENIED",
        "message": "team-b only",
        "detail": {"repository": name, "action": "push"},
    }


def test_empty_basic_credentials_are_anonymous(basic_registry: str) -> None:
    """``Basic Og==`` (an empty user and password, sent by some clients after a logout)."""
    empty = {"Authorization": "Basic Og=="}
    with httpx.Client(base_url=basic_registry, headers=empty) as client:
        assert client.get("/v2/public/none/tags/list").status_code == 404  # anonymous may pull
        assert client.get(manifest_url(repo("team-a"), "v1")).status_code == 401


def test_login_time_does_not_tell_who_exists(tmp_path: Path) -> None:
    """An unknown user costs a bcrypt check like a known user's wrong password."""
    hashed = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=10)).decode()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{hashed}\n")

    def median_ms(client: httpx.Client, user: str) -> float:
        times = []
        for attempt in range(7):
            started = time.perf_counter()
            resp = client.get("/v2/", auth=httpx.BasicAuth(user, f"wrong-{attempt}"))
            times.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 401
        return statistics.median(times)

    with start(tmp_path, htpasswd, "basic") as url, httpx.Client(base_url=url) as client:
        known, unknown = median_ms(client, "alice"), median_ms(client, "mallory")
    assert known / 3 < unknown < known * 3, f"known {known:.1f} ms, unknown {unknown:.1f} ms"
