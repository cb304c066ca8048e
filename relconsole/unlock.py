"""``relconsole --unlock SVC``: remove a deploy lock left by a run that is gone.

Refused while a run of this machine holds the service's lock (cancel that instead).
On each host the lock's holder is read first and named in the answer; the unlock is
recorded in the history like a run.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Optional

from relconsole import lock as lk
from relconsole.config import Config, Host
from relconsole.errors import RelconsoleError, StageFailed
from relconsole.events import Event, Occasion, Output, Stage
from relconsole.fleet import Fleet
from relconsole.history import History, not_recorded, record_delivery
from relconsole.hosts.base import Transport
from relconsole.hosts.connect import Connector, Dialer
from relconsole.notify import Postman, RunFacts, announce


def force_unlock(
    config: Config,
    service_name: str,
    connector: Optional[Connector] = None,
    trigger: str = "headless",
    postman: Optional[Postman] = None,
) -> tuple[bool, list[str]]:
    """Remove the service's lock on every host, if no live run holds it; a removal is
    announced (``unlocked``) through ``postman``.

    Returns (ok, lines to show).
    """
    service = config.services[service_name]
    holder = lk.LocalLock(config.settings.state_dir, service.name).holder()
    if holder is not None:
        return False, [
            f"{service.name} is being deployed from this machine right now by "
            f"{holder.describe()}; cancel that build instead of unlocking"
        ]
    lines: list[str] = []

    def collect(event: Event) -> None:
        if isinstance(event, Output):
            lines.append(f"{event.host}: {event.line}")

    dialer = Dialer(config.settings) if connector is None else None
    through: Connector = connector or dialer  # type: ignore[assignment]
    fleet = Fleet(service, config.hosts_of(service), config.settings, collect, through)

    def remove(host: Host, t: Transport) -> None:
        found = lk.parse_holder(
            t.run(
                lk.read_command(fleet.base(t)), timeout=config.settings.command_timeout, sudo=True
            ).stdout
        )
        if found is None:
            lines.append(f"{host.name}: not locked")
            return
        fleet.run(t, lk.force_release_command(fleet.base(t)), "removing the lock")
        lines.append(f"{host.name}: removed the lock held by {found.describe()}")

    ok = True
    failed: dict[str, str] = {}
    started = time.time()
    try:
        # Fleet's stages only label its own narration, which this collects by host.
        fleet.connect(Stage.SWITCH)
        failed = fleet.each(Stage.SWITCH, remove, report=False).failed
    except StageFailed as exc:
        ok = False
        lines.append(str(exc))
    finally:
        fleet.close()
        if dialer is not None:
            dialer.close()
    lines += [f"{name}: {error}" for name, error in failed.items()]
    ok = ok and not failed
    row: Optional[int] = None
    try:
        history = History(config.settings.state_dir)
        row, _ = history.start(
            service=service.name,
            action="unlock",
            who=lk.who(),
            trigger=trigger,
            branch=None,
            hosts=list(service.hosts),
        )
        history.update(
            row, result="success" if ok else "failed", duration=0.0, log="\n".join(lines)
        )
        history.close()
    except (sqlite3.Error, OSError, RelconsoleError) as exc:  # the unlock is done: say so
        lines.append(not_recorded(config.settings.state_dir, exc))
    if ok and postman is not None:
        facts = RunFacts(
            service=service.name,
            action="unlock",
            result=Occasion.UNLOCKED,
            user=lk.who(),
            trigger=trigger,
            hosts=service.hosts,
            started=started,
            finished=time.time(),
            duration=time.time() - started,
        )
        state_dir, row_id = config.settings.state_dir, row
        announce(
            config,
            postman,
            facts,
            lambda d: record_delivery(state_dir, row_id, d) if row_id is not None else None,
        )
    return ok, lines
