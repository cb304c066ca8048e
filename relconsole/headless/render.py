"""The headless front end: engine events as text lines or JSON lines.

Text mode prefixes every line with its stage and host (``[upload web2] …``) and ends
with a stage × host summary table. Remote and program output is printed as text:
terminal control sequences are removed so a hostile program cannot move the
cursor or rewrite the operator's screen. JSON mode writes every event, raw, one
object per line; the last is ``{"event": "finished", ...}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Optional, TextIO

from relconsole.events import (
    BatchChanged,
    BuildFinished,
    BuildStarted,
    CommitResolved,
    Event,
    HostFinished,
    Output,
    RunResult,
    Stage,
    StageFinished,
    StageStarted,
)
from relconsole.text import format_table, printable


class _Writer:
    """Thread-safe writes; flushes at most every 0.1 s while output streams in, and
    0.1 s after the last line when it stops (a command that prints a line and then
    waits must still show that line).

    A terminal that went away (SIGHUP, a closed pipe) must not break the run it
    reports on: the clean-up still has to happen. Writing then stops quietly.
    """

    def __init__(self, out: TextIO):
        self._out = out
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._gone = False
        self._later: Optional[threading.Timer] = None

    def write(self, text: str, flush: bool = False) -> None:
        with self._lock:
            if self._gone:
                return
            try:
                self._out.write(text)
                now = time.monotonic()
                if flush or now - self._flushed > 0.1:
                    self._flush(now)
                elif self._later is None:
                    self._later = threading.Timer(0.1, self._flush_later)
                    self._later.daemon = True
                    self._later.start()
            except (OSError, ValueError):  # EIO, EPIPE; ValueError: closed file
                self._gone = True

    def _flush(self, now: float) -> None:
        self._out.flush()
        self._flushed = now

    def _flush_later(self) -> None:
        with self._lock:
            self._later = None
            if not self._gone:
                try:
                    self._flush(time.monotonic())
                except (OSError, ValueError):
                    self._gone = True


class JsonRenderer:
    def __init__(self, out: TextIO = sys.stdout):
        self._w = _Writer(out)

    def __call__(self, event: Event) -> None:
        self._w.write(
            json.dumps(event.to_dict(), ensure_ascii=False) + "\n",
            flush=not isinstance(event, Output),
        )


class TextRenderer:
    """Lines for people reading a terminal or a CI log."""

    def __init__(self, out: TextIO = sys.stdout):
        self._w = _Writer(out)
        self.hosts: tuple[str, ...] = ()
        self.action = "build"
        self.planned: tuple[Stage, ...] = ()
        self.stages: dict[str, StageFinished] = {}
        self.seen: list[str] = []
        self.host_results: dict[tuple[str, str], HostFinished] = {}
        self.commit: Optional[CommitResolved] = None
        self.command: Optional[str] = None

    def __call__(self, event: Event) -> None:
        handler = getattr(self, "on_" + event.kind, None)
        if handler:
            handler(event)

    def on_started(self, e: BuildStarted) -> None:
        self.hosts = e.hosts
        self.action = e.action
        self.planned = e.stages
        self.command = e.command
        if e.command is not None:
            head = f"==> run {printable(e.command)} on {e.service}: {', '.join(e.hosts)}"
        else:
            head = f"==> {e.action} {e.service} (branch {e.branch}) on {', '.join(e.hosts)}"
        self._w.write(head + "\n", flush=True)

    def on_stage_started(self, e: StageStarted) -> None:
        self.seen.append(e.stage)
        if e.stage is not Stage.RUN:
            self._w.write(f"--> {e.stage}\n", flush=True)

    def on_output(self, e: Output) -> None:
        # A run's lines are the hosts' own: prefixed with the host alone.
        where = e.host if e.stage is Stage.RUN and e.host else e.where
        self._w.write(f"[{where}] {printable(e.line)}\n")

    def on_batch(self, e: BatchChanged) -> None:
        self._w.write(f"[{e.stage}] {printable(e.describe())}\n", flush=True)

    def on_commit(self, e: CommitResolved) -> None:
        self.commit = e

    def on_host_finished(self, e: HostFinished) -> None:
        key = (e.stage, e.host)
        self.host_results[key] = e.after(self.host_results.get(key))
        if not e.ok and e.stage is not Stage.RUN:  # a run's summary says it per host
            self._w.write(f"[{e.stage} {e.host}] FAILED: {printable(e.error or '')}\n", flush=True)

    def on_stage_finished(self, e: StageFinished) -> None:
        self.stages[e.stage] = e
        if e.stage is Stage.RUN:
            return
        verdict = "ok" if e.ok else f"FAILED: {printable(e.error or '')}"
        self._w.write(f"<-- {e.stage} {verdict} ({e.seconds:.1f}s)\n", flush=True)

    def on_finished(self, e: BuildFinished) -> None:
        self._w.write("\n" + self.summary() + "\n" + self.verdict(e) + "\n", flush=True)

    def summary(self) -> str:
        if self.action == "run":
            return self.run_summary()
        header = ["stage", "result", "seconds", *self.hosts]
        rows = [header]
        # Every stage the run announced (those it never reached as "-"), then any it
        # ran unannounced (the automatic rollback).
        for stage in dict.fromkeys([*self.planned, *self.seen]):
            done = self.stages.get(stage)
            result = "-" if done is None else ("ok" if done.ok else "failed")
            seconds = "" if done is None else f"{done.seconds:.2f}"
            cells = []
            for host in self.hosts:
                hr = self.host_results.get((stage, host))
                cells.append(
                    "" if hr is None else f"{'ok' if hr.ok else 'failed'} {hr.seconds:.2f}s"
                )
            rows.append([stage, result, seconds, *cells])
        return format_table(rows)

    def run_summary(self) -> str:
        """One row per host: its exit status and how long it took."""
        rows = [["host", "exit", "seconds", "result"]]
        for host in self.hosts:
            hr = self.host_results.get((Stage.RUN, host))
            if hr is None:
                rows.append([host, "", "", "not run"])
                continue
            code = "" if hr.exit_code is None else str(hr.exit_code)
            result = "ok" if hr.ok else ("cancelled" if hr.cancelled else printable(hr.error or ""))
            rows.append([host, code, f"{hr.seconds:.2f}", result])
        return format_table(rows)

    def verdict(self, e: BuildFinished) -> str:
        sha = f" {e.sha[:12]}" if e.sha else ""
        if self.action == "run":
            command = printable(self.command or "")
            if e.ok:
                return f"RUN OK: {command} on {len(self.hosts)} host(s) in {e.seconds:.1f}s"
            results = {h: self.host_results.get((Stage.RUN, h)) for h in self.hosts}
            failed = [h for h, r in results.items() if r is None or not r.ok]
            word = "CANCELLED" if e.cancelled else "FAILED"
            return f"RUN {word} on {', '.join(failed)}: {command}"
        if e.result is RunResult.LOCKED:
            return f"{self.action.upper()} REFUSED: {printable(e.error or '')}"
        if self.action == "rollback":
            if e.ok:
                return f"ROLLBACK OK: {e.service} runs release {e.release}{sha} ({e.seconds:.1f}s)"
            word = "CANCELLED" if e.cancelled else "FAILED"
            return f"ROLLBACK {word}: {e.service}: {printable(e.error or '')}"
        if e.ok:
            subject = f' "{printable(self.commit.subject)}"' if self.commit else ""
            return (
                f"BUILD OK: {e.service}{sha}{subject} deployed as release {e.release} "
                f"in {e.seconds:.1f}s"
            )
        if e.cancelled:
            return f"BUILD CANCELLED: {e.service}{sha} after {e.seconds:.1f}s"
        return f"BUILD FAILED: {e.service}{sha} after {e.seconds:.1f}s: {printable(e.error or '')}"
