"""Scripted hosts for the fast tier: a Transport that needs no sshd, no sudo, no root.

A :class:`FakeTransport` is what :mod:`relconsole.hosts.ssh` is to the engine (a
subclass of :class:`relconsole.hosts.base.Transport`), handed out by
:func:`connector` to ``run_build``, ``run_rollback``, ``StatusPoller``, ``Fleet`` or
``force_unlock``. Each fake host is a :class:`FakeHost`: its script and its record.

Why commands run in a real shell
    The engine changes a host with shell commands built by ``relconsole/release.py``
    and ``relconsole/lock.py`` (``mkdir`` for the lock, ``tar`` into a partial
    directory renamed when whole, ``ln`` + ``mv -T`` for the switch). A fake that
    parsed those commands and imitated them would test itself, not the engine. So,
    as ``relconsole/hosts/local.py`` does, every command runs in a local ``sh`` and
    every remote path is under a per-host folder (:attr:`FakeHost.root`, standing in
    for ``/``; :meth:`FakeTransport.path` maps it). What a test asserts (a lock left
    behind, where ``current`` points, a partial release removed) is plain files made
    by the engine's own commands. A command costs a few milliseconds; ``sudo`` is
    recorded, never run.

What is scripted
    - supervisord: no supervisord runs. A command that starts with the host's
      ``supervisorctl`` is answered by :class:`FakeSupervisor` from a table of
      programs (``status`` in supervisorctl's own format, ``update``, ``restart``,
      ``tail``). The status helper of the fast path (``open_channel``) speaks its
      JSON-line protocol from the same table. A restarted program is RUNNING with a
      new pid and an uptime past the verify's settle time, so builds do not wait.
    - faults: :meth:`FakeHost.on` puts a rule before all that: a command matching
      its regex gets a :class:`Result` (a non-zero exit), an exception
      (``HostUnreachable``, ``CommandTimedOut``), or a callable's answer (which may
      return None to let the command run as usual, after a side effect).
    - connections: ``host.reachable = False`` makes connecting raise
      ``HostUnreachable``; :attr:`FakeHost.connects` counts connections opened,
      :attr:`FakeHost.attempts` those tried. ``transport.close()`` drops one: its
      later commands raise ``HostUnreachable`` and its channels end.

What it records
    Every command in :attr:`FakeHost.calls` as a :class:`Call`: kind (``run``,
    ``put``, ``channel``), the command as the engine gave it, whether it asked for
    sudo, and for ``put`` the bytes streamed.

Left to the bed (tests marked ``bed``): ssh itself, host keys, sudo, real supervisord
timing and states, signals and killed connections.

    hosts = fake_hosts(tmp_path, "h1", "h2", programs=["svc"])
    hosts["h2"].fail(r"tar -x", kind="put", stderr="tar: No space left on device")
    finished = run_build(config, "svc", events.append, connector=connector(hosts))
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional, Union

from relconsole.config import Check, Config, FileUpload, Host, Service, Settings
from relconsole.errors import Cancelled
from relconsole.hosts.base import (
    Channel,
    HostUnreachable,
    LineCallback,
    Result,
    Stop,
    Transport,
)
from relconsole.hosts.connect import Connector
from relconsole.hosts.local_command import run_local
from relconsole.status.fastpath import HELPER_MARK
from relconsole.status.supervisorctl import format_uptime

#: Uptime a program reports right after a restart: past the verify's 1 s settle.
RESTART_UPTIME = 60


@dataclass(frozen=True)
class Call:
    """One thing the engine asked of a host."""

    kind: str  # "run", "put" (a command fed a stream) or "channel" (open_channel)
    command: str  # as the engine gave it, before any sudo wrapping
    sudo: bool  # the engine asked for it to run as root
    data: bytes = b""  # what a "put" streamed, or what a "run" was given on stdin


#: What a rule answers: a Result, an exception to raise, or ``answer(call, transport)``
#: returning a Result or None (then the command runs as usual).
Answer = Union[Result, BaseException, Callable[[Call, "FakeTransport"], Optional[Result]]]


@dataclass
class Rule:
    """``answer`` for commands matching ``pattern`` (``re.search``), ``times`` times
    (None: always). ``hits`` counts the commands it matched."""

    pattern: re.Pattern[str]
    answer: Answer
    kind: Optional[str] = None  # "run", "put", "channel", or None for any
    times: Optional[int] = None
    hits: int = 0

    def matches(self, call: Call) -> bool:
        if self.kind is not None and call.kind != self.kind:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return self.pattern.search(call.command) is not None


# --------------------------------------------------------------------------- supervisord


@dataclass
class FakeProgram:
    name: str
    group: str
    state: str = "RUNNING"
    pid: Optional[int] = None
    start: float = 0.0
    log: str = ""

    @property
    def namespec(self) -> str:
        return self.name if self.name == self.group else f"{self.group}:{self.name}"


class FakeSupervisor:
    """supervisord and supervisorctl of one host, as a table of programs.

    ``programs``: ``"api"`` or ``"workers:worker_00"`` names, all RUNNING at first.
    ``down = True``: supervisord does not answer (supervisorctl says so, exit 4).
    """

    SOCKET = "unix:///etc/supervisor/run/supervisor.sock"

    def __init__(self, programs: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._pids = itertools.count(1000)
        self.down = False
        self.programs: dict[str, FakeProgram] = {}
        #: namespec → states the next starts end in (e.g. ["FATAL"]), then RUNNING.
        self.start_failures: dict[str, list[str]] = {}
        for spec in programs:
            group, _, name = spec.rpartition(":")
            prog = FakeProgram(name=name, group=group or name)
            self._start(prog)
            self.programs[prog.namespec] = prog

    def fail_next_start(self, namespec: str, state: str = "FATAL", log: str = "") -> None:
        """The next start of ``namespec`` ends in ``state`` (FATAL, BACKOFF, EXITED)."""
        with self._lock:
            self.start_failures.setdefault(namespec, []).append(state)
            self.programs[namespec].log = log

    def pid(self, namespec: str) -> Optional[int]:
        return self.programs[namespec].pid

    def _start(self, prog: FakeProgram) -> str:
        failures = self.start_failures.get(prog.namespec)
        if failures:
            prog.state, prog.pid = failures.pop(0), None
            return f"{prog.namespec}: ERROR (spawn error)"
        prog.state, prog.pid = "RUNNING", next(self._pids)
        prog.start = time.time() - RESTART_UPTIME
        return f"{prog.namespec}: started"

    def _select(self, spec: str) -> list[FakeProgram]:
        group, colon, name = spec.partition(":")
        return [
            p
            for p in self.programs.values()
            if spec == p.namespec or (colon and name == "*" and p.group == group)
        ]

    def _row(self, prog: FakeProgram, width: int) -> str:
        if prog.state == "RUNNING":
            desc = f"pid {prog.pid}, uptime {format_uptime(int(time.time() - prog.start))}"
        elif prog.state == "STOPPED":
            desc = "Not started"
        else:
            desc = "Exited too quickly (process log may have details)"
        return f"{prog.namespec:<{width}}{prog.state:<10}{desc}".rstrip()

    def supervisorctl(self, args: list[str]) -> Result:
        """What ``supervisorctl ARGS`` prints and exits with."""
        command = " ".join(["supervisorctl", *args])
        if self.down:
            return Result(command, 4, f"{self.SOCKET} no such file\n", "")
        action, names = (args[0], args[1:]) if args else ("", [])
        with self._lock:
            if action == "status":
                width = max(30, *(len(p) for p in self.programs)) + 3 if self.programs else 33
                rows = [self._row(p, width) for p in self.programs.values()]
                stopped = any(
                    p.state in ("STOPPED", "EXITED", "FATAL") for p in self.programs.values()
                )
                return Result(command, 3 if stopped else 0, "".join(r + "\n" for r in rows), "")
            if action == "update":
                return Result(command, 0, "", "")
            if action in ("restart", "start", "stop"):
                lines, code = [], 0
                for spec in names:
                    chosen = self._select(spec)
                    if not chosen:
                        lines.append(f"{spec}: ERROR (no such process)")
                        code = 1
                    for prog in chosen:
                        if action != "start":
                            prog.state, prog.pid = "STOPPED", None
                            lines.append(f"{prog.namespec}: stopped")
                        if action != "stop":
                            said = self._start(prog)
                            lines.append(said)
                            code = code or (7 if "ERROR" in said else 0)
                return Result(command, code, "".join(ln + "\n" for ln in lines), "")
            if action == "tail":
                prog = self.programs.get(names[1]) if len(names) > 1 else None
                if prog is None:
                    return Result(command, 1, "ERROR (no such process name)\n", "")
                return Result(command, 0, prog.log if len(names) == 2 else "", "")
        return Result(command, 2, "", f"*** Unknown syntax: {command}\n")

    def helper_reply(self) -> dict:
        """The status helper's answer to ``status``."""
        if self.down:
            return {"ok": False, "lasting": False, "error": f"{self.SOCKET} no such file"}
        with self._lock:
            now = int(time.time())
            return {
                "ok": True,
                "processes": [
                    {
                        "name": p.name,
                        "group": p.group,
                        "statename": p.state,
                        "pid": p.pid or 0,
                        "start": int(p.start),
                        "now": now,
                        "description": "",
                    }
                    for p in self.programs.values()
                ],
            }


