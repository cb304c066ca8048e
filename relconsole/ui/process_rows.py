"""What the process view shows, Textual-free: its rows as table cells (marked or not,
grouped by service or not), which rows a filter keeps, the detail and status lines,
and how an action's answer reads. Remote text (descriptions, errors) becomes plain
``Text``, never markup."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Optional

from rich.text import Text

from relconsole.config import Config, Host
from relconsole.hosts.base import Result
from relconsole.status import supervisorctl as sv
from relconsole.status.poller import HostStatus
from relconsole.status.tracker import NO_PROGRAMS, UNREACHABLE, FleetRow, FleetTracker
from relconsole.ui.clock import clock_text, format_age
from relconsole.ui.run_state import Severity

CONNECTING = "CONNECTING"  # a host whose first poll has not answered yet
RESTART_HIGHLIGHT_SECONDS = 5.0

COLUMNS = (  # key, label
    ("mark", "✓"),
    ("host", "Host"),
    ("program", "Program"),
    ("state", "State"),
    ("pid", "PID"),
    ("uptime", "Uptime"),
    ("restarts", "Restarts"),
    ("changed", "Changed"),
    ("detail", "Detail"),
)

STATE_STYLES = {
    "RUNNING": "bold green",
    "STARTING": "yellow",
    "BACKOFF": "bold yellow",
    "STOPPING": "yellow",
    "STOPPED": "dim",
    "EXITED": "bold red",
    "FATAL": "bold red",
    "UNKNOWN": "bold red",
    UNREACHABLE: "bold red",
    NO_PROGRAMS: "dim",
    CONNECTING: "dim italic",
}


#: The column grouping by service adds, after the mark.
SERVICE_COLUMN = ("service", "Service")
#: A program no configured service names.
NO_SERVICE = "(other)"


def columns(grouped: bool) -> tuple[tuple[str, str], ...]:
    """The table's columns: a Service column after the mark when grouped by service."""
    return (COLUMNS[0], SERVICE_COLUMN, *COLUMNS[1:]) if grouped else COLUMNS


def render_row(
    row: FleetRow, now: float, marked: bool = False, service: Optional[str] = None
) -> tuple[Text, ...]:
    """The cells of one table row, in :func:`columns` order (``service`` given: the
    grouped table's Service cell, "" under the first row of its group)."""
    restarted = row.restarted_at is not None and now - row.restarted_at < RESTART_HIGHLIGHT_SECONDS
    pid = Text(
        str(row.pid) if row.pid is not None else "",
        style="bold reverse yellow" if restarted else "",
    )
    restarts = Text(
        str(row.restarts) if row.restarts else "", style="bold yellow" if restarted else "yellow"
    )
    # A running program's description only repeats pid and uptime.
    detail = "" if row.description.startswith("pid ") else row.description
    mark = (Text("●", style="bold magenta") if marked else Text(""),)
    grouped = (Text(service, style="bold cyan"),) if service is not None else ()
    return (
        *mark,
        *grouped,
        Text(row.host, style="bold"),
        Text(row.program or ""),
        Text(row.state, style=STATE_STYLES.get(row.state, "")),
        pid,
        Text(sv.format_uptime(row.uptime)),
        restarts,
        Text(format_age(now - row.last_change) if row.last_change is not None else "", style="dim"),
        Text(" ".join(detail.split()), style="red" if row.program is None else ""),
    )


def same_cell(a: Text, b: Text) -> bool:
    # Text.__eq__ ignores the base style, and the style is what changes on a highlight.
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


def matches(row: FleetRow, needle: str, service: str = "") -> bool:
    """Whether the filter ``needle`` is in the row's host, program, state or service."""
    needle = needle.strip().lower()
    return not needle or any(
        needle in field.lower() for field in (row.host, row.program or "", row.state, service)
    )


