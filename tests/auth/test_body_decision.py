"""Access is decided from the request line and headers, before any body is read: a refused
push gets its 401/403 without ``100 Continue`` and without sending the body it announced."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from e2e.support import ServerProcess

from .conftest import USERS, serve_process
from .raw import connect, read_head, status_of

_FOUR_MIB = 4 * 1024 * 1024
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = serve_process(tmp_path_factory.mktemp("body-decision"), "basic", workers=1)
    yield process
    process.stop()


def _push_head(server: ServerProcess, target: str, user: str | None, *, expect: bool) -> str:
    login = ""
    if user is not None:
        token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
        login = f"Authorization: Basic {token}\r\n"
    return (
        f"{target} HTTP/1.1\r\nHost: {server.host}\r\n{login}"
        f"Content-Type: {_MANIFEST}\r\nContent-Length: {_FOUR_MIB}\r\n"
        + ("Expect: 100-continue\r\n" if expect else "")
        + "\r\n"
    )


def _first_answer(server: ServerProcess, head: str) -> int:
    """The status of the first response to a head whose body is never sent."""
    with connect(server.url) as sock:
        sock.settimeout(5)  # an answer waiting for the body would never come
        sock.sendall(head.encode())
        return status_of(read_head(sock))


@pytest.mark.parametrize(
    "target",
    [
        "PUT /v2/team-a/app/manifests/v1",
        "POST /v2/team-a/app/blobs/uploads/?digest=sha256:" + "0" * 64,
        "PATCH /v2/team-a/app/blobs/uploads/some-session",
        "PUT /v2/team-a/app/blobs/uploads/some-session?digest=sha256:" + "0" * 64,
    ],
)
@pytest.mark.parametrize("expect", [True, False])
def test_refused_before_the_body(server: ServerProcess, target: str, expect: bool) -> None:
    assert _first_answer(server, _push_head(server, target, None, expect=expect)) == 401
    assert _first_answer(server, _push_head(server, target, "bob", expect=expect)) == 403


def test_an_allowed_push_still_gets_100_continue(server: ServerProcess) -> None:
    head = _push_head(server, "PUT /v2/team-a/app/manifests/v1", "alice", expect=True)
    assert _first_answer(server, head) == 100
