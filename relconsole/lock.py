"""The deploy lock: one build or rollback per service at a time, across processes and
machines.

Two parts, taken before checkout and released when the build ends, however it ends:

- a local lock: ``flock`` on ``<state_dir>/locks/<service>.lock``. The kernel drops it
  when the holder dies, so a crashed relconsole never leaves it behind.
- a lock on each target host: an atomic ``mkdir <path>/.relconsole-lock`` holding an
  ``info`` file (who, machine, pid, start time, branch). Other machines see it.

A remote lock whose holder was on this machine and whose process is gone is stale;
``relconsole --unlock SVC`` removes it. :func:`local_locks` and :func:`remote_locks`
read who holds which service's lock, for the console.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import posixpath
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from relconsole.errors import StageFailed
from relconsole.fanout import fan_out
from relconsole.release import ensure_dir, q
from relconsole.state import private_dir
from relconsole.text import printable

if TYPE_CHECKING:
    from relconsole.config import Config, Host
    from relconsole.hosts.connect import OnHost

LOCK_DIR = ".relconsole-lock"


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class LockInfo:
    user: str
    machine: str
    pid: int
    started: float
    branch: str
    action: str = "build"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def mine(cls, branch: str, action: str = "build") -> LockInfo:
        return cls(
            user=getpass.getuser(),
            machine=socket.gethostname(),
            pid=os.getpid(),
            started=time.time(),
            branch=branch,
            action=action,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Optional[LockInfo]:
        try:
            data = json.loads(text)
            return cls(
                user=str(data["user"]),
                machine=str(data["machine"]),
                pid=int(data["pid"]),
                started=float(data["started"]),
                branch=str(data["branch"]),
                action=str(data.get("action", "build")),
                token=str(data.get("token", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def stale(self) -> bool:
        """Held by a process of this machine that no longer exists."""
        if self.machine != socket.gethostname():
            return False  # cannot tell from here
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self, now: Optional[float] = None) -> str:
        held = max(0, int((now or time.time()) - self.started))
        # The lock file came from another machine: its words are data, not terminal codes.
        text = printable(
            f"{self.user}@{self.machine} (pid {self.pid}, {self.action} of {self.branch}) "
            f"for {held // 60}m{held % 60:02d}s"
        )
        return text + (" — STALE: that process is gone" if self.stale else "")


class LockHeld(StageFailed):
    def __init__(
        self,
        service: str,
        where: str,
        holder: Optional[LockInfo],
        age: Optional[int] = None,
        ttl: Optional[float] = None,
    ):
        desc = holder.describe() if holder else "an unknown holder (unreadable lock)"
        beat = f"; last heartbeat {age}s ago" if age is not None else ""
        lease = (
            f" (taken over once it is older than lock_ttl = {ttl:g}s)" if ttl is not None else ""
        )
        hint = f"; if it is stale, remove it with: relconsole --unlock {service}"
        super().__init__(f"{service} is locked on {where} by {desc}{beat}{lease}{hint}")
        self.holder = holder


class LocalLock:
    """``flock`` on a file in state_dir, with the holder's info written inside."""

    def __init__(self, state_dir: Path, service: str):
        self.path = state_dir / "locks" / f"{service}.lock"
        self.service = service
        self._fd: Optional[int] = None

    def acquire(self, info: LockInfo, wait: float = 0.0) -> None:
        """Take the flock, waiting up to ``wait`` seconds for its holder to finish."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        # At least a few tries: holder() probes by taking the flock for an instant.
        deadline = time.monotonic() + max(wait, 0.12)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.03)
        except BlockingIOError:
            holder = LockInfo.from_json(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise LockHeld(self.service, "this machine", holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.to_json().encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def holder(self) -> Optional[LockInfo]:
        """Who holds it now, or None when it is free."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return LockInfo.from_json(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        finally:
            os.close(fd)  # releases our probe lock if we got it
        return None


def remote_lock_dir(base: str) -> str:
    return posixpath.join(base, LOCK_DIR)


def acquire_command(base: str, info: LockInfo, ttl: float) -> str:
    """Take the lock: ``mkdir`` is atomic, so exactly one of two racing runs creates it.

    The lock is a lease: its holder touches ``heartbeat`` while it works. A lock whose
    heartbeat is older than ``ttl`` seconds (by the host's own clock: no skew between
    machines) belongs to a run that died; it is taken over, and the answer says so
    (``TAKEOVER <age>`` and the old holder). Two runs taking over the same dead lock
    race for ``mkdir takeover``: one wins. Otherwise ``HELD <age>`` and the holder.
    """
    lock = remote_lock_dir(base)
    info_file, beat, takeover = (posixpath.join(lock, n) for n in ("info", "heartbeat", "takeover"))
    # printf, not touch: a builtin of the shell, not a program started on the host.
    write = f"printf '%s\\n' {q(info.to_json())} > {q(info_file)} && printf '' > {q(beat)}"
    # The heartbeat's age; a lock of an older relconsole has none: its info file's.
    age = (
        f"age=$(( $(date +%s) - $(stat -c %Y {q(beat)} 2>/dev/null || "
        f"stat -c %Y {q(info_file)} 2>/dev/null || date +%s) ))"
    )
    # Only an existing lock folder means "held"; any other mkdir failure (permission,
    # disk) is reported as the error it is.
    return (
        f"{ensure_dir(base)} && if err=$(mkdir {q(lock)} 2>&1); then {write}; "
        f"elif [ -d {q(lock)} ]; then {age}; "
        f'if [ "$age" -gt {int(ttl)} ] && mkdir {q(takeover)} 2>/dev/null; then '
        f'echo "TAKEOVER $age"; cat {q(info_file)} 2>/dev/null; {write}; rmdir {q(takeover)}; '
        f'else echo "HELD $age"; cat {q(info_file)} 2>/dev/null; exit 3; fi; '
        f"else printf '%s\\n' \"$err\" >&2; exit 1; fi"
    )


