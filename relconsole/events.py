"""Typed events the engine emits while it works.

The engine calls ``sink(event)`` for every step; front ends (the headless CLI, the
Textual app, the history recorder) only translate these into text, widgets or rows.
Events are small frozen dataclasses: safe to hand across threads, cheap to build
(a check printing 200,000 lines makes 200,000 of them).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

# The four stages, in order. A plain tuple of strings keeps events JSON-friendly.
STAGES = ("checkout", "check", "upload", "supervisor")


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: when it happened (seconds since the epoch)."""

    ts: float = field(default_factory=_now, kw_only=True)

    #: The name used in JSON lines (``{"event": "output", ...}``).
    kind = "event"

    def to_dict(self) -> dict:
        data = {"event": self.kind}
        data.update(asdict(self))
        return data


@dataclass(frozen=True, slots=True)
class BuildStarted(Event):
    service: str
    branch: str
    hosts: tuple[str, ...]
    action: str = "build"  # "build" or "rollback"
    kind = "started"


@dataclass(frozen=True, slots=True)
class StageStarted(Event):
    stage: str
    kind = "stage_started"


@dataclass(frozen=True, slots=True)
class StageFinished(Event):
    stage: str
    ok: bool
    seconds: float
    error: Optional[str] = None
    skipped: bool = False
    kind = "stage_finished"


@dataclass(frozen=True, slots=True)
class Output(Event):
    """One whole line of output. ``host`` is None for local work (checkout, checks)."""

    stage: str
    line: str
    host: Optional[str] = None
    stream: str = "out"  # "out", "err", or "info" for the engine's own narration
    kind = "output"

    @property
    def where(self) -> str:
        """``stage`` or ``stage host``: the prefix front ends and the history print."""
        return f"{self.stage} {self.host}" if self.host else self.stage


@dataclass(frozen=True, slots=True)
class CommitResolved(Event):
    """The checkout stage found what it will build."""

    branch: str
    sha: str
    subject: str
    author: str
    kind = "commit"


@dataclass(frozen=True, slots=True)
class HostFinished(Event):
    """One host's part of a per-host stage (upload, supervisor) is done."""

    stage: str
    host: str
    ok: bool
    seconds: float
    error: Optional[str] = None
    kind = "host_finished"


@dataclass(frozen=True, slots=True)
class BuildFinished(Event):
    ok: bool
    seconds: float
    service: str
    sha: Optional[str] = None
    release: Optional[str] = None
    error: Optional[str] = None
    cancelled: bool = False
    #: The release an automatic rollback returned the fleet to, when there was one.
    rolled_back: Optional[str] = None
    kind = "finished"


Sink = Callable[[Event], None]
