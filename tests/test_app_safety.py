"""Release safety in the Textual console, against the real test bed: the history screen,
rollback from the TUI, pending commits and drift, the deploy lock.

Every wait is a short ``pilot.pause`` loop on a condition, with a deadline.
"""

from __future__ import annotations

import os
import time

from deployconfig import write_config
from gitorigin import sample_service_files
from test_app import build_end, lines, view, wait_for
from test_build_e2e import build
from textual.widgets import DataTable, Log

from relconsole.config import load_config
from relconsole.lock import LOCK_DIR, LockInfo
from relconsole.ui.app import RelconsoleApp
from relconsole.ui.build_log_screen import BuildLogScreen
from relconsole.ui.dialogs import ConfirmUnlock
from relconsole.ui.history_screen import HistoryScreen
from relconsole.ui.host_list import HostList
from relconsole.ui.pending_list import PendingList
from relconsole.ui.rollback_dialog import RollbackDialog
from relconsole.ui.services_table import ServiceTable

SIZE = (120, 40)
HOSTS = ["h1", "h2"]
FAST_POLLS = {"poll_interval": 0.2}


def config_path(tmp_path, bed, origin, **kwargs):
    kwargs.setdefault("hosts", HOSTS)
    kwargs.setdefault("settings", FAST_POLLS)
    return write_config(tmp_path, bed, origin.url, **kwargs)


def make_app(path) -> RelconsoleApp:
    return RelconsoleApp(load_config(path))


def next_second() -> None:
    """Release ids have one-second resolution: wait until the clock's second changes."""
    now = int(time.time())
    while int(time.time()) == now:
        time.sleep(0.01)


def history_rows(screen: HistoryScreen) -> list[list[str]]:
    table = screen.query_one("#history", DataTable)
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def hosts_text(app) -> str:
    return app.main_screen.query_one(HostList).body.content.plain


def pending_text(app) -> str:
    return app.main_screen.query_one(PendingList).body.content.plain


async def test_history_screen_lists_builds_and_opens_a_log_with_the_checks_output(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    path = config_path(tmp_path, bed, origin)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        assert (await build_end(pilot, app)).ok
        await pilot.press("h")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, HistoryScreen) and len(history_rows(app.screen)) == 1,
            "the first build in the history",
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main_screen, "the main screen")

        sha = origin.commit(
            sample_service_files("svc", "/srv/svc", "v2", check_fails=True), "v2 broken"
        )
        await pilot.press("b")
        assert not (await build_end(pilot, app)).ok
        await pilot.press("h")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, HistoryScreen) and len(history_rows(app.screen)) == 2,
            "both builds in the history",
        )
        history = app.screen
        rows = history_rows(history)
        # Newest first: number, service, action, result, branch, short sha, ..., trigger.
        assert [r[:6] for r in rows] == [
            ["2", "svc", "build", "failed", "main", sha[:7]],
            ["1", "svc", "build", "success", "main", rows[1][5]],
        ]
        assert all(r[8] == "tui" and "@" in r[9] for r in rows)
        table = history.query_one("#history", DataTable)
        assert table.get_row_at(0)[3].style == "bold red"  # the result is coloured

        await pilot.press("a")  # every service: still the same two builds here
        await wait_for(pilot, lambda: history.show_all, "the toggle")
        await wait_for(pilot, lambda: len(history_rows(history)) == 2, "the reload")

        await pilot.press("enter")  # the cursor is on the newest: the failed build
        await wait_for(pilot, lambda: isinstance(app.screen, BuildLogScreen), "the log screen")
        log = app.screen.query_one(Log)
        await wait_for(
            pilot,
            lambda: any("check failed on purpose" in ln for ln in log.lines),
            "the check's output in the recorded log",
        )
        assert any(ln.startswith("[check]") for ln in log.lines)
        title = app.screen.query_one("#build-log-title").content.plain
        assert "build #2 of svc" in title and "failed" in title
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is history, "back to the list")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main_screen, "back to the main screen")

    # A new session shows the last result from the history, before any build of its own.
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main_screen.query_one(ServiceTable)
        await wait_for(
            pilot,
            lambda: table.get_cell("svc", "last").plain == f"✘ {sha[:7]}",
            "the last result from the history",
        )


