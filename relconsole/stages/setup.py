"""The setup stage on one host: the service's commands, in order, inside the new release.

They run after the upload (and the shared links) and before any host switches:
installing dependencies, building assets, migrations. Each runs as relconsole's own
writes do (through ``sudo -n`` on hosts with ``sudo = true``), in its own process
group on the host, so a timeout or a stop (a cancel, or another host's failure) ends
it with everything it started.

Its environment comes over the command's stdin, never on a command line (which every
user of the host can read in ``ps``): the outer shell ``eval``s the ``export`` lines
it reads, then runs the command with nothing on its own stdin.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from collections.abc import Callable, Mapping, Sequence

from relconsole.config import SetupCommand
from relconsole.errors import StageFailed
from relconsole.hosts.base import CommandTimedOut, Stop, Transport


class SetupFailed(StageFailed):
    """A setup command failed or ran out of time on a host."""


def setup_script(base: str, release_dir: str, run: str) -> str:
    """The shell text that runs ``run`` in ``release_dir``: the environment read from
    stdin first, RELCONSOLE_PREVIOUS from where ``current`` points now (before any
    switch: the release it will replace)."""
    current = posixpath.join(base, "current")
    return "\n".join(
        [
            'eval "$(cat)" || exit 125',
            f"RELCONSOLE_PREVIOUS=$(readlink {shlex.quote(current)} || true)",
            "export RELCONSOLE_PREVIOUS",
            f"cd {shlex.quote(release_dir)} || exit 125",
            f"exec sh -c {shlex.quote(run)} </dev/null",
        ]
    )


def environment_script(env: Mapping[str, str]) -> bytes:
    """``export NAME='value'`` lines, each value quoted for the shell that evals them."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()).encode()


def run_setup(
    t: Transport,
    commands: Sequence[SetupCommand],
    *,
    base: str,
    release_dir: str,
    env: Mapping[str, str],
    stop: Stop,
    log: Callable[[str, str], None],
) -> None:
    """Run every setup command on one host, in order; raises :class:`SetupFailed`
    (naming the command), or ``Cancelled`` once ``stop`` is set."""
    stdin = environment_script(env)
    for command in commands:
        log(f"$ {command.run}  [{command.name}]", "info")
        started = time.monotonic()
        try:
            res = t.run(
                setup_script(base, release_dir, command.run),
                timeout=command.timeout,
                on_line=log,
                sudo=True,
                stdin=stdin,
                stop=stop,
            )
        except CommandTimedOut:
            raise SetupFailed(
                f"setup '{command.name}' timed out after {command.timeout:g}s and was killed"
            ) from None
        if not res.ok:
            raise SetupFailed(f"setup '{command.name}' failed with exit code {res.exit_code}")
        log(f"{command.name} done in {time.monotonic() - started:.1f}s", "info")
