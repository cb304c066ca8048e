"""The Textual main screen against the real test bed: sshd + supervisord per host, real git.

Every wait is a short ``pilot.pause`` loop on a condition, with a deadline; nothing
sleeps to synchronise.
"""

from __future__ import annotations

import time

import pytest
from deployconfig import write_config
from gitorigin import sample_service_files
from textual.widgets import Button, Input, Log

from relconsole.config import load_config
from relconsole.ui.app import RelconsoleApp
from relconsole.ui.build_banner import BuildBanner
from relconsole.ui.dialogs import QuitWhileBuilding
from relconsole.ui.host_list import HostList
from relconsole.ui.services_table import ServiceTable
from relconsole.ui.stage_strip import StageStrip

SIZE = (120, 40)
HOSTS = ["h1", "h2"]
SLOW_CHECK = {"name": "slow", "run": "echo started; sleep 60"}


def make_app(tmp_path, bed, origin, **kwargs) -> RelconsoleApp:
    kwargs.setdefault("hosts", HOSTS)
    return RelconsoleApp(load_config(write_config(tmp_path, bed, origin.url, **kwargs)))


async def wait_for(pilot, predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await pilot.pause(0.05)


async def build_end(pilot, app: RelconsoleApp, timeout: float = 60.0):
    """Wait until the screen has shown the end of the build; returns the engine's verdict."""
    await wait_for(
        pilot,
        lambda: app.active_run is None and view(app).finished is not None,
        "the build to finish",
        timeout,
    )
    return view(app).finished


def view(app: RelconsoleApp):
    return app.main_screen.build_view


def lines(app: RelconsoleApp, stage: str, host: str | None = None) -> list[str]:
    """What a stage's pane shows (every host's lines of a per-host stage if no ``host``);
    nothing before the run has announced the stage."""
    bv = view(app)
    if stage not in bv.panes:
        return []
    if host:
        return bv.host_logs(stage).logs[host].text
    return [line for log in bv.logs_of(stage) for line in log.text]


BUILD_STAGES = ("checkout", "check", "upload", "setup", "supervisor")


def states(app: RelconsoleApp) -> dict[str, str]:
    strip = view(app).strip
    return {s: strip.cell(s).state for s in BUILD_STAGES}


def banner(app: RelconsoleApp) -> BuildBanner:
    return view(app).banner


def gate_check(tmp_path) -> tuple[dict, object]:
    """A check that waits until the test opens the gate (creates a file)."""
    gate = tmp_path / "gate"
    return (
        {"name": "gate", "run": f"echo waiting; while [ ! -e {gate} ]; do sleep 0.05; done"},
        gate,
    )


@pytest.mark.parametrize("press", ["click", "key"])
async def test_build_runs_all_stages_and_each_host_pane_holds_its_own_output(
    bed, origin, tmp_path, press
):
    sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "first release")
    app = make_app(tmp_path, bed, origin)
    async with app.run_test(size=SIZE) as pilot:
        if press == "click":
            await pilot.click("#build")
        else:
            await pilot.press("b")
        await wait_for(pilot, lambda: app.active_run is not None, "the build to start", 5)
        assert str(app.main_screen.query_one("#build", Button).label) == "■ Cancel"
        finished = await build_end(pilot, app)

        assert finished.ok, finished.error
        assert finished.sha == sha
        assert states(app) == dict.fromkeys(BUILD_STAGES, "ok")
        assert banner(app).has_class("-ok")
        text = banner(app).content.plain
        assert "DEPLOYED" in text and sha[:12] in text and finished.release in text
        pids = {h: bed.host(h).program_pid("svc") for h in HOSTS}
        for host, other in (("h1", "h2"), ("h2", "h1")):
            upload, supervisor = lines(app, "upload", host), lines(app, "supervisor", host)
            assert any(
                line.startswith("full upload (no release on the host): unpacked") for line in upload
            ), upload
            assert f"svc RUNNING pid {pids[host]}" in supervisor, supervisor
            assert not any(str(pids[other]) in line for line in supervisor), supervisor
            assert any(line.startswith(f"{host}: connected to") for line in lines(app, "checkout"))
        last = app.main_screen.query_one(ServiceTable).get_cell("svc", "last")
        assert last.plain == f"✔ {sha[:7]}"
        assert str(app.main_screen.query_one("#build", Button).label) == "▶ Build svc"


