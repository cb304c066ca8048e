"""The status fast path (relconsole/fastpoll.py) against the real test bed.

The helper runs on the bed's hosts under Debian's /usr/bin/python3 (no supervisor
module: it is stdlib-only); supervisorctl runs under the test interpreter. Helper
processes are found through /proc (all bed hosts share this machine's pid namespace)
by their mark and by descending from the host's own sshd.
"""

from __future__ import annotations

import ast
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deployconfig import write_config
from testbed import SUPERVISORCTL

from relconsole.config import load_config
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import HELPER_MARK, HELPER_SOURCE, helper_target
from relconsole.status.poller import StatusPoller
from relconsole.status.reader import status_rows

PROGRAMS = """\
[program:api]
command=sleep 1000
startsecs=0

[program:off]
command=sleep 1000
autostart=false

[program:missing]
command=/nonexistent/server
startretries=0

[program:crash]
command=sh -c "exit 3"
startsecs=1
startretries=0

[program:once]
command=true
startsecs=0
autorestart=false

[program:workers]
command=sleep 1000
process_name=%(program_name)s_%(process_num)02d
numprocs=2
startsecs=0

[group:site]
programs=web

[program:web]
command=sleep 1000
startsecs=0
"""

EXPECTED = {
    "api": "RUNNING",
    "off": "STOPPED",
    "missing": "FATAL",
    "crash": "FATAL",
    "once": "EXITED",
    "workers:workers_00": "RUNNING",
    "workers:workers_01": "RUNNING",
    "site:web": "RUNNING",
}


# --- helpers ------------------------------------------------------------------------


def add_programs(host) -> None:
    """PROGRAMS under the host's supervisord; return once every state is final."""
    host.path("/etc/supervisor/conf.d/mix.conf").write_text(PROGRAMS)
    assert host.supervisorctl("update").returncode == 0
    rpc = host.supervisor_rpc()
    deadline = time.monotonic() + 15
    while True:
        states = {
            (i["name"] if i["name"] == i["group"] else f"{i['group']}:{i['name']}"): i["statename"]
            for i in rpc.getAllProcessInfo()
        }
        if states == EXPECTED:
            host.sshd_log.write_text("")  # count only the poller's connections from here
            return
        assert time.monotonic() < deadline, f"programs did not settle: {states}"
        time.sleep(0.05)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def helper_pids(host) -> list[int]:
    """Live helper processes serving ``host`` (descendants of its sshd)."""
    sshd = int((host.root / "sshd.pid").read_text())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if HELPER_MARK.encode() not in cmdline or not cmdline.startswith(b"python3"):
                continue
            pid = int(entry)
            while pid > 1 and pid != sshd:
                pid = _ppid(pid)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if pid == sshd:
            found.append(int(entry))
    return found


