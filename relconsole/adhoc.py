"""``--run``: one ad-hoc command on every host of a service, in parallel.

The command runs in the service's ``current`` release folder on each host (as the
deploy user, or through ``sudo -n`` with ``sudo``), its arguments quoted for the
remote shell and never split again. Each host connects, runs and closes on its own
thread (:func:`relconsole.fanout.fan_out`): an unreachable host is that host's failure,
not the others'. A cancel (Ctrl-C) ends the remote command's whole process group, on
ssh and local hosts alike (``Transport.run(stop=)``).

It is reported as a run (``BuildStarted(action="run", command=...)``, one ``run``
stage whose output and ``HostFinished.exit_code`` are per host, ``BuildFinished``), so
front ends draw it as they draw builds and the history records it (command, hosts,
who, each host's exit status). It takes no deploy lock: reading a log beside a build
is what it is often for.
"""

from __future__ import annotations

import posixpath
import shlex
import threading
import time
from collections.abc import Sequence
from typing import Optional

from relconsole.config import Config, Host
from relconsole.errors import Cancelled
from relconsole.events import (
    BuildFinished,
    BuildStarted,
    HostFinished,
    Output,
    RunResult,
    Sink,
    Stage,
    StageFinished,
    StageStarted,
)
from relconsole.fanout import Outcome, fan_out
from relconsole.hosts.base import Result, as_root
from relconsole.hosts.connect import Connector, Dialer
from relconsole.notify import Postman, reporting
from relconsole.release import q
from relconsole.secrets import Masker

#: What the shell says on stderr when the service has no current release on a host.
NO_CURRENT = "relconsole: no current release"


def command_line(argv: Sequence[str]) -> str:
    """``argv`` as one line for the remote shell: every argument quoted, never split."""
    if not argv:
        raise ValueError("no command given")
    return shlex.join(argv)


def remote_command(base: str, argv: Sequence[str], sudo: bool) -> str:
    """Run ``argv`` inside ``<base>/current`` (``exec``: its exit status is the answer);
    with ``sudo``, as root through ``sudo -n``."""
    current = posixpath.join(base, "current")
    inside = (
        f"cd {q(current)} 2>/dev/null || {{ echo {q(f'{NO_CURRENT} ({current})')} >&2; "
        f"exit 127; }}; exec {command_line(argv)}"
    )
    return as_root(inside, sudo)


def describe_failure(res: Result) -> str:
    """How a host's non-zero exit reads in the summary."""
    if res.exit_code == 127 and NO_CURRENT in res.stderr:
        return "nothing deployed here (no current release)"
    return f"exit {res.exit_code}"


def run_adhoc(
    config: Config,
    service_name: str,
    argv: Sequence[str],
    sink: Sink,
    cancel: Optional[threading.Event] = None,
    *,
    only_hosts: Optional[Sequence[str]] = None,
    sudo: bool = False,
    trigger: str = "headless",
    connector: Optional[Connector] = None,
    postman: Optional[Postman] = None,
) -> BuildFinished:
    """Run ``argv`` on every host of ``service_name`` (or ``only_hosts``) at once.

    Every line each host prints reaches ``sink`` as ``Output(stage=run, host=...)``;
    each host ends with a ``HostFinished`` carrying its exit status. The result is a
    success when every host exited 0.
    """
    service = config.services[service_name]
    hosts = config.hosts_of(service)
    if only_hosts:
        hosts = [h for h in hosts if h.name in set(only_hosts)]
    cancel = cancel or threading.Event()
    shown = command_line(argv)
    report = reporting(config, sink, trigger, Masker(), postman)
    started = time.monotonic()
    report(
        BuildStarted(
            service=service.name,
            branch=service.branch,
            hosts=tuple(h.name for h in hosts),
            stages=(Stage.RUN,),
            action="run",
            command=shown,
        )
    )
    report(StageStarted(stage=Stage.RUN))
    dialer = Dialer(config.settings) if connector is None else None
    through: Connector = connector or dialer  # type: ignore[assignment]

    def on_host(host: Host) -> Result:
        if cancel.is_set():
            raise Cancelled()
        t = through(host, config.settings)
        try:
            return t.run(
                remote_command(t.path(service.path), argv, sudo),
                timeout=config.settings.command_timeout,
                on_line=lambda line, stream: report(
                    Output(stage=Stage.RUN, line=line, host=host.name, stream=stream)
                ),
                stop=cancel,
            )
        finally:
            t.close()

    def done(outcome: Outcome[Result]) -> None:
        res = outcome.value
        ok = outcome.ok and res is not None and res.ok
        error = outcome.error
        if outcome.ok and res is not None and not res.ok:
            error = describe_failure(res)
        report(
            HostFinished(
                stage=Stage.RUN,
                host=outcome.host,
                ok=ok,
                seconds=outcome.seconds,
                error=error,
                cancelled=outcome.cancelled,
                exit_code=res.exit_code if res is not None else None,
            )
        )

    try:
        outcomes = fan_out(
            hosts,
            lambda h: h.name,
            on_host,
            max_parallel=config.settings.max_parallel,
            thread_name="run",
            on_done=done,
        )
    finally:
        if dialer is not None:
            dialer.close()
    failed = {
        o.host: describe_failure(o.value) if o.ok and o.value is not None else o.error or "failed"
        for o in outcomes
        if not (o.ok and o.value is not None and o.value.ok)
    }
    seconds = time.monotonic() - started
    error = "; ".join(f"{h}: {why}" for h, why in failed.items()) or None
    cancelled = cancel.is_set() and bool(failed)
    if cancelled:
        result, error = RunResult.CANCELLED, "cancelled"
    else:
        result = RunResult.FAILED if failed else RunResult.SUCCESS
    report(
        StageFinished(
            stage=Stage.RUN, ok=not failed, seconds=seconds, error=error, cancelled=cancelled
        )
    )
    finished = BuildFinished(result=result, seconds=seconds, service=service.name, error=error)
    report(finished)
    return finished
