"""Harness for the OCI distribution-spec conformance suite.

By default the suite starts ocigate in-process (a real uvicorn server on 127.0.0.1 in a
background thread, with a temporary data dir). With ``--registry-url URL`` it runs against
that live registry instead, and tests marked ``inprocess_only`` (they need a registry
configured by the suite) are skipped. Tests marked ``sha512`` can be deselected with
``-m "not sha512"`` for registries that cannot store sha512 content.

Run: ``pytest tests/spec`` (in-process ocigate) or
``pytest tests/spec --registry-url http://127.0.0.1:5055`` (live registry). The option is
registered by this conftest, so pass a path inside tests/spec when using it.

Known failures of distribution 2.8.2 (Debian ``docker-registry`` 2.8.2+ds1, filesystem
storage, deletes enabled): 125 failed, 145 passed, 5 skipped (inprocess_only). All expected:

- No referrers API (``/referrers/`` is a plain-text 404), so no ``OCI-Subject`` either:
  all of test_referrers.py except the inprocess_only paging test (17),
  test_manifests.py::test_manifest_with_subject (4).
- No ``tag`` query parameters / ``OCI-Tag``: test_manifests.py::test_tag_query_parameters.
- Tags list ignores ``n`` and ``last``, is not sorted (storage order), and answers 404
  NAME_UNKNOWN for a repository whose manifests are untagged: test_tags.py (15 of 16).
- No tag deletion (DELETE by tag -> 400 DIGEST_INVALID, which the spec allows for registries
  with tag deletion disabled): test_content_management.py::test_delete_tag,
  ::test_delete_unknown_manifest_is_404[tag].
- No single-POST upload (POST ?digest= -> 202): test_blob_upload.py::test_single_post,
  ::test_single_post_mismatch (3), test_sha512.py::test_sha512_blob_push_and_pull[single-post].
- Accepts out-of-order, repeated and overlapping chunks (202), ignores Content-Range on the
  closing PUT (digest mismatch 400 instead of 416), accepts malformed Content-Range and chunks
  whose length disagrees with it: test_blob_upload.py::test_out_of_order_chunk_is_416 (4),
  ::test_final_chunk_out_of_order_is_416, ::test_malformed_content_range (6),
  ::test_chunk_length_mismatch.
- A 416 blob range response announces ``Content-Length: 100`` but sends a short plain-text
  body (HTTP protocol error in the client): test_blob_pull.py::test_unsatisfiable_range_is_416,
  test_client_errors.py [range-not-a-number, range-reversed, range-unit, range-overflow].
- Invalid names, tags and digests miss the router and get a plain-text "404 page not found":
  test_manifests.py::test_invalid_repository_name (15), ::test_invalid_tag_rejected (5),
  test_blob_pull.py::test_malformed_digest_is_400[no-colon].
- A read by an invalid reference: a tag outside the grammar gets the router's plain-text 404, a
  malformed digest 500: test_manifests.py::test_read_by_invalid_reference_is_404 (9 of 12).
- Ignores ``n`` and a malformed ``last``, answers references with a trailing newline with a
  plain-text 404, every malformed or overflowing Range with a broken 416 (as above), and any
  Content-Range, even beyond int64 or not digits, with 202: test_strict_parsing.py (22 of 24).
- An upload id it never issued -> 404 with BLOB_UPLOAD_INVALID instead of BLOB_UPLOAD_UNKNOWN:
  test_blob_upload.py::test_unknown_upload_session (4).
- sha512: the Docker-Content-Digest of an upload is re-computed as sha256, a mount of a sha512
  blob fails, a manifest PUT by sha512 digest is 400 DIGEST_INVALID: test_sha512.py (5 of 8,
  counting single-post above).
- 500 on client mistakes: manifest body ``null``, descriptor digest ``sha256:xyz``, GET
  manifest ``sha256:abc``, a 601-char name (test_client_errors.py [manifest-null,
  manifest-descriptor-bad-digest, manifest-get-bad-digest, name-too-long]), and GET of a blob's
  digest on the manifests endpoint (test_manifests.py::test_blob_digest_is_not_a_manifest).
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import helpers
from .helpers import MANIFEST_ACCEPT

ClientFactory = Callable[..., httpx.Client]
_BACKEND = "embedded"  # set from --backend at configure time


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--registry-url",
        default=None,
        help="run the OCI conformance tests against this live registry instead of ocigate",
    )
    parser.addoption(
        "--credentials",
        default=None,
        help="USER:PASSWORD sent with every request (HTTP Basic)",
    )
    parser.addoption(
        "--backend",
        default="embedded",
        choices=["embedded", "memory"],
        help="the store behind the in-process ocigate (default: embedded)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _BACKEND
    _BACKEND = config.getoption("--backend", default="embedded")
    credentials = config.getoption("--credentials", default=None)
    if credentials:
        user, _, password = credentials.partition(":")
        helpers.CREDENTIALS = (user, password)
    config.addinivalue_line(
        "markers", "sha512: uses sha512 digests (deselect for registries without sha512)"
    )


def _registry_url(config: pytest.Config) -> str | None:
    value: str | None = config.getoption("--registry-url", default=None)
    return value.rstrip("/") if value else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _registry_url(config) is None:
        return
    skip = pytest.mark.skip(reason="needs an ocigate configured by the suite (--registry-url)")
    for item in items:
        if "inprocess_only" in item.keywords:
            item.add_marker(skip)


# --- in-process ocigate -----------------------------------------------------------------


@contextmanager
def serve_ocigate(data_dir: Path, **overrides: Any) -> Iterator[str]:
    """Run ocigate on a free 127.0.0.1 port in a thread; yield its base URL."""
    from ocigate.assemble import create_app
    from ocigate.config import Settings
    from ocigate.store_config import EmbeddedStoreConfig

    settings = Settings(data_dir=data_dir, **overrides)
    if _BACKEND == "memory":
        from ocigate.api.app import App
        from ocigate.assemble import api_options
        from ocigate.store.memory import MemoryStore

        config = settings.store
        assert isinstance(config, EmbeddedStoreConfig)
        store = MemoryStore(sparse_index=config.sparse_index, auto_mount=config.auto_mount)
        app: Any = App(store, api_options(settings))
    else:
        app = create_app(settings)
    with serve_app(app) as url:
        yield url


@contextmanager
def serve_app(app: Any, name: str = "ocigate") -> Iterator[str]:
    """Run an ASGI app under uvicorn on a free 127.0.0.1 port in a thread; yield its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-{port}", daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive(), f"{name} exited during startup"
            assert time.monotonic() < deadline, f"{name} did not start within 15 s"
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _check_warnings(resp: httpx.Response) -> None:
    """Spec, Warnings: `Warning` headers MUST use warn-code 299 and warn-agent `-`, MUST NOT
    carry a warn-date, and all of them together MUST NOT exceed 4096 bytes."""
    warnings = resp.headers.get_list("Warning")
    assert sum(len(w.encode()) for w in warnings) <= 4096, "more than 4096 bytes of warnings"
    for warning in warnings:
        assert re.fullmatch(r'299 - "(?:[^"\\]|\\.)*"', warning.strip()), (
            f"bad Warning header {warning!r}"
        )


