"""supervisor's process list on one open connection, as fast as the host allows.

The fast path (:mod:`relconsole.status.fastpath`: a helper kept running on the host asks
supervisord over its socket, ~1 ms) when it can answer; ``supervisorctl status`` (the
path that always works, ~100 ms of Python start-up) when it cannot. The choice holds
for the connection: a new connection tries the fast path again. Used by the poller
(every few seconds) and by the supervisor stage of a build (before the restart and
while verifying), so a deploy spawns no ``supervisorctl status`` where a helper runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from relconsole.config import Host
from relconsole.hosts.base import CommandFailed, Result, Transport, run_step
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import FastPath, LogChunk, Restarted, Unavailable


class SupervisorUnreachable(CommandFailed):
    """supervisorctl got no answer from supervisord: it is down, or the socket is wrong."""

    def __init__(self, host: str, result: Result):
        super().__init__(host, "supervisorctl status", result)
        self.message = f"supervisord is not answering: {self.message}"
        self.args = (f"{host}: {self.message}",)


def status_rows(t: Transport, host: Host, timeout: float) -> list[sv.ProcessStatus]:
    """``supervisorctl status`` on ``t``, parsed: the path that always works."""
    res = run_step(
        t, sv.status_command(host.supervisorctl), "supervisorctl status", timeout=timeout, sudo=True
    )
    rows, errors = sv.parse_status(res.stdout)
    if not rows and errors:
        # supervisord down, wrong socket...: supervisorctl's own words say why.
        raise SupervisorUnreachable(t.name, res)
    return rows


class StatusReader:
    """How status is read on one connection (the helper, else supervisorctl)."""

    def __init__(self, t: Transport, host: Host, *, fast: bool = True):
        self.transport = t
        self.host = host
        self._fast: Optional[FastPath] = FastPath(t, host) if fast else None
        #: How the last answer came: "fast" (the helper) or "supervisorctl".
        self.via: Optional[str] = None

    @property
    def off(self) -> Optional[str]:
        """Why the fast path is not used on this connection, or None."""
        return "the fast path is turned off" if self._fast is None else self._fast.off

    def rows(self, timeout: float) -> list[sv.ProcessStatus]:
        """The host's processes now. Raises the transport's errors, and
        ``SupervisorUnreachable`` (supervisorctl's own words) when supervisord is down."""
        t, host, fast = self.transport, self.host, self._fast
        missed: Optional[Unavailable] = None
        if fast is not None and not fast.off:
            try:
                rows = fast.rows(timeout)
            except Unavailable as exc:
                missed = exc
            else:
                if not fast.guessed:
                    self.via = "fast"
                    return rows
                # The helper found supervisord's config by searching; make sure once
                # per connection that it asks the supervisord supervisorctl asks.
                ctl = status_rows(t, host, timeout)
                self.via = "supervisorctl"
                if {r.name for r in ctl} == {r.name for r in rows}:
                    fast.guessed = False
                else:
                    fast.disable(
                        f"the status helper asked {fast.serverurl}, which is not the "
                        f"supervisord that {host.supervisorctl!r} asks"
                    )
                return ctl
        rows = status_rows(t, host, timeout)
        self.via = "supervisorctl"
        if fast is not None and missed is not None and not missed.lasting:
            # supervisorctl reached a supervisord the helper could not: it looks elsewhere.
            fast.disable(
                f"the status helper failed ({missed.message}) where supervisorctl answered"
            )
        return rows

    def tail(self, name: str, stream: str, offset: int, limit: int, timeout: float) -> LogChunk:
        """A program's log by byte offset, through the helper (see ``FastPath.tail``);
        raises :class:`Unavailable` where the fast path does not run."""
        if self._fast is None or self._fast.off:
            raise Unavailable(self.off or "the fast path is off", lasting=True)
        return self._fast.tail(name, stream, offset, limit, timeout)

    def restart(self, programs: Sequence[str], timeout: float) -> Optional[Restarted]:
        """``supervisorctl update`` + ``restart`` through the helper, where it answered
        this connection's status (see ``FastPath.restart``); None when the helper
        cannot do it and supervisorctl must."""
        if self._fast is None or self._fast.off or self.via != "fast":
            return None
        try:
            return self._fast.restart(programs, timeout)
        except Unavailable:
            return None

    def poke(self, timeout: float) -> None:
        """A cheap request to supervisord through the helper, if it answers here; never
        supervisorctl (which would also use the connection from another thread)."""
        if self._fast is not None and not self._fast.off and self.via == "fast":
            self._fast.rows(timeout)

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
