"""The process view's log pane: a program's stdout or stderr on one host, live.

Every second it fetches the last :data:`TAIL_BYTES` of the log (``supervisorctl tail``)
and appends only what is new, so nothing shows twice. The log is plain text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Optional

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Log

from relconsole.config import Host
from relconsole.hosts.base import Result, TransportError
from relconsole.status import supervisorctl as sv
from relconsole.status.tracker import new_log_text

TAIL_INTERVAL = 1.0
TAIL_BYTES = 8000

#: Runs a command on a host off the event loop (the process view's thread pool).
RunOnHost = Callable[[Host, str], Awaitable[Result]]


@dataclass
class _Tail:
    host: Host
    program: str
    stream: str
    seq: int
    shown: str = ""  # the last window fetched, to diff the next one against
    fetches: int = 0


class ProgramTail(Vertical):
    def __init__(self, run: RunOnHost, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.run = run
        self._tail: Optional[_Tail] = None
        self._seq = 0

    def compose(self):
        yield Log(id="tail-log", max_lines=5000)

    @property
    def is_open(self) -> bool:
        return self._tail is not None

    def open(self, host: Host, program: str, stream: str) -> None:
        """Show ``program``'s ``stream`` ("stdout" or "stderr") on ``host``."""
        self._seq += 1
        self._tail = _Tail(host, program, stream, self._seq)
        self.border_title = Text(f"{program} on {host.name}: {stream}")
        self.border_subtitle = Text("fetching… · esc closes")
        self.query_one(Log).clear()
        self.display = True
        self._fetch(self._seq)

    def close(self) -> None:
        self._tail = None
        self.display = False

    def _fetch(self, seq: int) -> None:
        if self._tail is not None and self._tail.seq == seq:
            self.run_worker(self._tail_once(self._tail), group="tail", name="tail")

    async def _tail_once(self, tail: _Tail) -> None:
        command = sv.tail_command(tail.host.supervisorctl, tail.program, tail.stream, TAIL_BYTES)
        error = None
        res: Optional[Result] = None
        try:
            res = await self.run(tail.host, command)
        except TransportError as exc:
            error = exc.message
        except Exception as exc:  # a bug must not take the console down mid-incident
            error = repr(exc)
        if self._tail is not tail or not self.is_attached:
            return  # closed or replaced meanwhile
        if res is not None and not res.ok:
            error = res.tail(2) or f"exit {res.exit_code}"
        if error is not None or res is None:
            self.border_subtitle = Text(f"retrying: {' '.join((error or '').split())}")
        else:
            self._append(tail, res.stdout)
            empty = "" if tail.shown.strip() else "the log is empty so far · "
            self.border_subtitle = Text(f"{empty}live · esc closes")
        self.set_timer(TAIL_INTERVAL, partial(self._fetch, tail.seq))

    def _append(self, tail: _Tail, output: str) -> None:
        # supervisorctl prints the log bytes plus one newline of its own.
        window = output[:-1] if output.endswith("\n") else output
        new = new_log_text(tail.shown, window)
        if tail.fetches == 0 and len(window.encode()) >= TAIL_BYTES - 1 and "\n" in new:
            new = new.split("\n", 1)[1]  # the window starts mid-line
        tail.shown = window
        tail.fetches += 1
        if new:
            self.query_one(Log).write(new)
