"""The process view's rows as table cells: remote text (descriptions, errors) becomes
plain ``Text``, never markup."""

from __future__ import annotations

from rich.text import Text

from relconsole.status import supervisorctl as sv
from relconsole.status.tracker import NO_PROGRAMS, UNREACHABLE, FleetRow
from relconsole.ui.clock import format_age

CONNECTING = "CONNECTING"  # a host whose first poll has not answered yet
RESTART_HIGHLIGHT_SECONDS = 5.0

COLUMNS = (  # key, label
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


def render_row(row: FleetRow, now: float) -> tuple[Text, ...]:
    """The cells of one table row, in COLUMNS order."""
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
    return (
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


def matches(row: FleetRow, needle: str) -> bool:
    """Whether the filter ``needle`` is in the row's host, program or state."""
    needle = needle.strip().lower()
    return not needle or any(
        needle in field.lower() for field in (row.host, row.program or "", row.state)
    )