def not_running(row: FleetRow) -> bool:
    """What the "not RUNNING" filter keeps: every row that is not a RUNNING program
    (an unreachable host, a host running nothing, a stopped or failed program)."""
    return row.state != "RUNNING"


def services_of(config: Config) -> Callable[[FleetRow], str]:
    """The service a row belongs to: the first whose hosts include the row's host and
    whose programs name its program (``api``, ``workers``, ``workers:*``)."""
    order = list(config.services.values())

    def service(row: FleetRow) -> str:
        if row.program is None:
            return ""
        group = row.program.split(":", 1)[0]
        for s in order:
            if row.host in s.hosts and any(
                p in (row.program, group, group + ":*") for p in s.programs
            ):
                return s.name
        return NO_SERVICE

    return service


# supervisorctl's answers that mean "nothing to do" rather than failure.
_HARMLESS = ("ERROR (already started)", "ERROR (not running)")


def fleet_rows(
    hosts: Sequence[Host], statuses: Mapping[str, HostStatus], tracker: FleetTracker, now: float
) -> list[FleetRow]:
    """Every host's rows in the configured order; a host not heard from yet gets one
    CONNECTING row."""
    known = [statuses[h.name] for h in hosts if h.name in statuses]
    by_host: dict[str, list[FleetRow]] = {}
    for row in tracker.update(known, now=now):
        by_host.setdefault(row.host, []).append(row)
    rows = []
    for host in hosts:
        rows += by_host.get(host.name) or [
            FleetRow(host.name, None, CONNECTING, description=f"connecting to {host.label}")
        ]
    return rows


def status_line(
    hosts: int,
    statuses: Mapping[str, HostStatus],
    polled_at: Optional[float],
    filtered: Optional[tuple[int, int]] = None,
    marked: int = 0,
    notes: Sequence[str] = (),
) -> str:
    """``2/3 hosts reachable · polled 14:03:59 in 4ms · 2/4 rows · 3 marked``."""
    answers = list(statuses.values())
    parts = [f"{sum(s.reachable for s in answers)}/{hosts} hosts reachable"]
    if polled_at is not None and answers:
        # Hosts answer on their own cycles: the latest answer, and the slowest poll.
        slowest = max(s.seconds for s in answers)
        took = f"{slowest * 1000:.0f}ms" if slowest < 1 else f"{slowest:.1f}s"
        parts.append(f"polled {clock_text(polled_at)} in {took}")
    if filtered is not None:
        parts.append(f"{filtered[0]}/{filtered[1]} rows")
    if marked:
        parts.append(f"{marked} marked")
    return " · ".join([*parts, *notes])


def detail_text(row: Optional[FleetRow], needle: str) -> Text:
    """The line under the table: everything about the selected row."""
    if row is None:
        needle = needle.strip()
        return Text(f"no rows match {needle!r}" if needle else "no processes", style="dim")
    text = Text()
    text.append(row.key, style="bold")
    text.append("  ")
    text.append(row.state, style=STATE_STYLES.get(row.state, ""))
    if row.description:
        text.append("  " + " ".join(row.description.split()))
    if row.state == UNREACHABLE and row.last_change is not None:
        text.append(f"  (since {clock_text(row.last_change)})", style="dim")
    if row.restarts:
        when = clock_text(row.restarted_at or 0)
        text.append(f"  restarted {row.restarts}× (last at {when})", style="yellow")
    return text


def action_answer(res: Result) -> tuple[str, Severity]:
    """What supervisorctl said to restart/stop/start, and how bad it is."""
    answers = sv.parse_action_output(res.stdout)
    if not answers:
        message = res.tail(5) or f"no output (exit {res.exit_code})"
        return message, "information" if res.ok else "error"
    message = "\n".join(f"{name}: {what}" for name, what in answers.items())
    if any(w.startswith("ERROR") and w not in _HARMLESS for w in answers.values()):
        return message, "error"
    return message, "warning" if any(w in _HARMLESS for w in answers.values()) else "information"
