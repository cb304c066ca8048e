"""``max_parallel = 1`` on the real bed: one host at a time still deploys every host,
and the switch stays all or none (a host that cannot switch, reached last, sends the
hosts that switched before it back)."""

from __future__ import annotations

import shutil
import time

from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import build, current_release

from relconsole.events import HostFinished


def test_one_host_at_a_time_deploys_all_three(bed, origin, tmp_path):
    sha = origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[], settings={"max_parallel": 1})

    finished, events = build(config)

    assert finished.ok, finished.error
    for host in bed.hosts:
        assert current_release(host) == finished.release
        revision = host.path(f"/srv/svc/releases/{finished.release}/REVISION")
        assert revision.read_text().strip() == sha
        assert host.program_pid("svc") is not None
    # One host at a time: each step finishes on the hosts in their configured order.
    uploaded = [e.host for e in events if isinstance(e, HostFinished) and e.stage == "upload"]
    assert uploaded == ["h1", "h2", "h3"]


def test_one_host_at_a_time_the_switch_is_still_all_or_none(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, checks=[], settings={"max_parallel": 1})
    first, _ = build(config)
    assert first.ok, first.error
    # h3 cannot switch: its `current` is a folder that a rename cannot replace. With one
    # host at a time, h1 and h2 have switched when h3 fails.
    h3 = bed.hosts[2]
    current = h3.path("/srv/svc/current")
    current.unlink()
    shutil.copytree(h3.path(f"/srv/svc/releases/{first.release}"), current, symlinks=True)
    time.sleep(1.01)  # release ids have one-second resolution
    origin.commit({"VERSION": "v2\n"}, "v2")

    second, events = build(config)

    assert not second.ok
    assert "switch failed on h3" in (second.error or ""), second.error
    assert "switched 2 host(s) back" in (second.error or ""), second.error
    for host in bed.hosts[:2]:
        assert current_release(host) == first.release
