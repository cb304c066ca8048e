"""Issue 13 in the console (Pilot) against the real bed: the plan view and the typed
confirmation, Run command with its per-host output, the read-only console, and the
process view at fleet size (marks and a bulk restart that stops at the first failing
host, the not-RUNNING filter and grouping, the log pane's search and pause)."""

from __future__ import annotations

from deployconfig import write_config
from gitorigin import sample_service_files
from test_app import build_end, lines, make_app, view, wait_for
from test_build_e2e import build, current_release
from test_operate_e2e import CONF, amend
from test_process_view import (
    Harness,
    add_program,
    add_programs,
    cell,
    row_keys,
    select,
    until,
)
from textual.widgets import Button, Input

from relconsole.config import load_config
from relconsole.history import History
from relconsole.status.poller import StatusPoller
from relconsole.ui.app import RelconsoleApp
from relconsole.ui.commands import RelconsoleCommands
from relconsole.ui.dialogs import TypeToConfirm
from relconsole.ui.plan_screen import PlanScreen
from relconsole.ui.process_screen import ProcessScreen
from relconsole.ui.run_dialog import RunCommandDialog

SIZE = (120, 40)


async def palette(pilot, text: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.press(*text)
    await pilot.pause(0.3)  # the palette searches in a task
    await pilot.press("enter")


def notices(app) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def test_confirm_shows_the_plan_then_wants_the_name_typed_before_it_builds(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1", "h2"], checks=[])
    first, _ = build(config)
    assert first.ok, first.error
    files = sample_service_files("svc", "/srv/svc", "v2")
    files[CONF] = files[CONF].replace("startsecs=1", "startsecs=2")
    sha = origin.commit(files, "v2: wait longer for the start")
    amend(config, service={"confirm": True})
    app = RelconsoleApp(load_config(config))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, PlanScreen), "the plan first")
        plan_view = app.screen
        await wait_for(pilot, lambda: plan_view.plan is not None, "the plan read")
        body = plan_view.query_one("#plan-body").content.plain
        assert "v2: wait longer for the start" in body and f"at {sha[:12]}" in body
        assert "+startsecs=2" in body and "svc: update: config changed" in body
        assert "deploy lock: free" in body and app.active_run is None
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, TypeToConfirm), "the question")
        await pilot.press(*"sv", "enter")  # not the name: nothing happens
        assert app.screen.query_one("#yes", Button).disabled and app.active_run is None
        await pilot.press("c", "enter")
        await wait_for(pilot, lambda: app.active_run is not None, "the build to start")
        finished = await build_end(pilot, app)
        assert finished.ok and finished.sha == sha, finished.error
        assert current_release(bed.host("h1")) == finished.release


async def test_run_command_from_the_palette_shows_each_hosts_output(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, checks=[])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        assert (await build_end(pilot, app)).ok
        await palette(pilot, "run command on svc")
        await wait_for(pilot, lambda: isinstance(app.screen, RunCommandDialog), "the dialog")
        typed = app.screen.query_one("#run-command", Input)
        await pilot.press(*"sh -c")
        typed.value += " 'cat VERSION; echo \"at $PWD\"'"  # quotes are no keys
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: app.run_state is not None and app.run_state.action == "run",
            f"the command to start; screen {app.screen}, notices {notices(app)}",
        )
        finished = await build_end(pilot, app)

        assert finished.ok, finished.error
        for host in ("h1", "h2"):
            assert lines(app, "run", host)[:2] == ["v1", "at /srv/svc/current"]
        assert view(app).banner.content.plain.startswith("✔ RAN sh -c")
        row = History(tmp_path / "state").list("svc", limit=1)[0]
        assert (row["action"], row["trigger"]) == ("run", "tui")
        assert row["command"] == "sh -c 'cat VERSION; echo \"at $PWD\"'"


