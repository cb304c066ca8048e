"""relconsole.supervisor: parsing real ``supervisorctl`` output and building commands.

Fixtures live in tests/data/supervisorctl/: ``<name>.txt`` is the output exactly as
printed, ``<name>.json`` the expected parse plus the command and the exit code that
supervisorctl returned.  ``status_*`` files go through ``parse_status``,
``action_*`` files through ``parse_action_output``.  Everything except the
``status_handwritten_*`` files was recorded from a real supervisor 4.3.0.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from relconsole.status import supervisorctl as sv
from relconsole.status.supervisorctl import ProcessStatus, State

DATA = Path(__file__).parent / "data" / "supervisorctl"
FIXTURES = sorted(p.stem for p in DATA.glob("*.txt"))


def _read(stem: str) -> str:
    # newline="" keeps \r\n exactly as stored
    with open(DATA / f"{stem}.txt", encoding="utf-8", newline="") as f:
        return f.read()


def _expected(stem: str) -> dict:
    return json.loads((DATA / f"{stem}.json").read_text(encoding="utf-8"))


def _row(p: ProcessStatus) -> dict:
    return {**dataclasses.asdict(p), "state": p.state.value}


def test_fixture_set_is_complete():
    assert len(FIXTURES) >= 20
    for stem in FIXTURES:
        assert stem.startswith(("status_", "action_")), stem
        assert (DATA / f"{stem}.json").is_file(), stem
    assert {p.stem for p in DATA.glob("*.json")} == set(FIXTURES)


@pytest.mark.parametrize("stem", FIXTURES)
def test_fixture(stem):
    text, expected = _read(stem), _expected(stem)
    if stem.startswith("status_"):
        rows, errors = sv.parse_status(text)
        assert [_row(r) for r in rows] == expected["processes"]
        assert [e.line for e in errors] == expected["errors"]
        assert all(isinstance(r.state, State) for r in rows)
    else:
        assert sv.parse_action_output(text) == expected["results"]


# --- things the recorded fixtures prove about supervisor itself -------------------


def _exit(stem: str) -> int:
    return _expected(stem)["exit_code"]


def test_exit_code_is_no_verdict():
    # A program stuck in BACKOFF exits 0, a deliberately stopped one exits 3.
    rows, _ = sv.parse_status(_read("status_backoff_only"))
    assert _exit("status_backoff_only") == 0 and rows[0].state in sv.FAILED_STATES
    rows, _ = sv.parse_status(_read("status_stopped_only"))
    assert _exit("status_stopped_only") == 3 and rows[0].state is State.STOPPED
    # starting or stopping: also 0
    assert _exit("status_starting_only") == _exit("status_stopping_only") == 0
    # a restart with "ERROR (not running)" on the stop half is still a success
    assert _exit("action_restart_was_stopped") == 0


def test_all_states_fixture_covers_every_real_state():
    rows, errors = sv.parse_status(_read("status_all_states"))
    assert not errors
    assert {r.state for r in rows} == set(State) - {State.UNKNOWN}


def test_long_name_widens_the_column_for_every_row():
    lines = _read("status_all_states").splitlines()
    long = "a_really_long_program_name_that_is_longer_than_the_column"
    col = len(long) + 3
    assert all(line[col : col + 8].strip() in State.__members__ for line in lines)
    assert all(line[col - 1] == " " for line in lines)


def test_bare_group_name_is_unknown_to_supervisorctl():
    # why restart_command sends "workers:*" rather than "workers"
    assert sv.parse_action_output(_read("action_restart_group_bare_name")) == {
        "workers": "ERROR (no such process)"
    }
    assert "workers: started" not in _read("action_restart_group_bare_name")
    assert _read("action_restart_globs").count(": started") == 5


# --- parse_status robustness ---------------------------------------------------------


def test_crlf_and_lf_parse_the_same():
    text = _read("status_all_states")
    assert sv.parse_status(text.replace("\n", "\r\n")) == sv.parse_status(text)


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n", "   \t  \n"])
def test_blank_input(text):
    assert sv.parse_status(text) == ([], [])


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "RUNNING",
        "a b c d e",
        "\x00\x01\x02",
        ":",
        "api: ERROR (spawn error)",
        "api RUNNINGX pid 1",
        "api running pid 1",
        "\udcff",
        "\ufeffapi",
    ],
)
def test_garbage_is_an_error_not_an_exception(text):
    rows, errors = sv.parse_status(text)
    assert rows == []
    assert errors == [sv.StatusError(text.strip())]


def test_every_state_name_is_recognised():
    text = "\n".join(f"p{i}   {s.value}   " for i, s in enumerate(State))
    rows, errors = sv.parse_status(text)
    assert not errors
    assert [r.state for r in rows] == list(State)
    assert all(r.description == "" and r.pid is None and r.uptime is None for r in rows)


def test_pid_only_from_a_pid_description():
    rows, _ = sv.parse_status(
        "a  FATAL  can't find command 'pid 12'\n"
        "b  BACKOFF  pid 12 is not a pid here, uptime 0:00:01 either\n"
        "c  RUNNING  pid 12, uptime 0:00:01\n"
    )
    assert [r.pid for r in rows] == [None, None, 12]
    assert [r.uptime for r in rows] == [None, None, 1]


def test_state_sets():
    assert {State.BACKOFF, State.FATAL, State.EXITED} == sv.FAILED_STATES
    assert {State.STARTING, State.STOPPING} == sv.TRANSITIONAL_STATES
    assert State.RUNNING == "RUNNING"


# --- ProcessStatus.group / belongs_to ---------------------------------------------------


def _proc(name: str) -> ProcessStatus:
    return ProcessStatus(name, State.RUNNING, 1, 1, "pid 1, uptime 0:00:01")


@pytest.mark.parametrize(
    "name, group",
    [
        ("api", "api"),
        ("workers:worker_00", "workers"),
        ("site:web", "site"),
    ],
)
def test_group(name, group):
    assert _proc(name).group == group


@pytest.mark.parametrize(
    "name, program, expected",
    [
        ("api", "api", True),
        ("api", "api:*", True),
        ("api", "ap", False),
        ("api", "api2", False),
        ("api", "*", False),
        ("api", "all", False),
        ("workers:worker_00", "workers", True),
        ("workers:worker_00", "workers:*", True),
        ("workers:worker_00", "workers:worker_00", True),
        ("workers:worker_00", "workers:worker_01", False),
        ("workers:worker_00", "worker_00", False),
        ("workers:worker_00", "work", False),
        ("workers:worker_00", "workers:", False),
        ("site:web", "site", True),
        ("site:web", "web", False),
    ],
)
def test_belongs_to(name, program, expected):
    assert _proc(name).belongs_to(program) is expected


def test_belongs_to_on_recorded_rows():
    rows, _ = sv.parse_status(_read("status_group_section"))
    assert [r.name for r in rows if r.belongs_to("workers")] == [
        "workers:workers_00",
        "workers:workers_01",
    ]
    assert [r.name for r in rows if r.belongs_to("site:*")] == ["site:mail", "site:web"]
    assert [r.name for r in rows if r.belongs_to("api")] == ["api"]


# --- command builders ---------------------------------------------------------------

CTL = "supervisorctl -c /etc/supervisor/supervisord.conf"


def test_status_and_update_commands():
    assert sv.status_command("supervisorctl") == "supervisorctl status"
    assert sv.status_command(CTL) == f"{CTL} status"
    assert sv.update_command(CTL) == f"{CTL} update"


def test_restart_command_sends_whole_groups():
    assert sv.restart_command(CTL, ["api", "workers", "site:web", "jobs:*"]) == (
        f"{CTL} restart 'api:*' 'workers:*' site:web 'jobs:*'"
    )
    assert shlex.split(sv.restart_command("supervisorctl", ["all"]))[2:] == ["all:*"]


@pytest.mark.parametrize("name", ["my prog", "api;reboot", "a$(id)", "x'y", "-rf", "a&&b"])
def test_restart_command_quotes(name):
    cmd = sv.restart_command("supervisorctl", [name])
    assert shlex.split(cmd) == ["supervisorctl", "restart", f"{name}:*"]
    assert f" {name}" not in cmd


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_action_command(action):
    assert sv.action_command(CTL, action, ["workers:worker_00", "api"]) == (
        f"{CTL} {action} workers:worker_00 api"
    )


@pytest.mark.parametrize("name", ["my prog", "api;reboot", "`id`", "a|b"])
def test_action_command_quotes(name):
    cmd = sv.action_command("supervisorctl", "stop", [name, "api"])
    assert shlex.split(cmd) == ["supervisorctl", "stop", name, "api"]
    assert cmd == f"supervisorctl stop {shlex.quote(name)} api"
    assert shlex.quote(name) != name


@pytest.mark.parametrize("action", ["kill", "shutdown", "START", "", "stop; reboot", "update"])
def test_action_command_rejects_other_actions(action):
    with pytest.raises(ValueError):
        sv.action_command("supervisorctl", action, ["api"])


@pytest.mark.parametrize("names", [[], [""], ["  "], "api"])
def test_builders_reject_empty_or_string_names(names):
    with pytest.raises((ValueError, TypeError)):
        sv.action_command("supervisorctl", "start", names)
    with pytest.raises((ValueError, TypeError)):
        sv.restart_command("supervisorctl", names)


def test_tail_command():
    assert sv.tail_command(CTL, "api") == f"{CTL} tail -4000 api"
    assert sv.tail_command(CTL, "workers:worker_00", "stderr") == (
        f"{CTL} tail -4000 workers:worker_00 stderr"
    )
    assert sv.tail_command("supervisorctl", "api", "stdout", 100) == "supervisorctl tail -100 api"
    assert shlex.split(sv.tail_command("supervisorctl", "a b;c", "stderr")) == [
        "supervisorctl",
        "tail",
        "-4000",
        "a b;c",
        "stderr",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream": "both"},
        {"stream": "STDERR"},
        {"nbytes": 0},
        {"nbytes": -5},
        {"nbytes": "4000"},
        {"nbytes": True},
        {"nbytes": 1.5},
    ],
)
def test_tail_command_rejects(kwargs):
    with pytest.raises(ValueError):
        sv.tail_command("supervisorctl", "api", **kwargs)


# --- format_uptime -----------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, ""),
        (0, "0:00:00"),
        (3, "0:00:03"),
        (3600, "1:00:00"),
        (86399, "23:59:59"),
        (86400, "1 day, 0:00:00"),
        (86401, "1 day, 0:00:01"),
        (458294, "5 days, 7:18:14"),
        (-10, "0:00:00"),
    ],
)
def test_format_uptime(seconds, text):
    assert sv.format_uptime(seconds) == text


@pytest.mark.parametrize("seconds", [0, 1, 59, 3599, 86399, 86400, 172800, 458294, 10713599])
def test_format_uptime_round_trips_through_parse(seconds):
    line = f"api   RUNNING   pid 1, uptime {sv.format_uptime(seconds)}"
    (row,), _ = sv.parse_status(line)
    assert row.uptime == seconds


# --- parse_action_output ------------------------------------------------------------


def test_action_output_last_line_per_name_wins():
    text = "cron: ERROR (not running)\ncron: started\r\n"
    assert sv.parse_action_output(text) == {"cron": "started"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Shut down",
        "unix:///var/run/supervisor.sock no such file",
        "unix:///var/run/supervisor.sock refused connection",
        "Error: restart requires a process name",
        "error: <class 'socket.error'>, [Errno 111] Connection refused: file: x line: 1",
        "ERROR: already shutting down",
        "ERROR: no such group: web",
        "Server requires authentication",
        "api: whatever",
        "api:",
        "api: ERROR",
        "garbage",
    ],
)
def test_action_output_ignores_non_results(text):
    assert sv.parse_action_output(text) == {}


def test_action_output_errors_kept_verbatim():
    text = (
        "api: ERROR (abnormal termination)\nweb: ERROR (file is not executable)\n"
        "site:mail: signalled\n"
    )
    assert sv.parse_action_output(text) == {
        "api": "ERROR (abnormal termination)",
        "web": "ERROR (file is not executable)",
        "site:mail": "signalled",
    }


def test_module_is_pure():
    src = Path(sv.__file__).read_text()
    for banned in ("import textual", "from textual", "subprocess", "open(", "import os"):
        assert banned not in src
