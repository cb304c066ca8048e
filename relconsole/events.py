"""Typed events the engine emits while it works.

The engine calls ``sink(event)`` for every step; front ends (the headless CLI, the
Textual app, the history recorder) only translate these into text, widgets or rows.
Events are small frozen dataclasses: safe to hand across threads, cheap to build
(a check printing 200,000 lines makes 200,000 of them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Optional


class Stage(StrEnum):
    """The steps a run can report. A ``StrEnum``: JSON lines and the history keep the
    plain names ("checkout", ...), and code compares members, never text."""

    CHECKOUT = "checkout"
    CHECK = "check"
    UPLOAD = "upload"
    #: The service's setup commands, on every host, in the new release, before any switch.
    SETUP = "setup"
    SWITCH = "switch"
    SUPERVISOR = "supervisor"
    #: The automatic rollback after a failed verify or a cancel past the switch.
    ROLLBACK = "rollback"
    #: ``--run``: an ad-hoc command on every host, in its current release.
    RUN = "run"

    @property
    def per_host(self) -> bool:
        """Each host reports its part on its own (front ends give each host a pane)."""
        return self in _PER_HOST


_PER_HOST = frozenset(
    {Stage.UPLOAD, Stage.SETUP, Stage.SWITCH, Stage.SUPERVISOR, Stage.ROLLBACK, Stage.RUN}
)


class RunResult(StrEnum):
    """How a build or rollback ended; recorded in the history as its value."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Failed, and the fleet was returned to the release it ran before.
    ROLLED_BACK = "rolled back"
    #: Refused before anything happened: another run holds the deploy lock.
    LOCKED = "locked"


