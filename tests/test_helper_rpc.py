"""The status helper's own HTTP and XML-RPC (relconsole/status/remote_helper.py).

The helper speaks to supervisord without http.client and xmlrpc.client (their imports
cost more CPU on every host than the rest of it). Its marshalling is checked against
xmlrpc.client itself; its HTTP against a real supervisord over TCP and a Unix socket,
with and without a password, and against a stdlib HTTP server that answers in chunks.
"""

from __future__ import annotations

import importlib.util
import json
import random
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HELPER_PATH = Path(__file__).parent.parent / "relconsole/status/remote_helper.py"


def load_helper():
    spec = importlib.util.spec_from_file_location("remote_helper_under_test", HELPER_PATH)
    assert spec and spec.loader
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    return helper


helper = load_helper()


def random_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "bool", "float", "none"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(rng.choice("ab <&>\"'\n\tüé€\u2028x") for _ in range(rng.randint(0, 12)))
    if kind == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}<&": random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def test_the_helper_reads_what_xmlrpc_client_writes():
    rng = random.Random(15)
    for _ in range(300):
        value = random_value(rng)
        data = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()
        assert helper.method_response(data) == value


def test_a_value_without_a_type_is_a_string_and_a_fault_is_raised():
    untyped = b"<methodResponse><params><param><value>plain &amp; text</value></param></params></methodResponse>"
    assert helper.method_response(untyped) == "plain & text"
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(10, "BAD_NAME: web"), methodresponse=True)
    with pytest.raises(helper.Fault) as caught:
        helper.method_response(fault.encode())
    assert (caught.value.faultCode, caught.value.faultString) == (10, "BAD_NAME: web")
    for broken in (b"", b"<methodResponse><params>", b"<methodResponse/>", b"not xml"):
        with pytest.raises(helper.BadResponse):
            helper.method_response(broken)


def test_xmlrpc_client_reads_what_the_helper_writes():
    for params in [(), ("web",), ("a<b&c>", 0, -5, 2**31 - 1), (True, False, "ü€")]:
        assert xmlrpc.client.loads(helper.method_call("supervisor.x", params)) == (
            params,
            "supervisor.x",
        )


class ChunkedRPC(BaseHTTPRequestHandler):
    """Answers every POST with getAllProcessInfo's shape, sent in 7-byte chunks."""

    protocol_version = "HTTP/1.1"
    answer = [{"name": "web", "group": "web", "statename": "RUNNING", "pid": 7}]

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = xmlrpc.client.dumps((self.answer,), methodresponse=True).encode()
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 7):
            part = body[i : i + 7]
            self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\nTrailer: x\r\n\r\n")

    def log_message(self, *args):
        pass


def test_an_answer_in_chunks_is_read_whole_and_the_connection_is_kept():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChunkedRPC)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rpc = helper.Server("http://127.0.0.1:%d" % server.server_address[1])
        assert rpc.all_process_info() == ChunkedRPC.answer
        first = rpc.conn
        assert rpc.all_process_info() == ChunkedRPC.answer
        assert rpc.conn is first  # kept alive, as supervisorctl keeps its own
        rpc.close()
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def supervisord(tmp_path_factory):
    """A real supervisord, with a password on both its TCP and its Unix socket."""
    here = tmp_path_factory.mktemp("supervisord")
    port = free_port()
    conf = here / "supervisord.conf"
    conf.write_text(
        f"""\
[supervisord]
logfile={here}/supervisord.log
pidfile={here}/supervisord.pid
childlogdir={here}
nodaemon=false

[unix_http_server]
file={here}/supervisor.sock
username=ops
password=s3cret&<x>

[inet_http_server]
port=127.0.0.1:{port}
username=ops
password=s3cret&<x>

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{here}/supervisor.sock
username=ops
password=s3cret&<x>

[program:web]
command=sleep 1000
startsecs=0
"""
    )
    subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], check=True)
    deadline = time.monotonic() + 20
    while not (here / "supervisor.sock").exists() or not _listening(port):
        assert time.monotonic() < deadline, "supervisord did not come up"
        time.sleep(0.05)
    yield here, port
    pid = int((here / "supervisord.pid").read_text())
    subprocess.run(["kill", str(pid)], check=False)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def ask(target: str, *requests: str) -> list[dict]:
    """Run the helper as it runs on a host (``python3 -I -S -c SOURCE TARGET``)."""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", HELPER_PATH.read_text(), target, ""],
        input="".join(r + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_helper_reads_the_config_and_logs_in_over_the_unix_socket(supervisord):
    here, _port = supervisord
    hello, status, restart = ask(str(here / "supervisord.conf"), "status", "restart 30 web:*")
    assert hello["serverurl"] == f"unix://{here}/supervisor.sock"
    assert status["ok"] and [p["name"] for p in status["processes"]] == ["web"]
    assert restart["ok"] and restart["lines"][-1] == "web: started", restart


def test_a_wrong_password_is_a_lasting_401(supervisord):
    here, port = supervisord
    conf = here / "wrong.conf"
    conf.write_text(
        f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\nusername=ops\npassword=nope\n"
    )
    _hello, status = ask(str(conf), "status")
    assert status["ok"] is False and status["lasting"] is True
    assert "401" in status["error"], status


def test_over_tcp_with_the_password_and_a_fault_said_as_supervisord_says_it(supervisord):
    here, port = supervisord
    conf = here / "tcp.conf"
    conf.write_text(
        f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\nusername=ops\npassword=s3cret&<x>\n"
    )
    _hello, status, tail = ask(str(conf), "status", "tail stdout 0 100 nosuch")
    assert status["ok"] and status["processes"][0]["statename"] == "RUNNING"
    assert tail == {"ok": False, "lasting": False, "error": "supervisord: BAD_NAME: nosuch"}


def test_every_request_gets_one_answer_and_a_bug_is_a_lasting_helper_error(monkeypatch, capsys):
    def broken_tail(self, words):
        raise KeyError("oops")

    monkeypatch.setattr(helper.Server, "answer_tail", broken_tail)
    monkeypatch.setattr(sys, "argv", ["helper", "unix:///nowhere/supervisor.sock", ""])
    lines = b"\n".join([b"bogus x", b"", b"restart", b"tail stdout 0 10 web", b"status"])

    class Stdin:
        buffer = iter((lines + b"\n").splitlines(keepends=True))

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert helper.main() == 0
    hello, unknown, restart, tail, status = map(json.loads, capsys.readouterr().out.splitlines())
    assert hello["serverurl"] == "unix:///nowhere/supervisor.sock"
    assert unknown == {"ok": False, "lasting": True, "error": "unknown request b'bogus x'"}
    assert restart == {"ok": False, "lasting": True, "error": "bad restart request"}
    assert tail == {"ok": False, "lasting": True, "error": "helper: KeyError: 'oops'"}
    assert status["ok"] is False and status["lasting"] is False  # no supervisord there
