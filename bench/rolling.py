"""Issue 11 figures: does a rolling build keep the service answering, what does a batch
cost, what does an empty setup cost.

- A client load-balancing over 3 hosts (every 20 ms a round tries them in random order
  until one answers) counts the rounds where no host answered, during a rolling build
  (``rolling = 1``) and during an all-at-once build of the same release.
- The time a rolling build adds per extra batch over the all-at-once build
  ((rolling − all at once) / (batches − 1), pause 0), beside the app's own start time
  (the restart and verify of one batch of the rolling build: supervisor's startsecs and
  the verify's settle time are in it).
- The time a setup stage adds when its command does nothing (``true``) over a build
  without setup.

Both kinds of build alternate, A/B, and the medians are printed. Run as root from the
repo root: python -m bench.rolling [--runs 5]. Brings up its own loopback bed (sshd +
supervisord per host, the sample HTTP app on each host's own address); touches
nothing else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from balancer import Balancer
from deployconfig import PORT, update_service, write_ship_config
from gitorigin import make_origin, web_service_files
from testbed import start_testbed

from bench.common import alternate, median
from relconsole.config import load_config
from relconsole.events import BatchChanged, BatchPhase, Event, Stage, StageFinished
from relconsole.pipeline import run_build

HEALTH = [{"name": "http", "url": "http://${ADDRESS}:${PORT}/healthz", "expect": "ok"}]


class Builds:
    """Builds of a new version each time, on one config, with their figures."""

    def __init__(self, tmp: Path, bed, origin, name: str, **service):
        self.bed, self.origin = bed, origin
        self.config = write_ship_config(tmp / name, bed, origin.url, **service)
        self.n = 0
        self.walls: list[float] = []
        self.missed: list[int] = []
        self.rounds: list[int] = []
        self.restarts: list[float] = []
        #: How long the setup stage itself took, per build.
        self.setups: list[float] = []

    def build(self) -> float:
        self.n += 1
        self.origin.commit({"VERSION": f"v{time.monotonic_ns()}\n"}, "next")
        events: list[Event] = []
        config = load_config(self.config)
        with Balancer(self.bed.hosts, PORT) as client:
            started = time.monotonic()
            done = run_build(config, "svc", events.append, threading.Event())
            wall = time.monotonic() - started
        assert done.ok, done.error
        self.walls.append(wall)
        self.missed.append(len(client.missed))
        self.rounds.append(client.rounds)
        # the app's own start: restarting -> probing (or done) of each batch
        since: dict[int, float] = {}
        for e in events:
            if isinstance(e, StageFinished) and e.stage == Stage.SETUP:
                self.setups.append(e.seconds)
            if isinstance(e, BatchChanged) and e.phase is BatchPhase.RESTARTING:
                since[e.batch] = e.ts
            elif isinstance(e, BatchChanged) and e.batch in since:
                self.restarts.append(e.ts - since.pop(e.batch))
        return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bed = start_testbed(3, tmp / "bed")
        try:
            origin = make_origin(tmp / "git")
            origin.commit(web_service_files("svc", "/srv/svc", "v1"), "v1")
            shipped = {"shared": ["logs/", ".env"], "health": HEALTH}
            rolling = Builds(tmp, bed, origin, "rolling", rolling=1, **shipped)
            at_once = Builds(tmp, bed, origin, "at-once", **shipped)
            rolling.build()  # first deploy: every host has a previous release afterwards
            alternate(rolling.build, at_once.build, args.runs)
            plain = Builds(tmp, bed, origin, "no-setup", shared=[".env"])
            noop = Builds(tmp, bed, origin, "noop-setup", shared=[".env"])
            update_service(noop.config, setup=[{"name": "nothing", "run": "true"}])
            alternate(noop.build, plain.build, args.runs)
        finally:
            bed.close()
    batches = len(bed.hosts)
    per_batch = (median(rolling.walls[1:]) - median(at_once.walls)) / (batches - 1)
    # The app's own start: a batch's restart and verify, one host at a time.
    start = median(rolling.restarts)
    print(f"{args.runs} runs each, medians; 3 hosts, the sample HTTP app, an HTTP probe each")
    print(
        f"rounds with no host answering (client every 20 ms): rolling {rolling.missed[1:]} "
        f"of {rolling.rounds[1:]}; all at once {at_once.missed} of {at_once.rounds}"
    )
    print(
        f"build: rolling (3 batches, pause 0) {median(rolling.walls[1:]):.2f}s, "
        f"all at once {median(at_once.walls):.2f}s"
    )
    print(
        f"a batch adds {per_batch:.2f}s; the app's own start (a batch's restart + verify) "
        f"{start:.2f}s (all 3 at once: {median(at_once.restarts):.2f}s); "
        f"beyond it {per_batch - start:+.2f}s (target <= 0.5s)"
    )
    print(
        f"setup that does nothing: the setup stage takes {median(noop.setups) * 1000:.0f} ms "
        f"(without setup: {median(plain.setups) * 1000:.0f} ms; target <= 200 ms); "
        f"whole builds {median(noop.walls):.2f}s vs {median(plain.walls):.2f}s "
        f"({median(noop.walls) - median(plain.walls):+.3f}s, within the builds' noise)"
    )


if __name__ == "__main__":
    main()
