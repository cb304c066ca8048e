"""A webhook endpoint on loopback for the notification tests: it records every POST,
and answers as told (200, 500), or never answers, or refuses the connection."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Hook:
    """``mode``: "ok" (200), "fail" (500), "hang" (accepts, never answers) or "refuse"
    (nothing listens). ``url`` carries a secret path the tests look for everywhere."""

    mode: str = "ok"
    secret: str = field(default_factory=lambda: f"s3cr3t-{uuid.uuid4().hex}")
    posts: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._socket: socket.socket | None = None
        if self.mode in ("ok", "fail"):
            hook = self

            class Handler(http.server.BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    with hook._lock:
                        hook.posts.append({"path": self.path, "body": json.loads(data)})
                    self.send_response(200 if hook.mode == "ok" else 500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *args) -> None:
                    pass

            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self._server.server_port
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        else:
            self._socket = socket.socket()
            self._socket.bind(("127.0.0.1", 0))
            self.port = self._socket.getsockname()[1]
            if self.mode == "hang":
                self._socket.listen(64)  # the kernel accepts; nobody ever answers
            else:
                self._socket.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T0/{self.secret}"

    def results(self) -> list[str]:
        with self._lock:
            return [p["body"].get("result") for p in self.posts]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.posts) >= count:
                    return list(self.posts)
            assert time.monotonic() < deadline, f"{count} POST(s) expected, got {self.posts}"
            time.sleep(0.02)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._socket is not None:
            self._socket.close()