# --------------------------------------------------------------------------- channels


class FakeChannel(Channel):
    """A scripted long-lived command: ``greeting`` first, then ``reply(line)`` for each
    line sent (None: no reply). ``ends=True``: the command has ended after its greeting
    (``recv`` finds the end)."""

    def __init__(
        self,
        greeting: bytes = b"",
        reply: Optional[Callable[[bytes], Optional[bytes]]] = None,
        ends: bool = False,
    ):
        self._out = bytearray(greeting)
        self._reply = reply
        self._ended = ends
        self._cond = threading.Condition()
        self._pending = b""
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        with self._cond:
            if self.closed or self._ended:
                return
            self.sent.append(data)
            self._pending += data
            while b"\n" in self._pending:
                line, _, self._pending = self._pending.partition(b"\n")
                answer = self._reply(line) if self._reply else None
                if answer:
                    self._out += answer
            self._cond.notify_all()

    def recv(self, timeout: float) -> bytes:
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._out or self._ended or self.closed, timeout=timeout
            ):
                raise TimeoutError()
            data, self._out = bytes(self._out), bytearray()
            return data

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def helper_channel(supervisor: FakeSupervisor) -> FakeChannel:
    """The fast path's status helper, answering from ``supervisor``."""

    def reply(line: bytes) -> bytes:
        if line.strip() != b"status":
            return (
                json.dumps({"ok": False, "lasting": False, "error": "unknown request"}).encode()
                + b"\n"
            )
        return json.dumps(supervisor.helper_reply()).encode() + b"\n"

    hello = {"hello": 1, "serverurl": FakeSupervisor.SOCKET}
    return FakeChannel(json.dumps(hello).encode() + b"\n", reply)


