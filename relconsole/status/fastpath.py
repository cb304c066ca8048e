"""The fast path for ``supervisorctl status``: a helper kept running on the host.

Spawning ``supervisorctl`` costs ~100 ms of Python start-up per host per poll, while
supervisord answers ``supervisor.getAllProcessInfo`` over its own socket in ~2 ms. So
a small stdlib-only helper (``remote_helper.py`` beside this module, shipped as
package data; any python3 ≥ 3.6) is started once
per connection on its own exec channel, beside the connection's normal commands::

    exec python3 -I -S -c SOURCE TARGET ARGV0      (through ``sudo -n`` where configured)

and then answers one JSON line per request line::

    first line, unasked  {"hello": 1, "serverurl": "unix:///run/supervisor.sock"}
                      or {"ok": false, "lasting": true, "error": "..."} and it exits
    "status\\n"        →  {"ok": true, "processes": [{"name", "group", "statename", "pid",
                                                      "start", "now", "description"}, ...]}
                      or {"ok": false, "lasting": false, "error": "unix:///... no such file"}
    "tail STREAM OFFSET LIMIT NAME\\n"
                      →  {"ok": true, "text": "...", "start": S, "offset": E, "size": Z,
                          "rotated": false}: the log's bytes from OFFSET (-1: its last
                          LIMIT bytes) up to LIMIT, E the offset after them, Z its size
                      or {"ok": false, "lasting": false, "error": "supervisord: BAD_NAME: x"}
    "restart SECONDS SPEC..."
                      →  {"ok": true, "lines": ["svc: stopped", "svc: started", ...],
                          "startsecs": {"svc": 1, ...}}:
                          ``supervisorctl update`` then ``restart SPEC...`` (specs
                          ``group:*`` or ``group:name``), waiting (up to SECONDS) as
                          supervisorctl does until each process is RUNNING past its
                          startsecs or gave up; a program update just started is not
                          restarted again; no SPEC: update only
                      or {"ok": false, "fault": true, "error": "supervisord: ..."}:
                          supervisord refused (what supervisorctl would report too)
                      or {"ok": false, "timeout": "update"|"restart", "lines": [...]}:
                          a process was not up (or down) by the deadline

``lasting`` errors (config unreadable, socket permission, authentication) will not heal
on this connection; the others (supervisord down or restarting) may.

TARGET is what the host's ``supervisorctl`` command names: its ``-s`` server URL, else
its ``-c`` config file, else "" and the helper searches where supervisorctl would
(ARGV0's prefix, the working directory, ``/etc/supervisord.conf``,
``/etc/supervisor/supervisord.conf``), reading ``serverurl``, ``username`` and
``password`` from the ``[supervisorctl]`` section as supervisorctl does.

:class:`FastPath` owns the helper of one connection and turns its answers into the same
:class:`~relconsole.supervisor.ProcessStatus` rows that ``parse_status`` makes of
``supervisorctl status``. What to do when it is unavailable is the poller's business
(:mod:`relconsole.status`).
"""

from __future__ import annotations

import json
import posixpath
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

from relconsole.config import Host
from relconsole.errors import RelconsoleError
from relconsole.hosts.base import Channel, CommandTimedOut, Transport
from relconsole.status import supervisorctl as sv

#: The helper's source, shipped as package data (it runs on the host, not here).
HELPER_SOURCE = (resources.files("relconsole.status") / "remote_helper.py").read_text("utf-8")

#: Marks the helper in ``ps``; tests find it by this.
HELPER_MARK = "relconsole-fastpoll"

# Options of supervisorctl that take a value (getopt "c:s:u:p:r:").
_VALUE_OPTIONS = {
    "-c": "conf",
    "--configuration": "conf",
    "-s": "url",
    "--serverurl": "url",
    "-u": None,
    "--username": None,
    "-p": None,
    "--password": None,
    "-r": None,
    "--history_file": None,
}
# How long a helper that failed may take to say why.
_LAST_WORDS = 1.0
# Helpers started on one connection before it polls with supervisorctl for good.
MAX_STARTS = 4