async def test_rollback_from_the_tui_returns_every_host_to_the_previous_release(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    path = config_path(tmp_path, bed, origin)
    first, _ = build(path)
    assert first.ok, first.error
    next_second()
    origin.commit({"VERSION": "v2\n"}, "v2")
    second, _ = build(path)
    assert second.ok, second.error
    pids = {h: bed.host(h).program_pid("svc") for h in HOSTS}

    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, RollbackDialog) and app.screen.target is not None,
            "the dialog to name the target",
        )
        dialog = app.screen
        assert dialog.target == first.release
        text = dialog.query_one("#rb-hosts").content.plain
        for host in HOSTS:
            assert f"{host}: runs {second.release} → {first.release}" in text
        await pilot.press("y")
        finished = await build_end(pilot, app)

        assert finished.ok, finished.error
        assert finished.release == first.release and finished.sha == first.sha
        strip = view(app).strip
        assert strip.shown() == ["switch", "supervisor"]
        assert {s: strip.cell(s).state for s in strip.shown()} == {
            "switch": "ok",
            "supervisor": "ok",
        }
        banner = view(app).banner.content.plain
        assert "ROLLED BACK" in banner and first.release in banner
        for host in HOSTS:
            assert any(f"-> releases/{first.release}" in ln for ln in lines(app, "switch", host))
            supervisor = lines(app, "supervisor", host)
            assert any(f"current -> releases/{first.release}" in ln for ln in supervisor)
            assert any("RUNNING" in ln for ln in supervisor)
        last = app.main_screen.query_one(ServiceTable).get_cell("svc", "last").plain
        assert last == f"↶ {first.sha[:7]}"
    for host in HOSTS:
        link = os.readlink(bed.host(host).path("/srv/svc/current"))
        assert os.path.basename(link) == first.release
        assert bed.host(host).program_pid("svc") not in (None, pids[host])


async def test_pending_lists_a_commit_made_after_the_last_build_and_drift_shows(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    path = config_path(tmp_path, bed, origin)
    first, _ = build(path)
    assert first.ok, first.error

    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: "hosts run the tip of main" in pending_text(app),
            "the pending list to say everything is deployed",
        )
        # The release id, or its sha and time where the column is narrow.
        assert first.sha[:7] in hosts_text(app) and "drift" not in hosts_text(app)
        origin.commit({"VERSION": "v2\n"}, "second change")
        await pilot.press("f")
        await wait_for(
            pilot,
            lambda: "second change" in pending_text(app),
            "the new commit in the pending list",
        )
        pending = app.main_screen.query_one(PendingList)
        assert pending.border_subtitle == "1 commit(s)"

        # One host gets the new commit: the host list flags the drift.
        next_second()
        on_h1, _ = build(path, only_hosts=["h1"])
        assert on_h1.ok, on_h1.error
        await wait_for(pilot, lambda: "drift" in hosts_text(app), "the drift to show")
        text = hosts_text(app)
        assert on_h1.sha[:7] in text and first.sha[:7] in text
        await wait_for(
            pilot,
            lambda: "different commits" in pending_text(app),
            "the pending list to say the hosts differ",
        )


async def test_a_locked_service_shows_its_holder_and_a_build_is_refused_then_unlocked(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    path = config_path(tmp_path, bed, origin)
    # Another machine's build holds the lock on h1.
    other = LockInfo(
        user="alice", machine="build-box-2", pid=4242, started=time.time() - 90, branch="main"
    )
    lock = bed.host("h1").path("/srv/svc") / LOCK_DIR
    lock.mkdir(parents=True)
    (lock / "info").write_text(other.to_json() + "\n")

    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main_screen.query_one(ServiceTable)
        await wait_for(
            pilot,
            lambda: "🔒" in table.get_cell("svc", "service").plain,
            "the lock in the services list",
        )
        await wait_for(pilot, lambda: "alice@build-box-2" in hosts_text(app), "the holder")
        await wait_for(
            pilot,
            lambda: "no workspace yet" in pending_text(app),
            "the pending list to say there is nothing to compare before a build",
        )
        assert "build of main" in hosts_text(app) and "on h1" in hosts_text(app)
        # The banner learns of the lock by a message of its own (LocksRead), which may
        # arrive after the host list showed it.
        await wait_for(
            pilot,
            lambda: "locked by alice@build-box-2" in view(app).banner.content.plain,
            "the banner to say a build would be refused",
        )

        await pilot.press("b")
        finished = await build_end(pilot, app)
        assert not finished.ok
        banner = view(app).banner.content.plain
        assert "REFUSED" in banner and "svc is locked on h1 by alice@build-box-2" in banner
        assert lock.exists()  # another machine's lock is never taken over by a build

        await pilot.press("ctrl+p")
        await pilot.press(*"unlock svc")
        await pilot.pause(0.3)  # the palette searches in a task
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmUnlock), "the question")
        assert "alice@build-box-2" in str(app.screen.holder)
        await pilot.press("y")
        await wait_for(pilot, lambda: not lock.exists(), "the lock to be removed")
        await wait_for(
            pilot,
            lambda: "🔒" not in table.get_cell("svc", "service").plain,
            "the lock to leave the services list",
        )


