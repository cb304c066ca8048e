"""The demo service: a small web app. Every host answers with its own tag.

Its settings are in .env and its access log goes to logs/: both live on the host
(in the service's shared folder), not in git, and relconsole links them into every
release. BUILD_STAMP is written by the setup command of each build.
"""

import http.server
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


def read(name: str) -> str:
    path = HERE / name
    return path.read_text().strip() if path.exists() else "unknown"


def settings(text: str) -> dict:
    """KEY=VALUE lines, as in .env."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def greeting() -> str:
    return "hello from web"


def answer(tag: str, revision: str, stamp: str) -> str:
    return f"{greeting()} (host {tag}, revision {revision[:12]}, {stamp})"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            status, body = 200, "ok"
        elif self.path == "/":
            status, body = 200, self.server.answer
        else:
            status, body = 404, "not found"
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:
        with open(HERE / "logs" / "access.log", "a") as log:
            log.write(f"{self.log_date_time_string()} {fmt % args}\n")


if __name__ == "__main__":
    env = settings(read(".env"))
    port = int(env["PORT"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.answer = answer(env.get("TAG", "?"), read("REVISION"), read("BUILD_STAMP"))
    print(f"{server.answer}: listening on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()
