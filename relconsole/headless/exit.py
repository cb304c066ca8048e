"""Exit codes of the command line: API, since scripts and CI branch on them."""

import enum


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM
