"""A scripted malicious upstream on loopback: a real HTTP/1.1 server whose answers a test
writes per request, recording every request it gets (with its ``Authorization``) and how many
body bytes it managed to send before the gateway hung up."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""  # an iterable is sent chunked unless a length is given
    close: bool = False  # hang up after the body (e.g. one shorter than its Content-Length)


Script = Callable[[Seen], Answer]


class Hostile:
    """The server's record, and where it listens."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[Seen] = []
        self.sent = 0  # body bytes written before the peer went away

    def paths(self) -> list[str]:
        return [request.path for request in self.seen]


def _handler(script: Script, record: Hostile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while size := int(self.rfile.readline().strip(), 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return body
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _answer(self) -> None:
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self._body(),
            )
            record.seen.append(seen)
            answer = script(seen)
            self.send_response(answer.status)
            headers = {k.lower(): v for k, v in answer.headers.items()}
            body = answer.body
            if isinstance(body, bytes):
                headers.setdefault("content-length", str(len(body)))
            elif "content-length" not in headers:
                headers["transfer-encoding"] = "chunked"
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command == "HEAD":
                return
            chunked = headers.get("transfer-encoding") == "chunked"
            try:
                for piece in [body] if isinstance(body, bytes) else body:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    record.sent += len(piece)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            if answer.close:
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    return Handler


@contextmanager
def hostile_upstream(
    script: Script, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None
) -> Iterator[Hostile]:
    """Serve ``script`` on ``host`` (a free port), over TLS with ``(cert, key)``."""
    record = Hostile("")
    server = ThreadingHTTPServer((host, 0), _handler(script, record))
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    record.url = f"{scheme}://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def challenge(request: Seen, scheme_params: str) -> Answer | None:
    """401 with ``WWW-Authenticate: <scheme_params>`` for a request without credentials."""
    if "authorization" in request.headers:
        return None
    return Answer(401, {"WWW-Authenticate": scheme_params}, b"")
