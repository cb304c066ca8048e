"""The scripted hosts of the fast tier (tests/fakehost.py) say what the real ones say:
their answers go through relconsole's own parsers, their files through its commands."""

from __future__ import annotations

import io
import threading

import pytest
from fakehost import FakeHost, FakeTransport, connector, fake_hosts

from relconsole import lock as lk
from relconsole.config import Settings
from relconsole.errors import Cancelled
from relconsole.hosts.base import CommandTimedOut, HostUnreachable
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import FastPath


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return fake_hosts(tmp_path, "h1", programs=["api", "workers:w0", "workers:w1"])["h1"]


@pytest.fixture
def t(tmp_path, host) -> FakeTransport:
    settings = Settings(state_dir=tmp_path / "state", known_hosts=tmp_path / "kh")
    transport = connector([host])(host.config, settings)
    assert isinstance(transport, FakeTransport)
    return transport


def test_supervisorctl_answers_parse_as_supervisorctls_do(host, t):
    host.supervisor.fail_next_start("workers:w1", "FATAL")
    restart = t.run(sv.restart_command("supervisorctl", ["api", "workers"]), timeout=5)
    assert sv.parse_action_output(restart.stdout) == {
        "api": "started",
        "workers:w0": "started",
        "workers:w1": "ERROR (spawn error)",
    }

    status = t.run(sv.status_command("supervisorctl"), timeout=5)
    rows, errors = sv.parse_status(status.stdout)

    assert errors == [] and status.exit_code == 3  # a FATAL process: exit 3, as supervisor
    assert [(r.name, r.state, r.pid) for r in rows] == [
        ("api", sv.State.RUNNING, host.supervisor.pid("api")),
        ("workers:w0", sv.State.RUNNING, host.supervisor.pid("workers:w0")),
        ("workers:w1", sv.State.FATAL, None),
    ]
    assert rows[0].uptime >= 1  # past the verify's settle time at once
    host.supervisor.down = True
    rows, errors = sv.parse_status(t.run("supervisorctl status", timeout=5).stdout)
    assert rows == [] and "no such file" in errors[0].line


def test_the_status_helper_gives_the_rows_supervisorctl_gives(host, t):
    fast = FastPath(t, host.config).rows(timeout=5)
    ctl, _ = sv.parse_status(t.run("supervisorctl status", timeout=5).stdout)
    assert [(r.name, r.state, r.pid) for r in fast] == [(r.name, r.state, r.pid) for r in ctl]
    assert all(abs(a.uptime - b.uptime) <= 1 for a, b in zip(fast, ctl))  # a second apart
    (channel,) = t.channels
    assert channel.sent == [b"status\n"]


def test_commands_run_in_a_shell_under_the_hosts_root(host, t, tmp_path):
    base = t.path("/srv/svc")
    assert base == str(tmp_path / "h1" / "srv" / "svc")
    mine, theirs = lk.LockInfo.mine("main"), lk.LockInfo.mine("other")

    assert t.run(lk.acquire_command(base, mine, ttl=120), timeout=5, sudo=True).ok
    refused = t.run(lk.acquire_command(base, theirs, ttl=120), timeout=5, sudo=True)
    assert refused.exit_code == 3 and lk.parse_holder(refused.stdout) == mine
    assert t.run(lk.release_command(base, mine.token), timeout=5, sudo=True).ok
    assert not host.path("/srv/svc/.relconsole-lock").exists()

    assert [(c.kind, c.sudo) for c in host.calls] == [("run", True)] * 3
    lines: list[tuple[str, str]] = []
    t.run("echo out; echo err >&2; exit 4", timeout=5, on_line=lambda *ln: lines.append(ln))
    assert lines == [("out", "out"), ("err", "err")]


def test_rules_answer_first_in_order_and_as_often_as_told(host, t):
    host.fail(r"^touch ", exit=9, stderr="read-only", times=1)
    host.on(r"^touch .*b$", HostUnreachable("h1", "dropped"))
    host.on(r"^sleep", CommandTimedOut("h1", "timed out"))
    seen: list[str] = []
    host.on(r"^echo", lambda call, _t: seen.append(call.command))  # then runs as usual

    assert t.run("touch a", timeout=5).exit_code == 9
    assert not host.path("/a").exists()
    assert t.run("touch a", timeout=5).ok and host.path("/a").exists()  # times=1 used up
    with pytest.raises(HostUnreachable):
        t.run("touch b", timeout=5)
    with pytest.raises(CommandTimedOut):
        t.run("sleep 60", timeout=5)
    assert t.run("echo hi", timeout=5).stdout == "hi\n" and seen == ["echo hi"]
    assert host.rules[0].hits == 1


def test_put_records_its_data_and_honours_a_cancel(host, t):
    res = t.put_stream("cat > got", io.BytesIO(b"tar bytes"), timeout=5, sudo=True)
    assert res.ok and host.path("/got").read_bytes() == b"tar bytes"
    assert host.puts[0].data == b"tar bytes" and host.puts[0].sudo

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        t.put_stream("cat > again", io.BytesIO(b"x"), timeout=5, cancel=cancel)
    assert not host.path("/again").exists()


def test_a_closed_connection_and_an_unscripted_channel_fail_loudly(host, t):
    with pytest.raises(AssertionError, match="no script for a channel"):
        t.open_channel("tail -f /var/log/syslog", timeout=5)
    t.close()
    with pytest.raises(HostUnreachable):
        t.run("true", timeout=5)