def helper_target(supervisorctl: str) -> tuple[str, str]:
    """``(target, argv0)`` for the helper from the host's ``supervisorctl`` command.

    target is the ``-s`` URL, else the ``-c`` config path, else "" (the helper
    searches as supervisorctl would from argv0). Options are read after the word that
    names supervisorctl (``python -m supervisor.supervisorctl -c …`` too), up to the
    first argument, as getopt reads them.
    """
    try:
        words = shlex.split(supervisorctl)
    except ValueError:
        return "", ""
    if not words:
        return "", ""
    start = next((i for i, w in enumerate(words) if "supervisorctl" in posixpath.basename(w)), 0)
    found: dict[str, str] = {}
    rest = iter(words[start + 1 :])
    for word in rest:
        name, eq, value = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
        if name not in _VALUE_OPTIONS:
            if not word.startswith("-"):
                break
            continue  # a flag such as -i
        if not eq and not value:
            value = next(rest, "")
        key = _VALUE_OPTIONS[name]
        if key:
            found[key] = value
    return found.get("url") or found.get("conf") or "", words[start]


def helper_command(host: Host) -> str:
    """The shell command that starts the helper for ``host`` (before any ``sudo``)."""
    target, argv0 = helper_target(host.supervisorctl)
    # -I: ignore PYTHON* variables and the user's site; -S: no site-packages (faster,
    # and nothing there can shadow the stdlib).
    return " ".join(
        [
            "exec python3 -I -S -c",
            shlex.quote(HELPER_SOURCE),
            shlex.quote(target),
            shlex.quote(argv0),
        ]
    )


def to_rows(processes: list[Any]) -> list[sv.ProcessStatus]:
    """The helper's process infos as ``parse_status`` reads ``supervisorctl status``.

    Name ``group:name`` unless the two are equal; pid and uptime only while RUNNING
    (supervisorctl prints them only then); supervisor's own description. Whatever the
    host sent, this never raises: an entry that is not a process info is skipped and a
    number that is not one counts as missing.
    """
    rows = []
    for p in processes:
        if not isinstance(p, dict):
            continue
        name, group = str(p.get("name")), str(p.get("group"))
        try:
            state = sv.State(str(p.get("statename")))
        except ValueError:
            state = sv.State.UNKNOWN
        running = state == sv.State.RUNNING
        pid, start, now = (_whole(p.get(key)) for key in ("pid", "start", "now"))
        rows.append(
            sv.ProcessStatus(
                name=name if name == group else f"{group}:{name}",
                state=state,
                pid=pid if running and pid else None,
                uptime=max(0, (now or 0) - (start or 0)) if running else None,
                description=str(p.get("description") or "").strip(),
            )
        )
    return rows


def _whole(value: Any) -> Optional[int]:
    """``value`` as a whole number if it is one (JSON may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # nan, inf
        return None


class Unavailable(RelconsoleError):
    """The fast path cannot answer this poll; ``lasting`` when it will not on this
    connection either, so asking it again is a waste."""

    def __init__(self, message: str, lasting: bool):
        super().__init__(message)
        self.message = message
        self.lasting = lasting


class SupervisorRefused(RelconsoleError):
    """supervisord refused an update or restart asked through the helper (a config it
    cannot read, shutting down): supervisorctl would fail the same way."""


class LogUnreadable(Unavailable):
    """supervisord could not give a program's log (no such program, no log file...);
    the fast path itself still works."""

    def __init__(self, message: str):
        super().__init__(message, lasting=False)


@dataclass(frozen=True)
class LogChunk:
    """Bytes of a program's log, as text: from byte ``start`` to ``offset`` (what to
    ask from next); ``size`` the log's size when read. ``rotated``: the log is now
    shorter than the offset asked for (supervisor rotated it), so it was read anew."""

    text: str
    start: int
    offset: int
    size: int
    rotated: bool = False

    @property
    def more(self) -> bool:
        """The log already holds more than this chunk: ask again at once."""
        return self.offset < self.size


@dataclass(frozen=True)
class Restarted:
    """What an update + restart through the helper said: supervisorctl's lines, and
    each restarted process's ``startsecs`` (supervisord saw it stay up that long)."""

    lines: list[str]
    startsecs: dict[str, float]


