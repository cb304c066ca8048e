"""The headless modes: ``--build``, ``--plan``, ``--run``, ``--rollback``, ``--status``,
``--history``, ``--pending``, ``--unlock``, ``--trust``, ``--doctor``, ``--check-config``.

Each takes the loaded config and the parsed arguments and returns an exit code. Builds,
rollbacks and runs run the engine in a thread and render its events
(:mod:`relconsole.headless.render`); signals cancel them safely; notifications are
delivered beside them and waited for (at most ``notify.EXIT_WAIT`` seconds) before the
process exits. The guardrails are checked before anything happens: ``confirm = true``
wants ``--yes``, ``branches`` limits what may be built. Nothing here imports Textual.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from relconsole.config import Config, Service
from relconsole.errors import RelconsoleError
from relconsole.events import BuildFinished, RunResult, Sink
from relconsole.headless.exit import Exit, fail, warn
from relconsole.headless.onboard import check_config_command
from relconsole.text import format_table, printable

if TYPE_CHECKING:
    from relconsole.notify import Postman

Command = Callable[[Config, argparse.Namespace], int]
#: What runs in the engine's thread: given the sink, the cancel event and the postman.
Work = Callable[[Sink, threading.Event, "Postman"], BuildFinished]


class UsageError(RelconsoleError):
    """The command line asks for something the config does not have (exit 2)."""


def service_named(config: Config, name: str) -> Service:
    if name not in config.services:
        known = ", ".join(config.services) or "none"
        raise UsageError(f"unknown service '{name}' in {config.path} (services: {known})")
    return config.services[name]


def branch_to_build(service: Service, given: Optional[str]) -> str:
    """``--branch`` (or the service's branch), valid and allowed by its ``branches``;
    raises :class:`UsageError` before anything happens."""
    from relconsole.config import validate_branch

    try:
        branch = validate_branch(given) if given else service.branch
    except ValueError as exc:
        raise UsageError(f"--branch: {exc}") from None
    refused = service.refuse_branch(branch)
    if refused:
        raise UsageError(refused)
    return branch


def confirmed(service: Service, args: argparse.Namespace, verb: str) -> None:
    """A service with ``confirm = true`` is changed headless only with ``--yes``."""
    if service.confirm and not args.yes:
        raise UsageError(
            f"{service.name} has confirm = true: nothing was done; add --yes to {verb} it "
            f"(relconsole --plan {service.name} shows what a build would do)"
        )


def hosts_named(service: Service, text: Optional[str]) -> Optional[list[str]]:
    if not text:
        return None
    names = [h.strip() for h in text.split(",") if h.strip()]
    unknown = [h for h in names if h not in service.hosts]
    if unknown or not names:
        raise UsageError(
            f"--hosts: {', '.join(unknown) or 'empty'} not among {service.name}'s "
            f"hosts ({', '.join(service.hosts)})"
        )
    return names


def build_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.pipeline import run_build

    service = service_named(config, args.build)
    branch = branch_to_build(service, args.branch)
    only_hosts = hosts_named(service, args.hosts)
    confirmed(service, args, "build")
    return run_headless(
        args,
        lambda sink, cancel, postman: run_build(
            config,
            service.name,
            sink,
            cancel,
            branch=branch,
            only_hosts=only_hosts,
            lock_wait=args.lock_wait,
            postman=postman,
        ),
    )


def rollback_command(config: Config, args: argparse.Namespace) -> int:
    from relconsole.pipeline import run_rollback
    from relconsole.release import RELEASE_ID

    service = service_named(config, args.rollback)
    if args.to and not RELEASE_ID.match(args.to):
        return fail(f"--to: '{args.to}' is not a release id (like 20261126-070707.123-1a2b3c4)")
    confirmed(service, args, "roll back")
    return run_headless(
        args,
        lambda sink, cancel, postman: run_rollback(
            config,
            service.name,
            sink,
            cancel,
            to=args.to,
            lock_wait=args.lock_wait,
            postman=postman,
        ),
    )


def run_command(config: Config, args: argparse.Namespace) -> int:
    """``--run SVC [--hosts] [--sudo] -- COMMAND``: 0 when every host exited 0."""
    from relconsole.adhoc import run_adhoc

    service = service_named(config, args.run)
    only_hosts = hosts_named(service, args.hosts)
    confirmed(service, args, "run a command on")
    return run_headless(
        args,
        lambda sink, cancel, postman: run_adhoc(
            config,
            service.name,
            args.command,
            sink,
            cancel,
            only_hosts=only_hosts,
            sudo=args.sudo,
            postman=postman,
        ),
    )


def plan_command(config: Config, args: argparse.Namespace) -> int:
    """``--plan SVC``: 0 when everything could be read, 1 naming what could not."""
    from relconsole.plan import read_plan
    from relconsole.plan_text import plan_text

    service = service_named(config, args.plan)
    branch = branch_to_build(service, args.branch)
    plan = read_plan(config, service.name, branch)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(plan_text(plan), flush=True)
    for problem in plan.problems:
        fail(f"cannot read {problem}", Exit.FAILED)
    return int(Exit.OK if plan.complete else Exit.FAILED)


def headless_postman() -> Postman:
    """Delivers notifications beside a headless run; a failed one is a warning line."""
    from relconsole.notify import Postman

    return Postman(on_delivered=lambda d: None if d.ok else warn(d.describe()))


def wait_for_notifications(postman: Postman) -> None:
    from relconsole.notify import EXIT_WAIT

    try:
        left = postman.wait(EXIT_WAIT)
    except KeyboardInterrupt:  # a second Ctrl-C: the operator will not wait
        left = postman.pending
    if left:
        warn(f"{left} notification(s) still under way after {EXIT_WAIT:g}s: not waiting longer")


def run_headless(args: argparse.Namespace, run: Work) -> int:
    """Run a build, rollback or ``--run`` in a thread, rendering its events; signals
    cancel it; notifications are waited for before the exit code is returned."""
    from relconsole.headless.render import JsonRenderer, TextRenderer

    sink = JsonRenderer() if args.json else TextRenderer()
    cancel = threading.Event()
    postman = headless_postman()
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
    worker = threading.Thread(
        target=lambda: outcome.append(run(sink, cancel, postman)), name="build"
    )
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
    wait_for_notifications(postman)
    if not outcome:
        return fail("the run stopped unexpectedly", Exit.FAILED)
    finished = outcome[0]
    if args.run and not finished.ok and not finished.cancelled:
        fail(f"failed on {finished.error}", Exit.FAILED)
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
    postman = headless_postman()
    ok, lines = force_unlock(config, service.name, postman=postman)
    for line in lines:
        print(printable(line), flush=True)
    wait_for_notifications(postman)
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
        for d in read_deployed(service, hosts, poller.on_host, poller.settings):
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
        deployed = read_deployed(service, hosts, poller.on_host, config.settings)
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


#: What each mode does, by its argparse destination (``cli.MODES``).
COMMANDS: dict[str, Command] = {
    "build": build_command,
    "plan": plan_command,
    "run": run_command,
    "status": status_command,
    "rollback": rollback_command,
    "history": history_command,
    "unlock": unlock_command,
    "pending": pending_command,
    "trust": trust_command,
    "doctor": doctor_command,
    "check_config": check_config_command,
}
