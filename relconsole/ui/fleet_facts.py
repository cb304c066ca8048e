"""What the last polls learned about the fleet, for whoever needs it.

The main screen's fleet column owns the reads (status, deploy locks, what each host
runs) and writes them here; the command palette, the dialogs and the build panel read
them from the app instead of asking the column. No Textual here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from relconsole.deployed import Deployed
from relconsole.lock import ServiceLock
from relconsole.status.poller import HostStatus


@dataclass
class FleetFacts:
    #: host -> its last status; absent until the host has answered once.
    statuses: dict[str, HostStatus] = field(default_factory=dict)
    #: service -> the deploy lock someone else holds.
    locks: dict[str, ServiceLock] = field(default_factory=dict)
    #: service -> host -> what it runs (the last read).
    deployed: dict[str, dict[str, Deployed]] = field(default_factory=dict)

    def lock_holder(self, service: str) -> Optional[str]:
        """Who holds ``service``'s lock, in their own words; None if nobody was seen."""
        lock = self.locks.get(service)
        return lock.describe() if lock else None

    def reachable(self) -> set[str]:
        return {name for name, status in self.statuses.items() if status.reachable}
