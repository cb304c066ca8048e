"""The console (TUI): ``relconsole`` without a headless mode.

The one door from the command line into :mod:`relconsole.ui`, the only package that
imports Textual; the engine and the headless path never come through here.
"""

from __future__ import annotations

from relconsole.config import Config


def run_app(config: Config) -> int:
    """Run the console until the operator quits; returns the process exit code."""
    from relconsole.ui.app import RelconsoleApp

    app = RelconsoleApp(config)
    code = app.run()
    return app.return_code or (code or 0)
