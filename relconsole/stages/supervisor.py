"""The supervisor stage on one host: update, restart, and verify by parsed state.

``supervisorctl`` exits 0 while a program is BACKOFF or STARTING, so success is
judged from ``supervisorctl status`` rows: every process of every program must be
RUNNING with a new pid, and still so at least ``settle`` seconds after the restart.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

from relconsole.config import Host
from relconsole.errors import Cancelled, StageFailed
from relconsole.hosts.base import CommandFailed, Result, Transport, run_step
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import Restarted
from relconsole.status.reader import status_rows

# A program's log lines shown when it failed to start.
_TAIL_LINES = 15


class VerifyFailed(StageFailed):
    pass


def _pids(rows: Sequence[sv.ProcessStatus]) -> dict[str, int | None]:
    return {row.name: row.pid for row in rows}


def _checked(t: Transport, command: str, step: str, timeout: float, log) -> Result:
    res = run_step(t, command, step, timeout=timeout, on_line=lambda line, _s: log(line), sudo=True)
    if not res.ok:
        raise CommandFailed(t.name, step, res)
    return res


def _tail(t: Transport, host: Host, name: str, timeout: float) -> list[str]:
    lines: list[str] = []
    for stream in ("stdout", "stderr"):
        res = run_step(
            t,
            sv.tail_command(host.supervisorctl, name, stream),
            f"supervisorctl tail {stream}",
            timeout=timeout,
            sudo=True,
        )
        lines += [
            f"  {stream}| {ln}" for ln in res.stdout.splitlines()[-_TAIL_LINES:] if ln.strip()
        ]
    return lines


@contextlib.contextmanager
def _waking(poke: Optional[Callable[[], None]]):
    """Keep supervisord awake while supervisorctl waits on it.

    supervisord notices a stopped child or an elapsed startsecs only when its main loop
    turns, which happens once a second unless a request wakes it: a restart waits ~2 s
    where ~1 s is the program's own startsecs. A cheap request every 0.1 s (the status
    helper's, ~1 ms, on another channel of the same connection) halves that.
    """
    if poke is None:
        yield
        return
    done = threading.Event()

    def loop() -> None:
        while not done.wait(0.1):
            try:
                poke()
            except Exception:  # a missed wake-up only costs time
                pass

    thread = threading.Thread(target=loop, name="supervisord-wake", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def restart_and_verify(
    t: Transport,
    host: Host,
    programs: Sequence[str],
    *,
    timeout: float,
    log: Callable[[str], None],
    cancel: threading.Event,
    settle: float = 1.0,
    verify_timeout: float = 60.0,
    read_rows: Optional[Callable[[], list[sv.ProcessStatus]]] = None,
    poke: Optional[Callable[[], None]] = None,
    restart_fast: Optional[Callable[[Sequence[str]], Optional[Restarted]]] = None,
) -> None:
    """Bring ``programs`` up on the new release and prove they stay up.

    ``read_rows`` reads the host's status (a :class:`StatusReader`'s fast path, say);
    by default ``supervisorctl status``. ``restart_fast``, when given, does update and
    restart in one request to supervisord (the status helper's), or answers None when
    it cannot (then supervisorctl does them).
    ``poke``, when given, is a cheap request to supervisord, sent every 0.1 s while
    supervisorctl's update and restart wait on it (see _waking).
    """
    read_rows = read_rows or (lambda: status_rows(t, host, timeout))
    before = _pids(read_rows()) if programs else {}
    if cancel.is_set():
        raise Cancelled()
    done = restart_fast(programs) if restart_fast is not None else None
    if done is not None:
        for line in done.lines:
            log(line)
    else:
        _restart_with_supervisorctl(
            t, host, programs, timeout=timeout, log=log, poke=poke, cancel=cancel
        )
    if not programs:
        log("no programs configured: nothing to restart")
        return
    if cancel.is_set():  # came while supervisord restarted them: they go back
        raise Cancelled()
    restarted = time.monotonic()
    _verify(
        t,
        host,
        programs,
        before,
        restarted,
        timeout=timeout,
        log=log,
        settle=settle,
        verify_timeout=verify_timeout,
        cancel=cancel,
        read_rows=read_rows,
        proven=done.startsecs if done is not None else {},
    )


def _restart_with_supervisorctl(
    t: Transport,
    host: Host,
    programs: Sequence[str],
    *,
    timeout: float,
    log: Callable[[str], None],
    poke: Optional[Callable[[], None]],
    cancel: threading.Event,
) -> None:
    """``supervisorctl update``, then ``restart`` of the programs update did not just
    start (a group it added or changed starts on the new config: restarting it again
    would only wait its startsecs twice; ``start`` brings up one that is not autostart)."""
    with _waking(poke):
        update = sv.update_command(host.supervisorctl)
        res = _checked(t, update, "supervisorctl update", timeout, log)
    if not programs:
        return
    if cancel.is_set():
        raise Cancelled()
    fresh = fresh_groups(res.stdout)
    again = [p for p in programs if program_group(p) not in fresh]
    new = [p for p in programs if program_group(p) in fresh]
    # restart's exit code is not the verdict: a spawn error, an unknown program or a
    # supervisord that went away all show in the verify below, with better words.
    for command, step in (
        (sv.restart_command(host.supervisorctl, again) if again else None, "restart"),
        (sv.action_command(host.supervisorctl, "start", new) if new else None, "start"),
    ):
        if command is None:
            continue
        with _waking(poke):
            run_step(
                t,
                command,
                f"supervisorctl {step}",
                timeout=timeout,
                on_line=lambda line, _s: log(line),
                sudo=True,
            )


def program_group(program: str) -> str:
    """The process group of a configured program (``site:web`` → ``site``)."""
    return program.partition(":")[0]


def fresh_groups(update_output: str) -> set[str]:
    """The groups ``supervisorctl update`` added or changed (it started them anew)."""
    fresh = set()
    for line in update_output.splitlines():
        name, _, what = line.partition(": ")
        if what.strip() in ("added process group", "updated process group"):
            fresh.add(name.strip())
    return fresh


def _verify(
    t: Transport,
    host: Host,
    programs: Sequence[str],
    before: dict[str, int | None],
    restarted: float,
    *,
    timeout: float,
    log,
    settle: float,
    verify_timeout: float,
    cancel: threading.Event,
    read_rows: Callable[[], list[sv.ProcessStatus]],
    proven: dict[str, float],
) -> None:
    """Until every process of ``programs`` is RUNNING with a new pid and has stayed up
    ``settle`` seconds: by our clock since the restart, by its ``proven`` startsecs
    (supervisord saw it stay up that long before calling it RUNNING), or by its
    uptime (whole seconds, so one less is all it proves)."""
    while True:
        rows = read_rows()
        waiting = []
        for program in programs:
            procs = [r for r in rows if r.belongs_to(program)]
            if not procs:
                raise VerifyFailed(f"program '{program}' is not known to supervisor on {t.name}")
            for proc in procs:
                if proc.state in sv.FAILED_STATES or proc.state == sv.State.STOPPED:
                    lines = [f"{proc.name} is {proc.state.value}: {proc.description}"]
                    lines += _tail(t, host, proc.name, timeout)
                    for line in lines:
                        log(line)
                    raise VerifyFailed(f"{proc.name} is {proc.state.value} ({proc.description})")
                if proc.state != sv.State.RUNNING or proc.pid == before.get(proc.name):
                    waiting.append(f"{proc.name} {proc.state.value}")
        elapsed = time.monotonic() - restarted
        settled = elapsed >= settle or all(
            max(proven.get(r.name, 0.0), (r.uptime or 0) - 1) >= settle
            for p in programs
            for r in rows
            if r.belongs_to(p)
        )
        if not waiting and settled:
            for program in programs:
                for proc in (r for r in rows if r.belongs_to(program)):
                    log(f"{proc.name} RUNNING pid {proc.pid}")
            return
        if elapsed > verify_timeout:
            raise VerifyFailed(f"not running after {verify_timeout:g}s: {', '.join(waiting)}")
        if cancel.is_set():
            raise Cancelled()
        time.sleep(min(0.25, max(0.05, settle - elapsed)))