async def test_a_read_only_console_changes_nothing_and_says_so(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], checks=[])
    add_program(bed.host("h1"))
    app = RelconsoleApp(load_config(config), read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        banner = str(app.main_screen.query_one("#read-only").content)
        assert banner.startswith("READ-ONLY console: nothing can be changed")
        assert app.main_screen.query_one("#build", Button).disabled
        await pilot.press("b", "R")
        app.start_build("svc")  # whatever calls it: refused
        app.start_command("svc", ["touch", "/srv/svc/was-here"])
        await pilot.pause(0.2)
        assert app.run_state is None and not bed.host("h1").path("/srv/svc/current").exists()
        assert any("read-only console: Build is not available" in n for n in notices(app))
        offered = [name for name, *_ in RelconsoleCommands(app.screen).commands()]
        assert "Plan svc" in offered and "History" in offered
        assert not [n for n in offered if n.startswith(("Build", "Roll back", "Run", "Unlock"))]
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the processes")
        pid = str(bed.host("h1").program_pid("tick"))
        await wait_for(pilot, lambda: cell(app, "h1:tick", "pid") == pid, "h1:tick")
        assert app.screen.title.endswith("READ-ONLY")
        await select(pilot, "h1:tick")
        await pilot.press("r", "s")
        await pilot.pause(0.5)
        assert str(bed.host("h1").program_pid("tick")) == pid


def break_program(host, name: str = "tick") -> None:
    """From now on ``name`` cannot start on ``host`` (its command is missing)."""
    conf = host.path(f"/etc/supervisor/conf.d/{name}.conf")
    conf.write_text(conf.read_text().replace("/usr/bin/python3 -u", "/nonexistent/python3"))
    host.supervisorctl("update")


async def test_marked_programs_restart_one_host_at_a_time_stopping_at_the_first_failure(bed, setup):
    add_programs(bed.hosts)
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        for h in bed.hosts:
            pid = str(h.program_pid("tick"))
            await until(pilot, lambda: cell(app, f"{h.name}:tick", "pid") == pid, "running")
        await select(pilot, "h1:tick")
        await pilot.press("space", "down", "space")  # h1 and h3, not h2
        assert app.screen.table.marked == {"h1:tick", "h3:tick"}
        before = {h.name: h.program_pid("tick") for h in bed.hosts}
        await pilot.press("r")
        await until(
            pilot,
            lambda: any(n.title == "restart done" for n in app._notifications),
            "the bulk restart",
        )
        after = {h.name: h.program_pid("tick") for h in bed.hosts}
        assert after["h2"] == before["h2"]
        assert after["h1"] not in (None, before["h1"]) and after["h3"] not in (None, before["h3"])

        break_program(bed.host("h2"))
        await pilot.press("a")  # every visible row: h1, h2, h3
        assert app.screen.table.marked == {"h1:tick", "h2:tick", "h3:tick"}
        await pilot.press("r")
        stopped = await until(
            pilot,
            lambda: [n for n in app._notifications if n.title.startswith("restart stopped")],
            "the bulk restart to stop",
        )
        (note,) = stopped
        assert note.title == "restart stopped at h2 (1 of 3 host(s) done)"
        assert note.message == "tick: ERROR (no such file)\nnot done: h3"  # its command is gone
        assert bed.host("h3").program_pid("tick") == after["h3"]  # never touched
        assert bed.host("h1").program_pid("tick") != after["h1"]


async def test_not_running_filter_and_grouping_by_service(bed, origin, tmp_path):
    add_programs(bed.hosts)
    add_program(bed.host("h1"), "worker")
    path = write_config(
        tmp_path, bed, origin.url, programs=["tick"], settings={"poll_interval": 0.3}
    )
    config = load_config(path)
    poller = StatusPoller(list(config.hosts.values()), config.settings)
    try:
        app = Harness(config, poller)
        async with app.run_test(size=SIZE) as pilot:
            everything = ["h1:tick", "h1:worker", "h2:tick", "h3:tick"]
            await until(pilot, lambda: row_keys(app) == everything, "every row")
            bed.host("h2").supervisorctl("stop", "tick")
            await pilot.press("n")
            await until(pilot, lambda: row_keys(app) == ["h2:tick"], "only the stopped one")
            assert app.screen.sub_title.endswith("1/4 rows · not RUNNING only")
            await pilot.press("n", "g")
            await until(pilot, lambda: cell(app, "h1:tick", "service") == "svc", "grouped")
            assert row_keys(app) == ["h1:tick", "h2:tick", "h3:tick", "h1:worker"]
            assert cell(app, "h2:tick", "service") == ""  # the group's name once
            assert cell(app, "h1:worker", "service") == "(other)"
    finally:
        poller.close()


async def test_the_log_pane_follows_without_gaps_pauses_and_searches(bed, setup):
    add_programs(bed.hosts[:1])
    app = Harness(*setup)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: cell(app, "h1:tick", "state") == "RUNNING", "h1:tick")
        await select(pilot, "h1:tick")
        await pilot.press("l")
        tail = app.screen.tail
        log = tail.output

        def ticks() -> list[int]:
            return [int(line.split()[1]) for line in log.lines if line.startswith("tick ")]

        await until(pilot, lambda: len(ticks()) > 5, "log lines")
        await pilot.press("f")  # pause: the pane freezes, new lines are counted
        frozen = list(log.lines)
        received = tail.received
        await until(pilot, lambda: tail.received > received + 5, "lines while paused")
        assert list(log.lines) == frozen
        assert "PAUSED · " in str(tail.border_subtitle) and " new line(s)" in str(
            tail.border_subtitle
        )
        await pilot.press("f")
        await until(pilot, lambda: len(ticks()) > len(frozen) + 5, "the held lines shown")
        seen = ticks()
        assert seen == list(range(seen[0], seen[0] + len(seen))), seen  # no gap, no repeat

        wanted = seen[3]
        await pilot.press("f")  # paused again: the matches stay as they are meanwhile
        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen.focused, Input), "the search box")
        await pilot.press(*f"tick {wanted}", "enter")
        await wait_for(pilot, lambda: tail.term == f"tick {wanted}", "the search")
        found = [i for i, line in enumerate(log.lines) if f"tick {wanted}" in line]
        assert found  # e.g. "tick 13" and "tick 130"
        assert f"“tick {wanted}”: {len(found)}/{len(found)}" in str(tail.border_subtitle)
        await pilot.press("n")
        assert f"“tick {wanted}”: 1/{len(found)}" in str(tail.border_subtitle)
        # Textual scrolls after the next refresh.
        await wait_for(
            pilot,
            lambda: log.scroll_offset.y <= found[0] < log.scroll_offset.y + log.size.height,
            "the match on screen",
        )
        await pilot.press("escape", "f")  # the search goes; the pane follows again
        assert tail.term == "" and log.auto_scroll and not tail.paused
        await pilot.press("escape")  # then the pane closes
        assert not tail.display and isinstance(app.screen, ProcessScreen)
