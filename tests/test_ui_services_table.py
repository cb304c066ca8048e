"""The services table's "last" cell against history reads that arrive late: a poll
that read the history while a run went on must not turn the result just shown back
into "running" (it did, until the next poll: a flaky TUI test showed it)."""

from __future__ import annotations

import time
from pathlib import Path

from onewidget import OneWidget

from relconsole.config import parse_config
from relconsole.events import BuildFinished, RunResult
from relconsole.ui.services_table import ServiceTable

CONFIG = """
[hosts.h1]
address = "127.0.0.1"
[services.svc]
repo = "/tmp/none.git"
path = "/srv/svc"
hosts = ["h1"]
"""
SHA = "3f9c2e1d7b6a5049e8f7a6b5c4d3e2f1a0b9c8d7"


async def test_a_history_read_older_than_the_shown_result_does_not_overwrite_it():
    service = parse_config(CONFIG, Path("/x.toml")).services["svc"]

    app = OneWidget(ServiceTable([service]))
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(ServiceTable)
        table.show_running("svc")
        read_during_the_run = time.monotonic()
        running_row = {"action": "build", "result": "running", "sha": SHA}
        table.show_result(
            BuildFinished(result=RunResult.SUCCESS, seconds=1.0, service="svc", sha=SHA)
        )
        shown = table.get_cell("svc", "last").plain

        table.show_last("svc", running_row, read_during_the_run)
        await pilot.pause()
        assert table.get_cell("svc", "last").plain == shown == f"✔ {SHA[:7]}"

        later = {"action": "rollback", "result": "success", "sha": SHA}
        table.show_last("svc", later, time.monotonic())
        await pilot.pause()
        assert table.get_cell("svc", "last").plain != shown  # a newer read still shows
