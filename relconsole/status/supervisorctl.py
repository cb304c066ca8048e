"""Parsing ``supervisorctl`` output and building ``supervisorctl`` command lines.

Pure code: no I/O, stdlib only (imported on the headless path; never imports Textual).

Output format (supervisor 4.3, ``supervisorctl._show_statuses``)::

    '%(namespec)-{W}s%(state)-10s%(desc)s'   with W = max(30, longest namespec) + 3

so the name column is as wide as the *longest* name in that listing plus 3: a long
name widens the column for every row rather than pushing its own state right.
``namespec`` is ``group:process``, or just ``process`` when the two are equal.  A
STARTING/STOPPING row has an empty description, so the line ends in padding.
Supervisor refuses ``' '``, ``':'`` and ``'/'`` in program and group names, so the
first whitespace-separated token is always the whole namespec.

Exit codes observed with supervisor 4.3.0 (see tests/data/supervisorctl/*.json).
They are NOT a verdict -- judge by parsed state:

``status``
    0  every listed process is RUNNING, STARTING, STOPPING *or BACKOFF* (a program
       stuck in BACKOFF exits 0);
    3  some listed process is STOPPED, EXITED, FATAL or UNKNOWN (so a plain
       ``status`` on any host with an intentionally stopped program exits 3);
    4  a named process/group does not exist ("x: ERROR (no such process)"), or
       supervisord is unreachable ("unix:///... no such file",
       "unix:///... refused connection", "http://... refused connection");
    1  an XML-RPC fault, e.g. while supervisord is shutting down
       ("error: <class 'xmlrpc.client.Fault'>, <Fault 6: 'SHUTDOWN_STATE'>: ...");
    2  ``-c`` config file missing ("Error: could not find config file ...", on
       stderr; everything else above is on stdout).
``restart`` (= ``stop`` then ``start``; one output line per process per half)
    0  success, also when the stop half said "ERROR (not running)";
    7  spawn error ("bad: ERROR (spawn error)"), or supervisord's socket missing;
    1  "ERROR (no such process)" / "ERROR (no such file)" (missing command);
    4  connection refused (read from supervisorctl's source, not recorded).
``stop``: 0 even for "x: ERROR (not running)".  ``start``: 0 for
"x: ERROR (already started)".  ``update``: 0, output may be empty.
``tail``: 0 (output may be a lone empty line), 1 for "x: ERROR (no such process name)".
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    """Supervisor's process states, as printed by ``supervisorctl status``."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"
    UNKNOWN = "UNKNOWN"


FAILED_STATES = frozenset({State.BACKOFF, State.FATAL, State.EXITED})
TRANSITIONAL_STATES = frozenset({State.STARTING, State.STOPPING})

_STATES = {s.value: s for s in State}
_ROW_RE = re.compile(r"(\S+)\s+(\S+)(?:\s+(.*))?")
_PID_RE = re.compile(r"pid (\d+)(?:,|$)")
# str(datetime.timedelta): "0:00:03", "1 day, 0:00:01", "5 days, 7:18:14"
_UPTIME_RE = re.compile(r"(?:^|, )uptime (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)$")


@dataclass(frozen=True)
class ProcessStatus:
    name: str  # full namespec as printed: "api" or "workers:worker_00"
    state: State
    pid: int | None  # only when the description says "pid N"
    uptime: int | None  # seconds
    description: str  # the rest of the line as printed

    @property
    def group(self) -> str:
        """``"workers"`` for ``"workers:worker_00"``, else the name itself."""
        return self.name.split(":", 1)[0]

    def belongs_to(self, program: str) -> bool:
        """Whether the configured ``program`` ("api", "workers", "workers:*",
        "site:web") covers this process."""
        return program in (self.name, self.group, self.group + ":*")


@dataclass(frozen=True)
class StatusError:
    """A non-blank line of ``status`` output that is not a process row."""

    line: str


def _parse_uptime(description: str) -> int | None:
    m = _UPTIME_RE.search(description)
    if not m:
        return None
    days, h, mi, s = m.groups()
    return int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + int(s)


def parse_status(text: str) -> tuple[list[ProcessStatus], list[StatusError]]:
    """Parse ``supervisorctl status`` output; never raises on odd input.

    A line is a process row iff its second whitespace-separated token is a state
    name; every other non-blank line becomes a :class:`StatusError`.
    """
    rows: list[ProcessStatus] = []
    errors: list[StatusError] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _ROW_RE.fullmatch(line)
        state = _STATES.get(m.group(2)) if m else None
        if m is None or state is None:
            errors.append(StatusError(line))
            continue
        description = m.group(3) or ""
        pid_m = _PID_RE.match(description)
        rows.append(
            ProcessStatus(
                name=m.group(1),
                state=state,
                pid=int(pid_m.group(1)) if pid_m else None,
                uptime=_parse_uptime(description),
                description=description,
            )
        )
    return rows, errors


