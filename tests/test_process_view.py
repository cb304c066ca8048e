"""The process view against the real test bed: sshd + supervisord per host.

The screen is hosted in a tiny App, as app.py hosts it. Every wait is a short
``pilot.pause`` loop on a condition, with a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from deployconfig import write_config
from gitorigin import sample_service_files
from rich.text import Text
from textual import events
from textual.app import App
from textual.widgets import DataTable, Input, Log

from relconsole.config import load_config
from relconsole.pipeline import run_build
from relconsole.status.poller import StatusPoller
from relconsole.status.tracker import FleetRow
from relconsole.ui.clock import format_age
from relconsole.ui.dialogs import ConfirmStop
from relconsole.ui.process_rows import matches, render_row
from relconsole.ui.process_screen import ProcessScreen

SIZE = (120, 40)

TICK = """\
import itertools, time
for i in itertools.count():
    print("tick", i, flush=True)
    time.sleep(0.1)
"""


class Harness(App):
    def __init__(self, config, poller):
        super().__init__()
        self.config = config
        self.poller = poller

    def on_mount(self) -> None:
        self.push_screen(ProcessScreen(self.config, self.poller))


def add_program(host, name: str = "tick") -> None:
    """Run /srv/{name}.py under the host's supervisord; return once it is RUNNING."""
    host.path(f"/srv/{name}.py").write_text(TICK)
    host.path(f"/etc/supervisor/conf.d/{name}.conf").write_text(
        f"[program:{name}]\ncommand=/usr/bin/python3 -u /srv/{name}.py\nstartsecs=0\n"
        f"autorestart=true\nstopwaitsecs=2\nstdout_logfile=/etc/supervisor/log/{name}.out.log\n"
        f"stderr_logfile=/etc/supervisor/log/{name}.err.log\n"
    )
    host.supervisorctl("update")
    deadline = time.monotonic() + 10
    while host.program_pid(name) is None:
        assert time.monotonic() < deadline, f"{name} did not start on {host.name}"
        time.sleep(0.05)


def add_programs(hosts, name: str = "tick") -> None:
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda h: add_program(h, name), hosts))


def cell(app, key: str, column: str) -> str | None:
    """What the table shows in a cell, or None while that row is not shown."""
    table = app.screen.query_one("#processes", DataTable)
    try:
        value = table.get_cell(key, column)
    except Exception:  # CellDoesNotExist / RowDoesNotExist
        return None
    return value.plain


def row_keys(app) -> list[str]:
    table = app.screen.query_one("#processes", DataTable)
    return [row.key.value for row in table.ordered_rows]


async def until(pilot, predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; rows: {row_keys(pilot.app)}"
            )
        await pilot.pause(0.05)
    return result


async def after_polls(pilot, rounds: int = 2) -> None:
    """Let every host be polled ``rounds`` more times (to see that nothing changed)."""
    screen = pilot.app.screen
    for _ in range(rounds):
        for name in [h.name for h in screen.poller.hosts]:
            before = screen._statuses.get(name)
            await until(
                pilot, lambda: screen._statuses.get(name) is not before, f"a poll of {name}"
            )


async def select(pilot, key: str) -> None:
    await until(pilot, lambda: key in row_keys(pilot.app), f"row {key}")
    pilot.app.screen.query_one("#processes", DataTable).move_cursor(
        row=row_keys(pilot.app).index(key)
    )
    await pilot.pause()
    assert pilot.app.screen.selected_row().key == key


