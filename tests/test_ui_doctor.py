"""The console's doctor (issue 12, the TUI part) on the real bed: opened from the
command palette, it checks every host and names the one whose supervisord is down."""

from __future__ import annotations

from gitorigin import sample_service_files
from test_app import make_app, wait_for
from textual.widgets import DataTable, Static

from relconsole.ui.doctor_screen import DoctorScreen


def doctor_rows(app) -> list[tuple[str, str, str]]:
    table = app.screen.query_one("#doctor", DataTable)
    return [tuple(str(cell) for cell in table.get_row_at(i))[:3] for i in range(table.row_count)]


async def test_the_doctor_from_the_palette_names_a_host_whose_supervisord_is_down(
    bed, origin, tmp_path
):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    app = make_app(tmp_path, bed, origin)
    bed.host("h2").stop_supervisord()
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("ctrl+p")
            await pilot.press(*"Doctor")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen), "the doctor")
            status = app.screen.query_one("#doctor-status", Static)
            await wait_for(
                pilot, lambda: "checking" not in str(status.content), "every host checked"
            )
            rows = doctor_rows(app)
            assert {host for host, _check, _ok in rows} == {"h1", "h2"}
            failed = [(host, check) for host, check, ok in rows if ok == "✘"]
            # (nothing is deployed yet: "programs of svc" fails on both, rightly)
            assert ("h2", "supervisorctl") in failed, rows
            assert ("h1", "supervisorctl") not in failed, rows
            assert "check(s) failed" in str(status.content)
            await pilot.press("escape")
            assert not isinstance(app.screen, DoctorScreen)
    finally:
        bed.host("h2").start_supervisord()


async def test_the_host_list_shows_the_route_of_a_host_behind_a_jump_host():
    from onewidget import OneWidget

    from relconsole.status.poller import HostStatus
    from relconsole.ui.host_list import HostList

    app = OneWidget(HostList(id="hosts"))
    async with app.run_test(size=(60, 20)) as pilot:
        hosts = app.query_one(HostList)
        hosts.show(
            ["web1", "web2"],
            {"web1": HostStatus.answered("web1", []), "web2": HostStatus.answered("web2", [])},
            routes={"web1": "via bastion (198.18.0.2:22)"},
        )
        await pilot.pause()
        text = hosts.body.content.plain
        assert "via bastion (198.18.0.2:22)" in text
        assert text.index("web1") < text.index("via bastion") < text.index("web2")