class _Gone(Exception):
    """The helper's stream ended; ``output`` is what it said last."""

    def __init__(self, output: str):
        super().__init__(output)
        self.output = output


class Helper:
    """One running helper: a request line in, a JSON line out."""

    def __init__(self, pipe: Channel):
        self._pipe = pipe
        self._buf = b""

    def read(self, timeout: float) -> dict:
        """The next JSON line. Raises :class:`_Gone` at the end of the stream or on
        anything not JSON (a shell or sudo complaint, a traceback), with that text."""
        line = self._line(time.monotonic() + timeout)
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested beyond reason
            reply = None
        if not isinstance(reply, dict):
            raise _Gone(self._last_words(line))
        return reply

    def ask(self, request: str, timeout: float) -> dict:
        self._pipe.send(request.encode() + b"\n")
        return self.read(timeout)

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            chunk = self._pipe.recv(left)
            if not chunk:
                rest, self._buf = self._buf, b""
                raise _Gone(rest.decode("utf-8", "replace").strip())
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _last_words(self, first: bytes) -> str:
        text, deadline = first + b"\n" + self._buf, time.monotonic() + _LAST_WORDS
        self._buf = b""
        try:
            while (left := deadline - time.monotonic()) > 0 and (chunk := self._pipe.recv(left)):
                text += chunk
        except (TimeoutError, OSError):
            pass
        return text.decode("utf-8", "replace").strip()

    def close(self) -> None:
        try:
            self._pipe.close()
        except Exception:  # already gone with its connection
            pass


def _summary(text: str, lines: int = 3) -> str:
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return " / ".join(tail) or "no output"


