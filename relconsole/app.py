"""The console (TUI): ``relconsole`` without a headless mode.

The one door from the command line into :mod:`relconsole.ui`, the only package that
imports Textual; the engine and the headless path never come through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relconsole.config import Config

if TYPE_CHECKING:
    from relconsole.notify import Postman

#: How long a run left behind by a console that ended (a crash, a terminal that went
#: away) gets to clean up: cancel, switch back, release its locks.
CLEAN_UP_SECONDS = 600.0


def run_app(config: Config, read_only: bool = False) -> int:
    """Run the console until the operator quits (``read_only``: one in which nothing can
    be changed); returns the process exit code.

    Whatever ends the console (quit, SIGHUP, SIGTERM, a crash), a build or rollback it
    started is cancelled and allowed to finish its clean-up before the process exits:
    never a fleet left half-switched or locked because a terminal closed.
    """
    from relconsole.ui.app import RelconsoleApp

    app = RelconsoleApp(config, read_only=read_only)
    try:
        code = app.run()
    finally:
        run = app.run_state
        if run is not None and not run.engine_done.is_set():
            run.cancel.set()
            run.engine_done.wait(CLEAN_UP_SECONDS)
        wait_for_notifications(app.postman)
    if app.stopped_by is not None:
        return 128 + app.stopped_by  # as a shell reports a process a signal ended
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
