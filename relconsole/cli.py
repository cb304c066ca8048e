"""``relconsole`` command line: the TUI by default, headless with --build / --status /
--plan / --run and the other modes.

Imports are deferred to the branch that needs them: ``--help`` must answer at
once, and the headless paths must never import Textual.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Optional

from relconsole.headless.exit import Exit
from relconsole.headless.exit import fail as _fail

#: The headless modes, by their argparse destination (at most one is given); the
#: console opens when none is.
MODES = (
    *("build", "plan", "run", "rollback", "status", "history", "pending", "unlock"),
    *("trust", "doctor", "check_config"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relconsole",
        description="Release console: checkout → check → upload → supervisor. "
        "Without a mode (--build, --status, ...) it opens the console (TUI).",
        usage="%(prog)s [options] [--run SVC [--hosts H1,H2] [--sudo] -- COMMAND [ARGS ...]]",
        epilog="exit codes: 0 ok, 1 build failed or host unreachable, 2 usage or config "
        "error (or refused: confirm = true without --yes, a branch not allowed), 75 refused: "
        "another run holds the deploy lock, 129/130/143 cancelled by SIGHUP/SIGINT/SIGTERM",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $RELCONSOLE_CONFIG, else ./config.toml)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--build", metavar="SVC", help="build and deploy SVC headless")
    mode.add_argument(
        "--plan",
        metavar="SVC",
        help="what a build of SVC would do (sha, commits, diffstat, file diffs, programs, "
        "the lock), changing nothing and taking no lock",
    )
    mode.add_argument(
        "--run",
        metavar="SVC",
        help="run the COMMAND after -- on every host of SVC, in parallel, inside its "
        "current release folder",
    )
    mode.add_argument(
        "--status",
        metavar="SVC",
        nargs="?",
        const="",
        help="one `supervisorctl status` of SVC's hosts (all hosts if no SVC)",
    )
    mode.add_argument(
        "--rollback",
        metavar="SVC",
        help="switch SVC's hosts back to the previous release (or --to), restart and verify",
    )
    mode.add_argument(
        "--history",
        metavar="SVC",
        nargs="?",
        const="",
        help="builds and rollbacks, newest first (all services if no SVC)",
    )
    mode.add_argument(
        "--pending",
        metavar="SVC",
        help="what each host of SVC runs, and the commits not deployed yet",
    )
    mode.add_argument(
        "--trust",
        metavar="HOST",
        help="show HOST's ssh key fingerprint and add it to known_hosts once you confirm",
    )
    mode.add_argument(
        "--unlock", metavar="SVC", help="remove SVC's deploy lock left by a build that is gone"
    )
    mode.add_argument(
        "--doctor",
        metavar="SVC",
        nargs="?",
        const="",
        help="check every host of SVC (all services if no SVC) without changing anything: "
        "route, host key, login, sudo, supervisorctl, path, python3, disk, ssh_config",
    )
    mode.add_argument(
        "--check-config",
        action="store_true",
        default=None,  # None when absent, as the other modes
        help="load and validate the config, then show what each host resolves to "
        "(address, port, user, key, route after ssh_config) without connecting",
    )
    mode.add_argument(
        "--init",
        action="store_true",
        default=None,
        help="write a starter config.toml for the git repository here (origin, branch, "
        "supervisor program configs, guessed checks); with --service, --hosts, --path",
    )
    mode.add_argument(
        "--completion",
        choices=("bash", "zsh"),
        help='print the shell completion script (eval "$(relconsole --completion bash)")',
    )
    # The names a TAB offers (services, hosts, hosts-of:SVC): the completion script asks.
    mode.add_argument("--complete-names", metavar="KIND", help=argparse.SUPPRESS)
    p.add_argument(
        "--demo",
        action="store_true",
        help="use the demo sandbox (two local hosts, a sample service 'web'); "
        "made on first use under the user's data directory",
    )
    p.add_argument(
        "--stop-demo",
        action="store_true",
        help="stop the demo sandbox's supervisord processes and exit",
    )
    p.add_argument("--branch", metavar="B", help="with --build/--plan: branch B instead")
    p.add_argument(
        "--hosts",
        metavar="H1,H2",
        help="with --build/--run: only these of SVC's hosts; with --init: the hosts to write "
        "(ssh_config aliases, or [user@]host[:port])",
    )
    p.add_argument(
        "--sudo", action="store_true", help="with --run: run the command as root (sudo -n)"
    )
    p.add_argument(
        "--service", metavar="NAME", help="with --init: the service's name (default: the repo's)"
    )
    p.add_argument(
        "--path",
        metavar="DIR",
        help="with --init: the service's folder on the hosts (default /srv/NAME)",
    )
    p.add_argument("--force", action="store_true", help="with --init: replace an existing file")
    p.add_argument("--to", metavar="RELEASE", help="with --rollback: the release to go back to")
    p.add_argument(
        "--lock-wait",
        metavar="SECONDS",
        type=_seconds,
        default=0.0,
        help="with --build/--rollback: wait this long for a deploy lock another run holds "
        "(default: refuse at once, exit 75)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="with --trust: do not ask; with --build/--rollback/--run: go ahead on a "
        "service with confirm = true",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="open the console with nothing that changes anything: no build, rollback, "
        "unlock, run or process action",
    )
    p.add_argument(
        "--json", action="store_true", help="machine-readable output (JSON lines / array)"
    )
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    from relconsole import __version__

    return f"relconsole {__version__}"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return value


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """relconsole's own arguments, and the COMMAND after the first ``--`` (taken as it
    is: argparse would drop a later ``--`` of the command's own)."""
    args = list(argv)
    if "--" in args:
        at = args.index("--")
        return args[:at], args[at + 1 :]
    return args, []


