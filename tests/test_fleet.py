"""FleetTracker and new_log_text: the process view's memory, without Textual or hosts."""

import subprocess
import sys

from relconsole.status.poller import HostStatus
from relconsole.status.supervisorctl import ProcessStatus, State
from relconsole.status.tracker import NO_PROGRAMS, UNREACHABLE, FleetRow, FleetTracker, new_log_text


def proc(name, state="RUNNING", pid=None, uptime=None, description=None):
    state = State(state)
    if description is None:
        description = f"pid {pid}, uptime 0:00:{uptime or 0:02d}" if pid else ""
    return ProcessStatus(name, state, pid, uptime, description)


def up(host, *procs):
    return HostStatus.answered(host, procs, seconds=0.01)


def down(host, why="cannot connect to 10.0.0.1:22: Connection refused"):
    return HostStatus.unreachable(host, why, seconds=0.01)


def by_key(rows):
    return {r.key: r for r in rows}


def test_first_poll_shows_every_program_with_no_restarts():
    t = FleetTracker()
    rows = t.update(
        [
            up("h1", proc("api", pid=10, uptime=5), proc("cron", "STOPPED")),
            up("h2", proc("api", pid=20, uptime=7)),
        ],
        now=100.0,
    )
    assert [(r.host, r.program, r.state, r.pid) for r in rows] == [
        ("h1", "api", "RUNNING", 10),
        ("h1", "cron", "STOPPED", None),
        ("h2", "api", "RUNNING", 20),
    ]
    assert all(r.restarts == 0 and r.restarted_at is None for r in rows)
    # A running program's state began when it started; a stopped one's age is unknown.
    assert by_key(rows)["h1:api"].last_change == 95.0
    assert by_key(rows)["h1:cron"].last_change is None
    assert [r.key for r in rows] == ["h1:api", "h1:cron", "h2:api"]


def test_changed_pid_counts_one_restart_once():
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=50))], now=100.0)
    row = t.update([up("h1", proc("api", pid=11, uptime=1))], now=102.0)[0]
    assert (row.restarts, row.restarted_at, row.last_change) == (1, 102.0, 102.0)
    again = t.update([up("h1", proc("api", pid=11, uptime=3))], now=104.0)[0]
    assert (again.restarts, again.restarted_at, again.last_change) == (1, 102.0, 102.0)
    third = t.update([up("h1", proc("api", pid=12, uptime=1))], now=106.0)[0]
    assert (third.restarts, third.restarted_at) == (2, 106.0)


def test_same_pid_is_no_restart():
    t = FleetTracker()
    for now in (100.0, 102.0, 104.0):
        row = t.update([up("h1", proc("api", pid=10, uptime=int(now) - 90))], now=now)[0]
    assert row.restarts == 0 and row.restarted_at is None
    assert row.last_change == 90.0


def test_starting_then_running_is_a_state_change_not_a_restart():
    t = FleetTracker()
    t.update([up("h1", proc("api", "STARTING"))], now=100.0)
    row = t.update([up("h1", proc("api", pid=10, uptime=1))], now=102.0)[0]
    assert (row.state, row.restarts, row.last_change) == ("RUNNING", 0, 102.0)


def test_pid_change_across_pidless_polls_is_one_restart():
    # kill -9: RUNNING pid 10, then BACKOFF/STARTING (no pid), then RUNNING pid 11.
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=9))], now=100.0)
    mid = t.update([up("h1", proc("api", "BACKOFF", description="Exited too quickly"))], now=102.0)[
        0
    ]
    assert (mid.state, mid.restarts, mid.last_change) == ("BACKOFF", 0, 102.0)
    row = t.update([up("h1", proc("api", pid=11, uptime=1))], now=104.0)[0]
    assert (row.state, row.restarts, row.restarted_at, row.last_change) == (
        "RUNNING",
        1,
        104.0,
        104.0,
    )


def test_stopped_and_started_by_hand_counts_as_a_restart():
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=9))], now=100.0)
    t.update([up("h1", proc("api", "STOPPED", description="Nov 26 09:00 AM"))], now=102.0)
    row = t.update([up("h1", proc("api", pid=12, uptime=1))], now=104.0)[0]
    assert row.restarts == 1


def test_unreachable_host_is_one_row_with_the_reason_and_others_carry_on():
    t = FleetTracker()
    t.update(
        [up("h1", proc("api", pid=10, uptime=1)), up("h2", proc("api", pid=20, uptime=1))], 100.0
    )
    rows = t.update(
        [down("h1", "connection lost: EOF"), up("h2", proc("api", pid=21, uptime=1))], 102.0
    )
    assert [r.key for r in rows] == ["h1", "h2:api"]
    h1 = rows[0]
    assert (h1.program, h1.state, h1.description, h1.last_change) == (
        None,
        UNREACHABLE,
        "connection lost: EOF",
        102.0,
    )
    assert h1.pid is None and h1.restarts == 0
    assert rows[1].restarts == 1
    # Still down, with another reason: it has been down since the first failure.
    later = t.update([down("h1", "cannot connect"), up("h2", proc("api", pid=21, uptime=3))], 104.0)
    assert (later[0].description, later[0].last_change) == ("cannot connect", 102.0)


