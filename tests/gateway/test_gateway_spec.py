"""The whole spec suite through ``ocigate serve --workers 2`` as a gateway, in front of
distribution 2.8.2 (plain and with htpasswd Basic auth) and in front of an embedded ocigate.

distribution cannot store sha512 content, so those tests are deselected for it; everything
else it lacks (referrers, tag paging, 416s, tag deletion, spec error codes) the gateway supplies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.support import ServerProcess, distribution_server, ocigate_server

from .support import distribution_with_htpasswd, gateway_process, run_spec_suite

USER, PASSWORD = "gateway", "s3cret-pass"


def _upstream(kind: str, root: Path) -> tuple[ServerProcess, dict[str, object]]:
    if kind == "distribution":
        server = distribution_server(root / "dist", root / "dist.log")
        return server, {}
    if kind == "distribution-prefixed":
        # The suite's repositories are all spec/...: route them by prefix to repositories
        # without it (a second route to the same registry makes the catalog a merged one).
        server = distribution_server(root / "dist", root / "dist.log")
        return server, {"prefix": "spec"}
    if kind == "distribution-basic":
        server = distribution_with_htpasswd(root / "dist", root / "dist.log", USER, PASSWORD)
        return server, {"username": USER, "password": PASSWORD}
    return ocigate_server(root / "upstream", root / "upstream.log", workers=1), {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "distribution",
        "distribution-basic",
        "distribution-prefixed",
        "ocigate",
    ],
)
def test_spec_suite_through_the_gateway(kind: str, tmp_path: Path) -> None:
    upstream, credentials = _upstream(kind, tmp_path)
    upstream.start()
    upstreams: list[dict[str, object]] = [{"url": upstream.url, **credentials}]
    if "prefix" in credentials:
        upstreams.append({"url": upstream.url, "prefix": "elsewhere"})
    gateway = gateway_process(upstreams, tmp_path / "gw", tmp_path / "gw.log")
    try:
        gateway.start()
        marks = ("not sha512",) if kind.startswith("distribution") else ()
        result = run_spec_suite(gateway.url, *marks)
    finally:
        gateway.stop()
        upstream.stop()
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
