"""The console's clock, and how times read on screen.

Every widget asks this module for the time, so snapshot tests freeze one thing
(``now`` and ``spinner``) and get the same picture every run.
"""

from __future__ import annotations

import time
from typing import Optional

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def now() -> float:
    """Wall-clock seconds since the epoch (events carry the same kind of stamp)."""
    return time.time()


def spinner() -> str:
    """The frame a running thing shows now (8 a second)."""
    return SPINNER[int(time.monotonic() * 8) % len(SPINNER)]


def seconds_text(seconds: float) -> str:
    """``"4.2s"`` under a minute, else ``"3m07s"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def format_age(seconds: float) -> str:
    """``"4s ago"``, ``"12m ago"``, ``"3h ago"``, ``"2d ago"``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def clock_text(ts: float) -> str:
    """``"14:03:59"`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def started_text(ts: float, today: Optional[float] = None) -> str:
    """The time alone for today, else month, day and time."""
    today = now() if today is None else today
    same_day = time.localtime(ts)[:3] == time.localtime(today)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M", time.localtime(ts))


def date_time_text(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