class ChannelHost(Transport):
    """A connection for tests of the helper's protocol: subclasses give
    ``open_channel``; commands succeed saying nothing, uploads are not expected."""

    name = "h1"

    def run(self, command, *, timeout, on_line=None, sudo=False, stdin=None, stop=None):
        return Result(command, 0, "", "")

    def put_stream(self, command, data, *, timeout, sudo=False, cancel=None):
        raise NotImplementedError

    def path(self, remote_path):
        return remote_path

    def close(self):
        pass


# --------------------------------------------------------------------------- hosts


class FakeHost:
    """One scripted host: its root folder, its supervisord, its rules, its record.

    Args:
        name: the host's name in the config.
        root: a folder standing in for the host's ``/`` (created).
        programs: supervisor programs on it, all RUNNING.
        sudo: the config's ``sudo`` for this host.
        helper: whether the fast path's status helper runs there (else it ends at
            once, as on a host without python3, and status comes from supervisorctl).
    """

    def __init__(
        self,
        name: str,
        root: Path,
        programs: Iterable[str] = (),
        *,
        sudo: bool = False,
        helper: bool = True,
        supervisorctl: str = "supervisorctl",
    ):
        self.name = name
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sudo = sudo
        self.helper = helper
        self.supervisorctl = supervisorctl
        self.supervisor = FakeSupervisor(programs)
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.reachable = True
        self.attempts = 0  # connections tried
        self.connects = 0  # connections opened
        self.transports: list[FakeTransport] = []
        self._lock = threading.Lock()

    @property
    def config(self) -> Host:
        """This host as the engine's config sees it."""
        return Host(
            name=self.name,
            address=f"{self.name}.fake.invalid",
            user="deploy",
            supervisorctl=self.supervisorctl,
            sudo=self.sudo,
        )

    # -- the script -------------------------------------------------------------
    def on(
        self,
        pattern: str,
        answer: Optional[Answer] = None,
        *,
        exit: int = 0,
        stdout: str = "",
        stderr: str = "",
        kind: Optional[str] = None,
        times: Optional[int] = None,
    ) -> Rule:
        """Answer commands matching ``pattern`` with ``answer`` (a Result, an exception,
        or ``answer(call, transport)``), or with a Result made of exit/stdout/stderr.
        Rules are tried in the order they were added, before the defaults."""
        if answer is None:

            def answer(call: Call, _t: FakeTransport) -> Result:
                return Result(call.command, exit, stdout, stderr)

        rule = Rule(re.compile(pattern), answer, kind=kind, times=times)
        self.rules.append(rule)
        return rule

    def fail(self, pattern: str, exit: int = 1, stderr: str = "scripted failure", **kwargs) -> Rule:
        """Matching commands exit ``exit`` with ``stderr`` and change nothing."""
        return self.on(pattern, exit=exit, stderr=stderr, **kwargs)

    # -- the record -------------------------------------------------------------
    def commands(self, kind: Optional[str] = None, matching: Optional[str] = None) -> list[str]:
        """The commands it was asked to run (of ``kind``, matching a regex), in order."""
        return [
            c.command
            for c in list(self.calls)
            if (kind is None or c.kind == kind)
            and (matching is None or re.search(matching, c.command))
        ]

    def ran(self, pattern: str, kind: Optional[str] = None) -> bool:
        return bool(self.commands(kind, pattern))

    @property
    def puts(self) -> list[Call]:
        return [c for c in list(self.calls) if c.kind == "put"]

    # -- the host's files -------------------------------------------------------
    def path(self, remote: str) -> Path:
        """Where the host's ``remote`` path is on this machine."""
        return self.root / remote.lstrip("/")

    def current(self, base: str) -> Optional[str]:
        """The release ``<base>/current`` points to (its last path part), or None."""
        link = self.path(base) / "current"
        return posixpath.basename(os.readlink(link)) if link.is_symlink() else None

    def releases(self, base: str) -> list[str]:
        """Every entry of ``<base>/releases`` (partial ones too), sorted."""
        folder = self.path(base) / "releases"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    # -- what the transport asks ------------------------------------------------
    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _scripted(self, call: Call, t: FakeTransport) -> Optional[Result]:
        for rule in self.rules:
            with self._lock:
                if not rule.matches(call):
                    continue
                rule.hits += 1
            answer = rule.answer
            if isinstance(answer, Result):
                return answer
            if isinstance(answer, BaseException):
                raise answer
            got = answer(call, t)
            if got is not None:
                return got
        return None