async def test_failing_check_fails_in_strip_and_banner_and_uploads_nothing(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1", check_fails=True), "broken")
    app = make_app(tmp_path, bed, origin)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        finished = await build_end(pilot, app)

        assert not finished.ok
        assert states(app) == {
            "checkout": "ok",
            "check": "failed",
            "upload": "pending",
            "setup": "pending",
            "supervisor": "pending",
        }
        assert banner(app).has_class("-failed")
        text = banner(app).content.plain
        assert "BUILD FAILED" in text and "check 'tests' failed with exit code 1" in text
        assert "check failed on purpose" in lines(app, "check")
        assert view(app).strip.selected == "check"  # the failing stage's pane is shown
        assert app.main_screen.query_one(ServiceTable).get_cell("svc", "last").plain.startswith("✘")
    for name in HOSTS:
        base = bed.host(name).path("/srv/svc")
        assert not base.exists() or list(base.iterdir()) == []  # no release, no current, no lock


async def test_quit_while_idle_exits(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        # No question while idle: the app exits at once, with 0.
        await wait_for(pilot, lambda: app.return_value == 0, "the app to exit", 5)


async def test_quit_while_building_asks_and_keep_building_lets_it_finish(bed, origin, tmp_path):
    check, gate = gate_check(tmp_path)
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, checks=[check])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: "waiting" in lines(app, "check"), "the check to start")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitWhileBuilding), "the question")
        await pilot.click("#no")  # keep building
        await wait_for(pilot, lambda: app.screen is app.main_screen, "the question to close")
        assert app.active_run is not None and app.return_value is None
        assert not app.run_state.cancel.is_set()
        gate.touch()
        finished = await build_end(pilot, app)
        assert finished.ok, finished.error
        assert app.return_value is None  # still running: the operator chose to stay


async def test_quit_while_building_can_cancel_the_build_and_quit(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, checks=[SLOW_CHECK])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: "started" in lines(app, "check"), "the check to start")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitWhileBuilding), "the question")
        await pilot.click("#yes")  # cancel the build and quit
        await wait_for(pilot, lambda: app.return_value == 0, "the app to exit", 15)
        assert view(app).finished.cancelled


@pytest.mark.parametrize("how", ["escape", "click"])
async def test_cancel_during_a_slow_check_stops_quickly_and_shows_cancelled(
    bed, origin, tmp_path, how
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, checks=[SLOW_CHECK])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: "started" in lines(app, "check"), "the check to start")
        assert states(app)["check"] == "running"
        asked = time.monotonic()
        if how == "escape":
            await pilot.press("escape")
        else:
            await pilot.click("#build")
        finished = await build_end(pilot, app, timeout=15)

        assert time.monotonic() - asked < 10
        assert finished.cancelled and not finished.ok
        assert states(app) == {
            "checkout": "ok",
            "check": "cancelled",
            "upload": "pending",
            "setup": "pending",
            "supervisor": "pending",
        }
        assert banner(app).has_class("-cancelled")
        assert "BUILD CANCELLED" in banner(app).content.plain
        assert str(app.main_screen.query_one("#build", Button).label) == "▶ Build svc"
    base = bed.host("h1").path("/srv/svc")
    assert not base.exists() or list(base.iterdir()) == []


async def test_output_is_shown_literally_never_as_markup(bed, origin, tmp_path):
    check = {
        "name": "markup",
        "run": "echo '[bold]x[/] and [' ; printf '\\033[31mred\\033[0m [link]\\n'; exit 1",
    }
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "fix [red]alert[/] [")
    app = make_app(tmp_path, bed, origin, checks=[check])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        finished = await build_end(pilot, app)
        assert not finished.ok
        check_lines = lines(app, "check")
        assert "[bold]x[/] and [" in check_lines
        assert "red [link]" in check_lines  # escape sequences stripped, brackets kept
        await pilot.press("2")  # show the check pane
        await pilot.pause()
        log = view(app).stage_log("check")
        shown = [log.render_line(y).text.rstrip() for y in range(log.size.height)]
        assert "[bold]x[/] and [" in shown and "red [link]" in shown
        assert any("fix [red]alert[/] [" in line for line in lines(app, "checkout"))


