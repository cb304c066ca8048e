"""One command on an open SSH connection, on relconsole's own channel loop.

Why not Invoke's runner: its timeout closes the channel from a timer thread, racing
paramiko's reader threads under load (a restart meant to time out at 3 s was seen
to run 15 s), and a closed channel does not stop the remote command: a command that
prints nothing never notices and keeps running on the host, holding whatever it
holds. Here one loop reads stdout and stderr as they come, owns the deadline, and on
a timeout ends the command's whole process group on the host.

The command runs in the process group sshd made for the session (OpenSSH and Dropbear
start the login shell as the leader of a session of its own): the shell announces its
pid, the group's id, first on stderr, then becomes ``sh -c COMMAND`` in place, so a
second, short command on the same connection can signal that group: TERM, then KILL a
moment later. The same happens when the caller's ``stop`` is set (a cancel): stopping to
wait is not enough, the command must not go on on the host.

Why not ``setsid sh -c COMMAND &`` and ``wait`` (as before): two more programs started
per command, ~2 ms of the host's CPU each time, for a group sshd already made.
"""

from __future__ import annotations

import codecs
import select
import shlex
import time
from collections.abc import Callable
from typing import Optional

import paramiko

from relconsole.errors import Cancelled
from relconsole.hosts.base import CommandTimedOut, LineCallback, Result, Stop
from relconsole.text import LineSplitter

#: How the wrapped command announces its process group on stderr.
GROUP_MARK = "relconsole-pgid"
#: How long the group gets between TERM and KILL.
_GRACE = 0.5
#: How long a stopped command may take to announce its group before it is left to the
#: closed channel.
_ANNOUNCE_WAIT = 2.0
_CHUNK = 65536


def in_own_group(command: str, stdin: bool = False) -> str:
    """``command`` run by ``sh`` in place of the login shell, the shell's pid (the id of
    the process group sshd made for the session) printed first on stderr, the exit
    status the command's. ``stdin``: the command reads the channel's input (else
    nothing: ``/dev/null``)."""
    source = "" if stdin else " </dev/null"
    return f'echo "{GROUP_MARK} $$" >&2; exec sh -c {shlex.quote(command)}{source}'


def kill_group_command(pgid: int) -> str:
    """TERM, then KILL, to the group. Never to the pid alone: once the group is gone
    (the command ended meanwhile) that pid may be another program's."""
    # No "--": dash's kill reads it as a pid ("Illegal number").
    return f"kill -TERM -{pgid} 2>/dev/null; sleep {_GRACE}; kill -KILL -{pgid} 2>/dev/null; true"


def _splitter(on_line: Optional[LineCallback], stream: str) -> Optional[LineSplitter]:
    if on_line is None:
        return None
    return LineSplitter(lambda line: on_line(line, stream))


class _Streams:
    """stdout and stderr: kept whole for the result, split into lines for the caller,
    and the group announcement taken out of stderr."""

    def __init__(self, on_line: Optional[LineCallback]):
        self.out: list[str] = []
        self.err: list[str] = []
        self.pgid: Optional[int] = None
        #: stderr until the announcement's line is complete; None once it was read.
        self._head: Optional[str] = ""
        self._lines = {name: _splitter(on_line, name) for name in ("out", "err")}

    def stdout(self, text: str) -> None:
        self._feed("out", text)

    def stderr(self, text: str) -> None:
        if self._head is not None:
            self._head += text
            if "\n" not in self._head:
                return
            first, _, text = self._head.partition("\n")
            self._head = None
            mark, _, number = first.partition(" ")
            if mark == GROUP_MARK and number.isdigit():
                self.pgid = int(number)
            else:  # not ours (a shell complaint first): keep it as output
                text = first + "\n" + text
        self._feed("err", text)

    def _feed(self, name: str, text: str) -> None:
        if not text:
            return
        (self.out if name == "out" else self.err).append(text)
        splitter = self._lines[name]
        if splitter is not None:
            splitter.write(text)

    def close(self) -> None:
        if self._head:  # the command ended before a whole first line
            head, self._head = self._head, None
            self._feed("err", head)
        for splitter in self._lines.values():
            if splitter is not None:
                splitter.flush_partial()