def kill_connections_to(host) -> None:
    """Drop every established ssh connection to ``host`` (as a host going down does).

    stop_sshd() only stops new connections; the poller's open one would live on.
    """
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", "src", f"{host.address}:{host.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pids = {int(p.split(",")[0]) for p in out.split("pid=")[1:]}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


# --- the tests ----------------------------------------------------------------------


async def test_shows_every_host_running_with_its_pid(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    path = write_config(tmp_path, bed, origin.url, settings={"poll_interval": 0.3})
    config = load_config(path)
    finished = run_build(config, "svc", lambda e: None)
    assert finished.ok, finished.error
    poller = StatusPoller(list(config.hosts.values()), config.settings)
    try:
        app = Harness(config, poller)
        async with app.run_test(size=SIZE) as pilot:
            for host in bed.hosts:
                pid = str(host.program_pid("svc"))
                await until(
                    pilot,
                    lambda: cell(app, f"{host.name}:svc", "pid") == pid,
                    f"{host.name}:svc with pid {pid}",
                )
                assert cell(app, f"{host.name}:svc", "state") == "RUNNING"
                assert cell(app, f"{host.name}:svc", "restarts") == ""
            assert row_keys(app) == ["h1:svc", "h2:svc", "h3:svc"]
            assert app.screen.sub_title.startswith("3/3 hosts reachable · polled ")
            state = app.screen.query_one("#processes", DataTable).get_cell("h1:svc", "state")
            assert isinstance(state, Text) and "green" in str(state.style)
    finally:
        poller.close()


async def test_killed_program_shows_its_new_pid_and_one_restart(bed, setup):
    add_programs(bed.hosts[:2])
    h1 = bed.hosts[0]
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        old = str(h1.program_pid("tick"))
        await until(pilot, lambda: cell(app, "h1:tick", "pid") == old, "h1:tick running")
        await select(pilot, "h1:tick")
        os.kill(int(old), signal.SIGKILL)
        await until(pilot, lambda: cell(app, "h1:tick", "restarts") == "1", "a restart counted")
        new = await until(pilot, lambda: h1.program_pid("tick"), "supervisor to restart tick")
        await until(pilot, lambda: cell(app, "h1:tick", "pid") == str(new), "the new pid")
        assert str(new) != old
        pid_cell = app.screen.query_one("#processes", DataTable).get_cell("h1:tick", "pid")
        assert "reverse" in str(pid_cell.style)  # highlighted for a few seconds
        assert cell(app, "h1:tick", "state") == "RUNNING"
        assert cell(app, "h2:tick", "restarts") == ""
        assert app.screen.selected_row().key == "h1:tick"  # the cursor stayed put
        assert cell(app, "h3", "state") == "NO PROGRAMS"


async def test_unreachable_host_does_not_stall_the_others_and_comes_back(bed, setup):
    add_programs(bed.hosts)
    h1, _, h3 = bed.hosts
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: cell(app, "h3:tick", "state") == "RUNNING", "h3 running")
        h3.stop_sshd()
        kill_connections_to(h3)
        await until(pilot, lambda: cell(app, "h3", "state") == "UNREACHABLE", "h3 unreachable")
        assert "h3:tick" not in row_keys(app)
        assert cell(app, "h3", "detail")  # the reason, in the engine's words
        # Once the dropped connection is retried, the reason names the address.
        await until(
            pilot,
            lambda: f"{h3.address}:{h3.port}" in cell(app, "h3", "detail"),
            "the address in the reason",
        )
        assert app.screen.sub_title.startswith("2/3 hosts reachable")
        # h1 keeps updating meanwhile.
        old = h1.program_pid("tick")
        os.kill(old, signal.SIGKILL)
        await until(pilot, lambda: cell(app, "h1:tick", "restarts") == "1", "h1 restart seen")
        assert cell(app, "h3", "state") == "UNREACHABLE"
        h3.start_sshd()
        await until(pilot, lambda: cell(app, "h3:tick", "state") == "RUNNING", "h3 back")
        assert row_keys(app) == ["h1:tick", "h2:tick", "h3:tick"]
        assert cell(app, "h3:tick", "pid") == str(h3.program_pid("tick"))


async def test_slow_host_does_not_hold_back_the_others(bed, origin, tmp_path):
    # A "host" that accepts TCP and never says a word: ssh waits for its banner
    # until connect_timeout (8 s here).
    add_program(bed.hosts[0])
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    host = bed.hosts[0]
    slow = {
        "address": "127.0.0.1",
        "port": listener.getsockname()[1],
        "user": "root",
        "key": str(bed.client_key),
    }
    path = write_config(
        tmp_path,
        bed,
        origin.url,
        extra_hosts={"slow": slow},
        settings={"poll_interval": 0.3, "connect_timeout": 8},
    )
    config = load_config(path)
    poller = StatusPoller(list(config.hosts.values()), config.settings)
    try:
        app = Harness(config, poller)
        async with app.run_test(size=SIZE) as pilot:
            started = time.monotonic()
            pid = str(host.program_pid("tick"))
            await until(
                pilot,
                lambda: cell(app, "h1:tick", "pid") == pid,
                "h1 while slow hangs",
                timeout=6,
            )
            assert cell(app, "slow", "state") == "CONNECTING"
            assert time.monotonic() - started < 6  # well before slow's connect_timeout
            # The hung host gives up when its peer goes away.
            for conn in accepted:
                conn.close()
            listener.close()
            await until(pilot, lambda: cell(app, "slow", "state") == "UNREACHABLE", "slow fails")
    finally:
        poller.close()


async def test_restart_action_gives_a_new_pid(bed, setup):
    add_programs(bed.hosts[:1])
    h1 = bed.hosts[0]
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        old = str(h1.program_pid("tick"))
        await until(pilot, lambda: cell(app, "h1:tick", "pid") == old, "h1:tick running")
        await select(pilot, "h1:tick")
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "h1:tick", "pid") not in (old, "", None), "a new pid")
        assert cell(app, "h1:tick", "pid") == str(h1.program_pid("tick"))
        assert cell(app, "h1:tick", "restarts") == "1"

        def started():
            return [n.message for n in app._notifications].count("tick: started")

        # The poll may show the new pid before the restart command's answer is back.
        await until(pilot, lambda: started() == 1, "the first restart's answer")
        # Leaving the screen at once does not lose the answer.
        pid = h1.program_pid("tick")
        await pilot.press("r", "p")
        assert not isinstance(app.screen, ProcessScreen)
        await until(pilot, lambda: started() == 2, "the second restart's answer")
        assert h1.program_pid("tick") != pid


