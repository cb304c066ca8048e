"""Delta uploads over real ssh and sudo: the release a delta makes is the tree a full
upload makes; a previous release that is missing or changed on the host gets the
full tree; a one-file change sends little."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest
import tomli_w
from deltarepo import CountingConnector, commit_all, listing, v1_files, v2_changes
from deployconfig import write_config

from relconsole.config import load_config
from relconsole.events import Output
from relconsole.pipeline import run_build

BIG = 2_000_000  # an unchanged file larger than everything a delta may send


@pytest.fixture
def deploy(bed, origin, tmp_path):
    """Build on the bed as user deploy through sudo, with a shared folder and a setup
    that writes into the release (vendor/), counting the bytes sent to each host."""
    path = write_config(tmp_path, bed, origin.url, checks=[], user="deploy", sudo=True)
    doc = tomllib.loads(path.read_text())
    doc["services"]["svc"]["shared"] = ["logs/"]
    doc["services"]["svc"]["setup"] = [
        {"name": "vendor", "run": 'mkdir -p vendor && echo "$RELCONSOLE_SHA" > vendor/stamp'}
    ]
    path.write_bytes(tomli_w.dumps(doc).encode())
    config = load_config(path)
    counting = CountingConnector(config.settings)

    def build(hosts=None):
        counting.reset()
        events, lock = [], threading.Lock()

        def sink(event):
            with lock:
                events.append(event)

        done = run_build(config, "svc", sink, connector=counting, only_hosts=hosts)
        assert done.ok, done.error
        lines = {
            e.host: e.line
            for e in events
            if isinstance(e, Output) and e.host and "unpacked" in e.line
        }
        return done, lines, dict(counting.sent)

    yield build
    counting.close()


def release_listing(host, release: str) -> dict[str, tuple]:
    return listing(host.path(f"/srv/svc/releases/{release}"))


def test_a_delta_makes_the_tree_a_full_upload_makes_and_a_small_change_sends_little(
    bed, origin, deploy
):
    commit_all(origin, v1_files(big=BIG), "v1")
    first, lines, _ = deploy(["h1", "h2"])
    assert all(line.startswith("full upload (no release") for line in lines.values()), lines
    commit_all(origin, v2_changes(), "v2")

    second, lines, sent = deploy()

    assert lines["h1"].startswith(f"delta from {first.release}: "), lines
    assert lines["h2"].startswith(f"delta from {first.release}: "), lines
    assert lines["h3"].startswith("full upload (no release on the host)"), lines
    h1, h2, h3 = (release_listing(bed.host(n), second.release) for n in ("h1", "h2", "h3"))
    assert h1 == h3 and h2 == h3
    assert h3["data/big.bin"][0] == "file" and h3["logs"][0] == "link"
    assert sent["h1"] < 100_000 < BIG < sent["h3"], sent

    commit_all(origin, {b"VERSION": b"v3\n"}, "v3: one file")
    third, lines, sent = deploy()

    assert all(
        line.startswith(f"delta from {second.release}: 1 changed, 0 deleted")
        for line in lines.values()
    ), lines
    assert max(sent.values()) < 1_000_000, sent
    for name in ("h1", "h2"):
        assert release_listing(bed.host(name), third.release) == release_listing(
            bed.host("h3"), third.release
        )


def test_a_previous_release_missing_or_changed_on_the_host_gets_the_full_tree(bed, origin, deploy):
    commit_all(origin, v1_files(), "v1")
    first, _, _ = deploy()
    previous = Path("/srv/svc/releases") / first.release
    kept = bed.host("h2").path(str(previous / "keep.txt"))
    kept.unlink()
    kept.write_text("KEPT\n")  # same size, other bytes
    bed.host("h3").ssh(f"rm -rf {previous}")
    commit_all(origin, v2_changes(), "v2")

    second, lines, _ = deploy()

    assert lines["h1"].startswith("delta from"), lines
    assert lines["h2"].startswith(
        f"full upload (releases/{first.release} cannot serve: files of"
    ), lines
    assert lines["h3"].startswith("full upload (no release on the host)"), lines
    h1 = release_listing(bed.host("h1"), second.release)
    for name in ("h2", "h3"):
        assert release_listing(bed.host(name), second.release) == h1


def test_a_setup_that_rewrites_a_tracked_file_never_changes_the_previous_release(
    bed, origin, tmp_path
):
    """With setup commands, unchanged files are copied from the previous release, not
    hard-linked: a setup appending to a tracked file (as npm rewrites a lock file) must
    leave the release a rollback goes back to as it was. Without setup they are linked."""
    path = write_config(tmp_path, bed, origin.url, hosts=["h1"], checks=[])
    doc = tomllib.loads(path.read_text())
    plain = load_config(path)
    doc["services"]["svc"]["setup"] = [{"name": "append", "run": "echo appended >> keep.txt"}]
    path.write_bytes(tomli_w.dumps(doc).encode())
    with_setup = load_config(path)

    def build(config):
        lines = []

        def sink(event):
            if isinstance(event, Output) and "unpacked" in event.line:
                lines.append(event.line)

        done = run_build(config, "svc", sink)
        assert done.ok, done.error
        return done, lines[0]

    commit_all(origin, v1_files(), "v1")
    first, _ = build(plain)
    commit_all(origin, {b"VERSION": b"v2\n"}, "v2")
    second, line = build(plain)
    assert " linked " in line and " copied" not in line, line
    commit_all(origin, {b"VERSION": b"v3\n"}, "v3")

    third, line = build(with_setup)

    releases = bed.host("h1").path("/srv/svc/releases")
    assert (releases / third.release / "keep.txt").read_text() == "kept\nappended\n"
    assert (releases / second.release / "keep.txt").read_text() == "kept\n"
    assert line.startswith(f"delta from {second.release}: ") and " 0 linked, " in line, line