class FastPath:
    """The fast path on one connection.

    Starts the helper on first use; when a helper that has answered dies (killed,
    OOM), starts another at once, up to :data:`MAX_STARTS` per connection. A helper
    that cannot start (no python3, sudo refused, config unreadable) or a lasting error
    turns the fast path ``off`` for this connection, with the reason.
    """

    def __init__(self, transport: Transport, host: Host):
        self.transport = transport
        self.host = host
        target, _argv0 = helper_target(host.supervisorctl)
        #: The helper found supervisord's config by searching, not by the command's
        #: own -c/-s: its answer should be checked once against supervisorctl's.
        self.guessed = not target
        self.off: Optional[str] = None
        self.serverurl: Optional[str] = None
        self.starts = 0
        self._helper: Optional[Helper] = None

    def disable(self, reason: str) -> None:
        self.off = reason
        self.close()

    def rows(self, timeout: float) -> list[sv.ProcessStatus]:
        """This moment's processes. Raises :class:`Unavailable`, or the transport's
        errors: :class:`CommandTimedOut` when the helper does not answer in time (the
        connection is suspect) and ``HostUnreachable`` when a channel cannot be opened."""
        reply = self._ask("status", timeout)
        if reply.get("ok") and isinstance(reply.get("processes"), list):
            return to_rows(reply["processes"])
        error = str(reply.get("error") or "the status helper gave no answer")
        if reply.get("lasting"):
            self.disable(error)
        raise Unavailable(error, lasting=bool(reply.get("lasting")))

    def tail(self, name: str, stream: str, offset: int, limit: int, timeout: float) -> LogChunk:
        """The bytes of ``name``'s ``stream`` log from byte ``offset`` (-1: its last
        ``limit`` bytes), at most ``limit``: supervisor's own log, read by offset, so
        following it loses no line however fast the program writes. Raises
        :class:`Unavailable` (the fast path is off; a log supervisord cannot read is
        :class:`LogUnreadable`) and the transport's errors."""
        if stream not in ("stdout", "stderr") or not name or any(c.isspace() for c in name):
            raise ValueError(f"cannot tail {stream} of {name!r}")
        reply = self._ask(f"tail {stream} {int(offset)} {int(limit)} {name}", timeout)
        if not reply.get("ok"):
            raise LogUnreadable(str(reply.get("error") or "the status helper gave no answer"))
        try:
            return LogChunk(
                text=str(reply.get("text") or ""),
                start=int(reply["start"]),
                offset=int(reply["offset"]),
                size=int(reply["size"]),
                rotated=bool(reply.get("rotated")),
            )
        except (KeyError, TypeError, ValueError):
            raise LogUnreadable(f"the status helper said {reply!r:.200}") from None

    def restart(self, programs: Sequence[str], timeout: float) -> Restarted:
        """``supervisorctl update`` and ``restart`` of ``programs`` in one request (see
        the module's protocol). Raises
        :class:`SupervisorRefused`, :class:`Unavailable` (supervisorctl may still do
        it: the caller falls back) and the transport's errors."""
        if any(not p or any(c.isspace() for c in p) for p in programs):
            raise ValueError(f"cannot restart {programs!r}")
        specs = [p if ":" in p else f"{p}:*" for p in programs]  # as restart_command
        # The helper stops waiting at its deadline; this side waits a little longer
        # for the answer that says so.
        reply = self._ask(" ".join(["restart", f"{timeout:g}", *specs]), timeout + 5)
        if reply.get("ok"):
            lines, startsecs = reply.get("lines"), reply.get("startsecs")
            return Restarted(
                lines=[str(line) for line in lines] if isinstance(lines, list) else [],
                startsecs={
                    str(name): float(seconds)
                    for name, seconds in (startsecs.items() if isinstance(startsecs, dict) else ())
                    if _whole(seconds) is not None
                },
            )
        if reply.get("timeout") in ("update", "restart"):  # as run_step says it
            raise CommandTimedOut(
                self.host.name,
                f"supervisorctl {reply['timeout']} timed out after {timeout:g}s "
                "(settings.command_timeout)",
            )
        error = str(reply.get("error") or "the status helper gave no answer")
        if reply.get("fault"):
            raise SupervisorRefused(error)
        if reply.get("lasting"):
            self.disable(error)
        raise Unavailable(error, lasting=bool(reply.get("lasting")))

    def _ask(self, request: str, timeout: float) -> dict:
        """The helper's answer to ``request``, starting it (again) as needed."""
        while True:
            if self.off:
                raise Unavailable(self.off, lasting=True)
            fresh = self._helper is None
            helper = self._helper or self._start(timeout)
            try:
                return helper.ask(request, timeout)
            except TimeoutError:
                self.close()
                raise CommandTimedOut(
                    self.host.name, f"the status helper did not answer in {timeout:g}s"
                ) from None
            except (_Gone, OSError) as exc:
                self.close()
                said = _summary(getattr(exc, "output", "") or str(exc))
                if fresh:
                    self.disable(f"the status helper ended on its first request: {said}")
                continue  # it had answered before: start another

    def _give_up(self, reason: str) -> Unavailable:
        """Turn the fast path off for this connection; the error to raise."""
        self.disable(reason)
        return Unavailable(reason, lasting=True)

    def _start(self, timeout: float) -> Helper:
        if self.starts >= MAX_STARTS:
            raise self._give_up(f"the status helper ended {self.starts} times on this connection")
        self.starts += 1
        helper = Helper(
            self.transport.open_channel(helper_command(self.host), timeout=timeout, sudo=True)
        )
        try:
            hello = helper.read(timeout)
        except TimeoutError:
            helper.close()
            raise CommandTimedOut(
                self.host.name, f"the status helper did not start in {timeout:g}s"
            ) from None
        except (_Gone, OSError) as exc:
            helper.close()
            said = _summary(getattr(exc, "output", "") or str(exc))
            raise self._give_up(f"the status helper did not start: {said}") from None
        if hello.get("hello") != 1:
            helper.close()
            raise self._give_up(str(hello.get("error") or f"the status helper said {hello!r}"))
        self.serverurl = hello.get("serverurl")
        self._helper = helper
        return helper

    def close(self) -> None:
        """End the helper (its channel closes; it leaves at the end of its stdin)."""
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()
