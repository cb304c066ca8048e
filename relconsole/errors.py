"""The root of relconsole's exceptions.

Every error an operator should read as one line derives from :class:`RelconsoleError`;
each is defined beside the code that raises it (``ConfigError`` in config,
``TransportError`` in hosts.base, ``LockHeld`` in lock, ...). The command line turns
any of them into ``relconsole: <message>``; anything else is a bug and is reported as
one.
"""


class RelconsoleError(Exception):
    """An error with a message meant for the operator: ``str()`` is that message."""


class Cancelled(RelconsoleError):
    """The operator asked the run to stop (Cancel, Ctrl-C, SIGTERM, SIGHUP)."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class StageFailed(RelconsoleError):
    """A stage could not finish; ``str()`` is the one line an operator reads first."""