def wait_until(predicate, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


def poller_for(tmp_path, bed, **kwargs):
    config = load_config(write_config(tmp_path, bed, "file:///unused", **kwargs))
    return config, StatusPoller(list(config.hosts.values()), config.settings)


def only(statuses, name):
    return next(s for s in statuses if s.host == name)


def assert_same_rows(fast: list[sv.ProcessStatus], ctl: list[sv.ProcessStatus]) -> None:
    assert [(r.name, r.state, r.pid) for r in fast] == [(r.name, r.state, r.pid) for r in ctl]
    for a, b in zip(fast, ctl):
        if a.state == sv.State.RUNNING:
            assert abs(a.uptime - b.uptime) <= 1, (a, b)
        else:
            assert (a.uptime, a.description) == (b.uptime, b.description)


@pytest.fixture
def mixed(bed):
    host = bed.hosts[0]
    add_programs(host)
    return host


# --- pure ---------------------------------------------------------------------------


def test_helper_is_python36_syntax_without_single_quotes():
    ast.parse(HELPER_SOURCE, feature_version=(3, 6))
    assert "'" not in HELPER_SOURCE
    # Python 3.6 under a C locale cannot decode a non-ASCII ``-c`` argument: no start.
    assert HELPER_SOURCE.isascii()


@pytest.mark.parametrize(
    "command, target",
    [
        ("supervisorctl", ("", "supervisorctl")),
        (SUPERVISORCTL, ("/etc/supervisor/supervisord.conf", "supervisor.supervisorctl")),
        (
            "/opt/venv/bin/supervisorctl -i -c/etc/s.conf",
            ("/etc/s.conf", "/opt/venv/bin/supervisorctl"),
        ),
        ("supervisorctl --configuration=/etc/s.conf", ("/etc/s.conf", "supervisorctl")),
        (
            "supervisorctl -u me -p secret -s unix:///run/s.sock -c /etc/s.conf",
            ("unix:///run/s.sock", "supervisorctl"),
        ),
        ("env X=1 supervisorctl status -c /not/an/option", ("", "supervisorctl")),
        ("/usr/local/bin/sctl", ("", "/usr/local/bin/sctl")),
    ],
)
def test_helper_target_reads_the_command_as_supervisorctl_would(command, target):
    assert helper_target(command) == target


# --- the test bed -------------------------------------------------------------------


def test_fast_path_gives_supervisorctls_rows(bed, mixed, tmp_path):
    config, poller = poller_for(tmp_path, bed)
    host = config.hosts[mixed.name]
    try:
        fast = list(only(poller.poll(), host.name).rows)
        ctl = poller.on_host(host, lambda t: status_rows(t, host, 5))
    finally:
        poller.close()
    assert poller.via(host.name) == "fast"
    assert {r.name: r.state.value for r in fast} == EXPECTED
    assert_same_rows(fast, ctl)
    assert all(r.pid for r in fast if r.state == sv.State.RUNNING)
    assert {r.name: r.description for r in fast}[
        "missing"
    ] == "can't find command '/nonexistent/server'"


def test_fast_path_through_sudo_runs_the_helper_as_root(bed, mixed, tmp_path):
    config, poller = poller_for(tmp_path, bed, user="deploy", sudo=True)
    host = config.hosts[mixed.name]
    try:
        fast = list(only(poller.poll(), host.name).rows)
        assert poller.via(host.name) == "fast"
        [pid] = helper_pids(mixed)
        assert os.stat(f"/proc/{pid}").st_uid == 0  # the socket is root-only (chmod 0700)
        ctl = poller.on_host(host, lambda t: status_rows(t, host, 5))
    finally:
        poller.close()
    assert_same_rows(fast, ctl)


def test_many_polls_share_one_connection_and_one_helper(bed, mixed, tmp_path):
    config, poller = poller_for(tmp_path, bed)
    try:
        for _ in range(20):
            statuses = poller.poll()
            assert all(s.reachable for s in statuses), statuses
            assert [poller.via(h.name) for h in bed.hosts] == ["fast"] * len(bed.hosts)
        assert [h.accepted_connections() for h in bed.hosts] == [1] * len(bed.hosts)
        assert [len(helper_pids(h)) for h in bed.hosts] == [1] * len(bed.hosts)
        # Commands keep working beside the helper, on the same connection.
        host = config.hosts[mixed.name]
        res = poller.on_host(
            host,
            lambda t: t.run(sv.action_command(host.supervisorctl, "stop", ["api"]), timeout=10),
        )
        assert res.ok, res
        rows = {r.name: r for r in only(poller.poll(), host.name).rows}
        assert rows["api"].state == sv.State.STOPPED and rows["api"].pid is None
        assert mixed.accepted_connections() == 1
    finally:
        poller.close()
    # Closing the connection ends the helpers.
    wait_until(lambda: not any(helper_pids(h) for h in bed.hosts), "the helpers to leave")


def test_a_killed_helper_is_replaced_on_the_next_poll(bed, mixed, tmp_path):
    _config, poller = poller_for(tmp_path, bed)
    try:
        before = only(poller.poll(), mixed.name)
        [pid] = helper_pids(mixed)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid not in helper_pids(mixed), "the helper to die")

        after = only(poller.poll(), mixed.name)

        assert after.reachable, after.error
        assert [(r.name, r.state, r.pid) for r in after.rows] == [
            (r.name, r.state, r.pid) for r in before.rows
        ]
        assert poller.via(mixed.name) == "fast"
        [new] = helper_pids(mixed)
        assert new != pid
        assert mixed.accepted_connections() == 1
    finally:
        poller.close()


