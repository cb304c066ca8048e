"""How the engine reads the status helper's answer to ``restart`` (update + restart in
one request): the fast tier's scripted hosts do not answer it (their builds restart
with supervisorctl), so each kind of answer is given here by a scripted helper. The
helper's own side runs against real supervisord in test_speed_e2e.py and
test_helper_rpc.py."""

from __future__ import annotations

import json

import pytest
from fakehost import ChannelHost, FakeChannel

from relconsole.config import Host
from relconsole.hosts.base import CommandTimedOut
from relconsole.status.fastpath import FastPath, SupervisorRefused, Unavailable
from relconsole.status.reader import StatusReader

#: supervisorctl with its config named: the helper asks that supervisord, no guessing.
HOST = Host(
    name="h1",
    address="h1.fake.invalid",
    user="deploy",
    supervisorctl="supervisorctl -c /etc/supervisor/supervisord.conf",
)


class HelperOnly(ChannelHost):
    """A connection whose helper answers ``restart`` with ``answer`` and ``status`` with
    one RUNNING program; it records the requests."""

    def __init__(self, answer: dict):
        self.answer = answer
        self.requests: list[str] = []

    def open_channel(self, command, *, timeout, sudo=False):
        def reply(line: bytes) -> bytes:
            request = line.decode()
            self.requests.append(request)
            if request == "status":
                web = {"name": "web", "group": "web", "statename": "RUNNING", "pid": 7}
                return json.dumps({"ok": True, "processes": [web]}).encode() + b"\n"
            return json.dumps(self.answer).encode() + b"\n"

        hello = json.dumps({"hello": 1, "serverurl": "unix:///run/supervisor.sock"})
        return FakeChannel(hello.encode() + b"\n", reply)


def test_a_restart_answer_gives_supervisorctls_lines_and_each_startsecs():
    t = HelperOnly(
        {
            "ok": True,
            "lines": ["web: stopped", "web: started", "api:api_0: ERROR (FATAL)"],
            "startsecs": {"web:web": 1, "api:api_0": 0, "odd": "soon", "nan": float("nan")},
        }
    )
    done = FastPath(t, HOST).restart(["web", "api:api_0"], timeout=30)
    # As restart_command spells them: a bare name is its group.
    assert t.requests == ["restart 30 web:* api:api_0"]
    assert done.lines == ["web: stopped", "web: started", "api:api_0: ERROR (FATAL)"]
    assert done.startsecs == {"web:web": 1.0, "api:api_0": 0.0}  # what is not seconds: dropped


@pytest.mark.parametrize("step", ["update", "restart"])
def test_a_restart_past_its_deadline_is_said_as_supervisorctls_timeout(step):
    t = HelperOnly({"ok": False, "timeout": step, "lines": ["web: stopped"]})
    with pytest.raises(CommandTimedOut) as caught:
        FastPath(t, HOST).restart(["web"], timeout=12.5)
    assert str(caught.value) == (
        f"h1: supervisorctl {step} timed out after 12.5s (settings.command_timeout)"
    )


def test_supervisord_refusing_is_a_refusal_not_a_reason_to_fall_back():
    t = HelperOnly({"ok": False, "fault": True, "error": "supervisord: SHUTDOWN_STATE"})
    fast = FastPath(t, HOST)
    with pytest.raises(SupervisorRefused, match="supervisord: SHUTDOWN_STATE"):
        fast.restart(["web"], timeout=30)
    assert fast.off is None


def test_a_lasting_error_turns_the_fast_path_off_and_supervisorctl_restarts():
    """The reader answers None: the supervisor stage restarts with supervisorctl."""
    t = HelperOnly({"ok": False, "lasting": True, "error": "bad restart request"})
    reader = StatusReader(t, HOST)
    assert [row.name for row in reader.rows(timeout=5)] == ["web"]
    assert reader.via == "fast"  # the helper answers status
    assert reader.restart(["web"], timeout=30) is None
    assert reader.off == "bad restart request"
    assert reader.restart(["web"], timeout=30) is None
    assert t.requests == ["status", "restart 30 web:*"]  # off: not asked again


def test_a_passing_error_falls_back_this_time_only():
    t = HelperOnly({"ok": False, "lasting": False, "error": "unix:///run/supervisor.sock: gone"})
    fast = FastPath(t, HOST)
    with pytest.raises(Unavailable) as caught:
        fast.restart(["web"], timeout=30)
    assert not caught.value.lasting and fast.off is None


@pytest.mark.parametrize("program", ["", "two words", "tab\there"])
def test_a_program_name_that_cannot_be_one_word_is_refused_before_asking(program):
    t = HelperOnly({"ok": True})
    with pytest.raises(ValueError):
        FastPath(t, HOST).restart([program], timeout=30)
    assert t.requests == []
