"""The console's Textual driver: one that survives its terminal going away.

Textual's writer thread writes the screen to ``sys.__stderr__``; the first write that
fails (EIO once the pty of a closed window or a dropped ssh session is gone) ends that
thread, and the app then blocks forever on its full output queue while shutting down:
the console never exits, its run is never cleaned up. Here a failed write means "no
terminal any more" and later output is dropped, so SIGHUP ends the console like SIGTERM.
"""

from __future__ import annotations

from typing import IO, Any

from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver


class TerminalOutput:
    """A file for Textual's writer thread that never raises: after the first failed
    write it drops what follows (there is nobody left to read it)."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> None:
        if not self.gone:
            try:
                self._file.write(text)
            except OSError:
                self.gone = True

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except OSError:
                self.gone = True

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True


class ConsoleDriver(LinuxDriver):
    """Textual's driver for Linux and macOS terminals, writing through
    :class:`TerminalOutput`."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._file = TerminalOutput(self._file)  # type: ignore[assignment, arg-type]


def console_driver(default: type[Driver]) -> type[Driver]:
    """The driver the console runs on, given the one Textual chose."""
    if default is LinuxDriver:
        return ConsoleDriver
    return default  # the web driver, a TEXTUAL_DRIVER from the environment: as chosen