def fake_hosts(base: Path, *names: str, **kwargs) -> dict[str, FakeHost]:
    """Fake hosts by name, each rooted at ``base/<name>``; kwargs go to FakeHost."""
    return {name: FakeHost(name, Path(base) / name, **kwargs) for name in names}


class FakeTransport(Transport):
    """One connection to a :class:`FakeHost`."""

    def __init__(self, host: Host, fake: FakeHost):
        self.host = host
        self.name = host.name
        self.fake = fake
        self.closed = False
        self.channels: list[Channel] = []

    def path(self, remote_path: str) -> str:
        return posixpath.join(str(self.fake.root), remote_path.lstrip("/"))

    def _check_open(self) -> None:
        if self.closed:
            raise HostUnreachable(self.name, "the connection is closed")

    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: Optional[LineCallback] = None,
        sudo: bool = False,
        stdin: Optional[bytes] = None,
        stop: Optional[Stop] = None,
    ) -> Result:
        self._check_open()
        call = Call("run", command, sudo, stdin or b"")
        self.fake._record(call)
        res = self.fake._scripted(call, self)
        if res is None:
            return self.proceed(call, timeout, on_line=on_line, stop=stop)
        _emit(res, on_line)
        return res

    def put_stream(
        self,
        command: str,
        data: BinaryIO,
        *,
        timeout: float,
        sudo: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        """As over ssh: a cancel set before the data is all sent raises Cancelled."""
        self._check_open()
        payload = data.read()
        call = Call("put", command, sudo, payload)
        self.fake._record(call)
        res = self.fake._scripted(call, self)
        if res is not None:
            return res
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        return self.proceed(call, timeout)

    def open_channel(self, command: str, *, timeout: float, sudo: bool = False) -> Channel:
        self._check_open()
        call = Call("channel", command, sudo)
        self.fake._record(call)
        scripted = self.fake._scripted(call, self)
        if scripted is not None:
            # A rule answering a channel returns a Result: the command ran and ended.
            channel: Channel = FakeChannel((scripted.stdout + scripted.stderr).encode(), ends=True)
        elif HELPER_MARK in command and self.fake.helper:
            channel = helper_channel(self.fake.supervisor)
        elif HELPER_MARK in command:
            channel = FakeChannel(b"sh: 1: exec: python3: not found\n", ends=True)
        else:
            raise AssertionError(f"{self.name}: no script for a channel running {command!r}")
        self.channels.append(channel)
        return channel

    def close(self) -> None:
        self.closed = True
        for channel in self.channels:
            channel.close()

    def proceed(
        self,
        call: Call,
        timeout: float = 30.0,
        on_line: Optional[LineCallback] = None,
        stop: Optional[Stop] = None,
    ) -> Result:
        """Answer ``call`` as if no rule matched: the fake supervisorctl for a command
        starting with the host's ``supervisorctl``, else a local ``sh`` (fed the data
        of a put, or a run's stdin; its output streamed to ``on_line``, stopped by
        ``stop`` as a real host's command is). For rules that act and then let the
        command run."""
        prefix = self.host.supervisorctl + " "
        if call.kind == "run" and call.command.startswith(prefix):
            res = self.fake.supervisor.supervisorctl(shlex.split(call.command[len(prefix) :]))
            _emit(res, on_line)
            return res
        stdin = call.data if call.kind == "put" or call.data else None
        return run_local(
            self.name, call.command, timeout, on_line, stdin=stdin, stop=stop, cwd=self.fake.root
        )


def _emit(res: Result, on_line: Optional[LineCallback]) -> None:
    """A scripted answer's output, line by line, as a real command would stream it."""
    if on_line is not None:
        for line in res.stdout.splitlines():
            on_line(line, "out")
        for line in res.stderr.splitlines():
            on_line(line, "err")


def connector(hosts_script: Union[Mapping[str, FakeHost], Iterable[FakeHost]]) -> Connector:
    """A Connector that opens a FakeTransport to each scripted host (by name). A host
    with ``reachable = False``, or not in the script, raises HostUnreachable."""
    by_name = (
        dict(hosts_script)
        if isinstance(hosts_script, Mapping)
        else {h.name: h for h in hosts_script}
    )

    def connect(host: Host, settings: Settings) -> Transport:
        fake = by_name.get(host.name)
        if fake is not None:
            with fake._lock:
                fake.attempts += 1
        if fake is None or not fake.reachable:
            raise HostUnreachable(
                host.name, f"cannot connect to {host.label}: Connection refused (scripted)"
            )
        with fake._lock:
            fake.connects += 1
        t = FakeTransport(host, fake)
        fake.transports.append(t)
        return t

    return connect


# --------------------------------------------------------------------------- config


def fake_config(
    base: Path,
    hosts: Mapping[str, FakeHost],
    repo: str,
    *,
    service: str = "svc",
    programs: Iterable[str] = ("svc",),
    checks: Iterable[Check] = (),
    files: Iterable[FileUpload] = (
        FileUpload("deploy/supervisor/*.conf", "/etc/supervisor/conf.d"),
    ),
    keep_releases: int = 5,
    command_timeout: float = 30.0,
) -> Config:
    """A Config with ``hosts`` and one service deploying ``repo`` to all of them."""
    base = Path(base)
    return Config(
        path=base / "config.toml",
        settings=Settings(
            state_dir=base / "state",
            known_hosts=base / "known_hosts",
            connect_timeout=5.0,
            command_timeout=command_timeout,
        ),
        hosts={name: fake.config for name, fake in hosts.items()},
        services={
            service: Service(
                name=service,
                repo=repo,
                hosts=tuple(hosts),
                programs=tuple(programs),
                checks=tuple(checks),
                files=tuple(files),
                keep_releases=keep_releases,
            )
        },
    )