def entry() -> int:
    """The ``relconsole`` console script and ``python -m relconsole``: :func:`main`,
    then a quick exit."""
    code = main()
    # At exit the interpreter's collector would walk every object the run made, only to
    # free memory the OS takes back with the process anyway: 30-50 ms after a build,
    # measured. Frozen objects are left alone. Files are closed by then, and the
    # interpreter still flushes stdout and stderr and runs the atexit handlers.
    gc.freeze()
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    args.command = command
    # Workspaces, history and logs may hold secrets: whatever relconsole creates is
    # readable by this user only (0700 folders, 0600 files).
    os.umask(0o077)
    if args.branch and not (args.build or args.plan):
        return _fail("--branch goes with --build or --plan")
    if args.hosts and not (args.build or args.run or args.init):
        return _fail("--hosts goes with --build, --run or --init")
    if (args.service or args.path or args.force) and not args.init:
        return _fail("--service, --path and --force go with --init")
    if (args.sudo or command) and not args.run:
        return _fail("--sudo and a command after -- go with --run")
    if args.run and not command:
        return _fail("--run needs a command after --: relconsole --run SVC -- COMMAND [ARGS...]")
    modes = [name for name, value in vars(args).items() if name in MODES and value is not None]
    if args.read_only and modes:
        return _fail(f"--read-only is for the console; drop --{modes[0]}")
    if args.to and not args.rollback:
        return _fail("--to goes with --rollback")
    if args.lock_wait and not (args.build or args.rollback):
        return _fail("--lock-wait goes with --build or --rollback")
    if args.demo and args.config:
        return _fail("--demo brings its own config; drop --config")
    if args.completion or args.complete_names is not None or args.init:
        from relconsole.headless import onboard

        if args.completion:
            return onboard.completion_command(args.completion, build_parser())
        if args.complete_names is not None:
            return onboard.complete_names_command(args.complete_names, args.config)
        return onboard.init_command(args)
    if args.stop_demo:
        from relconsole.demo import stop_demo

        stopped = stop_demo()
        print(f"demo hosts stopped: {', '.join(stopped) or 'none were running'}")
        return int(Exit.OK)

    from relconsole.config import ConfigError, find_config_path, load_config
    from relconsole.errors import RelconsoleError

    try:
        if args.demo:
            from relconsole.demo import DemoError, ensure_demo

            try:
                config_path = ensure_demo()
            except DemoError as exc:
                return _fail(f"cannot set up the demo sandbox: {exc}", Exit.FAILED)
        else:
            config_path = find_config_path(args.config)
        config = load_config(config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    for warning in config.warnings:  # never a secret: the loader words them
        print(f"relconsole: warning: {warning}", file=sys.stderr)
    from relconsole.headless.commands import COMMANDS, UsageError
    from relconsole.state import describe_os_error

    try:
        if args.history is None:  # every other mode, and the console, reach hosts
            from relconsole.hosts.connect import check_routes

            check_routes(config.hosts.values(), config.settings)
    except ConfigError as exc:  # ssh_config trouble or a ProxyJump loop: a config error
        return _fail(str(exc))
    try:
        for mode in modes:
            return COMMANDS[mode](config, args)
    except UsageError as exc:
        return _fail(str(exc))
    except RelconsoleError as exc:
        return _fail(str(exc), Exit.FAILED)
    except OSError as exc:
        return _fail(describe_os_error(exc), Exit.FAILED)
    from relconsole.app import run_app  # the only path that imports Textual

    return run_app(config, read_only=args.read_only)


if __name__ == "__main__":
    sys.exit(main())
