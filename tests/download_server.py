"""A small HTTP file server on 127.0.0.1 for the download tests: Range requests, dropped connections, bad bytes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Files:
    """What the server serves, and how it misbehaves.

    ``drop[name]`` responses of ``name`` announce the whole length, send half of what was asked, then
    close the connection; ``corrupt[name]`` responses send the file with one byte flipped.
    Every request is recorded in ``requests`` as (method, name, Range header or "").
    """

    content: dict[str, bytes]
    drop: Counter = field(default_factory=Counter)
    corrupt: Counter = field(default_factory=Counter)
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def gets(self, name: str) -> list[str]:
        """The Range headers of the GET requests for ``name``, in order."""
        return [ranged for method, asked, ranged in self.requests if method == "GET" and asked == name]


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            name = self.path.lstrip("/")
            ranged = self.headers.get("Range", "")
            files.requests.append((self.command, name, ranged))
            if name not in files.content:
                self.send_error(404)
                return
            data = files.content[name]
            start = int(ranged.removeprefix("bytes=").split("-")[0]) if ranged else 0
            if start >= len(data) and ranged:
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body and files.corrupt[name] > 0:
                files.corrupt[name] -= 1
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Length", str(len(data) - start))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            rest = data[start:]
            if files.drop[name] > 0:
                files.drop[name] -= 1
                self.wfile.write(rest[: len(rest) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(rest)

    return Handler


@contextmanager
def serve(files: Files) -> Iterator[str]:
    """Serve ``files`` on a free loopback port for the duration of the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
