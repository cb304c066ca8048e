"""Local hosts: ``address = "local"`` with a ``root`` folder standing in for ``/``.

A local host runs its commands on this machine (:mod:`relconsole.hosts.local_command`:
``sh -c`` in a session of its own, ended as a group on a timeout or a cancel, as a
remote command is), with every remote path prefixed by the host's root. It is what
the demo sandbox uses, and it works outside it for deploying to the machine relconsole
runs on.
"""

from __future__ import annotations

import os
import posixpath
import select
import subprocess
import threading
from typing import BinaryIO, Optional

from relconsole.config import Host
from relconsole.hosts.base import Channel, CommandTimedOut, LineCallback, Result, Transport
from relconsole.hosts.local_command import run_local


class LocalChannel(Channel):
    """A local child with pipes (stderr merged into stdout)."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc

    def send(self, data: bytes) -> None:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def recv(self, timeout: float) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError()
        return os.read(fd, 65536)

    def close(self) -> None:
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(1)  # it leaves at the end of its stdin
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class LocalTransport(Transport):
    def __init__(self, host: Host):
        self.host = host
        self.name = host.name
        self._root = str(host.root)

    def path(self, remote_path: str) -> str:
        return posixpath.join(self._root, remote_path.lstrip("/"))

    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: Optional[LineCallback] = None,
        sudo: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        return run_local(
            self.name,
            self.sudo_wrap(command, sudo),
            timeout=timeout,
            on_line=on_line,
            cancel=cancel,
        )

    def put_stream(
        self,
        command: str,
        data: BinaryIO,
        *,
        timeout: float,
        sudo: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        """Like SSH's; ``cancel`` is not checked: a local copy takes moments."""
        command = self.sudo_wrap(command, sudo)
        try:
            proc = subprocess.run(
                command, shell=True, stdin=data, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise CommandTimedOut(self.name, f"timed out after {timeout:g}s: {command}") from None
        return Result(
            command,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def open_channel(self, command: str, *, timeout: float, sudo: bool = False) -> LocalChannel:
        """Start ``command`` as a long-lived child with pipes (stderr merged into stdout):
        the local counterpart of ``SshTransport.open_channel``. The caller ends it."""
        return LocalChannel(
            subprocess.Popen(
                self.sudo_wrap(command, sudo),
                shell=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def close(self) -> None:
        """Nothing to close: there is no connection."""
