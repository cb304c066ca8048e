"""The faster build (issue 15) keeps its promises, on the real bed.

- update + restart through the status helper (one XML-RPC exchange) and through
  supervisorctl (the fallback) end in the same state, each program started once per
  build (a first deploy's update starts it: no second restart);
- the hosts are connected and locked while the checkout runs, and a checkout that fails
  or is cancelled still leaves no lock behind;
- verify still catches a program that dies after its startsecs, on both paths.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from deployconfig import write_config
from gitorigin import program_conf, sample_service_files

from relconsole.config import load_config
from relconsole.events import Output, RunResult
from relconsole.hosts.base import Result
from relconsole.lock import LOCK_DIR
from relconsole.pipeline import run_build
from relconsole.stages.supervisor import VerifyFailed, _verify
from relconsole.status import supervisorctl as sv
from relconsole.status.reader import StatusReader

#: The host whose update + restart goes through supervisorctl; the other's through the
#: status helper.
SLOW, FAST = "h1", "h2"


@pytest.fixture
def paths(monkeypatch):
    """Force the supervisorctl path on SLOW; record which path each restart took."""
    taken: list[tuple[str, str]] = []
    fast_restart = StatusReader.restart

    def restart(self, programs, timeout):
        if self.host.name == SLOW:
            taken.append((SLOW, "supervisorctl"))
            return None
        said = fast_restart(self, programs, timeout)
        taken.append((self.host.name, "supervisorctl" if said is None else "helper"))
        return said

    monkeypatch.setattr(StatusReader, "restart", restart)
    return taken


def build(config, **kwargs):
    events: list = []
    lock = threading.Lock()

    def sink(event):
        with lock:
            events.append(event)

    return run_build(load_config(config), "svc", sink, **kwargs), events


def state(host):
    """What supervisor runs on ``host``: (name, state) rows, and the version started."""
    rows = sorted(
        tuple(line.split()[:2]) for line in host.supervisorctl("status").stdout.splitlines()
    )
    current = os.readlink(host.path("/srv/svc") / "current")  # an absolute host path
    version = host.path(current).joinpath("VERSION").read_text().strip()
    return rows, version


def starts(host, version):
    """How many times the program started on ``version`` (its stdout log)."""
    log = host.path("/etc/supervisor/log/svc.out.log")
    text = log.read_text() if log.exists() else ""
    return text.count(f"version={version} ")


def test_helper_and_supervisorctl_paths_end_in_the_same_state(bed, origin, tmp_path, paths):
    files = sample_service_files("svc", "/srv/svc", "v1")
    origin.commit(files, "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[], hosts=[SLOW, FAST])
    slow, fast = bed.host(SLOW), bed.host(FAST)
    conf = "deploy/supervisor/svc.conf"
    steps = [
        ("v1", {}),  # first deploy: update adds the group and starts it
        ("v2", {"VERSION": "v2\n"}),  # code only: restart
        ("v3", {"VERSION": "v3\n", conf: files[conf] + "environment=STEP=3\n"}),  # changed
    ]
    pids = {}
    for version, change in steps:
        if change:
            origin.commit(change, version)
        paths.clear()
        finished, _events = build(config)
        assert finished.ok, finished.error
        assert sorted(paths) == [(SLOW, "supervisorctl"), (FAST, "helper")]
        assert state(slow) == state(fast) == ([("svc", "RUNNING")], version)
        # Started exactly once by this build, on either path.
        assert starts(slow, version) == starts(fast, version) == 1, version
        now = {h.name: h.program_pid("svc") for h in (slow, fast)}
        assert all(now[name] != pids.get(name) for name in now)
        pids = now


def test_a_program_that_dies_after_its_startsecs_is_caught_on_both_paths(
    bed, origin, tmp_path, paths
):
    files = sample_service_files("svc", "/srv/svc", "v1")
    origin.commit(files, "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[], hosts=[SLOW, FAST])
    assert build(config)[0].ok
    # RUNNING at once (startsecs=0), dead half a second later: only the settle wait
    # of verify can see it.
    dying = "import time\nprint('svc dying', flush=True)\ntime.sleep(0.5)\nraise SystemExit(1)\n"
    conf = program_conf("svc", "/srv/svc", "/usr/bin/python3 -u /srv/svc/current/app.py")
    conf = conf.replace("startsecs=1", "startsecs=0").replace(
        "autorestart=true", "autorestart=false"
    )
    origin.commit({"app.py": dying, "deploy/supervisor/svc.conf": conf}, "v2 dies")

    paths.clear()

    finished, events = build(config)

    assert finished.result is RunResult.ROLLED_BACK, finished.error
    assert "EXITED" in (finished.error or "")
    assert set(paths) == {(SLOW, "supervisorctl"), (FAST, "helper")}  # the rollback's too
    for name in (SLOW, FAST):
        lines = [e.line for e in events if isinstance(e, Output) and e.host == name]
        assert any("svc is EXITED" in line for line in lines), "\n".join(lines)
        assert state(bed.host(name)) == ([("svc", "RUNNING")], "v1")


def test_verify_reads_a_whole_second_uptime_as_one_second_less():
    """A program RUNNING for a few ms may show uptime 1 (supervisor's whole seconds
    crossed a boundary): that proves nothing, so verify waits and sees it die. (Not a
    bed test: scripted rows.)"""
    running = sv.ProcessStatus("svc", sv.State.RUNNING, 42, 1, "pid 42, uptime 0:00:01")
    exited = sv.ProcessStatus("svc", sv.State.EXITED, None, None, "exit status 1")
    reads = iter([[running], [exited]])

    with pytest.raises(VerifyFailed, match="EXITED"):
        _verify(
            *(FakeTransport(), FakeHost(), ["svc"], {"svc": 41}, time.monotonic()),
            timeout=5,
            log=lambda line: None,
            settle=1.0,
            verify_timeout=5,
            cancel=threading.Event(),
            read_rows=lambda: next(reads),
            proven={},
        )


class FakeTransport:
    name = "h1"

    def run(self, *args, **kwargs):  # supervisorctl tail of the dead program: no log
        return Result("tail", 0, "", "")


class FakeHost:
    supervisorctl = "supervisorctl"


def locks_left(bed):
    return [h.name for h in bed.hosts if (h.path("/srv/svc") / LOCK_DIR).exists()]


def test_a_failed_checkout_releases_the_locks_taken_meanwhile(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[])

    finished, events = build(config, branch="no-such-branch")

    assert finished.result is RunResult.FAILED
    assert "no-such-branch" in (finished.error or "")
    lines = [e.line for e in events if isinstance(e, Output)]
    assert any(line.startswith("locked svc on") for line in lines)  # taken meanwhile...
    assert locks_left(bed) == []  # ...and released
    assert build(config)[0].ok  # nothing stands in the way of the next build


def test_a_cancelled_checkout_releases_the_locks_taken_meanwhile(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[])
    cancel = threading.Event()
    events: list = []

    def sink(event):
        events.append(event)
        if isinstance(event, Output) and event.line.startswith("fetching"):
            cancel.set()  # while git works, and connecting and locking go on

    finished = run_build(load_config(config), "svc", sink, cancel)

    assert finished.result is RunResult.CANCELLED
    assert locks_left(bed) == []
    assert all(not (h.path("/srv/svc") / "current").exists() for h in bed.hosts)
    assert build(config)[0].ok


class CountingProxy:
    """A unix socket in front of a supervisord's: passes bytes both ways and counts the
    XML-RPC requests that go through."""

    def __init__(self, path, target):
        import socket

        self.requests = 0
        self._target = target
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(self._target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, count):
        try:
            while data := src.recv(65536):
                if count:
                    self.requests += data.count(b"POST /RPC2")
                dst.sendall(data)
        except OSError:  # the other direction closed both ends first
            pass
        finally:
            dst.close()

    def close(self):
        self._server.close()


def helper_restart(proxy_path, programs, timeout=30):
    """Run the status helper here against ``proxy_path``: its answer to one restart
    request, and the seconds it took."""
    import json
    import subprocess
    import sys

    from relconsole.status.fastpath import HELPER_SOURCE

    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", HELPER_SOURCE, f"unix://{proxy_path}", ""],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "hello" in json.loads(proc.stdout.readline())
        started = time.monotonic()
        proc.stdin.write(f"restart {timeout} {' '.join(programs)}\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        return answer, time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()


def test_the_helper_restart_looks_when_startsecs_ends_not_all_along(bed, tmp_path):
    # supervisord makes a program RUNNING only when a request wakes it after startsecs.
    # The helper looked every 50 ms throughout (28 requests in all for startsecs=1):
    # now a few looks while it starts, one just after startsecs, one right after that.
    host = bed.host("h1")
    conf_d = host.path("/etc/supervisor/conf.d")
    (conf_d / "sleeper.conf").write_text(
        "[program:sleeper]\ncommand=sleep 1000\nstartsecs=1\nautostart=true\n"
        "autorestart=true\nstopsignal=KILL\n"
    )
    proxy = CountingProxy(tmp_path / "proxy.sock", host.path("/etc/supervisor/run/supervisor.sock"))
    try:
        for step in ("added by update", "stopped and started"):
            proxy.requests = 0
            answer, seconds = helper_restart(tmp_path / "proxy.sock", ["sleeper:*"])
            assert answer["ok"] and "sleeper: started" in answer["lines"], (step, answer)
            # Not waiting startsecs twice (2 s); the request count shows the looks.
            assert 1.0 <= seconds < 1.8, (step, seconds)
            # 12 measured (the update or stop/start, a few looks, configs); 28 before.
            assert proxy.requests <= 16, (step, proxy.requests)
            status = host.supervisorctl("status", "sleeper").stdout
            assert "RUNNING" in status, status
    finally:
        proxy.close()
        (conf_d / "sleeper.conf").unlink()
        host.supervisorctl("update")


def test_the_helper_restart_sees_a_program_that_exits_at_once_without_waiting_startsecs(
    bed, tmp_path
):
    host = bed.host("h1")
    conf_d = host.path("/etc/supervisor/conf.d")
    (conf_d / "quitter.conf").write_text(
        "[program:quitter]\ncommand=false\nstartsecs=10\nautostart=true\nstartretries=0\n"
    )
    proxy = CountingProxy(tmp_path / "proxy.sock", host.path("/etc/supervisor/run/supervisor.sock"))
    try:
        answer, seconds = helper_restart(tmp_path / "proxy.sock", ["quitter:*"])
        assert answer["ok"] and any(
            line.startswith("quitter: ERROR") for line in answer["lines"]
        ), answer
        assert seconds < 1.0, seconds  # seen within a look or two, not after 10 s
    finally:
        proxy.close()
        (conf_d / "quitter.conf").unlink()
        host.supervisorctl("update")