def test_rollback_plan_offers_releases_every_host_holds_and_preselects_the_previous():
    from relconsole.rollback import HostReleases, plan_rollback

    a, b, c = "20260101-100000-aaaaaaa", "20260102-100000-bbbbbbb", "20260103-100000-ccccccc"
    same = plan_rollback([HostReleases("h1", c, (a, b, c)), HostReleases("h2", c, (b, c))])
    assert same.candidates == (b,) and same.default == b and not same.drift
    drift = plan_rollback([HostReleases("h1", c, (a, b, c)), HostReleases("h2", b, (a, b, c))])
    assert drift.drift and drift.default is None and drift.candidates == (c, b, a)
    down = plan_rollback([HostReleases("h1", c, (b, c)), HostReleases("h2", error="refused")])
    assert down.candidates == () and [h.host for h in down.errors] == ["h2"]
    first = plan_rollback([HostReleases("h1", a, (a,))])
    assert first.candidates == () and first.default is None


def test_lock_answers_are_split_per_service_and_garbage_is_no_lock():
    from relconsole.lock import _MARK, parse_locks

    info = LockInfo(user="bob", machine="m2", pid=7, started=1.0, branch="main")
    output = f"{_MARK}svc\n{info.to_json()}\n{_MARK}api\n{_MARK}web\nnot json\n"
    assert parse_locks(output) == [("svc", info)]


def test_release_ids_shrink_to_sha_and_time_in_narrow_columns():
    from relconsole.ui.host_list import release_text

    release = "20261126-083237-c1acb55"
    assert release_text(release, 30) == release
    assert release_text(release, 22) == "c1acb55 · 11-26 08:32"
    assert release_text(release, 10) == "c1acb55"


async def test_a_stage_the_strip_does_not_know_gets_its_own_cell_and_pane():
    from onewidget import OneWidget

    from relconsole.events import (
        BuildFinished,
        BuildStarted,
        Output,
        RunResult,
        Stage,
        StageFinished,
        StageStarted,
    )
    from relconsole.ui.build_view import BuildView

    app = OneWidget(BuildView())
    async with app.run_test(size=(100, 30)) as pilot:
        bv = app.query_one(BuildView)
        bv.begin("svc", "main", ["h1"], action="rollback")
        stages = (Stage.SWITCH, Stage.SUPERVISOR)  # what the engine announces for a rollback
        bv.apply([BuildStarted("svc", "main", ("h1",), stages, action="rollback")])
        assert bv.strip.shown() == ["switch", "supervisor"]
        bv.apply(
            [
                StageStarted(stage="switch"),
                StageFinished(stage="switch", ok=True, seconds=1),
                StageStarted(stage="db migrate"),
                Output(stage="db migrate", line="[bold]applied[/] 3", host="h1"),
            ]
        )
        await pilot.pause()
        assert bv.strip.shown() == ["switch", "supervisor", "db migrate"]
        assert bv.strip.cell("db migrate").state == "running"
        assert list(bv.panes["db migrate"].lines) == ["h1: [bold]applied[/] 3"]
        assert bv.strip.selected == "db migrate"  # following the run
        bv.apply(
            [
                StageFinished(stage="db migrate", ok=False, seconds=1, error="boom"),
                BuildFinished(result=RunResult.FAILED, seconds=2, service="svc", error="boom"),
            ]
        )
        await pilot.pause()
        assert "ROLLBACK FAILED" in bv.banner.content.plain
        bv.select_stage_number(1)
        assert bv.strip.selected == "switch"
        bv.select_stage_number(3)  # what keys 1-6 do on the main screen
        assert bv.strip.selected == "db migrate"