# ``<namespec>: <message>`` lines of start/stop/restart/update.  Anything else
# ("Error: ...", "error: <class ...>", "ERROR: already shutting down",
# "unix:///... no such file") is not a per-process result and is ignored.
_ACTION_RE = re.compile(r"(\S+): (.+)")
_ACTION_MESSAGES = frozenset(
    {
        "started",
        "stopped",
        "signalled",
        "added process group",
        "updated process group",
        "removed process group",
        "has problems; not removing",
    }
)
_ACTION_ERROR_RE = re.compile(r"ERROR \(.+\)")


def parse_action_output(text: str) -> dict[str, str]:
    """Parse ``supervisorctl start/stop/restart/update`` output.

    Returns namespec -> "started" / "stopped" / "ERROR (spawn error)" / ... .  A
    restart prints a stop line then a start line for each process; the *last* line
    for a name wins, so ``{"cron": "started"}`` for "cron: ERROR (not running)" then
    "cron: started".  Order follows first appearance.
    """
    results: dict[str, str] = {}
    for raw in text.splitlines():
        m = _ACTION_RE.fullmatch(raw.strip())
        if not m:
            continue
        name, message = m.group(1), m.group(2).strip()
        if message in _ACTION_MESSAGES or _ACTION_ERROR_RE.fullmatch(message):
            results[name] = message
    return results


# --- command builders -------------------------------------------------------------
#
# ``supervisorctl`` is the host's configured command string (the operator's own
# config, e.g. "supervisorctl -c /etc/supervisor/supervisord.conf") and is used
# verbatim as a prefix; every argument we add is shlex-quoted.  Note that
# supervisorctl itself joins its argv with spaces and re-splits on whitespace, so
# quoting protects the remote shell only: "restart 'api cron'" restarts api AND cron
# (observed).  Real supervisor names never contain whitespace, and the config layer
# refuses such program names.

_ACTIONS = ("start", "stop", "restart")
_STREAMS = ("stdout", "stderr")


def _names(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{what} must be a sequence of names, not a string")
    out = list(names)
    if not out:
        raise ValueError(f"{what}: at least one name is required")
    for n in out:
        if not isinstance(n, str) or not n.strip():
            raise ValueError(f"{what}: empty or non-string name {n!r}")
    return out


def status_command(supervisorctl: str) -> str:
    return f"{supervisorctl} status"


def update_command(supervisorctl: str) -> str:
    return f"{supervisorctl} update"


def restart_command(supervisorctl: str, programs: Sequence[str]) -> str:
    """``supervisorctl restart`` for configured programs.

    A bare program name ``P`` is sent as ``P:*`` (its whole process group): supervisor
    answers "workers: ERROR (no such process)" to ``restart workers`` when workers
    has numprocs > 1, while ``P:*`` works for plain programs too (each plain program
    is its own group of one) and side-steps the magic name ``all``.  Names that
    already contain ``:`` ("site:web", "workers:*") are passed as given.
    """
    specs = [p if ":" in p else f"{p}:*" for p in _names(programs, "restart")]
    return " ".join([supervisorctl, "restart", *map(shlex.quote, specs)])


def action_command(supervisorctl: str, action: str, names: Sequence[str]) -> str:
    """``supervisorctl start|stop|restart NAME...`` with namespecs as printed by
    ``status`` (passed verbatim, e.g. "workers:worker_00")."""
    if action not in _ACTIONS:
        raise ValueError(f"unknown supervisorctl action {action!r}; expected one of {_ACTIONS}")
    return " ".join([supervisorctl, action, *map(shlex.quote, _names(names, action))])


def tail_command(supervisorctl: str, name: str, stream: str = "stdout", nbytes: int = 4000) -> str:
    """``supervisorctl tail -NBYTES NAME [stderr]`` (the last bytes of a process log)."""
    if stream not in _STREAMS:
        raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"nbytes must be a positive int, not {nbytes!r}")
    _names([name], "tail")
    parts = [supervisorctl, "tail", f"-{nbytes}", shlex.quote(name)]
    if stream == "stderr":
        parts.append("stderr")
    return " ".join(parts)


def format_uptime(seconds: int | None) -> str:
    """Supervisor's own rendering: "0:00:03", "1 day, 0:00:01", "5 days, 7:18:14";
    "" for None.  Negative values (clock set back) render as "0:00:00", as
    supervisor does."""
    if seconds is None:
        return ""
    return str(datetime.timedelta(seconds=max(0, int(seconds))))
