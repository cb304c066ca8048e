"""Exit codes of the command line (API: scripts and CI branch on them), and the one
way a headless mode reports an error: one line on stderr."""

import enum
import signal
import sys

from relconsole.text import printable


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 75  # EX_TEMPFAIL: another run holds the deploy lock; try again later
    HANGUP = 129  # SIGHUP: the terminal or ssh session went away
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM

    @classmethod
    def for_signal(cls, signum: int) -> "Exit":
        """The exit code of a run a signal cancelled (128 + the signal, as shells say)."""
        return {signal.SIGHUP: cls.HANGUP, signal.SIGTERM: cls.TERMINATED}.get(
            signal.Signals(signum), cls.INTERRUPTED
        )


def fail(message: str, code: Exit = Exit.USAGE) -> int:
    """Say ``relconsole: <message>`` on stderr (control sequences removed); the exit code."""
    print(f"relconsole: {printable(message)}", file=sys.stderr)
    return int(code)


def warn(message: str) -> None:
    """Say ``relconsole: warning: <message>`` on stderr; the run goes on."""
    try:
        print(f"relconsole: warning: {printable(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # the terminal went away: nothing to tell
        pass
