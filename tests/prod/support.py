"""Running ``ocigate serve`` with production settings (TLS, metrics, limits) for these tests."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from e2e.support import ServerFailed, ServerProcess, free_port, ocigate_argv


@dataclass
class ProdServer(ServerProcess):
    """An ocigate server whose readiness is probed at /healthz, over HTTPS when ``ca`` is set."""

    ca: Path | None = None
    client_cert: tuple[Path, Path] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://localhost:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(verify=self.verify(), timeout=timeout)

    def verify(self) -> ssl.SSLContext | bool:
        if self.ca is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert is not None:
            context.load_cert_chain(*self.client_cert)
        return context

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", verify=self.verify(), timeout=1.0).is_success:
                    return
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.05)
        self.kill()
        raise ServerFailed(f"not ready within {timeout}s ({last})\n{self.log_tail()}")


def prod_server(
    root: Path, config: str = "", workers: int = 2, ca: Path | None = None, *flags: str
) -> ProdServer:
    """A server on a free port with ``config`` (YAML) as its configuration file."""
    port = free_port()
    config_file = root / "ocigate.yaml"
    config_file.write_text(config or "{}\n")
    argv = [
        *ocigate_argv(),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(root / "data"),
        "--workers",
        str(workers),
        "--config",
        str(config_file),
        *flags,
    ]
    return ProdServer("ocigate", argv, port, root / "server.log", ca=ca)