async def test_stop_asks_first_then_stops_and_start_brings_it_back(bed, setup):
    add_programs(bed.hosts[:1])
    h1 = bed.hosts[0]
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        pid = h1.program_pid("tick")
        await until(pilot, lambda: cell(app, "h1:tick", "pid") == str(pid), "h1:tick running")
        await select(pilot, "h1:tick")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the question")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen), "the question gone")
        await after_polls(pilot)  # nothing must have happened
        assert h1.program_pid("tick") == pid
        assert cell(app, "h1:tick", "state") == "RUNNING"

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the question")
        await pilot.press("y")
        await until(pilot, lambda: cell(app, "h1:tick", "state") == "STOPPED", "tick stopped")
        assert h1.program_pid("tick") is None
        assert cell(app, "h1:tick", "pid") == ""

        await pilot.press("S")
        await until(pilot, lambda: cell(app, "h1:tick", "state") == "RUNNING", "tick started")
        assert cell(app, "h1:tick", "pid") == str(h1.program_pid("tick"))


async def test_filter_narrows_rows_and_escape_clears_it(bed, setup):
    add_programs(bed.hosts)
    add_program(bed.hosts[1], "worker")
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        everything = ["h1:tick", "h2:tick", "h2:worker", "h3:tick"]
        await until(pilot, lambda: row_keys(app) == everything, "all rows")
        pids = {h.name: h.program_pid("tick") for h in bed.hosts}
        # Typed at once, as a fast typist does: nothing may go to the table.
        for key, char in (("slash", "/"), ("H", "H"), ("2", "2")):
            app.post_message(events.Key(key, char))
        await until(pilot, lambda: row_keys(app) == ["h2:tick", "h2:worker"], "h2's rows")
        assert app.screen.query_one("#filter", Input).value == "H2"  # case-insensitive
        await pilot.press("enter")  # keep the filter, back to the table
        table = app.screen.query_one("#processes", DataTable)
        await until(pilot, lambda: table.has_focus, "the table focused")
        assert app.screen.sub_title.endswith(" · 2/4 rows")
        await pilot.press("j")
        assert app.screen.selected_row().key == "h2:worker"
        await pilot.press("slash", "backspace", "backspace", *"work")
        await until(pilot, lambda: row_keys(app) == ["h2:worker"], "the worker row")
        await pilot.press("escape")
        await until(pilot, lambda: row_keys(app) == everything, "all rows again")
        assert app.screen.selected_row().key == "h2:worker"  # the cursor followed its row
        assert not app.screen.query_one("#filter", Input).display
        await pilot.press("slash", *"restart")  # typing letters must not act on rows
        await after_polls(pilot)
        assert {h.name: h.program_pid("tick") for h in bed.hosts} == pids
        assert row_keys(app) == []  # "restart" matches no host, program or state
        await pilot.press("escape")
        await until(pilot, lambda: row_keys(app) == everything, "all rows again")
        await pilot.press("escape")  # nothing left to close: back to the app
        await until(pilot, lambda: not isinstance(app.screen, ProcessScreen), "screen popped")


