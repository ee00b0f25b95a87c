"""Real HTTP servers on 127.0.0.1 for tests: a handler class in a thread, or a JSON server from a function.

Protocol tests use these instead of mocks: the client libraries talk real HTTP to them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[ThreadingHTTPServer]:
    """Run `handler` on 127.0.0.1:port (0: any free port) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


Answer = Callable[[str, str, Any], tuple]  # (method, path, JSON body) -> (status, payload[, delay_s])


@contextmanager
def json_server(answer: Answer, port: int = 0) -> Iterator[tuple[str, list[tuple[str, str, Any, dict]]]]:
    """A JSON-speaking server; yields its base URL and the requests it saw: (method, path, body, headers)."""
    seen: list[tuple[str, str, Any, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            seen.append((self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()}))
            status, payload, *delay = answer(self.command, self.path, body)
            time.sleep(delay[0] if delay else 0)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout tests)
                pass

        do_GET = do_POST = _serve

        def log_message(self, *args):
            pass

    with serve(Handler, port) as server:
        yield f"http://127.0.0.1:{server.server_port}", seen


def closed_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