class Occasion(StrEnum):
    """What a notification announces (``[notify.NAME] on = [...]``): a run started, how
    it ended, or a deploy lock removed. Its value is the body's ``result``."""

    STARTED = "started"
    SUCCESS = "success"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"
    UNLOCKED = "unlocked"

    @classmethod
    def ending(cls, result: RunResult) -> Occasion:
        """How a run that ended with ``result`` is announced (a run the lock refused
        failed: nothing happened, and the team should know why)."""
        return {
            RunResult.SUCCESS: cls.SUCCESS,
            RunResult.CANCELLED: cls.CANCELLED,
            RunResult.ROLLED_BACK: cls.ROLLED_BACK,
        }.get(result, cls.FAILED)


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: when it happened (seconds since the epoch)."""

    ts: float = field(default_factory=_now, kw_only=True)

    #: The name used in JSON lines (``{"event": "output", ...}``).
    kind = "event"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.kind}
        data.update(asdict(self))
        return data


@dataclass(frozen=True, slots=True)
class BuildStarted(Event):
    """A run began. ``stages`` are the stages it will run, in order: front ends draw
    their stage lists from it (a stage not announced, the automatic rollback, is shown
    when it starts)."""

    service: str
    branch: str
    hosts: tuple[str, ...]
    stages: tuple[Stage, ...]
    action: str = "build"  # "build", "rollback" or "run"
    #: What a ``run`` runs on every host, as the remote shell gets it (quoted).
    command: Optional[str] = None
    kind = "started"


@dataclass(frozen=True, slots=True)
class StageStarted(Event):
    stage: Stage
    kind = "stage_started"


@dataclass(frozen=True, slots=True)
class StageFinished(Event):
    stage: Stage
    ok: bool
    seconds: float
    error: Optional[str] = None
    #: Stopped by a cancel (``error`` then says "cancelled" for people).
    cancelled: bool = False
    kind = "stage_finished"


@dataclass(frozen=True, slots=True)
class Output(Event):
    """One whole line of output. ``host`` is None for local work (checkout, checks)."""

    stage: Stage
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

    stage: Stage
    host: str
    ok: bool
    seconds: float
    error: Optional[str] = None
    cancelled: bool = False
    #: The exit status of the host's command (``run``); None where none is reported.
    exit_code: Optional[int] = None
    kind = "host_finished"

    def after(self, earlier: Optional[HostFinished]) -> HostFinished:
        """This host's verdict for the whole stage, given its ``earlier`` part of it
        (the upload stage unpacks, then switches): times add up, a failure stays."""
        if earlier is None:
            return self
        failed = earlier if not earlier.ok else self
        return HostFinished(
            stage=self.stage,
            host=self.host,
            ok=earlier.ok and self.ok,
            seconds=earlier.seconds + self.seconds,
            error=failed.error,
            cancelled=earlier.cancelled or self.cancelled,
            exit_code=self.exit_code if self.exit_code is not None else earlier.exit_code,
            ts=self.ts,
        )


@dataclass(frozen=True, slots=True)
class Switched(Event):
    """Hosts' ``current`` now points at ``release`` (the first batch of a rollout
    switched; the others follow batch by batch): from here on the fleet runs it (or is
    switched back, which a later event says)."""

    release: str
    kind = "switched"


class BatchPhase(StrEnum):
    """Where one batch of a rollout is. A batch waits, then its hosts switch, restart
    and are probed; the rollout pauses before the next batch. It ends done, failed or
    cancelled, and a batch that switched may be rolled back later."""

    WAITING = "waiting"
    SWITCHING = "switching"
    RESTARTING = "restarting"
    PROBING = "probing"
    #: The rollout waits ``pause`` seconds before this batch starts.
    PAUSING = "pausing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled back"

    @property
    def over(self) -> bool:
        """The batch will do nothing more in this rollout (unless rolled back)."""
        return self in (BatchPhase.DONE, BatchPhase.FAILED, BatchPhase.CANCELLED)


@dataclass(frozen=True, slots=True)
class RolloutPlanned(Event):
    """The hosts of ``stage`` go live in these batches, in this order, ``pause``
    seconds apart (one batch: all at once). Every batch starts WAITING."""

    stage: Stage
    batches: tuple[tuple[str, ...], ...]
    pause: float = 0.0
    kind = "rollout"


@dataclass(frozen=True, slots=True)
class BatchChanged(Event):
    """Batch ``batch`` (1-based) of ``of`` moved to ``phase``. ``seconds``: how long
    it took (DONE, FAILED) or will wait (PAUSING); ``error`` when FAILED."""

    stage: Stage
    batch: int
    of: int
    hosts: tuple[str, ...]
    phase: BatchPhase
    seconds: Optional[float] = None
    error: Optional[str] = None
    kind = "batch"

    def describe(self) -> str:
        """``batch 2/3 (h2): probing`` — how front ends and the history say it."""
        line = f"batch {self.batch}/{self.of} ({', '.join(self.hosts)}): {self.phase}"
        if self.phase is BatchPhase.PAUSING and self.seconds is not None:
            line += f" {self.seconds:g}s"
        elif self.seconds is not None:
            line += f" in {self.seconds:.1f}s"
        return line + (f" — {self.error}" if self.error else "")


@dataclass(frozen=True, slots=True)
class BuildFinished(Event):
    """The run is over. ``result`` says how; ``ok`` and ``cancelled`` are shorthands
    kept in JSON lines for scripts."""

    result: RunResult
    seconds: float
    service: str
    sha: Optional[str] = None
    release: Optional[str] = None
    error: Optional[str] = None
    #: The release an automatic rollback returned the fleet to, when there was one.
    rolled_back: Optional[str] = None
    #: Who holds the deploy lock, when ``result`` is LOCKED (their own words).
    holder: Optional[str] = None
    kind = "finished"

    @property
    def ok(self) -> bool:
        return self.result is RunResult.SUCCESS

    @property
    def cancelled(self) -> bool:
        return self.result is RunResult.CANCELLED

    def to_dict(self) -> dict[str, Any]:
        data = Event.to_dict(self)
        data.update(ok=self.ok, cancelled=self.cancelled)
        return data


Sink = Callable[[Event], None]
