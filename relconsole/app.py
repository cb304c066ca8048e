"""The console (TUI): ``relconsole`` without a headless mode.

The one door from the command line into :mod:`relconsole.ui`, the only package that
imports Textual; the engine and the headless path never come through here.
"""

from __future__ import annotations

from relconsole.config import Config


def run_app(config: Config, read_only: bool = False) -> int:
    """Run the console until the operator quits (``read_only``: one in which nothing can
    be changed); returns the process exit code."""
    from relconsole.ui.app import RelconsoleApp

    app = RelconsoleApp(config, read_only=read_only)
    code = app.run()
    return app.return_code or (code or 0)