def test_host_that_comes_back_keeps_its_restart_counts():
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=1), proc("web", pid=30, uptime=1))], 100.0)
    t.update([up("h1", proc("api", pid=11, uptime=1), proc("web", pid=30, uptime=3))], 102.0)
    t.update([down("h1")], 104.0)
    t.update([down("h1")], 106.0)
    # Back: api kept its pid (count stays 1), web was restarted during the outage.
    rows = by_key(
        t.update([up("h1", proc("api", pid=11, uptime=9), proc("web", pid=31, uptime=2))], 108.0)
    )
    assert set(rows) == {"h1:api", "h1:web"}
    assert (rows["h1:api"].restarts, rows["h1:api"].last_change) == (1, 102.0)
    assert (rows["h1:web"].restarts, rows["h1:web"].restarted_at) == (1, 108.0)


def test_removed_programs_are_dropped_and_forgotten():
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=1), proc("old", pid=40, uptime=1))], 100.0)
    t.update([up("h1", proc("api", pid=10, uptime=3), proc("old", pid=41, uptime=1))], 102.0)
    rows = t.update([up("h1", proc("api", pid=10, uptime=5))], 104.0)
    assert [r.key for r in rows] == ["h1:api"]
    # Added again later: a new program, counted from zero.
    rows = by_key(
        t.update([up("h1", proc("api", pid=10, uptime=7), proc("old", pid=50, uptime=1))], 106.0)
    )
    assert rows["h1:old"].restarts == 0


def test_host_without_programs_still_shows():
    rows = FleetTracker().update([up("h1")], 100.0)
    assert [(r.key, r.state) for r in rows] == [("h1", NO_PROGRAMS)]


def test_empty_answer_keeps_the_programs_memory():
    # What a poll sees when its ssh channel is cut mid-command: no rows, no error.
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=1))], 100.0)
    t.update([up("h1", proc("api", pid=11, uptime=1))], 102.0)
    assert [r.state for r in t.update([up("h1")], 104.0)] == [NO_PROGRAMS]
    row = t.update([up("h1", proc("api", pid=11, uptime=5))], 106.0)[0]
    assert (row.restarts, row.last_change) == (1, 102.0)


def test_hosts_left_out_are_forgotten():
    t = FleetTracker()
    t.update([up("h1", proc("api", pid=10, uptime=1))], 100.0)
    t.update([], 102.0)
    row = t.update([up("h1", proc("api", pid=11, uptime=1))], 104.0)[0]
    assert row.restarts == 0


def test_group_members_are_separate_rows():
    t = FleetTracker()
    t.update(
        [up("h1", proc("workers:w_00", pid=1, uptime=1), proc("workers:w_01", pid=2, uptime=1))],
        100.0,
    )
    rows = by_key(
        t.update(
            [
                up(
                    "h1",
                    proc("workers:w_00", pid=1, uptime=3),
                    proc("workers:w_01", pid=3, uptime=1),
                )
            ],
            102.0,
        )
    )
    assert rows["h1:workers:w_00"].restarts == 0
    assert rows["h1:workers:w_01"].restarts == 1


def test_row_key_of_host_rows_has_no_colon():
    assert FleetRow("h1", None, UNREACHABLE).key == "h1"
    assert FleetRow("h1", "workers:w_00", "RUNNING").key == "h1:workers:w_00"


# --- new_log_text --------------------------------------------------------------------


def test_log_text_first_fetch_is_all_new():
    assert new_log_text("", "a\nb\n") == "a\nb\n"


def test_log_text_growing_log_smaller_than_the_window():
    assert new_log_text("a\nb\n", "a\nb\nc\n") == "c\n"
    assert new_log_text("a\nb\n", "a\nb\n") == ""


def test_log_text_sliding_window():
    shown = "line 1\nline 2\nline 3\n"
    fetched = "ne 2\nline 3\nline 4\nli"  # a window of the same size, further on
    assert new_log_text(shown, fetched) == "line 4\nli"
    assert new_log_text(shown + "line 4\nli", "ne 4\nline 5\n") == "ne 5\n"


def test_log_text_short_overlap_and_partial_lines():
    assert new_log_text("abc", "cdef") == "def"
    assert new_log_text("abc", "abcdef") == "def"


def test_log_text_smaller_window_inside_what_is_shown():
    shown = "".join(f"line {i}\n" for i in range(100))
    assert new_log_text(shown, shown[-30:]) == ""
    assert new_log_text(shown, shown[-30:] + "line 100\n") == "line 100\n"


def test_log_text_without_overlap_is_all_new():
    assert new_log_text("old stuff\n", "rotated\n") == "rotated\n"
    assert new_log_text("abc\n", "") == ""


def test_repeated_lines_are_never_shown_twice():
    assert new_log_text("tick\ntick\n", "tick\ntick\n") == ""


def test_fleet_does_not_import_textual():
    code = "import sys, relconsole.status.tracker; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
