"""Going live in batches: switch, restart and probe a few hosts at a time.

Every host already holds the release (and ran its setup) when a rollout starts. The
hosts are cut into batches in the service's host order (``rolling``: hosts per batch
or a percentage; absent, one batch of all). Batch by batch, its hosts switch
``current`` (and install their files), restart their programs, and must pass the
health probes; then the rollout waits ``pause`` seconds and goes on. The first batch
is the canary: hosts of later batches are never touched when an earlier one fails.

Going back is the same walk backwards (:meth:`Rollout.roll_back`): the batches that
switched, the last (the failing one) first, each switched back, restarted and probed
before the next, so the hosts not being restarted keep answering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

from relconsole.config import Host, Rolling, Service
from relconsole.errors import Cancelled, StageFailed
from relconsole.events import BatchChanged, BatchPhase, RolloutPlanned, Sink, Stage
from relconsole.fanout import describe
from relconsole.fleet import Fleet


def plan_batches(hosts: Sequence[Host], rolling: Optional[Rolling]) -> list[list[Host]]:
    """``hosts`` in batches of ``rolling`` hosts (or percent, rounded up), in order."""
    if not hosts:
        return []
    size = rolling.batch_size(len(hosts)) if rolling is not None else len(hosts)
    return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]


class Rollout:
    """One rollout of a run: the batches, which of them switched, and their events."""

    def __init__(
        self, fleet: Fleet, service: Service, stage: Stage, sink: Sink, cancel: threading.Event
    ):
        self.fleet = fleet
        self.service = service
        self.stage = stage
        self.sink = sink
        self.cancel = cancel
        self.batches = plan_batches(fleet.hosts, service.rolling)
        #: The batches whose hosts switched, in the order they did.
        self.switched: list[int] = []

    # -- events -------------------------------------------------------------------
    def phase(
        self,
        number: int,
        phase: BatchPhase,
        seconds: Optional[float] = None,
        error: Optional[str] = None,
    ) -> None:
        self.sink(
            BatchChanged(
                stage=self.stage,
                batch=number,
                of=len(self.batches),
                hosts=tuple(h.name for h in self.batches[number - 1]),
                phase=phase,
                seconds=seconds,
                error=error,
            )
        )

    @property
    def reached(self) -> set[str]:
        """Hosts that switched in this rollout."""
        return {h.name for n in self.switched for h in self.batches[n - 1]}

    # -- going live ---------------------------------------------------------------
    def go(
        self,
        targets: dict[str, str],
        previous: dict[str, Optional[str]],
        on_first_switch: Callable[[], None],
    ) -> None:
        """Every batch live on ``targets[host]``, in order; each switched host's former
        release goes into ``previous`` as it switches. Raises StageFailed (a batch
        failed) or Cancelled; the hosts of later batches are then untouched."""
        pause = self.service.pause
        self.sink(
            RolloutPlanned(
                stage=self.stage,
                batches=tuple(tuple(h.name for h in batch) for batch in self.batches),
                pause=pause,
            )
        )
        if len(self.batches) > 1:
            self.fleet.say(
                self.stage,
                f"rolling: {len(self.batches)} batches of {self.service.rolling} host(s)"
                + (f", {pause:g}s apart" if pause else ""),
            )
        for number, batch in enumerate(self.batches, 1):
            if number > 1 and pause > 0:
                self.phase(number, BatchPhase.PAUSING, seconds=pause)
                self.cancel.wait(pause)
            if self.cancel.is_set():
                self.phase(number, BatchPhase.CANCELLED)
                raise Cancelled()
            started = time.monotonic()
            try:
                self._go_live(number, batch, targets, previous, on_first_switch)
            except Cancelled:
                self.phase(number, BatchPhase.CANCELLED)
                raise
            except StageFailed as exc:
                seconds = time.monotonic() - started
                self.phase(number, BatchPhase.FAILED, seconds=seconds, error=str(exc))
                raise
            self.phase(number, BatchPhase.DONE, seconds=time.monotonic() - started)

    def _go_live(
        self,
        number: int,
        batch: list[Host],
        targets: dict[str, str],
        previous: dict[str, Optional[str]],
        on_first_switch: Callable[[], None],
    ) -> None:
        fleet, stage = self.fleet, self.stage
        self.phase(number, BatchPhase.SWITCHING)
        switched = fleet.switch(stage, {h.name: targets[h.name] for h in batch}, hosts=batch)
        previous.update(switched)
        self.switched.append(number)
        if number == 1:
            on_first_switch()
        self.phase(number, BatchPhase.RESTARTING)
        probes = bool(self.service.health)
        failed = fleet.restart(stage, self.cancel, hosts=batch, probes_follow=probes)
        if failed:
            raise StageFailed(describe(failed))
        if probes:
            self.phase(number, BatchPhase.PROBING)
            failed = fleet.probe(stage, self.cancel, hosts=batch)
            if failed:
                raise StageFailed(describe(failed))

    # -- going back ---------------------------------------------------------------
    def roll_back(self, stage: Stage, previous: dict[str, Optional[str]]) -> None:
        """Every host that switched back on ``previous[host]`` and restarted, batch by
        batch, the last batch first. Every batch is rolled back whatever happens to
        another (the fleet must end whole); raises StageFailed at the end, naming each
        host that could not be."""
        # Hosts whose supervisord did not answer cannot be restarted by trying again.
        down = set(self.fleet.unreachable_supervisors)
        problems: list[str] = []
        for number in reversed(self.switched):
            batch = self.batches[number - 1]
            failed = self.fleet.switch_back(stage, {h.name: previous[h.name] for h in batch})
            if failed:
                problems.append(f"could not switch back: {describe(failed)}")
            back = [h for h in batch if h.name not in failed and h.name not in down]
            probes = bool(self.service.health)
            failed = self.fleet.restart(stage, threading.Event(), hosts=back, probes_follow=probes)
            if failed:
                problems.append(f"the previous release does not run either: {describe(failed)}")
            elif probes and back:
                failed = self.fleet.probe(stage, threading.Event(), hosts=back)
                if failed:
                    problems.append(
                        f"the previous release fails its health probes too: {describe(failed)}"
                    )
            for host in batch:
                if host.name in down:
                    self.fleet.say(
                        stage,
                        f"current -> releases/{previous[host.name]} again; not "
                        "restarted: supervisord is not answering",
                        host=host.name,
                        stream="err",
                    )
            self.phase(number, BatchPhase.ROLLED_BACK)
        if problems:
            raise StageFailed("; ".join(problems))
