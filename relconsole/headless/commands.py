"""The headless modes: ``--build``, ``--rollback``, ``--status``, ``--history``,
``--pending``, ``--unlock``, ``--trust``, ``--doctor``, ``--check-config``.

Each takes the loaded config and the parsed arguments and returns an exit code. Builds
and rollbacks run the engine in a thread and render its events
(:mod:`relconsole.headless.render`); signals cancel them safely. Nothing here imports
Textual.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from relconsole.config import Config, Service
from relconsole.errors import RelconsoleError
from relconsole.events import BuildFinished, RunResult, Sink
from relconsole.headless.exit import Exit, fail
from relconsole.headless.onboard import check_config_command
from relconsole.text import format_table, printable

Command = Callable[[Config, argparse.Namespace], int]


class UsageError(RelconsoleError):
    """The command line asks for something the config does not have (exit 2)."""


def service_named(config: Config, name: str) -> Service:
    if name not in config.services:
        known = ", ".join(config.services) or "none"
        raise UsageError(f"unknown service '{name}' in {config.path} (services: {known})")
    return config.services[name]


def build_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.config import validate_branch
    from relconsole.pipeline import run_build

    service = service_named(config, args.build)
    branch = None
    if args.branch:
        try:
            branch = validate_branch(args.branch)
        except ValueError as exc:
            return fail(f"--branch: {exc}")
    only_hosts = None
    if args.hosts:
        only_hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
        unknown = [h for h in only_hosts if h not in service.hosts]
        if unknown or not only_hosts:
            return fail(
                f"--hosts: {', '.join(unknown) or 'empty'} not among {service.name}'s "
                f"hosts ({', '.join(service.hosts)})"
            )
    return run_headless(
        args,
        lambda sink, cancel: run_build(
            config,
            service.name,
            sink,
            cancel,
            branch=branch,
            only_hosts=only_hosts,
            lock_wait=args.lock_wait,
        ),
    )


def rollback_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.pipeline import run_rollback
    from relconsole.release import RELEASE_ID

    service = service_named(config, args.rollback)
    if args.to and not RELEASE_ID.match(args.to):
        return fail(f"--to: '{args.to}' is not a release id (like 20261126-070707.123-1a2b3c4)")
    return run_headless(
        args,
        lambda sink, cancel: run_rollback(
            config, service.name, sink, cancel, to=args.to, lock_wait=args.lock_wait
        ),
    )


def run_headless(
    args: argparse.Namespace, run: Callable[[Sink, threading.Event], BuildFinished]
) -> int:
    """Run a build or rollback in a thread, rendering its events; signals cancel it."""
    from relconsole.headless.render import JsonRenderer, TextRenderer

    sink = JsonRenderer() if args.json else TextRenderer()
    cancel = threading.Event()
    got: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        got.append(signum)
        cancel.set()
        if len(got) == 1:
            try:  # the terminal may be the thing that went away
                print(
                    f"\nrelconsole: {signal.Signals(signum).name}: cancelling safely "
                    "(no host is left half-switched)…",
                    file=sys.stderr,
                    flush=True,
                )
            except (OSError, ValueError):
                pass

    outcome: list[BuildFinished] = []
    worker = threading.Thread(target=lambda: outcome.append(run(sink, cancel)), name="build")
    # A closed terminal or ssh session (SIGHUP) cancels like Ctrl-C: same clean-up path.
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in stops}
    try:
        worker.start()
        while worker.is_alive():  # join with a timeout so signals reach the handler
            worker.join(0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if not outcome:
        return fail("the run stopped unexpectedly", Exit.FAILED)
    finished = outcome[0]
    if finished.cancelled:  # a signal that came too late to stop anything changes nothing
        return int(Exit.for_signal(got[0] if got else signal.SIGINT))
    if finished.result is RunResult.LOCKED:
        return int(Exit.LOCKED)
    return int(Exit.OK if finished.ok else Exit.FAILED)


def history_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.history import History, history_table

    if args.history:
        service_named(config, args.history)
    history = History(config.settings.state_dir)
    if history.warning:
        fail(history.warning, Exit.OK)
    rows = history.list(args.history or None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return int(Exit.OK)
    print(format_table(history_table(rows)))
    return int(Exit.OK)


def unlock_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.pipeline import force_unlock

    service = service_named(config, args.unlock)
    ok, lines = force_unlock(config, service.name)
    for line in lines:
        print(printable(line))
    return int(Exit.OK if ok else Exit.FAILED)


def status_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.status.poller import StatusPoller
    from relconsole.status.supervisorctl import format_uptime

    services = (
        [service_named(config, args.status)] if args.status else list(config.services.values())
    )
    # A host in no service (a jump host) runs nothing of ours: it is not polled.
    served = {name for s in services for name in s.hosts}
    hosts = [h for h in config.hosts.values() if h.name in served]
    poller = StatusPoller(hosts, config.settings)
    try:
        rows = fleet_rows(poller, services)
    finally:
        poller.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = [["HOST", "PROGRAM", "STATE", "PID", "UPTIME", "RELEASE", "SHA", "DESCRIPTION"]]
        for row in rows:
            release = (row.get("release") or "") + (" DRIFT" if row.get("drift") else "")
            table.append(
                [
                    row["host"],
                    row["program"] or "-",
                    row["state"],
                    "" if row["pid"] is None else str(row["pid"]),
                    format_uptime(row["uptime"]),
                    release,
                    (row.get("sha") or "")[:12],
                    printable(row["description"]),
                ]
            )
        print(format_table(table))
    bad = [r for r in rows if r["state"] in (UNREACHABLE, MISSING)]
    for row in bad:
        where = f"{row['host']}: {row['program']}" if row["program"] else row["host"]
        fail(f"{where}: {row['description']}", Exit.FAILED)
    return int(Exit.FAILED if bad else Exit.OK)


#: A host that did not answer; a configured program its supervisord does not know.
UNREACHABLE, MISSING = "UNREACHABLE", "MISSING"


def fleet_rows(poller: Any, services: list[Service]) -> list[dict[str, Any]]:
    """One poll as rows (``--status``): a row per host × process, with the release and
    sha of the service the program belongs to and whether that host drifted; an
    unreachable host gets one row with state UNREACHABLE, a configured program that
    supervisord does not know one with state MISSING."""
    from relconsole.deployed import Deployed, read_deployed

    statuses = poller.poll()
    releases: dict[tuple[str, str], Deployed] = {}  # (host, program) -> deployed
    for service in services:
        hosts = [h for h in poller.hosts if h.name in service.hosts]
        for d in read_deployed(service, hosts, poller.on_host, poller.settings.connect_timeout):
            for program in service.programs:
                releases[(d.host, program)] = d
    rows: list[dict[str, Any]] = []
    for st in statuses:
        if not st.reachable:
            rows.append(
                {
                    "host": st.host,
                    "program": None,
                    "state": UNREACHABLE,
                    "pid": None,
                    "uptime": None,
                    "description": st.error,
                }
            )
        for r in st.rows:
            row: dict[str, Any] = {
                "host": st.host,
                "program": r.name,
                "state": r.state.value,
                "pid": r.pid,
                "uptime": r.uptime,
                "description": r.description,
            }
            deployed = next(
                (
                    d
                    for (host, program), d in releases.items()
                    if host == st.host and r.belongs_to(program)
                ),
                None,
            )
            if deployed is not None:
                row.update(release=deployed.release, sha=deployed.sha, drift=deployed.drift)
            rows.append(row)
        rows += _missing_programs(st, services)
    return rows


def _missing_programs(st: Any, services: list[Service]) -> list[dict[str, Any]]:
    """A row per configured program the host's supervisord does not know: a status
    that lists nothing of the service is not a healthy one."""
    if not st.reachable:
        return []
    return [
        {
            "host": st.host,
            "program": program,
            "state": MISSING,
            "pid": None,
            "uptime": None,
            "description": f"supervisord on {st.host} does not know {program} "
            f"(configured for {service.name})",
        }
        for service in services
        if st.host in service.hosts
        for program in service.programs
        if not any(r.belongs_to(program) for r in st.rows)
    ]


def trust_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.hosts.connect import Dialer
    from relconsole.hosts.trust import trust

    dialer = Dialer(config.settings)
    try:
        host = config.hosts.get(args.trust)
        if host is not None and host.is_local:
            return fail(f"{host.name} is a local host: it has no host key")
        # A [hosts] table, else a jump host named on some host's route (ProxyJump).
        route = (
            dialer.route(host)
            if host is not None
            else dialer.find_route(args.trust, config.hosts.values())
        )
        if route is None:
            return fail(f"unknown host '{args.trust}' (hosts: {', '.join(config.hosts) or 'none'})")

        def answer(prompt: str) -> str:
            print(prompt, end="", file=sys.stderr, flush=True)
            return sys.stdin.readline()  # "" at EOF: not trusted

        ok = trust(
            route, config.settings, dialer.gateways, yes=args.yes, answer=answer, out=sys.stdout
        )
    finally:
        dialer.close()
    return int(Exit.OK if ok else Exit.FAILED)


def doctor_command(config: Config, args: argparse.Namespace) -> int:
    """Check every host of SVC (or of all services); 0 when every check passes."""
    from relconsole.doctor import run_doctor

    services = (
        [service_named(config, args.doctor)] if args.doctor else list(config.services.values())
    )
    rows = run_doctor(config, services)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        table = [["HOST", "CHECK", "OK", "DETAIL"]]
        table += [[r.host, r.check, "ok" if r.ok else "FAIL", printable(r.detail)] for r in rows]
        print(format_table(table))
        failed = sorted({r.host for r in rows if not r.ok}, key=list(config.hosts).index)
        print(f"failing: {', '.join(failed)}" if failed else "every check passed")
    return int(Exit.OK if all(r.ok for r in rows) else Exit.FAILED)


def pending_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.deployed import deployed_base, pending_commits, read_deployed
    from relconsole.stages.checkout import workspace_path
    from relconsole.status.poller import StatusPoller

    service = service_named(config, args.pending)
    hosts = config.hosts_of(service)
    poller = StatusPoller(hosts, config.settings)
    try:
        deployed = read_deployed(service, hosts, poller.on_host, config.settings.connect_timeout)
    finally:
        poller.close()
    for d in deployed:
        state = d.error or f"{d.release or 'nothing deployed'} {(d.sha or '')[:12]}"
        print(f"{d.host}: {printable(state)}{'  DRIFT' if d.drift else ''}")
    base, note = deployed_base(deployed)
    if base is None and note:
        print(f"{note}: showing the branch's latest commits")
    workspace = workspace_path(config.settings.state_dir, service.name)
    try:
        commits = pending_commits(workspace, service.branch, base)
    except ValueError as exc:
        return fail(f"pending commits of {service.name}: {exc}", Exit.FAILED)
    print(
        f"{len(commits)} commit(s) on {service.branch} not deployed:"
        if base
        else f"latest commits on {service.branch}:"
    )
    for c in commits:
        print(f"  {c.sha[:12]}  {printable(c.subject)}  ({printable(c.author)})")
    return int(Exit.OK)


#: The modes, by their argparse destination; at most one is given.
MODES: dict[str, Command] = {
    "build": build_command,
    "status": status_command,
    "rollback": rollback_command,
    "history": history_command,
    "unlock": unlock_command,
    "pending": pending_command,
    "trust": trust_command,
    "doctor": doctor_command,
    "check_config": check_config_command,
}
