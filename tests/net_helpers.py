"""Socket and HTTP helpers for the backend tests (plain functions and classes, not fixtures)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextlib.contextmanager
def hung_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A real socket server on 127.0.0.1 that accepts connections and never answers:
    yields its URL and the accepted connections."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}", conns
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


Reply = tuple[int, Any]  # (HTTP status, JSON body or raw str)


class FakeOpenAIServer:
    """``/v1/completions`` and ``/v1/chat/completions`` on 127.0.0.1 answering with
    ``reply(body)``; every request body is kept in ``requests``."""

    def __init__(self, reply: Callable[[dict[str, Any]], Reply]) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status, payload = outer.reply(body)
                if status == 0:  # hang: never answer
                    time.sleep(30)
                    return
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text: str, completion_tokens: Any = 3) -> Reply:
    return 200, {
        "choices": [{"text": text, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": completion_tokens},
    }