def heartbeat_command(base: str, token: str) -> str:
    """Renew the lease, if the lock is still ours."""
    lock = remote_lock_dir(base)
    return (
        f"if {holds_token(base, token)}; then printf '' > {q(lock + '/heartbeat')}; "
        "else echo LOST; fi"
    )


def holds_token(base: str, token: str) -> str:
    """A shell test: the lock's info names ``token`` (one line, read by the shell's own
    ``read``: no grep started on the host)."""
    info = remote_lock_dir(base) + "/info"
    return (
        f"{{ held=; IFS= read -r held 2>/dev/null <{q(info)}; "
        f'case "$held" in *{q(token)}*) ;; *) false ;; esac; }}'
    )


def lock_age(output: str) -> Optional[int]:
    """The seconds since the heartbeat, from a HELD or TAKEOVER answer."""
    for line in output.splitlines():
        word, _, number = line.partition(" ")
        if word in ("HELD", "TAKEOVER") and number.strip().lstrip("-").isdigit():
            return int(number)
    return None


def release_command(base: str, token: str) -> str:
    """Remove the lock only if it is still ours (an --unlock may have replaced it)."""
    return f"if {holds_token(base, token)}; then rm -rf {q(remote_lock_dir(base))}; fi"


def read_command(base: str) -> str:
    return f"cat {q(remote_lock_dir(base) + '/info')} 2>/dev/null || true"


def lease_command(base: str) -> str:
    """Who holds the lock and how old its heartbeat is (``HELD <age>``, as
    :func:`acquire_command` says it), without taking it; nothing when it is free."""
    lock = remote_lock_dir(base)
    info, beat = posixpath.join(lock, "info"), posixpath.join(lock, "heartbeat")
    return (
        f'if [ -d {q(lock)} ]; then echo "HELD $(( $(date +%s) - $(stat -c %Y {q(beat)} '
        f'2>/dev/null || stat -c %Y {q(info)} 2>/dev/null || date +%s) ))"; '
        f"cat {q(info)} 2>/dev/null; echo; fi; true"
    )


def force_release_command(base: str) -> str:
    return f"rm -rf {q(remote_lock_dir(base))}"


def parse_holder(output: str) -> Optional[LockInfo]:
    for line in output.splitlines():
        if line.startswith("{"):
            return LockInfo.from_json(line)
    return None


# --------------------------------------------------------------------------- who holds what

#: Marks where one service's lock info starts in a host's answer.
_MARK = "@@relconsole-lock "


def is_mine(info: LockInfo) -> bool:
    """Held by this very process (a run this console started)."""
    return info.pid == os.getpid() and info.machine == socket.gethostname()


@dataclass(frozen=True)
class ServiceLock:
    """Who holds a service's deploy lock, and where it was seen."""

    holder: Optional[LockInfo]
    where: tuple[str, ...]  # "this machine" and/or host names

    @property
    def stale(self) -> bool:
        return bool(self.holder and self.holder.stale)

    def describe(self) -> str:
        who = self.holder.describe() if self.holder else "an unknown holder"
        return f"{who} on {', '.join(self.where)}"


def local_locks(config: Config, skip: Iterable[str] = ()) -> dict[str, ServiceLock]:
    """Services whose lock on this machine another process holds (``skip``: not probed)."""
    found = {}
    skipped = set(skip)
    for name in config.services:
        if name in skipped:
            continue
        try:
            holder = LocalLock(config.settings.state_dir, name).holder()
        except OSError:
            continue
        if holder is not None and not is_mine(holder):
            found[name] = ServiceLock(holder, ("this machine",))
    return found


def remote_locks(
    config: Config, hosts: Sequence[Host], on_host: OnHost, timeout: float
) -> dict[str, ServiceLock]:
    """Services locked on any of ``hosts``: one command per host for all its services."""

    def one(host: Host) -> list[tuple[str, LockInfo]]:
        services = [s for s in config.services.values() if host.name in s.hosts]
        if not services:
            return []
        res = on_host(
            host,
            lambda t: t.run(
                "; ".join(
                    f"echo {q(_MARK + s.name)}; {read_command(t.path(s.path))}" for s in services
                ),
                timeout=timeout,
                sudo=True,
            ),
        )
        return [(name, info) for name, info in parse_locks(res.stdout) if not is_mine(info)]

    # A host that did not answer: the status poll says why.
    answers = fan_out(
        hosts,
        lambda h: h.name,
        one,
        max_parallel=config.settings.max_parallel,
        thread_name="locks",
    ).succeeded
    by_token: dict[tuple[str, str], tuple[LockInfo, list[str]]] = {}
    for host, held in answers.items():
        for name, info in held or ():
            by_token.setdefault((name, info.token), (info, []))[1].append(host)
    found: dict[str, ServiceLock] = {}
    for (name, _token), (info, where) in by_token.items():
        found.setdefault(name, ServiceLock(info, tuple(where)))
    return found


def parse_locks(output: str) -> list[tuple[str, LockInfo]]:
    """(service, holder) for each service whose lock info follows its mark."""
    found: list[tuple[str, LockInfo]] = []
    name: Optional[str] = None
    chunk: list[str] = []

    def flush() -> None:
        holder = parse_holder("\n".join(chunk)) if name else None
        if name and holder is not None:
            found.append((name, holder))

    for line in output.splitlines():
        if line.startswith(_MARK):
            flush()
            name, chunk = line.removeprefix(_MARK).strip(), []
        else:
            chunk.append(line)
    flush()
    return found
