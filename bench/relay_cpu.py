#!/usr/bin/env python3
"""CPU the gateway spends relaying one blob, per GiB: ``ocigate serve --workers 1 --upstream``
in front of a minimal upstream that sends the blob file with ``sendfile``, pulled with curl into
/dev/null. Compares trees by PYTHONPATH (e.g. before and after digest verification):

    PYTHONPATH=src python bench/relay_cpu.py --size-mib 1024 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from e2e.support import ocigate_server  # noqa: E402


def _upstream(blob: Path, size: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if "/blobs/" not in self.path:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            with blob.open("rb") as f:
                os.sendfile(self.connection.fileno(), f.fileno(), 0, size)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "blob"
        block = os.urandom(1024 * 1024)
        hasher = hashlib.sha256()
        with blob.open("wb") as f:
            for _ in range(args.size_mib):
                f.write(block)
                hasher.update(block)
        digest = "sha256:" + hasher.hexdigest()
        upstream = _upstream(blob, size)
        url = f"http://127.0.0.1:{upstream.server_address[1]}"
        server = ocigate_server(Path(tmp) / "gw", Path(tmp) / "gw.log", workers=1)
        server.argv = [*server.argv, "--upstream", url]
        server.start()
        try:
            target = f"{server.url}/v2/bench/blob/blobs/{digest}"
            for _ in range(args.rounds):
                before, started = _cpu_seconds(server.pid), time.monotonic()
                subprocess.run(["curl", "-sf", "-o", "/dev/null", target], check=True)
                cpu, wall = _cpu_seconds(server.pid) - before, time.monotonic() - started
                gib = size / 2**30
                print(f"gateway CPU {cpu / gib:.2f} s/GiB, {size / wall / 1e6:,.0f} MB/s")
        finally:
            server.stop()
            upstream.shutdown()


if __name__ == "__main__":
    main()
