# relconsole-health probe: is the release a host just started alive, seen from the host.
#
# This file runs ON THE HOST, not in relconsole: relconsole.stages.health reads it as
# package data and runs it over the connection of the host as ``python3 -I -S -c SOURCE``,
# the probes as one JSON object on stdin:
#
#   {"cwd": "/srv/web/current", "interval": 0.5,
#    "probes": [{"name": "http", "kind": "url", "target": "http://localhost:8000/healthz",
#                "expect": "ok", "timeout": 30}, ...]}
#
# Probes are made in order, each retried every ``interval`` seconds until it passes or
# its ``timeout`` is over. One JSON line per answer that differs from the last one,
# {"probe", "ok", "answer", "seconds"}, plus "end": "passed" or "failed" on the last
# line of each probe. Exit 0 when every probe passed, 1 when one did not (the rest
# are not made), 2 when the input is not understood.
#
# Stdlib only, Python >= 3.6 syntax (a test parses it so), no single quotes (it travels
# shell-quoted, twice under sudo), no tool of the host beyond python3 itself.
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

#: The longest one attempt may wait for an answer.
ATTEMPT = 5.0
#: What an answer keeps of a body or of the output of a command.
KEEP = 200


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def one_line(text):
    text = " ".join(text.split())
    return text[:KEEP] + ("..." if len(text) > KEEP else "")


def split_address(address):
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def get(url, expect, wait):
    scheme, _, rest = url.partition("://")
    where, slash, path = rest.partition("/")
    path = slash + path if slash else "/"
    where = where.rpartition("@")[2]
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            where, timeout=wait, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection(where, timeout=wait)
    try:
        conn.request("GET", path, headers={"User-Agent": "relconsole-health"})
        response = conn.getresponse()
        body = response.read(65536).decode("utf-8", "replace")
    finally:
        conn.close()
    answer = "HTTP %d: %s" % (response.status, one_line(body) or "(empty body)")
    if not 200 <= response.status < 300:
        return False, answer
    if expect is not None and expect not in body:
        return False, "%s (no %s in the body)" % (answer, json.dumps(expect))
    return True, answer


def connect(address, wait):
    host, port = split_address(address)
    sock = socket.create_connection((host, port), timeout=wait)
    sock.close()
    return True, "connected to %s" % address


def run(command, cwd, wait):
    try:
        proc = subprocess.Popen(
            command,
            shell=True,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return False, "cannot run it in %s: %s" % (cwd, exc.strerror or exc)
    try:
        out = proc.communicate(timeout=wait)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return False, "still running after %.1fs (killed)" % wait
    text = one_line(out.decode("utf-8", "replace")[-4096:])
    answer = "exit %d%s" % (proc.returncode, ": " + text if text else "")
    return proc.returncode == 0, answer


def attempt(probe, cwd, wait):
    kind, target = probe["kind"], probe["target"]
    try:
        if kind == "url":
            return get(target, probe.get("expect"), wait)
        if kind == "tcp":
            return connect(target, wait)
        return run(target, cwd, wait)
    except socket.timeout:
        return False, "no answer within %.1fs" % wait
    except OSError as exc:
        return False, "cannot connect: %s" % (exc.strerror or exc)
    except (http.client.HTTPException, ValueError) as exc:
        return False, "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


def probe_until(probe, cwd, interval):
    started = time.monotonic()
    deadline = started + float(probe["timeout"])
    last = None
    while True:
        tried = time.monotonic()
        wait = max(0.1, min(ATTEMPT, deadline - tried))
        ok, answer = attempt(probe, cwd, wait)
        seconds = round(time.monotonic() - started, 3)
        over = time.monotonic() + interval > deadline
        line = {"probe": probe["name"], "ok": ok, "answer": answer, "seconds": seconds}
        if ok or over:
            line["end"] = "passed" if ok else "failed"
            say(line)
            return ok
        if answer != last:
            say(line)
            last = answer
        time.sleep(max(0.0, tried + interval - time.monotonic()))


def main():
    try:
        job = json.loads(sys.stdin.read())
        probes, cwd, interval = job["probes"], job["cwd"], float(job["interval"])
    except (ValueError, KeyError, TypeError) as exc:
        say({"error": "cannot read the probes: %s" % exc})
        return 2
    for probe in probes:
        if not probe_until(probe, cwd, interval):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
