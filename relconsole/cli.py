"""``relconsole`` command line: the TUI by default, headless with --build / --status.

Imports are deferred to the branch that needs them: ``--help`` must answer at
once, and the headless paths must never import Textual.
"""

from __future__ import annotations

import argparse
import enum
import os
import signal
import subprocess
import sys
import threading
from typing import Optional, Sequence


class Exit(enum.IntEnum):
    """Exit codes are API: scripts and CI branch on them."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relconsole",
        description="Release console: checkout → check → upload → supervisor. "
                    "Without --build or --status it opens the console (TUI).",
        epilog="exit codes: 0 ok, 1 build failed or host unreachable, 2 usage or config "
               "error, 130 interrupted (143 on SIGTERM)")
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: $RELCONSOLE_CONFIG, else ./config.toml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--build", metavar="SVC", help="build and deploy SVC headless")
    mode.add_argument("--status", metavar="SVC", nargs="?", const="",
                      help="one `supervisorctl status` of SVC's hosts (all hosts if no SVC)")
    mode.add_argument("--rollback", metavar="SVC",
                      help="switch SVC's hosts back to the previous release (or --to), "
                           "restart and verify")
    mode.add_argument("--history", metavar="SVC", nargs="?", const="",
                      help="builds and rollbacks, newest first (all services if no SVC)")
    mode.add_argument("--pending", metavar="SVC",
                      help="what each host of SVC runs, and the commits not deployed yet")
    mode.add_argument("--trust", metavar="HOST",
                      help="show HOST's ssh key fingerprint and add it to known_hosts once "
                           "you confirm")
    mode.add_argument("--unlock", metavar="SVC",
                      help="remove SVC's deploy lock left by a build that is gone")
    p.add_argument("--demo", action="store_true",
                   help="use the demo sandbox (two local hosts, a sample service 'web'); "
                        "made on first use under the user's data directory")
    p.add_argument("--stop-demo", action="store_true",
                   help="stop the demo sandbox's supervisord processes and exit")
    p.add_argument("--branch", metavar="B", help="with --build: build branch B instead")
    p.add_argument("--hosts", metavar="H1,H2", help="with --build: only these of SVC's hosts")
    p.add_argument("--to", metavar="RELEASE", help="with --rollback: the release to go back to")
    p.add_argument("--yes", action="store_true", help="with --trust: do not ask")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON lines / array)")
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    from . import __version__

    return f"relconsole {__version__}"


def _fail(message: str, code: Exit = Exit.USAGE) -> int:
    print(f"relconsole: {message}", file=sys.stderr)
    return int(code)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # Workspaces, history and logs may hold secrets: whatever relconsole creates is
    # readable by this user only (0700 folders, 0600 files).
    os.umask(0o077)
    from .config import ConfigError, find_config_path, load_config

    if (args.branch or args.hosts) and not args.build:
        return _fail("--branch and --hosts go with --build")
    if args.to and not args.rollback:
        return _fail("--to goes with --rollback")
    if args.demo and args.config:
        return _fail("--demo brings its own config; drop --config")
    if args.stop_demo:
        from .demo import stop_demo

        stopped = stop_demo()
        print(f"demo hosts stopped: {', '.join(stopped) or 'none were running'}")
        return int(Exit.OK)
    try:
        config_path = _demo_config() if args.demo else find_config_path(args.config)
        config = load_config(config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    except DemoError as exc:
        return _fail(f"cannot set up the demo sandbox: {exc}", Exit.FAILED)
    # The modes are mutually exclusive (argparse): at most one of these is set.
    for mode, command in (("build", build_command), ("status", status_command),
                          ("rollback", rollback_command), ("history", history_command),
                          ("unlock", unlock_command), ("pending", pending_command),
                          ("trust", trust_command)):
        if getattr(args, mode) is not None:
            return command(config, args)
    from .app import run_app  # the only path that imports Textual

    return run_app(config)


class DemoError(Exception):
    pass


def _demo_config():
    from .demo import ensure_demo

    try:
        return ensure_demo()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        raise DemoError(str(exc)) from None


def _service_or_fail(config, name: str):
    if name not in config.services:
        known = ", ".join(config.services) or "none"
        raise SystemExit(_fail(f"unknown service '{name}' in {config.path} (services: {known})"))
    return config.services[name]


def build_command(config, args) -> int:
    from .config import validate_branch
    from .pipeline import run_build

    service = _service_or_fail(config, args.build)
    branch = None
    if args.branch:
        try:
            branch = validate_branch(args.branch)
        except ValueError as exc:
            return _fail(f"--branch: {exc}")
    only_hosts = None
    if args.hosts:
        only_hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
        unknown = [h for h in only_hosts if h not in service.hosts]
        if unknown or not only_hosts:
            return _fail(f"--hosts: {', '.join(unknown) or 'empty'} not among {service.name}'s "
                         f"hosts ({', '.join(service.hosts)})")
    return _run_headless(args, lambda sink, cancel: run_build(
        config, service.name, sink, cancel, branch=branch, only_hosts=only_hosts))


def rollback_command(config, args) -> int:
    from .pipeline import run_rollback
    from .release import RELEASE_ID

    service = _service_or_fail(config, args.rollback)
    if args.to and not RELEASE_ID.match(args.to):
        return _fail(f"--to: '{args.to}' is not a release id (like 20261126-070707-1a2b3c4)")
    return _run_headless(args, lambda sink, cancel: run_rollback(
        config, service.name, sink, cancel, to=args.to))


def _run_headless(args, run) -> int:
    """Run a build or rollback in a thread, rendering its events; signals cancel it."""
    from .headless import JsonRenderer, TextRenderer

    sink = JsonRenderer() if args.json else TextRenderer()
    cancel = threading.Event()
    got: list[int] = []

    def on_signal(signum, _frame):
        if not got:
            print(f"\nrelconsole: {signal.Signals(signum).name}: cancelling safely "
                  "(no host is left half-switched)…", file=sys.stderr, flush=True)
        got.append(signum)
        cancel.set()

    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(run(sink, cancel)), name="build")
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        while worker.is_alive():  # join with a timeout so signals reach the handler
            worker.join(0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if not outcome:
        return _fail("the run stopped unexpectedly", Exit.FAILED)
    finished = outcome[0]
    if finished.cancelled:  # a signal that came too late to stop anything changes nothing
        return int(Exit.TERMINATED if got and got[0] == signal.SIGTERM else Exit.INTERRUPTED)
    return int(Exit.OK if finished.ok else Exit.FAILED)


def history_command(config, args) -> int:
    import json

    from .history import History

    if args.history:
        _service_or_fail(config, args.history)
    rows = History(config.settings.state_dir).list(args.history or None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return int(Exit.OK)
    from .headless import format_table
    from .history import history_table

    print(format_table(history_table(rows)))
    return int(Exit.OK)


def unlock_command(config, args) -> int:
    from .pipeline import force_unlock

    service = _service_or_fail(config, args.unlock)
    ok, lines = force_unlock(config, service.name)
    for line in lines:
        print(line)
    return int(Exit.OK if ok else Exit.FAILED)


def status_command(config, args) -> int:
    import json

    from .headless import format_table, printable
    from .status import StatusPoller, fleet_rows
    from .supervisor import format_uptime

    services = ([_service_or_fail(config, args.status)] if args.status
                else list(config.services.values()))
    hosts = (config.hosts_of(services[0]) if args.status else list(config.hosts.values()))
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
            table.append([row["host"], row["program"] or "-", row["state"],
                          "" if row["pid"] is None else str(row["pid"]),
                          format_uptime(row["uptime"]), release, (row.get("sha") or "")[:12],
                          printable(row["description"])])
        print(format_table(table))
    return int(Exit.FAILED if any(r["state"] == "UNREACHABLE" for r in rows) else Exit.OK)


def trust_command(config, args) -> int:
    from .trust import trust

    host = config.hosts.get(args.trust)
    if host is None:
        return _fail(f"unknown host '{args.trust}' (hosts: {', '.join(config.hosts) or 'none'})")
    if host.is_local:
        return _fail(f"{host.name} is a local host: it has no host key")

    def answer(prompt: str) -> str:
        print(prompt, end="", file=sys.stderr, flush=True)
        return sys.stdin.readline()  # "" at EOF: not trusted

    ok = trust(host, config.settings, yes=args.yes, answer=answer, out=sys.stdout)
    return int(Exit.OK if ok else Exit.FAILED)


def pending_command(config, args) -> int:
    from .checkout import workspace_path
    from .deployed import pending_commits, read_deployed
    from .status import StatusPoller

    service = _service_or_fail(config, args.pending)
    hosts = config.hosts_of(service)
    poller = StatusPoller(hosts, config.settings)
    try:
        deployed = read_deployed(service, hosts, poller.on_host, config.settings.connect_timeout)
    finally:
        poller.close()
    for d in deployed:
        state = d.error or f"{d.release or 'nothing deployed'} {(d.sha or '')[:12]}"
        print(f"{d.host}: {state}{'  DRIFT' if d.drift else ''}")
    shas = {d.sha for d in deployed if d.error is None}
    base = next(iter(shas)) if len(shas) == 1 else None
    if len(shas) > 1:
        print("hosts run different commits (drift): showing the branch's latest commits")
    workspace = workspace_path(config.settings.state_dir, service.name)
    try:
        commits = pending_commits(workspace, service.branch, base)
    except ValueError as exc:
        return _fail(f"pending commits of {service.name}: {exc}", Exit.FAILED)
    print(f"{len(commits)} commit(s) on {service.branch} not deployed:" if base else
          f"latest commits on {service.branch}:")
    for c in commits:
        print(f"  {c.sha[:12]}  {c.subject}  ({c.author})")
    return int(Exit.OK)


if __name__ == "__main__":
    sys.exit(main())
