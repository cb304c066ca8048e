"""Look at the process view by hand, against a real test bed (needs root, like the tests).

    python3 scripts/try_process_view.py [HOSTS]      # default 2 hosts
    tmux new-session -d -s pv -x 80 -y 24 'python3 scripts/try_process_view.py 3'

Starts a bed of fake hosts (tests/testbed.py), deploys the sample service ``svc`` with
the real engine, adds ``tick`` (a line every 0.5 s, with Rich markup in it that must
print literally), a two-process group ``workers`` and ``flaky`` (FATAL at once), then
runs ProcessScreen in a bare App. Quit with ctrl+q: the bed is closed on the way out.
The host folders are listed on stdout first, for stopping sshd or killing a program.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from deployconfig import write_config  # noqa: E402
from gitorigin import make_origin, sample_service_files  # noqa: E402
from testbed import start_testbed  # noqa: E402
from textual.app import App  # noqa: E402

from relconsole.config import load_config  # noqa: E402
from relconsole.pipeline import run_build  # noqa: E402
from relconsole.status.poller import StatusPoller  # noqa: E402
from relconsole.ui.process_screen import ProcessScreen  # noqa: E402

TICK = """\
import itertools, time
for i in itertools.count():
    print("tick", i, "[bold]not markup[/]", flush=True)
    time.sleep(0.5)
"""
PROGRAMS = """\
[program:tick]
command=/usr/bin/python3 -u /srv/tick.py
startsecs=0
autorestart=true
stdout_logfile=/etc/supervisor/log/tick.out.log
stderr_logfile=/etc/supervisor/log/tick.err.log

[program:workers]
command=/usr/bin/python3 -u /srv/tick.py
process_name=%(program_name)s_%(process_num)02d
numprocs=2
startsecs=0
stdout_logfile=/etc/supervisor/log/workers_%(process_num)02d.out.log

[program:flaky]
command=/bin/false
startsecs=1
startretries=1
"""


class Harness(App):
    def __init__(self, config, poller):
        super().__init__()
        self.config = config
        self.poller = poller

    def on_mount(self) -> None:
        self.push_screen(ProcessScreen(self.config, self.poller))


def main(hosts: int) -> None:
    # A killed tmux session sends SIGHUP: leave through the finally blocks.
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(1))
    tmp = Path(tempfile.mkdtemp(prefix="try-process-view-"))
    bed = start_testbed(hosts, tmp)
    try:
        origin = make_origin(tmp)
        origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
        config = load_config(write_config(tmp, bed, origin.url, settings={"poll_interval": 2}))
        finished = run_build(config, "svc", lambda event: None)
        if not finished.ok:
            raise SystemExit(f"deploying svc failed: {finished.error}")
        for host in bed.hosts:
            host.path("/srv/tick.py").write_text(TICK)
            host.path("/etc/supervisor/conf.d/tick.conf").write_text(PROGRAMS)
            host.supervisorctl("update")
            print(host.name, host.address, host.root, flush=True)
        poller = StatusPoller(list(config.hosts.values()), config.settings)
        try:
            Harness(config, poller).run()
        finally:
            poller.close()
    finally:
        # Here, not atexit: the bed closes through a thread pool, refused at exit.
        bed.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
