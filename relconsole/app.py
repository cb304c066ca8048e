"""The console (TUI): ``relconsole`` without a headless mode.

The one door from the command line into :mod:`relconsole.ui`, the only package that
imports Textual; the engine and the headless path never come through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relconsole.config import Config

if TYPE_CHECKING:
    from relconsole.notify import Postman


def run_app(config: Config, read_only: bool = False) -> int:
    """Run the console until the operator quits (``read_only``: one in which nothing can
    be changed); returns the process exit code."""
    from relconsole.ui.app import RelconsoleApp

    app = RelconsoleApp(config, read_only=read_only)
    code = app.run()
    wait_for_notifications(app.postman)
    return app.return_code or (code or 0)


def wait_for_notifications(postman: Postman) -> None:
    """Notifications still under way when the console closes get ``EXIT_WAIT`` seconds,
    as a headless run's do."""
    import sys

    from relconsole.notify import EXIT_WAIT

    if postman.pending:
        print(f"relconsole: delivering {postman.pending} notification(s)…", file=sys.stderr)
        left = postman.wait(EXIT_WAIT)
        if left:
            print(f"relconsole: {left} notification(s) not delivered", file=sys.stderr)
