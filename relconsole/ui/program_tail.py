"""The process view's log pane: a program's stdout or stderr on one host, live.

It follows the log by byte offset: each read asks the host's status helper for the
bytes after the last one read (supervisor's own log, through its XML-RPC), so no line
is lost between reads however fast the program writes, and a read that leaves more
behind is followed at once by the next. Where the helper does not run, every second
it fetches the last :data:`TAIL_BYTES` with ``supervisorctl tail`` and appends only
what is new (a program writing faster than that loses lines there, and says so).

``f`` pauses the pane: new lines are counted, not shown, until it follows again.
``/`` searches the lines the pane holds (every match highlighted), ``n``/``N`` move
to the next or previous one. The log is plain text, never markup.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

from rich.highlighter import Highlighter
from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Log

from relconsole.config import Host
from relconsole.hosts.base import Result, TransportError
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import LogChunk, LogUnreadable, Unavailable
from relconsole.status.tracker import new_log_text
from relconsole.text import printable

#: Seconds between reads while following by offset, when the last read caught up.
FOLLOW_INTERVAL = 0.25
#: Seconds between ``supervisorctl tail`` windows where the helper does not run.
TAIL_INTERVAL = 1.0
TAIL_BYTES = 8000
#: How much of the log's past opening the pane shows; the most one read asks for.
FIRST_BYTES = 16 * 1024
READ_LIMIT = 1024 * 1024
#: Lines the pane keeps (and a paused pane holds back) at most.
MAX_LINES = 20_000

#: Runs a command on a host off the event loop (the process view's thread pool).
RunOnHost = Callable[[Host, str], Awaitable[Result]]
#: Reads a log by offset off the event loop: (host, program, stream, offset, limit).
FollowLog = Callable[[Host, str, str, int, int], Awaitable[LogChunk]]


class TermHighlighter(Highlighter):
    """Every occurrence of the search term, whatever its case."""

    def __init__(self, term: str) -> None:
        self.term = term

    def highlight(self, text: Text) -> None:
        if self.term:
            text.highlight_words([self.term], "bold black on yellow", case_sensitive=False)


@dataclass
class _Tail:
    host: Host
    program: str
    stream: str
    seq: int
    #: Following by offset: the next byte to read (None before the first read).
    offset: Optional[int] = None
    #: The start of a line whose end has not been read yet.
    partial: str = ""
    by_offset: bool = True
    shown: str = ""  # supervisorctl's last window, to diff the next one against
    fetches: int = 0
    #: Lines read since the pane opened (what a benchmark counts).
    received: int = 0
    #: Lines read while paused, not shown yet (the newest MAX_LINES).
    held: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LINES))
    held_count: int = 0


def split_chunk(partial: str, chunk: LogChunk, first: bool) -> tuple[list[str], str]:
    """The whole lines a chunk completes (printable), and the start of the next one. A
    first chunk that does not start at the log's beginning starts mid-line: that part
    is dropped."""
    text = chunk.text
    if first and chunk.start > 0:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    *lines, rest = (partial + text).split("\n")
    return [printable(line) or " " for line in lines], rest


class ProgramTail(Vertical):
    BINDINGS = [
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "match(1)", "Next", show=False),
        Binding("N,shift+n", "match(-1)", "Previous", show=False),
        Binding("f", "pause", "Pause/follow"),
        Binding("escape", "clear_search", "Clear search", key_display="esc"),
    ]

    def __init__(
        self, run: RunOnHost, follow: Optional[FollowLog] = None, *, id: Optional[str] = None
    ) -> None:
        super().__init__(id=id)
        self.run = run
        self.follow = follow
        self.paused = False
        self.term = ""
        self._tail: Optional[_Tail] = None
        self._seq = 0
        self._match: Optional[int] = None  # the line index of the match on screen
        self._status = ""

    def compose(self):
        yield Log(id="tail-log", max_lines=MAX_LINES)
        yield Input(
            id="tail-search", placeholder="search this log · enter keeps it · n/N · esc clears"
        )

    @property
    def output(self) -> Log:
        return self.query_one("#tail-log", Log)

    @property
    def is_open(self) -> bool:
        return self._tail is not None

    @property
    def received(self) -> int:
        return self._tail.received if self._tail else 0

    def open(self, host: Host, program: str, stream: str) -> None:
        """Show ``program``'s ``stream`` ("stdout" or "stderr") on ``host``."""
        self._seq += 1
        self._tail = _Tail(host, program, stream, self._seq)
        self.paused = False
        self.border_title = Text(f"{program} on {host.name}: {stream}")
        self.output.clear()
        self._clear_search()
        self.display = True
        self.output.focus()
        self._say("fetching…")
        self._fetch(self._seq)

    def close(self) -> None:
        self._tail = None
        self._clear_search()
        self.display = False

    # -- reading ----------------------------------------------------------------
    def _fetch(self, seq: int) -> None:
        if self._tail is not None and self._tail.seq == seq:
            self.run_worker(self._read_once(self._tail), group="tail", name="tail")

    async def _read_once(self, tail: _Tail) -> None:
        if tail.by_offset and self.follow is not None:
            delay = await self._follow_once(tail)
        else:
            delay = await self._window_once(tail)
        if self._tail is tail and self.is_attached:
            self.set_timer(delay, partial(self._fetch, tail.seq))

    async def _follow_once(self, tail: _Tail) -> float:
        """One read by offset; the seconds until the next."""
        assert self.follow is not None
        first = tail.offset is None
        try:
            chunk = await self.follow(
                tail.host,
                tail.program,
                tail.stream,
                -1 if tail.offset is None else tail.offset,
                FIRST_BYTES if first else READ_LIMIT,
            )
        except LogUnreadable as exc:
            return self._retrying(tail, exc.message, FOLLOW_INTERVAL * 4)
        except Unavailable:  # no helper on this connection: supervisorctl's windows
            tail.by_offset = False
            return 0.0
        except TransportError as exc:
            return self._retrying(tail, exc.message, TAIL_INTERVAL)
        except Exception as exc:  # a bug must not take the console down mid-incident
            return self._retrying(tail, repr(exc), TAIL_INTERVAL)
        lines, rest = await asyncio.to_thread(split_chunk, tail.partial, chunk, first)
        if self._tail is not tail or not self.is_attached:
            return 0.0
        if chunk.rotated:
            lines.insert(0, "— the log was rotated: reading it from its start —")
            rest = ""
        tail.partial, tail.offset = rest, chunk.offset
        self._show(tail, lines)
        self._say(self._following_words(tail))
        return 0.0 if chunk.more else FOLLOW_INTERVAL

    async def _window_once(self, tail: _Tail) -> float:
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
            return TAIL_INTERVAL
        if res is not None and not res.ok:
            error = res.tail(2) or f"exit {res.exit_code}"
        if error is not None or res is None:
            return self._retrying(tail, error or "", TAIL_INTERVAL)
        self._append_window(tail, res.stdout)
        self._say(self._following_words(tail))
        return TAIL_INTERVAL

    def _retrying(self, tail: _Tail, error: str, delay: float) -> float:
        if self._tail is tail:
            self._say(f"retrying: {' '.join(error.split())}")
        return delay

    def _append_window(self, tail: _Tail, output: str) -> None:
        # supervisorctl prints the log bytes plus one newline of its own.
        window = output[:-1] if output.endswith("\n") else output
        new = new_log_text(tail.shown, window)
        if tail.fetches == 0 and len(window.encode()) >= TAIL_BYTES - 1 and "\n" in new:
            new = new.split("\n", 1)[1]  # the window starts mid-line
        tail.shown = window
        tail.fetches += 1
        if new:
            self._show(tail, [printable(line) or " " for line in new.split("\n")])

    def _show(self, tail: _Tail, lines: list[str]) -> None:
        if not lines:
            return
        tail.received += len(lines)
        if self.paused:
            tail.held.extend(lines)
            tail.held_count += len(lines)
            return
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        log = self.output
        log.write_lines(lines[-MAX_LINES:])
        if len(log.lines) >= MAX_LINES:
            log.refresh()  # once full, pruning shifts every line (see build_view)

    # -- the subtitle -----------------------------------------------------------
    def _following_words(self, tail: _Tail) -> str:
        how = "live" if tail.by_offset and self.follow else "live (supervisorctl tail)"
        if not self.output.lines and not tail.held_count:
            how = f"the log is empty so far · {how}"
        return how

    def _say(self, status: str) -> None:
        self._status = status
        parts = [status]
        tail = self._tail
        if self.paused and tail is not None:
            parts = [f"PAUSED · {tail.held_count:,} new line(s) · f follows"]
        if self.term:
            found = self._matches()
            at = (found.index(self._match) + 1) if self._match in found else 0
            parts.append(f"“{self.term}”: {at}/{len(found)} · n/N")
        parts.append("/ searches · f pauses · esc closes" if not self.term else "esc clears")
        self.border_subtitle = Text(" · ".join(parts))

    # -- pause ------------------------------------------------------------------
    def action_pause(self) -> None:
        tail = self._tail
        if tail is None:
            return
        self.paused = not self.paused
        if not self.paused:
            held = list(tail.held)
            tail.held.clear()
            tail.held_count = 0
            self._write(held)
            if not self.term:
                self.output.scroll_end(animate=False)
        self.output.auto_scroll = not (self.paused or self.term)
        self._say(self._status)

    # -- search -----------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        if action == "clear_search":
            return bool(self.term) or self.query_one("#tail-search", Input).display
        if action == "match":
            return bool(self.term)
        return self._tail is not None

    def action_search(self) -> None:
        box = self.query_one("#tail-search", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#tail-search")
    def _term_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.set_term(event.value)

    @on(Input.Submitted, "#tail-search")
    def _term_kept(self, event: Input.Submitted) -> None:
        event.stop()
        box = self.query_one("#tail-search", Input)
        if not self.term:
            self.action_clear_search()
            return
        box.display = False
        self.output.focus()

    def set_term(self, term: str) -> None:
        """Highlight ``term`` and show its newest match (an empty term follows again)."""
        self.term = term.strip()
        log = self.output
        log.highlighter = TermHighlighter(self.term)
        log.highlight = bool(self.term)
        log.auto_scroll = not (self.paused or self.term)
        found = self._matches()
        self._match = None
        if found:
            self._go_to(found[-1])
        elif not self.term:
            log.scroll_end(animate=False)
        log.refresh()
        self._say(self._status)

    def _matches(self) -> list[int]:
        if not self.term:
            return []
        needle = self.term.lower()
        return [i for i, line in enumerate(self.output.lines) if needle in line.lower()]

    def _go_to(self, index: int) -> None:
        log = self.output
        self._match = index
        log.scroll_to(y=max(0, index - log.size.height // 2), animate=False)

    def action_match(self, step: int) -> None:
        """The next (1) or previous (-1) match, wrapping around."""
        found = self._matches()
        if not found:
            self._say(self._status)
            return
        if self._match is None:
            at = len(found) - 1 if step < 0 else 0
        elif step > 0:
            at = next((i for i, line in enumerate(found) if line > self._match), 0)
        else:
            before = [i for i, line in enumerate(found) if line < self._match]
            at = before[-1] if before else len(found) - 1
        self._go_to(found[at])
        self._say(self._status)

    def action_clear_search(self) -> None:
        self._clear_search()
        if self._tail is not None:
            self.output.focus()

    def _clear_search(self) -> None:
        box = self.query_one("#tail-search", Input)
        box.value = ""
        box.display = False
        self.set_term("")
