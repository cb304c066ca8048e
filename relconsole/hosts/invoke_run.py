"""Running a command through Invoke's runner, as both transports do.

Fabric's ``Connection.run`` and Invoke's local ``Context.run`` share a runner; this
wraps it the way relconsole needs: output to a callback as whole lines (never to
``sys.stdout``, which Textual owns while the app runs), stdin closed, a non-zero exit
a result and not an error, a timeout a :class:`CommandTimedOut`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from relconsole.hosts.base import CommandTimedOut, LineCallback, Result
from relconsole.text import LineSplitter


def invoke_run(
    run: Callable, host: str, command: str, timeout: float, on_line: Optional[LineCallback]
) -> Result:
    """Run ``command`` with an Invoke-style ``run`` (Fabric's or Invoke's local one)."""
    import invoke

    out = LineSplitter(lambda line: on_line(line, "out")) if on_line else None
    err = LineSplitter(lambda line: on_line(line, "err")) if on_line else None
    try:
        # hide only when nobody listens: Invoke would write to sys.stdout otherwise.
        res = run(
            command,
            warn=True,
            pty=False,
            in_stream=False,
            timeout=timeout,
            hide=on_line is None,
            out_stream=out,
            err_stream=err,
        )
    except invoke.CommandTimedOut:
        raise CommandTimedOut(host, f"timed out after {timeout:g}s: {command}") from None
    finally:
        for splitter in (out, err):
            if splitter:
                splitter.flush_partial()
    return Result(command, res.exited, res.stdout, res.stderr)
