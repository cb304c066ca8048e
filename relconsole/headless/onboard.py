"""Getting a team started: ``--init``, ``--check-config``, ``--completion``.

``--init`` and the completion flags run before any config is loaded (there may be
none yet); ``--check-config`` is a mode like the others, on the loaded config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from relconsole.headless.exit import Exit, fail

if TYPE_CHECKING:  # completion comes through here on every TAB: no loader imports
    from relconsole.config import Config


def init_command(args: argparse.Namespace) -> int:
    """Write a starter config for the git repository around the current folder."""
    from relconsole.config_path import find_config_path
    from relconsole.repo_scan import NotARepository, scan_repository
    from relconsole.starter import (
        StarterError,
        parse_host_specs,
        starter_text,
        write_starter,
    )

    target = find_config_path(args.config)
    try:
        hosts = parse_host_specs(args.hosts) if args.hosts else None
        if target.exists() and not args.force:  # before scanning: say it at once
            raise StarterError(f"{target} exists: not overwritten (--force replaces it)")
        facts = scan_repository(Path.cwd())
        text = starter_text(facts, target, service=args.service, hosts=hosts, path=args.path)
        write_starter(target, text, force=args.force)
    except (StarterError, NotARepository) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {target}: {exc.strerror or exc}", Exit.FAILED)
    checks = ", ".join(f"{c.name} ({c.run})" for c in facts.checks) or "none found"
    print(f"wrote {target}")
    print(f"  repo {facts.origin or facts.root}, branch {facts.branch or 'main'}")
    print(f"  programs: {', '.join(facts.programs) or 'none found'}; checks: {checks}")
    print("next: relconsole --check-config, then relconsole --doctor")
    return int(Exit.OK)


def check_config_command(config: Config, args: argparse.Namespace) -> int:
    """The config as a run would use it (ssh_config applied), without connecting."""
    from relconsole.config_view import config_view, render_view

    view = config_view(config)
    print(json.dumps(view, indent=2) if args.json else render_view(view))
    return int(Exit.OK)


def completion_command(shell: str, parser: argparse.ArgumentParser) -> int:
    from relconsole.completion import script

    print(script(shell, parser), end="")
    return int(Exit.OK)


def complete_names_command(kind: str, config: str | None) -> int:
    """The names a TAB offers, one a line; nothing (and 0) when there are none."""
    from relconsole.completion import complete_names

    names = complete_names(kind, config)
    if names:
        print("\n".join(names))
    return int(Exit.OK)