class Python3Mask:
    """/usr/bin/python3 made non-executable on one host only: /dev/null bind-mounted
    over it in that host's mount namespace, as on a host without a usable python3.
    Its programs (sleep, sh) and supervisorctl (the test interpreter) do not need it."""

    def __init__(self, host):
        sshd = int((host.root / "sshd.pid").read_text())
        self.namespace = os.readlink(f"/proc/{sshd}/ns/mnt")
        self.pids = [sshd, int(host.path("/etc/supervisor/supervisord.pid").read_text())]
        self._nsenter("mount", "--bind", "/dev/null", "/usr/bin/python3")

    def _nsenter(self, *argv: str) -> None:
        # Whichever of the host's daemons is still in that namespace (sshd may have
        # been restarted into a new one meanwhile).
        for pid in self.pids:
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") != self.namespace:
                    continue
            except OSError:
                continue
            subprocess.run(["nsenter", "-t", str(pid), "-m", *argv], check=True)
            return

    def remove(self) -> None:
        if self.pids:
            self._nsenter("umount", "/usr/bin/python3")
            self.pids = []


@pytest.fixture
def python3_unusable(bed):
    mask = Python3Mask(bed.hosts[0])
    yield mask
    mask.remove()


def test_without_python3_polls_with_supervisorctl_until_a_reconnect(
    bed, python3_unusable, tmp_path
):
    host_bed = bed.hosts[0]
    add_programs(host_bed)
    config, poller = poller_for(tmp_path, bed)
    host = config.hosts[host_bed.name]
    try:
        first = only(poller.poll(), host.name)
        assert first.reachable, first.error
        assert {r.name: r.state.value for r in first.rows} == EXPECTED
        assert poller.via(host.name) == "supervisorctl"
        assert "did not start" in poller.fast_path_off(host.name)
        assert "Permission denied" in poller.fast_path_off(host.name)
        assert [poller.via(h.name) for h in bed.hosts[1:]] == ["fast"] * (len(bed.hosts) - 1)

        # Remembered for this connection: no second try while it lasts.
        python3_unusable.remove()
        assert only(poller.poll(), host.name).reachable
        assert poller.via(host.name) == "supervisorctl"
        assert not helper_pids(host_bed)
        assert host_bed.accepted_connections() == 1

        # The host goes away and comes back: the new connection tries the fast path.
        host_bed.stop_sshd()
        kill_connections_to(host_bed)
        gone = only(poller.poll(), host.name)
        assert not gone.reachable
        host_bed.start_sshd()
        back = only(poller.poll(), host.name)
        assert back.reachable, back.error
        assert poller.via(host.name) == "fast"
        assert poller.fast_path_off(host.name) is None
        assert {r.name: r.state.value for r in back.rows} == EXPECTED
    finally:
        poller.close()


