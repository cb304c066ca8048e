"""Health probes on one host: is the release it just started alive, as seen from there?

A probe is made from the host itself (a URL or an address is resolved and connected
to on the host, as a load balancer's check on that host would see it), by a small
stdlib script (``health_probe.py`` beside this module, shipped as package data) run
as ``python3 -I -S -c SOURCE``: no curl or other tool needed on the host. The script
retries each probe every ``interval`` seconds until it passes or its timeout is over,
and answers in JSON lines that :func:`parse_answer` reads.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

from relconsole.config import Probe
from relconsole.hosts.base import CommandTimedOut, Stop, Transport
from relconsole.stages.supervisor import VerifyFailed

#: The probe script's source, shipped as package data (it runs on the host, not here).
PROBE_SOURCE = (resources.files("relconsole.stages") / "health_probe.py").read_text("utf-8")
#: Seconds between two attempts of one probe.
INTERVAL = 0.5
#: The longest one attempt of the script waits (its ATTEMPT), for the command's timeout.
_ATTEMPT = 5.0
#: What the host's shell says when there is no python3.
_NO_PYTHON = 127


class HealthFailed(VerifyFailed):
    """A probe never passed on a host: the release is not alive there. A
    :class:`VerifyFailed`, so the release is recorded as failed and rolled back."""


@dataclass(frozen=True)
class ProbeAnswer:
    """One line of the probe script: a probe's answer, and whether it is its last."""

    probe: str
    ok: bool
    answer: str
    seconds: float
    end: Optional[str] = None  # "passed", "failed", or None while it is retried

    def describe(self) -> str:
        if self.end == "passed":
            return f"✔ {self.probe} passed in {self.seconds:.1f}s: {self.answer}"
        if self.end == "failed":
            return f"✘ {self.probe} never passed in {self.seconds:.1f}s: {self.answer}"
        return f"{self.probe}: {self.answer} ({self.seconds:.1f}s)"


def parse_answer(line: str) -> Optional[ProbeAnswer]:
    """The answer in a line of the script's output; None for any other line."""
    try:
        data: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("probe"), str):
        return None
    seconds = data.get("seconds")
    end = data.get("end")
    return ProbeAnswer(
        probe=data["probe"],
        ok=data.get("ok") is True,
        answer=str(data.get("answer", "")),
        seconds=float(seconds) if isinstance(seconds, (int, float)) else 0.0,
        end=end if end in ("passed", "failed") else None,
    )


def probe_command(python: str = "python3") -> str:
    return f"exec {python} -I -S -c {shlex.quote(PROBE_SOURCE)} relconsole-health"


def probe_input(probes: Sequence[Probe], cwd: str, interval: float = INTERVAL) -> bytes:
    """What the script reads on stdin: the probes (as this host makes them) and where
    a ``run`` probe runs."""
    job = {
        "cwd": cwd,
        "interval": interval,
        "probes": [
            {
                "name": p.name,
                "kind": p.kind,
                "target": p.target,
                "expect": p.expect,
                "timeout": p.timeout,
            }
            for p in probes
        ],
    }
    return json.dumps(job).encode()


def check_health(
    t: Transport,
    probes: Sequence[Probe],
    *,
    base: str,
    stop: Stop,
    log: Callable[[str], None],
    interval: float = INTERVAL,
) -> None:
    """Make ``probes`` on one host until each passes; raises :class:`HealthFailed` with
    the last answer of the probe that did not (its status and body start, the
    connection error, or the command's output), or ``Cancelled`` once ``stop`` is set."""
    last: list[ProbeAnswer] = []

    def on_line(line: str, _stream: str) -> None:
        answer = parse_answer(line)
        if answer is None:
            log(line)  # the script's own trouble (a traceback): shown as it is
            return
        last.append(answer)
        log(answer.describe())

    limit = sum(p.timeout + _ATTEMPT + interval for p in probes) + 30.0
    try:
        res = t.run(
            probe_command(t.python),
            timeout=limit,
            on_line=on_line,
            sudo=True,
            stdin=probe_input(probes, posixpath.join(base, "current"), interval),
            stop=stop,
        )
    except CommandTimedOut:
        raise HealthFailed(f"health probes gave no verdict within {limit:g}s") from None
    if res.ok:
        return
    failed = next((a for a in reversed(last) if a.end == "failed"), None)
    if failed is not None:
        raise HealthFailed(
            f"health probe '{failed.probe}' never passed in {failed.seconds:.1f}s; "
            f"last answer: {failed.answer}"
        )
    if res.exit_code == _NO_PYTHON:
        raise HealthFailed("health probes need python3 on the host: " + (res.tail(1) or "none"))
    raise HealthFailed(
        f"health probes could not run (exit {res.exit_code}): {res.tail(3) or 'no output'}"
    )