async def test_tail_shows_the_program_log_live_without_repeats(bed, setup):
    add_programs(bed.hosts[:1])
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: cell(app, "h1:tick", "state") == "RUNNING", "h1:tick")
        await select(pilot, "h1:tick")
        await pilot.press("l")
        log = app.screen.query_one("#tail-log", Log)
        assert app.screen.query_one("#tail").display

        def ticks():
            return [int(line.split()[1]) for line in log.lines if line.startswith("tick ")]

        first = await until(pilot, ticks, "log lines")
        # Several fetches later: new lines appended, none twice, none missing.
        await until(pilot, lambda: len(ticks()) > len(first) + 15, "more log lines", timeout=10)
        seen = ticks()
        assert seen == list(range(seen[0], seen[0] + len(seen))), seen
        assert [line for line in log.lines[:-1] if not line.startswith("tick ")] == []
        await pilot.press("escape")
        assert not app.screen.query_one("#tail").display
        assert isinstance(app.screen, ProcessScreen)


def test_ages():
    assert [format_age(s) for s in (-1, 0, 59, 60, 3599, 3600, 86399, 86400 * 3)] == [
        "0s ago",
        "0s ago",
        "59s ago",
        "1m ago",
        "59m ago",
        "1h ago",
        "23h ago",
        "3d ago",
    ]


def test_render_row_shows_remote_text_literally():
    row = FleetRow("h1", None, "UNREACHABLE", description="[bold]not markup[/] \n  at all")
    cells = render_row(row, now=0.0)
    assert cells[-1].plain == "[bold]not markup[/] at all"
    assert matches(row, "unreach") and matches(row, "H1") and not matches(row, "tick")


async def test_opens_from_the_app_with_p_and_goes_back(bed, origin, tmp_path):
    from relconsole.ui.app import RelconsoleApp

    add_program(bed.hosts[0])
    path = write_config(tmp_path, bed, origin.url, settings={"poll_interval": 0.3})
    app = RelconsoleApp(load_config(path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen), "the process view")
        pid = str(bed.hosts[0].program_pid("tick"))
        await until(pilot, lambda: cell(app, "h1:tick", "pid") == pid, "h1:tick in the app")
        await pilot.press("escape")
        await until(
            pilot, lambda: not isinstance(app.screen, ProcessScreen), "back to the main screen"
        )