async def test_unreachable_host_shows_as_unreachable(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    bed.host("h2").stop_sshd()
    app = make_app(tmp_path, bed, origin)
    async with app.run_test(size=SIZE) as pilot:
        host_list = app.main_screen.query_one(HostList)
        await wait_for(pilot, lambda: "unreachable" in host_list.body.content.plain, "a poll")
        text = host_list.body.content.plain
        assert "✔ h1 reachable" in text
        assert "✘ h2 unreachable" in text and "refused" in text.lower()


async def test_bad_branch_shows_an_error_and_builds_nothing(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin)
    async with app.run_test(size=SIZE) as pilot:
        branch = app.main_screen.query_one("#branch", Input)
        assert branch.value == "main"
        branch.focus()
        branch.value = "feature; rm -rf /"
        await pilot.press("enter")
        error = app.main_screen.query_one("#branch-error")
        await wait_for(pilot, lambda: error.display, "the branch's error")
        assert "not allowed" in error.content.plain
        assert app.active_run is None and view(app).finished is None
        # Nothing started: the strip shows no stage at all (stages come from the run's
        # BuildStarted since the reshape; before it, "checkout" sat there pending).
        assert view(app).strip.shown() == []


async def test_command_palette_builds_a_service_and_cancels_it(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, checks=[SLOW_CHECK])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"build svc")
        await pilot.pause(0.3)  # the palette searches in a task
        await pilot.press("enter")
        await wait_for(pilot, lambda: "started" in lines(app, "check"), "the check to start")
        await pilot.press("ctrl+p")
        await pilot.press(*"cancel build")
        await pilot.pause(0.3)
        await pilot.press("enter")
        finished = await build_end(pilot, app, timeout=15)
        assert finished.cancelled


async def test_80x24_shows_every_essential_part(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, hosts=["h1", "h2", "h3"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.main_screen
        assert screen.focused is screen.query_one(ServiceTable)
        for selector in ("#services", "#hosts", "#build", "#branch", "#banner", "#stages"):
            region = screen.query_one(selector).region
            assert region.width > 0 and region.height > 0, selector
            assert region.right <= 80 and region.bottom <= 23, (selector, region)
        assert screen.query_one("#build").region.height == 3
        cells = screen.query_one(StageStrip).children
        assert all(c.region.width >= 12 for c in cells if c.display)
        log = view(app).shown_pane  # where the output will go
        assert log.region.height >= 10, log.region
        assert isinstance(log, Log)


async def test_a_full_pane_keeps_showing_the_newest_lines():
    """Past max_lines the Log prunes; the screen must still follow the newest output."""
    from onewidget import OneWidget

    from relconsole.events import Output, StageStarted
    from relconsole.ui.build_view import MAX_LINES, BuildView

    app = OneWidget(BuildView())
    async with app.run_test(size=(80, 24)) as pilot:
        bv = app.query_one(BuildView)
        bv.begin("svc", "main", ["h1"])
        bv.apply([StageStarted(stage="check")])
        bv.apply([Output(stage="check", line=f"line {i}") for i in range(MAX_LINES + 500)])
        await pilot.pause()
        bv.apply(
            [
                Output(stage="check", line=f"line {i}")
                for i in range(MAX_LINES + 500, MAX_LINES + 600)
            ]
        )
        await pilot.pause()
        assert len(bv.stage_log("check").lines) == MAX_LINES
        assert f"line {MAX_LINES + 599}" in app.export_screenshot().replace("&#160;", " ")


async def test_polls_never_overlap_and_pause_while_another_screen_is_on_top(bed, origin, tmp_path):
    from textual.screen import Screen

    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin, settings={"poll_interval": 0.05})
    calls, running, overlapped = [], [], []
    real_poll = app.poller.poll

    def counting_poll():
        overlapped.append(bool(running))
        running.append(1)
        try:
            calls.append(time.monotonic())
            return real_poll()
        finally:
            running.pop()

    app.poller.poll = counting_poll
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(calls) >= 3, "a few polls")
        await app.push_screen(Screen())
        # A poll came due while covered (so the one before it ended) and none runs: a
        # worker started just before the push may not have entered the poll yet.
        await wait_for(
            pilot,
            lambda: app.main_screen.fleet_column._poll_waiting and not running,
            "the next poll to wait for the screen",
        )
        paused_at = len(calls)
        for _ in range(10):  # five poll intervals: none may start
            await pilot.pause(0.025)
        assert len(calls) == paused_at
        app.pop_screen()
        await wait_for(pilot, lambda: len(calls) > paused_at, "polls to resume", 10)
    assert not any(overlapped)
