"""Errors shared by the engine's stages."""


class Cancelled(Exception):
    """The operator asked the build to stop (Cancel, Ctrl-C, SIGTERM)."""


class StageFailed(Exception):
    """A stage could not finish; ``str()`` is the one line an operator reads first."""
