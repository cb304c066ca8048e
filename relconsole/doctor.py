"""``relconsole --doctor``: is every host ready for a build? Read-only, one table.

Each host of the service (or of every service) is checked in parallel over one
connection, taking no lock, so it runs beside a build. One :class:`CheckRow` per
host and check: reachable (through its route, each hop named), host key known, login
works, ``sudo -n true`` (hosts with ``sudo = true``), supervisorctl answers and knows
every program of the service, the service path exists (or can be made) and is
writable by the deploy user (or through sudo), the service's shared files are there
(a build refuses a host without them), python3 is there (the fast status helper and
the health probes need it), free disk space at the path, and the ssh_config
directives that applied but relconsole does not honour.

A check that cannot run because an earlier one failed is a failed row saying so,
so the table always has the same rows and the first failure is the one to read.
Front ends call :func:`run_doctor` (in a worker thread: it blocks on the network).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Optional

from relconsole import release as rel
from relconsole.config import Config, ConfigError, Host, Service
from relconsole.fanout import fan_out
from relconsole.hosts.base import (
    CommandTimedOut,
    HostKeyRefused,
    HostUnreachable,
    LoginRefused,
    Transport,
    run_step,
    sudo_wants_password,
)
from relconsole.hosts.connect import Connector, Dialer
from relconsole.hosts.known_hosts import KnownHosts
from relconsole.hosts.route import Route
from relconsole.status import supervisorctl as sv

#: Less free space than this at a service's path fails the disk check.
MIN_FREE_BYTES = 100 * 1024 * 1024
#: The oldest python3 the status helper runs under.
MIN_PYTHON = (3, 6)


@dataclass(frozen=True)
class CheckRow:
    host: str
    check: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def _skipped(host: str, checks: Sequence[str], why: str) -> list[CheckRow]:
    return [CheckRow(host, check, False, f"not checked: {why}") for check in checks]


def run_doctor(
    config: Config,
    services: Sequence[Service],
    *,
    connector: Optional[Connector] = None,
    on_row: Optional[Callable[[CheckRow], None]] = None,
) -> list[CheckRow]:
    """Check every host of ``services`` in parallel; rows in the hosts' config order.

    ``connector``: how to connect (default: a :class:`Dialer` of its own, closed at
    the end; the console may pass its poller's). ``on_row`` sees each row as soon as
    its host is done, from that host's thread.
    """
    names: list[str] = []
    for service in services:
        names += [n for n in service.hosts if n not in names]
    hosts = [config.hosts[n] for n in names]
    # Routes come from the connector when it is a Dialer (the same ssh_config reading),
    # else from a Dialer of our own that only works them out.
    routes = connector if isinstance(connector, Dialer) else Dialer(config.settings)
    through: Connector = connector or routes

    def check(host: Host) -> list[CheckRow]:
        mine = [s for s in services if host.name in s.hosts]
        rows = HostDoctor(config, host, mine, through, routes).rows()
        if on_row is not None:
            for row in rows:
                on_row(row)
        return rows

    try:
        results = fan_out(
            hosts,
            lambda h: h.name,
            check,
            max_parallel=config.settings.max_parallel,
            thread_name="doctor",
        )
    finally:
        if routes is not connector:
            routes.close()
    out: list[CheckRow] = []
    for outcome in results:
        if outcome.ok:
            out += outcome.value or []
        else:  # a bug in a check: still one row that says so
            out.append(CheckRow(outcome.host, "doctor", False, outcome.error or "failed"))
    return out


class HostDoctor:
    """The checks of one host, in order, over one connection."""

    def __init__(
        self,
        config: Config,
        host: Host,
        services: Sequence[Service],
        connector: Connector,
        dialer: Dialer,
    ):
        self.config = config
        self.host = host
        self.services = services
        self.connector = connector
        self.dialer = dialer
        self.timeout = config.settings.connect_timeout
        self.out: list[CheckRow] = []

    def row(self, check: str, ok: bool, detail: str) -> None:
        self.out.append(CheckRow(self.host.name, check, ok, detail))

    def rows(self) -> list[CheckRow]:
        try:
            route = self.route()
        except ConfigError as exc:  # ssh_config trouble: no route to try
            self.row("reachable", False, str(exc))
            return self.out
        t = self.connect(route)
        if t is not None:
            try:
                self.remote_checks(t)
            except (HostUnreachable, CommandTimedOut) as exc:
                self.row("connection", False, exc.message)
            finally:
                try:
                    t.close()
                except Exception:  # closing a dead connection changes nothing here
                    pass
        if route is not None:
            ignored = [f"{hop.name}: {d}" for hop in route.hops for d in hop.ignored]
            self.row("ssh_config", True, "ignored: " + "; ".join(ignored) if ignored else "none")
        return self.out

    def remote_check_names(self) -> list[str]:
        names = ["sudo"] if self.host.sudo else []
        names += ["supervisorctl"] + [f"programs of {s.name}" for s in self.services]
        names += [f"path {s.path}" for s in self.services]
        names += [f"shared of {s.name}" for s in self.services if s.shared] + ["python3"]
        return names + [f"disk at {s.path}" for s in self.services]

    # -- the connection: reachable, host key, login --------------------------------
    def route(self) -> Optional[Route]:
        if self.host.is_local:
            return None
        return self.dialer.route(self.host)

    def connect(self, route: Optional[Route]) -> Optional[Transport]:
        later = self.remote_check_names()
        if self.host.is_local:
            self.row("reachable", True, f"local host (root {self.host.root})")
            return self.connector(self.host, self.config.settings)
        described = route.describe() if route is not None else self.host.label
        try:
            t = self.connector(self.host, self.config.settings)
        except HostKeyRefused as exc:
            at_target = route is None or exc.hop == route.target.name
            self.row("reachable", at_target, described if at_target else exc.message)
            self.row("host key", False, exc.message)
            self.out += _skipped(self.host.name, ["login", *later], "host key refused")
            return None
        except LoginRefused as exc:
            at_target = route is None or exc.hop == route.target.name
            self.row("reachable", at_target, described if at_target else exc.message)
            self.row("host key", True, self.keys_detail(route))
            self.row("login", False, exc.message)
            self.out += _skipped(self.host.name, later, "login failed")
            return None
        except HostUnreachable as exc:
            self.row("reachable", False, exc.message)
            self.out += _skipped(self.host.name, ["host key", "login", *later], "unreachable")
            return None
        self.row("reachable", True, described)
        self.row("host key", True, self.keys_detail(route))
        user = route.target.user if route is not None else self.host.user
        self.row("login", True, f"as {user}")
        return t

    def keys_detail(self, route: Optional[Route]) -> str:
        if route is None:
            return "known"
        detail = "known: " + ", ".join(f"{h.name} as {h.known_hosts_name}" for h in route.hops)
        known = KnownHosts.read(self.config.settings.known_hosts)
        signed = [h.name for h in route.hops if known.has_cert_authority(h.known_hosts_name)]
        if signed:
            detail += (
                f"; the @cert-authority lines for {', '.join(signed)} are ignored: relconsole "
                "checks the plain keys known_hosts lists, not host certificates"
            )
        return detail

    # -- on the host -------------------------------------------------------------------
    def run(self, t: Transport, command: str, sudo: bool = False):
        return t.run(command, timeout=self.timeout, sudo=sudo)

    def remote_checks(self, t: Transport) -> None:
        if self.host.sudo:
            res = self.run(t, "sudo -n true")
            if res.ok:
                self.row("sudo", True, "sudo -n true works")
            elif sudo_wants_password(res):
                self.row("sudo", False, "sudo -n wants a password: allow NOPASSWD for this user")
            else:
                self.row("sudo", False, f"sudo -n true failed: {res.tail(2) or 'no output'}")
        self.supervisor(t)
        for service in self.services:
            self.path(t, service)
        for service in self.services:
            self.shared(t, service)
        self.python(t)
        for service in self.services:
            self.disk(t, service)

    def supervisor(self, t: Transport) -> None:
        res = run_step(
            t,
            sv.status_command(self.host.supervisorctl),
            "supervisorctl status",
            timeout=self.timeout,
            sudo=True,
        )
        rows, errors = sv.parse_status(res.stdout)
        # supervisorctl exits non-zero while any program is not RUNNING: rows decide.
        problem = None
        if not rows and sudo_wants_password(res):
            problem = "sudo -n wants a password to run supervisorctl"
        elif not rows and errors:
            problem = f"supervisord is not answering: {res.tail(2)}"
        elif not rows and not res.ok:
            problem = f"supervisorctl status failed (exit {res.exit_code}): {res.tail(2)}"
        if problem is not None:
            self.row("supervisorctl", False, problem)
            for s in self.services:
                self.row(f"programs of {s.name}", False, "not checked: supervisorctl failed")
            return
        self.row("supervisorctl", True, f"answers ({len(rows)} processes)")
        for s in self.services:
            missing = [p for p in s.programs if not any(r.belongs_to(p) for r in rows)]
            if missing:
                self.row(
                    f"programs of {s.name}",
                    False,
                    f"supervisord does not know {', '.join(missing)}",
                )
            else:
                self.row(f"programs of {s.name}", True, ", ".join(s.programs) or "none configured")

    def path(self, t: Transport, service: Service) -> None:
        path = t.path(service.path)
        res = self.run(t, _path_command(path), sudo=True)
        state, _, where = res.stdout.strip().partition(" ")
        via = " through sudo" if self.host.sudo else ""
        verdicts = {
            "writable": (True, f"exists, writable{via}"),
            "readonly": (False, f"exists but is not writable{via}"),
            "creatable": (True, f"does not exist yet; {where} is writable{via}, a build makes it"),
            "blocked": (False, f"does not exist, and {where} is not writable{via}"),
        }
        ok, detail = verdicts.get(state, (False, f"cannot tell: {res.tail(2) or 'no output'}"))
        self.row(f"path {service.path}", ok, detail)

    def shared(self, t: Transport, service: Service) -> None:
        """Every shared file is on the host (a folder a build makes when missing)."""
        if not service.shared:
            return
        store = rel.shared_dir(t.path(service.path))
        files = [entry.path for entry in service.shared if not entry.folder]
        checks = [
            f"[ -f {shlex.quote(posixpath.join(store, f))} ] || echo {shlex.quote(f)}"
            for f in files
        ]
        res = self.run(t, "; ".join([*checks, "true"]), sudo=True)
        missing = res.stdout.splitlines()
        if not res.ok or missing:
            why = f"missing in {store}: {', '.join(missing)}" if res.ok else res.tail(2)
            self.row(f"shared of {service.name}", False, why or "cannot tell")
            return
        listed = ", ".join(str(entry) for entry in service.shared)
        self.row(f"shared of {service.name}", True, f"{listed} (folders made by a build)")

    def python(self, t: Transport) -> None:
        res = self.run(t, "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
        found = re.fullmatch(r"(\d+)\.(\d+)", res.stdout.strip())
        if not res.ok or not found:
            probed = [s.name for s in self.services if s.health]
            if probed:
                self.row(
                    "python3",
                    False,
                    f"no python3: the health probes of {', '.join(probed)} need it",
                )
            else:
                self.row("python3", False, "no python3: status is read with supervisorctl (slower)")
            return
        version = (int(found[1]), int(found[2]))
        ok = version >= MIN_PYTHON
        need = "" if ok else f" (the status helper needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+)"
        self.row("python3", ok, f"python3 {found[0]}{need}")

    def disk(self, t: Transport, service: Service) -> None:
        res = self.run(t, _disk_command(t.path(service.path)))
        lines = res.stdout.strip().splitlines()
        fields = lines[-1].split() if lines else []
        if not res.ok or len(fields) < 4 or not fields[3].isdigit():
            self.row(f"disk at {service.path}", False, f"df failed: {res.tail(2) or 'no output'}")
            return
        free = int(fields[3]) * 1024
        ok = free >= MIN_FREE_BYTES
        detail = f"{_size(free)} free" + ("" if ok else f" (less than {_size(MIN_FREE_BYTES)})")
        self.row(f"disk at {service.path}", ok, detail)


def _nearest_dir(path: str) -> str:
    """Shell: set ``d`` to ``path`` or its nearest existing parent."""
    return f'd={shlex.quote(path)}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; '


def _path_command(path: str) -> str:
    parent = posixpath.dirname(path) or "/"
    return (
        f"if [ -d {shlex.quote(path)} ]; then "
        f"if [ -w {shlex.quote(path)} ]; then echo writable; else echo readonly; fi; "
        f"else {_nearest_dir(parent)}"
        'if [ -w "$d" ]; then echo "creatable $d"; else echo "blocked $d"; fi; fi'
    )


def _disk_command(path: str) -> str:
    return _nearest_dir(path) + 'df -Pk "$d"'


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