def kill_connections_to(host) -> None:
    """Drop every established ssh connection to ``host``, as a host going down does."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", "src", f"{host.address}:{host.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for pid in {int(p.split(",")[0]) for p in out.split("pid=")[1:]}:
        os.kill(pid, signal.SIGKILL)


def test_a_wrapper_whose_config_the_helper_cannot_find_falls_back(bed, mixed, tmp_path):
    """The host's supervisorctl is a wrapper script naming its config inside, and a
    stray config sits where supervisorctl's search starts from the wrapper's prefix:
    the helper asks the wrong socket, supervisorctl answers, the fast path is off."""
    wrapper = mixed.path("/etc/supervisor/bin/sctl")
    stray = mixed.path("/etc/supervisor/etc/supervisord.conf")
    try:
        wrapper.parent.mkdir()
        wrapper.write_text(f'#!/bin/sh\nexec {SUPERVISORCTL} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        stray.parent.mkdir()
        stray.write_text("[supervisorctl]\nserverurl=unix:///etc/supervisor/run/old.sock\n")
        wrapped = {
            "address": mixed.address,
            "port": mixed.port,
            "user": "root",
            "key": str(bed.client_key),
            "supervisorctl": "/etc/supervisor/bin/sctl",
        }
        config, poller = poller_for(tmp_path, bed, extra_hosts={mixed.name: wrapped})
        host = config.hosts[mixed.name]
        try:
            first = only(poller.poll(), host.name)
            assert first.reachable, first.error
            assert {r.name: r.state.value for r in first.rows} == EXPECTED
            assert poller.via(host.name) == "supervisorctl"
            assert "old.sock no such file" in poller.fast_path_off(host.name)
            assert only(poller.poll(), host.name).reachable
            assert poller.via(host.name) == "supervisorctl"
        finally:
            poller.close()

        # Without the stray config the helper finds the right one, and that is
        # checked once against supervisorctl before the fast path is trusted.
        stray.unlink()
        config, poller = poller_for(tmp_path, bed, extra_hosts={mixed.name: wrapped})
        try:
            assert only(poller.poll(), host.name).reachable
            assert poller.via(host.name) == "supervisorctl"
            fast = only(poller.poll(), host.name)
            assert poller.via(host.name) == "fast"
            assert {r.name: r.state.value for r in fast.rows} == EXPECTED
        finally:
            poller.close()
    finally:
        for f in (wrapper, stray):
            f.unlink(missing_ok=True)
        for d in (wrapper.parent, stray.parent):
            if d.exists():
                d.rmdir()


def test_unreachable_host_is_reported_beside_fast_ones(bed, tmp_path):
    ghost = {
        "address": bed.hosts[0].address,
        "port": 1,
        "user": "root",
        "key": str(bed.client_key),
        "supervisorctl": SUPERVISORCTL,
    }
    _config, poller = poller_for(tmp_path, bed, extra_hosts={"ghost": ghost})
    try:
        for _ in range(2):
            statuses = {s.host: s for s in poller.poll()}
            assert not statuses["ghost"].reachable
            assert "cannot connect" in statuses["ghost"].error
            assert all(statuses[h.name].reachable for h in bed.hosts)
            assert [poller.via(h.name) for h in bed.hosts] == ["fast"] * len(bed.hosts)
    finally:
        poller.close()


def test_local_host_runs_the_helper_as_a_child(bed, mixed, tmp_path):
    """A local host (address = "local") talks to a supervisord on this machine."""
    pid = int(mixed.path("/etc/supervisor/supervisord.pid").read_text())
    conf = tmp_path / "local-supervisord.conf"
    conf.write_text(
        f"[supervisorctl]\nserverurl=unix:///proc/{pid}/root/etc/supervisor/run/supervisor.sock\n"
    )
    local = {
        "address": "local",
        "root": str(tmp_path),
        "supervisorctl": f"{sys.executable} -m supervisor.supervisorctl -c {conf}",
    }
    config = load_config(write_config(tmp_path, bed, "file:///unused", extra_hosts={"loc": local}))
    host = config.hosts["loc"]
    poller = StatusPoller([host], config.settings)
    try:
        fast = list(only(poller.poll(), "loc").rows)
        assert poller.via("loc") == "fast"
        ctl = poller.on_host(host, lambda t: status_rows(t, host, 5))
    finally:
        poller.close()
    assert_same_rows(fast, ctl)


def test_supervisord_down_is_reported_in_supervisorctls_words_and_back_up_is_fast(
    bed, mixed, tmp_path
):
    _config, poller = poller_for(tmp_path, bed)
    try:
        assert only(poller.poll(), mixed.name).reachable
        assert poller.via(mixed.name) == "fast"
        mixed.stop_supervisord()

        down = only(poller.poll(), mixed.name)

        # The helper could not ask either: supervisorctl's words, and no verdict on
        # the fast path, which both failed the same way.
        assert "supervisor.sock no such file" in down.error, down.error
        assert poller.fast_path_off(mixed.name) is None
        mixed.start_supervisord()
        add_programs(mixed)
        back = only(poller.poll(), mixed.name)
        assert {r.name: r.state.value for r in back.rows} == EXPECTED
        assert poller.via(mixed.name) == "fast"
        assert len(helper_pids(mixed)) == 1
    finally:
        poller.close()
