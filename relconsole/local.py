"""Local hosts: ``address = "local"`` with a ``root`` folder standing in for ``/``.

A local host runs its commands on this machine through Invoke's local runner (the
same runner Fabric's remote one derives from), with every remote path prefixed by
the host's root. It is what the demo sandbox uses, and it works outside it for
deploying to the machine relconsole runs on.
"""

from __future__ import annotations

import posixpath
import subprocess
from typing import BinaryIO, Optional

import invoke

from .config import Host, Settings
from .transport import CommandTimedOut, LineCallback, Result, as_root, invoke_run


def connect_local(host: Host, settings: Settings) -> "LocalTransport":
    return LocalTransport(host)


class LocalTransport:
    def __init__(self, host: Host):
        self.host = host
        self.name = host.name
        self._root = str(host.root)
        self._ctx = invoke.Context()

    def path(self, remote_path: str) -> str:
        return posixpath.join(self._root, remote_path.lstrip("/"))

    def run(self, command: str, *, timeout: float, on_line: Optional[LineCallback] = None,
            sudo: bool = False) -> Result:
        return invoke_run(self._ctx.run, self.name, as_root(command, sudo and self.host.sudo),
                          timeout, on_line)

    def run_with_input(self, command: str, data: BinaryIO, *, timeout: float,
                       sudo: bool = False, cancel=None) -> Result:
        """Like SSH's; ``cancel`` is not checked: a local copy takes moments."""
        # Invoke decodes stdin to text, which would corrupt a binary tar: plain subprocess.
        command = as_root(command, sudo and self.host.sudo)
        try:
            proc = subprocess.run(command, shell=True, stdin=data, capture_output=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandTimedOut(self.name, f"timed out after {timeout:g}s: {command}") from None
        return Result(command, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                      proc.stderr.decode("utf-8", "replace"))

    def open_channel(self, command: str, *, timeout: float, sudo: bool = False) -> subprocess.Popen:
        """Start ``command`` as a long-lived child with pipes (stderr merged into stdout):
        the local counterpart of ``SshTransport.open_channel``. The caller ends it."""
        return subprocess.Popen(as_root(command, sudo and self.host.sudo), shell=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def close(self) -> None:
        """Nothing to close: there is no connection."""
