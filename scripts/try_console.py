"""Look at the main console by hand, against a real test bed (needs root, like the tests).

    python3 scripts/try_console.py [HOSTS]      # default 2 hosts
    tmux new-session -d -s rc -x 80 -y 24 'python3 scripts/try_console.py'

Starts a bed of fake hosts (tests/testbed.py) and two services:
- ``svc``: deployed twice (so R has a release to go back to), then one more commit
  pushed, so the pending list has something; its check prints a line with markup.
- ``api``: deployed once, then locked on the first host by "another machine".
Then runs the real RelconsoleApp. Quit with q: the bed is closed on the way out (also
on SIGHUP, when the tmux session is killed).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import tomli_w  # noqa: E402
from deployconfig import write_config  # noqa: E402
from gitorigin import make_origin, sample_service_files  # noqa: E402
from testbed import start_testbed  # noqa: E402

from relconsole.config import load_config  # noqa: E402
from relconsole.lock import LOCK_DIR, LockInfo  # noqa: E402
from relconsole.pipeline import run_build  # noqa: E402
from relconsole.ui.app import RelconsoleApp  # noqa: E402


def next_second() -> None:
    now = int(time.time())
    while int(time.time()) == now:
        time.sleep(0.01)


def main(hosts: int) -> None:
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(1))
    tmp = Path(tempfile.mkdtemp(prefix="try-console-"))
    bed = start_testbed(hosts, tmp)
    try:
        svc = make_origin(tmp, "svc")
        svc.commit(sample_service_files("svc", "/srv/svc", "v1"), "first release of svc")
        api = make_origin(tmp, "api")
        api.commit(sample_service_files("api", "/srv/api", "v1"), "api: first release")
        path = write_config(
            tmp,
            bed,
            svc.url,
            settings={"poll_interval": 2},
            checks=[
                {"name": "tests", "run": "sh tests/test_ok.sh"},
                {"name": "lint", "run": "echo '[bold]not markup[/] ok'"},
            ],
        )
        doc = tomllib.loads(path.read_text())
        doc["services"]["api"] = dict(
            doc["services"]["svc"], repo=api.url, path="/srv/api", programs=["api"]
        )
        path.write_text(tomli_w.dumps(doc))
        config = load_config(path)
        for name in ("svc", "api"):
            finished = run_build(config, name, lambda event: None)
            if not finished.ok:
                raise SystemExit(f"deploying {name} failed: {finished.error}")
        next_second()
        svc.commit({"VERSION": "v2\n"}, "svc: second release")
        finished = run_build(config, "svc", lambda event: None)
        if not finished.ok:
            raise SystemExit(f"deploying svc again failed: {finished.error}")
        svc.commit({"VERSION": "v3\n"}, "svc: a change [not deployed yet]")
        other = LockInfo(
            user="alice", machine="build-box-2", pid=4242, started=time.time() - 754, branch="main"
        )
        lock = bed.hosts[0].path("/srv/api") / LOCK_DIR
        lock.mkdir(parents=True)
        (lock / "info").write_text(other.to_json() + "\n")
        for host in bed.hosts:
            print(host.name, host.address, host.root, flush=True)
        RelconsoleApp(config).run()
    finally:
        # Here, not atexit: the bed closes through a thread pool, refused at exit.
        bed.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