def make_client(base_url: str) -> httpx.Client:
    auth = httpx.BasicAuth(*helpers.CREDENTIALS) if helpers.CREDENTIALS else None
    return httpx.Client(
        auth=auth,
        base_url=base_url,
        timeout=30,
        follow_redirects=False,
        headers={"Accept": MANIFEST_ACCEPT},
        event_hooks={"response": [_check_warnings]},
    )


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of the registry under test."""
    url = _registry_url(request.config)
    if url is not None:
        yield url
        return
    with serve_ocigate(tmp_path_factory.mktemp("ocigate-data")) as url:
        yield url


@pytest.fixture(scope="session")
def client(registry: str) -> Iterator[httpx.Client]:
    """A plain sync HTTP client rooted at the registry."""
    with make_client(registry) as c:
        yield c


@pytest.fixture
def ocigate_factory(tmp_path: Path) -> Iterator[ClientFactory]:
    """Start extra ocigate servers with non-default Settings; returns ``(**settings) -> client``.

    Only for tests marked ``inprocess_only``.
    """
    with ExitStack() as stack:
        counter = iter(range(1_000_000))

        def start(**overrides: Any) -> httpx.Client:
            data_dir = tmp_path / f"data-{next(counter)}"
            data_dir.mkdir()
            url = stack.enter_context(serve_ocigate(data_dir, **overrides))
            return stack.enter_context(make_client(url))

        yield start


def _repo_name(node_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", node_name.lower()).strip("-")[:60].strip("-")
    return f"spec/{slug or 'test'}-{secrets.token_hex(4)}"


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A fresh repository name for this test, e.g. ``spec/test-foo-1a2b3c4d``."""
    return _repo_name(request.node.name)


@pytest.fixture
def new_repo(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Make further fresh repository names (for tests that need several)."""
    return lambda: _repo_name(request.node.name)