def run_command(
    transport: paramiko.Transport,
    host: str,
    command: str,
    timeout: float,
    on_line: Optional[LineCallback],
    kill: Callable[[str], None],
    forward_agent: bool = False,
    stdin: Optional[bytes] = None,
    stop: Optional[Stop] = None,
) -> Result:
    """Run ``command`` (already wrapped for sudo) and wait for it at most ``timeout``.

    ``forward_agent``: the command may use this machine's ssh-agent (a host with
    ``forward_agent = true``), as Fabric's runner would offer it. ``stdin``: sent to
    the command, then the end of its input. ``stop``: checked every 0.1 s; once set,
    the command is ended as on a timeout and :class:`Cancelled` raised.

    ``kill(shell_command)`` runs a short command on the same connection (wrapped for
    sudo as the command was): how the process group is ended on a timeout. Raises
    :class:`CommandTimedOut`; paramiko's errors for a lost connection pass through.
    """
    deadline = time.monotonic() + timeout
    chan = transport.open_session(timeout=timeout)
    if forward_agent:
        paramiko.agent.AgentRequestHandler(chan)
    streams = _Streams(on_line)
    decode_out = _decoder()
    decode_err = _decoder()
    try:
        chan.exec_command(in_own_group(command, stdin=stdin is not None))
        if stdin is not None:
            chan.sendall(stdin)
            chan.shutdown_write()
        ready = chan.fileno()
        while True:
            while chan.recv_ready():
                streams.stdout(decode_out(chan.recv(_CHUNK)))
            while chan.recv_stderr_ready():
                streams.stderr(decode_err(chan.recv_stderr(_CHUNK)))
            if chan.exit_status_ready() and chan.eof_received:
                if not (chan.recv_ready() or chan.recv_stderr_ready()):
                    break
                continue
            if stop is not None and stop.is_set():
                _await_group(chan, streams, decode_out, decode_err)
                _end(chan, streams, kill)
                raise Cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                _end(chan, streams, kill)
                raise CommandTimedOut(host, f"timed out after {timeout:g}s: {command}")
            select.select([ready], [], [], min(left, 0.1))
        code = chan.recv_exit_status()
    finally:
        streams.stdout(decode_out(b"", final=True))
        streams.stderr(decode_err(b"", final=True))
        streams.close()
        chan.close()
    return Result(command, code, "".join(streams.out), "".join(streams.err))


def _await_group(chan: paramiko.Channel, streams: _Streams, decode_out, decode_err) -> None:
    """A command stopped at once may not have announced its group yet: wait for that
    line a moment, so it can be ended and not only left behind."""
    deadline = time.monotonic() + _ANNOUNCE_WAIT
    while streams.pgid is None and not chan.exit_status_ready():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if chan.recv_stderr_ready():
            streams.stderr(decode_err(chan.recv_stderr(_CHUNK)))
        else:
            select.select([chan.fileno()], [], [], min(left, 0.05))
            if chan.recv_ready():  # keep the window open: stdout may fill it first
                streams.stdout(decode_out(chan.recv(_CHUNK)))


def _end(chan: paramiko.Channel, streams: _Streams, kill: Callable[[str], None]) -> None:
    """Stop a command that ran out of time: its whole group, then the channel."""
    if streams.pgid is not None:
        try:
            kill(kill_group_command(streams.pgid))
        except (TimeoutError, OSError, EOFError, paramiko.SSHException, CommandTimedOut):
            pass  # the connection is going too; closing the channel is all that is left
    chan.close()


def _decoder() -> Callable[..., str]:
    return codecs.getincrementaldecoder("utf-8")("replace").decode
